"""Release governance: tiers, policy as code, decisions with reasons, the release board, staged
release and transparency reports (capabilities R4-R6)."""
