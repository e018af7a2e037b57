"""Benchmarks and their test doubles: run from a checkout (python -m benchmarks.NAME), not shipped."""
