"""Benchmarks that print their figures; run them by hand, never as timed tests."""
