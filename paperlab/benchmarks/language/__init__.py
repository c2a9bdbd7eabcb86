"""Benchmarks of the language models (notes D1-D2)."""
