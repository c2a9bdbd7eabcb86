"""Vision models (notes D3-D4): the Vision Transformer (``vit.py``) and the masked autoencoder
(``mae.py``). CLIP, SigLIP and BLIP build their image towers from ``VisionTransformer``."""

from paperlab.vision.mae import MAEConfig, MaskedAutoencoder, mae_loss, random_masking
from paperlab.vision.vit import (
    PatchEmbedding,
    VisionTransformer,
    ViTConfig,
    ViTOutput,
    patchify,
    sincos_2d_positions,
    unpatchify,
)

__all__ = [
    "MAEConfig",
    "MaskedAutoencoder",
    "PatchEmbedding",
    "ViTConfig",
    "ViTOutput",
    "VisionTransformer",
    "mae_loss",
    "patchify",
    "random_masking",
    "sincos_2d_positions",
    "unpatchify",
]
