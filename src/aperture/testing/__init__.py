"""Shipped test helpers, used by our own tests too."""
