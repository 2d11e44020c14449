"""Segments, campaigns and who gets what next: rules as data, evaluated in polars (pure, no I/O)."""
