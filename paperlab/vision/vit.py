"""The Vision Transformer, ViT (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"; D3).

The idea: an image is a sequence of patches. Cut the (C, H, W) image into N = (H/p)(W/p)
non-overlapping p x p patches, project each linearly to d dims (a stride-p convolution),
prepend a learned class token, add position embeddings and run a standard (pre-LN)
Transformer encoder; classify from the class token (or the mean of the patch tokens)::

    z_0 = [x_cls ; x_1 E ; ... ; x_N E] + E_pos          E: (p*p*C, d), E_pos: (1 + N, d)
    z_l = z_{l-1} + MSA(LN(z_{l-1}))  ;  z_l = z_l + MLP(LN(z_l))     l = 1..L
    y   = head(LN(z_L)[0])

Position encodings: ``"learned"`` (the paper), ``"sincos-2d"`` (fixed 2-D sine-cosine, as
MAE), ``"rope-2d"`` (axial rotary in every attention, Heo et al. 2024; prefix tokens such as
the class token are not rotated) or ``"none"``. The same module, configured, is the image tower
of CLIP (``quick_gelu``, no patch bias, ``pre_norm``), SigLIP (no class token, ``gelu_tanh``,
``pool="none"`` under an attention-pooling head) and BLIP. The grid pieces -- ``patchify``/
``unpatchify`` (MAE's pixel layout, (B, C, H, W) <-> (B, N, p*p*C)), ``PatchEmbedding``, the
sin-cos table and the 2-D RoPE wrapper -- live in ``patches.py`` and are re-exported here.

Shapes: images (B, C, H, W); tokens (B, T, d) with T = N + 1 (class token) or N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError
from paperlab.registry import export_model
from paperlab.sequence.transformer_layers import ACTIVATIONS, EncoderLayer
from paperlab.vision.patches import (
    PatchEmbedding,
    PatchRotary2D,
    check_images,
    pair,
    patchify,
    sincos_2d_positions,
    unpatchify,
)

POSITIONS = ("learned", "sincos-2d", "rope-2d", "none")
POOLS = ("cls", "mean", "none")


@dataclass
class ViTConfig(Config):
    """A Vision Transformer. Defaults: a small ViT for 8x8 digits with 2x2 patches.

    ``position``: one of ``POSITIONS``; ``pool``: ``"cls"`` (class token), ``"mean"`` (mean of
    the patch tokens) or ``"none"``; ``pool_projection`` adds HF ``ViTModel``'s pooler (a
    Linear + tanh on the pooled token); ``num_classes`` 0 means no head. ``pre_norm`` is a
    LayerNorm on the embeddings before the encoder (CLIP), ``final_norm`` one after it.
    """

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 128
    activation: str = "gelu"
    norm_eps: float = 1e-6
    class_token: bool = True
    patch_bias: bool = True
    position: str = "learned"
    pre_norm: bool = False
    final_norm: bool = True
    pool: str = "cls"
    pool_projection: bool = False
    num_classes: int = 0
    dropout: float = 0.0
    attention_dropout: float = 0.0

    @property
    def grid(self) -> tuple[int, int]:
        h, w = pair("image_size", self.image_size)
        return h // self.patch_size, w // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        for name in ("patch_size", "in_channels", "dim", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        h, w = pair("image_size", self.image_size)
        if h % self.patch_size or w % self.patch_size:
            raise ConfigError(
                f"image_size {h}x{w} is not divisible by patch_size={self.patch_size}"
            )
        if self.dim % self.num_heads:
            raise ConfigError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.position not in POSITIONS:
            raise ConfigError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if self.position == "rope-2d" and (self.dim // self.num_heads) % 4:
            raise ConfigError(
                f"rope-2d needs a head dim (dim/num_heads = {self.dim // self.num_heads}) "
                f"divisible by 4"
            )
        if self.position == "sincos-2d" and self.dim % 4:
            raise ConfigError(f"sincos-2d needs dim divisible by 4, got {self.dim}")
        if self.pool not in POOLS:
            raise ConfigError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool == "cls" and not self.class_token:
            raise ConfigError("pool='cls' needs class_token=True (use 'mean' or 'none')")
        if self.pool == "none" and (self.num_classes or self.pool_projection):
            raise ConfigError("a head or pool_projection needs pool='cls' or 'mean'")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or (
            self.num_classes < 0
        ):
            raise ConfigError(f"num_classes must be an int >= 0, got {self.num_classes!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.norm_eps, (int, float)) or self.norm_eps <= 0:
            raise ConfigError(f"norm_eps must be a positive number, got {self.norm_eps!r}")


class ViTOutput(NamedTuple):
    """hidden (B, T, d); pooled (B, d) or ``None``; logits (B, num_classes) or ``None``."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None
    logits: torch.Tensor | None


def build_config(config: Config | None, cls: type, fields: dict[str, Any]) -> Any:
    """``config`` (updated by ``fields``) or ``cls(**fields)``, type-checked and checked."""
    if config is None:
        config = cls(**fields)
    elif fields:
        config = dataclasses.replace(config, **fields)
    if not isinstance(config, cls):
        raise ArgumentTypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    config.check()
    return config


