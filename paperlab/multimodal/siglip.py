"""SigLIP: sigmoid loss for language-image pre-training (Zhai et al. 2023; note D6).

The idea: drop CLIP's batch-wide softmax. Every (image, text) pair of the batch is its own
binary question -- do these two belong together? -- answered by a logistic regression on the
scaled cosine similarity, with a learnable temperature t and bias b::

    z_ij = 1 if i == j else -1
    loss = -(1/B) sum_i sum_j log sigmoid(z_ij (exp(t) u_i . v_j + b))      (``siglip_loss``)

No row or column normalisation couples the pairs, so the B x B matrix can be computed in
chunks (and across devices) without ever being held whole, and the loss works at small
batch sizes where a softmax over few negatives is a weak signal.

Initialisation (the paper, sec. 3.2): t' = log 10 (so exp(t) = 10) and b = -10. With B - 1
negatives per positive, the prior log-odds of "a pair matches" is about -log(B - 1); b = -10
starts the model near that prior for the paper's batches (B ~ 32k: -log(B) ~ -10.4), so the
first steps are not spent pushing the B^2 - B negatives down. **Small-batch caveat:** at
B = 16, say, the prior is -log 15 ~ -2.7; b = -10 then starts far too negative -- every
positive costs ~10 nats at first and the early gradient is dominated by pulling the B
positives up -- which can slow the start of a small-batch run. Both values are config
fields (``logit_scale_init``, ``logit_bias_init``); ``prior_logit_bias(B)`` gives -log(B - 1).

The towers: the image tower is a ``VisionTransformer`` without class token (patch bias,
tanh-GELU, eps 1e-6, final LayerNorm over all tokens) read by a multi-head attention pooling
(MAP) head: one learned probe query attends over the patch tokens, then a pre-LN residual MLP,
``h = a + MLP(LN(a))`` with ``a = Attn(probe, tokens)``. The text tower is the bidirectional
``TextTransformer`` pooled at the last position, then a linear head with bias.

Shapes: images (B, C, H, W); input_ids (B, N); attention_mask (B, N), True = token (SigLIP
was trained with max-length padding); embeddings (B, E) with E = the image tower's width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.softmax import MultiHeadAttention
from paperlab.config import Config
from paperlab.errors import ConfigError, ShapeError, check_int
from paperlab.multimodal.clip import ContrastiveOutput, check_tower_configs
from paperlab.multimodal.losses import siglip_loss
from paperlab.multimodal.text import TextConfig, TextTransformer, build_config
from paperlab.registry import export_model
from paperlab.sequence.lm import make_norm
from paperlab.sequence.transformer_layers import FeedForward
from paperlab.vision.vit import VisionTransformer, ViTConfig


def prior_logit_bias(batch_size: int) -> float:
    """-log(B - 1): the bias at which sigmoid(b) is the share of positives among a row's pairs
    against its negatives (the value ``b = -10`` approximates for B ~ 22k)."""
    check_int("batch_size", batch_size, minimum=2)
    return -math.log(batch_size - 1)


def siglip_vision_config(**fields: Any) -> ViTConfig:
    """A ``ViTConfig`` laid out as SigLIP's image tower (small by default); ``fields`` override."""
    base: dict[str, Any] = dict(
        image_size=32, patch_size=8, in_channels=3, dim=64, depth=2, num_heads=4, mlp_dim=256,
        activation="gelu_tanh", norm_eps=1e-6, class_token=False, patch_bias=True,
        position="learned", pre_norm=False, final_norm=True, pool="none",
    )
    base.update(fields)
    return ViTConfig(**base)


def siglip_text_config(**fields: Any) -> TextConfig:
    """A ``TextConfig`` laid out as SigLIP's text tower (bidirectional, last-token pooling,
    linear head to 64 = the default image width); ``fields`` override."""
    base: dict[str, Any] = dict(
        causal=False, pool="last", eos_token_id=None, activation="gelu_tanh", norm_eps=1e-6,
        head_dim=64,
    )
    base.update(fields)
    return TextConfig(**base)


