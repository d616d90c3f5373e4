"""S3-S4: the seal's custody, two-person weight access (grants, single-use tokens), canaries, alerts."""
