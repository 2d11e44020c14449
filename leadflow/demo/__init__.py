"""The demo: a generated, realistic webhook stream sent through the real ingest API."""
