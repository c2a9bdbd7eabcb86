"""Benchmarks of the classic algorithms (notes J2-J6)."""
