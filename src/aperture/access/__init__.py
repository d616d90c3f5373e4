"""S1-S2, S6: members, organisations, people, roles, clearance, API keys, authorization."""
