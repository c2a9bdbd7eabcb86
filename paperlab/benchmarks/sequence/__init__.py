"""Benchmarks of the sequence models (notes C1-C3)."""
