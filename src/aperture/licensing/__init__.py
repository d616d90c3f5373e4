"""Licensing: applications, screening, terms, traceable copies and leak tracing (L1-L4)."""
