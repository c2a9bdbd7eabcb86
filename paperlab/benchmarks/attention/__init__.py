"""Benchmarks of the attention variants (notes B1-B5)."""
