"""Leadflow's domain core: configuration, the canonical events, phones, brokers, storage, landing.

No Dagster and no FastAPI imports here (except the CLI and the demo, the outer shell), so the
same code serves the ingest API, the Dagster assets and the command line, and is tested fast.
"""
