"""Benchmarks: each prints a baseline measured in the same run and the ratio against it."""
