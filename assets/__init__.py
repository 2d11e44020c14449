"""Dagster assets, grouped by stage of the flow. Each is a thin wrapper around ``leadflow`` code."""
