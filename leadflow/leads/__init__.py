"""Leads: identity resolution across channels and conversation assembly. Pure polars functions."""
