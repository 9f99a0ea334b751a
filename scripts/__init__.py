"""Benchmarks, device checks and measurement harnesses (not part of the installed package)."""
