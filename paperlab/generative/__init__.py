"""Generative models (notes G1-G2): autoregressive binary models (FVSBN, NADE, MADE) and latent
diffusion.
"""

from paperlab.generative.autoregressive import FVSBN, MADE, NADE

__all__ = ["FVSBN", "MADE", "NADE"]
