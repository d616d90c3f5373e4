"""S5: the transparency log: every state change as a leaf of an RFC 6962 Merkle tree."""
