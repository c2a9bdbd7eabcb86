"""Benchmarks of generative models (notes G1-G2): autoregressive binary models (FVSBN, NADE, MADE)
and latent diffusion.
"""
