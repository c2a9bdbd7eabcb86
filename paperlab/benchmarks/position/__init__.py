"""Benchmarks of the position encodings (notes A1-A2)."""
