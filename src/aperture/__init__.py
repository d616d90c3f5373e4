"""Aperture: decide, enforce and audit how openly each AI model is released."""

__version__ = "0.1.0"