@dataclass
class SigLIPConfig(Config):
    """SigLIP: ``vision``, ``text`` (its ``head_dim`` or ``dim`` must equal the image width),
    ``map_mlp_dim`` (the MAP head's MLP; default the image tower's ``mlp_dim``), the paper's
    ``logit_scale_init`` = log 10 and ``logit_bias_init`` = -10."""

    vision: ViTConfig = field(default_factory=siglip_vision_config)
    text: TextConfig = field(default_factory=siglip_text_config)
    map_mlp_dim: int | None = None
    logit_scale_init: float = math.log(10.0)
    logit_bias_init: float = -10.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        check_tower_configs(self.vision, self.text, "SigLIP")
        if self.vision.pool != "none" or self.vision.num_classes:
            raise ConfigError(
                "SigLIP vision must have pool='none' and no head (the MAP head pools)"
            )
        text_width = self.text.head_dim or self.text.dim
        if text_width != self.vision.dim:
            raise ConfigError(
                f"SigLIP's embedding widths differ: image tower dim={self.vision.dim}, text "
                f"{'head_dim' if self.text.head_dim else 'dim'}={text_width}; set text.head_dim "
                f"to {self.vision.dim}"
            )
        if self.map_mlp_dim is not None:
            check_int("map_mlp_dim", self.map_mlp_dim, minimum=1)
        for name in ("logit_scale_init", "logit_bias_init"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")


class AttentionPoolingHead(nn.Module):
    """MAP head: a learned probe attends over the tokens, then ``h + MLP(LN(h))``.

    ``AttentionPoolingHead(dim, num_heads, mlp_dim, *, activation, norm_eps)``; submodules
    ``probe`` (1, 1, d), ``attention`` (``MultiHeadAttention``), ``norm``, ``ffn``.
    (B, T, d) -> (B, d).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, *, activation: str = "gelu_tanh",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.xavier_uniform_(self.probe.view(1, dim))
        self.attention = MultiHeadAttention(dim, num_heads)
        self.norm = make_norm("layernorm", dim, norm_eps)
        self.ffn = FeedForward(dim, mlp_dim, 0.0, activation)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[-1] != self.probe.shape[-1]:
            raise ShapeError(
                f"tokens must be (B, T, {self.probe.shape[-1]}), got {tuple(tokens.shape)}"
            )
        probe = self.probe.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        h = self.attention(probe, tokens, tokens)
        h = h + self.ffn(self.norm(h))
        return h[:, 0]


@export_model("siglip", note="D6", paper="Zhai et al. 2023")
class SigLIP(nn.Module):
    """Image tower + MAP head, text tower + linear head, learnable temperature and bias.

    ``SigLIP(config)`` or ``SigLIP(**fields)``. Submodules ``vision``, ``head`` (MAP),
    ``text``; parameters ``logit_scale`` and ``logit_bias`` (each shape (1,), as HF).
    ``encode_image``, ``encode_text`` -> (B, E) normalised; ``forward(images, input_ids,
    attention_mask=None)`` -> ``ContrastiveOutput`` with logits exp(t) u.v + b;
    ``loss(...)`` -> ``siglip_loss``.
    """

    def __init__(self, config: SigLIPConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, fields, SigLIPConfig)
        v = c.vision
        self.vision = VisionTransformer(v)
        self.head = AttentionPoolingHead(
            v.dim, v.num_heads, c.map_mlp_dim or v.mlp_dim, activation=v.activation,
            norm_eps=v.norm_eps,
        )
        self.text = TextTransformer(c.text)
        self.logit_scale = nn.Parameter(torch.tensor([float(c.logit_scale_init)]))
        self.logit_bias = nn.Parameter(torch.tensor([float(c.logit_bias_init)]))

    def encode_image(self, images: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """(B, C, H, W) -> (B, E): the MAP head over the image tower's tokens (normalised)."""
        emb = self.head(self.vision(images).hidden)
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        normalize: bool = True,
    ) -> torch.Tensor:
        """(B, N) ids -> (B, E): the text tower's last position through its head (normalised)."""
        emb = self.text(input_ids, attention_mask).pooled
        return F.normalize(emb, dim=-1) if normalize else emb

    def scale(self) -> torch.Tensor:
        """exp(t), a 0-dim tensor."""
        return self.logit_scale.reshape(()).exp()

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> ContrastiveOutput:
        img = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask)
        logits_per_text = (txt @ img.T) * self.scale() + self.logit_bias.reshape(())
        return ContrastiveOutput(logits_per_text.T, logits_per_text, img, txt)

    def loss(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pairwise sigmoid loss of the batch (``multimodal.losses.siglip_loss``)."""
        img = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask)
        return siglip_loss(img, txt, self.scale(), self.logit_bias.reshape(()))

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters."""
        return sum({id(p): p.numel() for p in self.parameters() if p.requires_grad}.values())


__all__ = [
    "AttentionPoolingHead",
    "SigLIP",
    "SigLIPConfig",
    "prior_logit_bias",
    "siglip_text_config",
    "siglip_vision_config",
]
