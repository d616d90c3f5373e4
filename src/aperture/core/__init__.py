"""The shared kernel: errors, ids, clock, database engine and migrations."""