@export_model("vit", note="D3", paper="Dosovitskiy et al. 2021")
class VisionTransformer(nn.Module):
    """Patch embedding -> [class token] + positions -> pre-LN encoder -> pool -> head.

    ``VisionTransformer(config)`` or ``VisionTransformer(**fields)``. Submodules (named for
    the HF mapping): ``patch_embed.proj``, ``cls_token`` (1, 1, d), ``position_embeddings``
    (1, T, d; a parameter when learned, a buffer for sincos-2d), ``pre_norm``, ``layers``
    (``EncoderLayer``: ``self_attn.{q,k,v,out}_proj``, ``norm1``, ``ffn.fc1/fc2``, ``norm2``),
    ``norm``, ``pooler`` (Linear, then tanh), ``head``.
    """

    def __init__(self, config: ViTConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, ViTConfig, fields)
        d = c.dim
        self.patch_embed = PatchEmbedding(c.image_size, c.patch_size, c.in_channels, d,
                                          bias=c.patch_bias)
        self.num_prefix = 1 if c.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if c.class_token else None
        tokens = c.num_patches + self.num_prefix
        if c.position == "learned":
            self.position_embeddings = nn.Parameter(torch.zeros(1, tokens, d))
        elif c.position == "sincos-2d":
            table = sincos_2d_positions(c.grid, d, class_token=c.class_token)
            self.register_buffer("position_embeddings", table.unsqueeze(0))
        else:
            self.position_embeddings = None
        rope = None
        if c.position == "rope-2d":
            rope = PatchRotary2D(d // c.num_heads, c.grid, self.num_prefix)
        self.dropout = nn.Dropout(c.dropout)
        self.pre_norm = nn.LayerNorm(d, eps=c.norm_eps) if c.pre_norm else None
        self.layers = nn.ModuleList(
            EncoderLayer(
                d, c.num_heads, c.mlp_dim, dropout=c.dropout,
                attention_dropout=c.attention_dropout, activation=c.activation,
                norm_eps=c.norm_eps, norm_first=True, position=rope,
            )
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(d, eps=c.norm_eps) if c.final_norm else None
        self.pooler = nn.Linear(d, d) if c.pool_projection else None
        self.head = nn.Linear(d, c.num_classes) if c.num_classes else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Class token and learned positions ~ N(0, 0.02^2) (timm's ViT init)."""
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        if isinstance(self.position_embeddings, nn.Parameter):
            nn.init.normal_(self.position_embeddings, std=0.02)

    # --- the pieces ---

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> patch tokens with their positions added, (B, N, d)."""
        x = self.patch_embed(images)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings[:, self.num_prefix:].to(x.dtype)
        return x

    def add_prefix(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token (with its position), then pre-norm and dropout: (B, T, d)."""
        x = patch_tokens
        if self.cls_token is not None:
            cls = self.cls_token
            if self.position_embeddings is not None:
                cls = cls + self.position_embeddings[:, :1]
            x = torch.cat((cls.to(x.dtype).expand(x.shape[0], -1, -1), x), dim=1)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        return self.dropout(x)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> input tokens (B, T, d): patches, class token, positions, pre-norm."""
        return self.add_prefix(self.embed_patches(images))

    def encode(
        self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder stack and the final norm: (B, T, d) -> (B, T, d)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or (
            tokens.shape[-1] != self.config.dim
        ):
            raise ShapeError(
                f"tokens must be (B, T, {self.config.dim}), got "
                f"{tuple(getattr(tokens, 'shape', ()))}"
            )
        x = tokens
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)
        return x if self.norm is None else self.norm(x)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """(B, T, d) -> (B, d): the class token or the mean of the patch tokens (or ``None``)."""
        if self.config.pool == "none":
            return None
        pooled = hidden[:, 0] if self.config.pool == "cls" else hidden[:, self.num_prefix:].mean(1)
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(pooled))
        return pooled

    def forward(self, images: torch.Tensor) -> ViTOutput:
        """(B, C, H, W) -> ``ViTOutput(hidden, pooled, logits)``."""
        hidden = self.encode(self.embed(images))
        pooled = self.pool(hidden)
        logits = None if self.head is None or pooled is None else self.head(pooled)
        return ViTOutput(hidden, pooled, logits)

    def extra_repr(self) -> str:
        c = self.config
        return (f"image_size={c.image_size}, patch_size={c.patch_size}, dim={c.dim}, "
                f"depth={c.depth}, position={c.position!r}, pool={c.pool!r}")


def num_tokens(config: ViTConfig) -> int:
    """T = N patches (+ 1 with a class token)."""
    return config.num_patches + (1 if config.class_token else 0)


__all__ = [
    "POOLS",
    "POSITIONS",
    "PatchEmbedding",
    "PatchRotary2D",
    "ViTConfig",
    "ViTOutput",
    "VisionTransformer",
    "build_config",
    "check_images",
    "num_tokens",
    "patchify",
    "sincos_2d_positions",
    "unpatchify",
]
