"""Dagster sensors: look, decide, request runs. No heavy work inside a tick (ticks time out at 60 s)."""
