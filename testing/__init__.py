"""Harnesses the tests and the benchmarks share (not installed; run from a checkout)."""
