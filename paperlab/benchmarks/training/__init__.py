"""Benchmarks of the training techniques (notes I1-I3)."""
