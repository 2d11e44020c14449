"""Dagster definitions assembled in one place (definitions.py), with jobs and resources."""
