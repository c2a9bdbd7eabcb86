"""Benchmarks of the vision-language models (notes D5-D7)."""
