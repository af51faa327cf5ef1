"""Benchmarks. Each prints a ratio against a baseline measured in the same run, because
absolute times drift on shared machines. Run with `make bench`."""
