"""Experiments for the position encodings (notes A1-A2): length extrapolation, RoPE's relativity."""
