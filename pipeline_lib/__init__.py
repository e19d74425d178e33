"""DARS: distribution alignment and random sampling of pseudo labels, as a DVC pipeline."""

__version__ = "0.1.0"
