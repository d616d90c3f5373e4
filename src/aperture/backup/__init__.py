"""Backup and restore of a whole instance: the database snapshot, the stores, the keys apart."""
