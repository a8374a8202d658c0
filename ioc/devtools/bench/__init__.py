"""Benchmarks: figures with a baseline measured in the same run (medians; machines are noisy)."""
