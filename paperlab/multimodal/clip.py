"""CLIP: contrastive language-image pre-training (Radford et al. 2021; note D5).

The idea: train an image encoder and a text encoder together so that an image and its
caption land on the same point of a shared embedding sphere. In a batch of B pairs, each
image must pick out its own caption among the B captions, and each caption its own image --
a B-way classification both ways (symmetric InfoNCE) with a learnable temperature::

    u_i = normalise(W_v f_image(x_i)),  v_j = normalise(W_t f_text(t_j))      (B, E) each
    L_ij = exp(s) u_i . v_j                          s learnable, s_0 = log(1 / 0.07)
    loss = (CE(L, arange(B)) + CE(L^T, arange(B))) / 2                  (``clip_loss``)

The towers: the image tower is a ``VisionTransformer`` configured as OpenAI's (class token,
no patch bias, a LayerNorm on the embeddings, quick-GELU, eps 1e-5, pooled = the final
LayerNorm of the class token); the text tower is the causal ``TextTransformer`` pooled at the
end-of-text token (``multimodal/text.py``). ``W_v``, ``W_t`` are linear maps without bias.
The paper clips exp(s) at 100 to keep training stable; ``max_logit_scale`` does so here (the
gradient of s is 0 while clipped).

Zero-shot classification with a trained CLIP: ``multimodal/zero_shot.py``.

Shapes: images (B, C, H, W); input_ids (B, N) int64; attention_mask (B, N), True = token;
embeddings (B, E); logits_per_image (B_img, B_txt) = logits_per_text^T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ConfigError
from paperlab.multimodal.losses import clip_loss
from paperlab.multimodal.text import TextConfig, TextTransformer, build_config
from paperlab.registry import export_model
from paperlab.vision.vit import VisionTransformer, ViTConfig


def clip_vision_config(**fields: Any) -> ViTConfig:
    """A ``ViTConfig`` laid out as CLIP's image tower (small by default); ``fields`` override."""
    base: dict[str, Any] = dict(
        image_size=32, patch_size=8, in_channels=3, dim=64, depth=2, num_heads=4, mlp_dim=256,
        activation="quick_gelu", norm_eps=1e-5, class_token=True, patch_bias=False,
        position="learned", pre_norm=True, final_norm=True, pool="cls",
    )
    base.update(fields)
    return ViTConfig(**base)


def clip_text_config(**fields: Any) -> TextConfig:
    """A ``TextConfig`` laid out as CLIP's text tower (causal, EOT pooling); ``fields`` override."""
    base: dict[str, Any] = dict(causal=True, pool="eos", activation="quick_gelu", norm_eps=1e-5)
    base.update(fields)
    return TextConfig(**base)


def check_tower_configs(vision: Any, text: Any, model: str) -> None:
    """Both sub-configs have the right type and pass their own checks."""
    if not isinstance(vision, ViTConfig):
        raise ConfigError(f"{model} vision must be a ViTConfig, got {type(vision).__name__}")
    if not isinstance(text, TextConfig):
        raise ConfigError(f"{model} text must be a TextConfig, got {type(text).__name__}")
    vision.check()
    text.check()


@dataclass
class CLIPConfig(Config):
    """CLIP: ``vision`` (``ViTConfig``), ``text`` (``TextConfig``), the shared width
    ``projection_dim``, the initial log-temperature ``logit_scale_init`` = log(1/0.07) and
    the clip ``max_logit_scale`` on exp(logit_scale) (``None``: no clip)."""

    vision: ViTConfig = field(default_factory=clip_vision_config)
    text: TextConfig = field(default_factory=clip_text_config)
    projection_dim: int = 64
    logit_scale_init: float = math.log(1 / 0.07)
    max_logit_scale: float | None = 100.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        check_tower_configs(self.vision, self.text, "CLIP")
        if self.vision.pool == "none":
            raise ConfigError("CLIP vision pool must be 'cls' or 'mean' (one vector per image)")
        p = self.projection_dim
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ConfigError(f"projection_dim must be a positive int, got {p!r}")
        if not isinstance(self.logit_scale_init, (int, float)) or not math.isfinite(
            self.logit_scale_init
        ):
            raise ConfigError(f"logit_scale_init must be a finite number, got "
                              f"{self.logit_scale_init!r}")
        if self.max_logit_scale is not None and not self.max_logit_scale > 0:
            raise ConfigError(
                f"max_logit_scale must be positive or None, got {self.max_logit_scale!r}"
            )


class ContrastiveOutput(NamedTuple):
    """logits_per_image (B_img, B_txt), logits_per_text = its transpose, and the normalised
    embeddings image_embeds (B_img, E), text_embeds (B_txt, E)."""

    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    image_embeds: torch.Tensor
    text_embeds: torch.Tensor


def scale_of(logit_scale: torch.Tensor, max_scale: float | None) -> torch.Tensor:
    """exp(logit_scale), clipped at ``max_scale`` (the CLIP paper's 100); a 0-dim tensor."""
    s = logit_scale.reshape(())
    if max_scale is not None:
        s = s.clamp(max=math.log(max_scale))
    return s.exp()


@export_model("clip", note="D5", paper="Radford et al. 2021")
class CLIP(nn.Module):
    """Image tower + text tower + bias-free projections + learnable temperature.

    ``CLIP(config)`` or ``CLIP(**fields)``. Submodules ``vision`` (``VisionTransformer``),
    ``text`` (``TextTransformer``), ``visual_projection``, ``text_projection``; parameter
    ``logit_scale`` (0-dim, log of the temperature's inverse).
    ``encode_image(images)``, ``encode_text(input_ids, attention_mask=None)`` -> (B, E)
    normalised (``normalize=False`` for the raw projections); ``forward(images, input_ids,
    attention_mask=None)`` -> ``ContrastiveOutput``; ``loss(...)`` -> ``clip_loss``.
    """

    def __init__(self, config: CLIPConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, fields, CLIPConfig)
        self.vision = VisionTransformer(c.vision)
        self.text = TextTransformer(c.text)
        self.visual_projection = nn.Linear(c.vision.dim, c.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text.out_dim, c.projection_dim, bias=False)
        nn.init.normal_(self.visual_projection.weight, std=c.vision.dim**-0.5)
        nn.init.normal_(self.text_projection.weight, std=self.text.out_dim**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))

    def encode_image(self, images: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """(B, C, H, W) -> (B, E): the pooled image tower, projected (and L2-normalised)."""
        emb = self.visual_projection(self.vision(images).pooled)
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        normalize: bool = True,
    ) -> torch.Tensor:
        """(B, N) ids -> (B, E): the text tower at its EOT token, projected (and normalised)."""
        emb = self.text_projection(self.text(input_ids, attention_mask).pooled)
        return F.normalize(emb, dim=-1) if normalize else emb

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clipped at ``max_logit_scale``."""
        return scale_of(self.logit_scale, self.config.max_logit_scale)

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> ContrastiveOutput:
        img = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask)
        logits_per_text = (txt @ img.T) * self.scale()
        return ContrastiveOutput(logits_per_text.T, logits_per_text, img, txt)

    def loss(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The symmetric InfoNCE loss of the batch (``multimodal.losses.clip_loss``)."""
        out = self(images, input_ids, attention_mask)
        return clip_loss(out.image_embeds, out.text_embeds, self.scale())

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters."""
        return sum({id(p): p.numel() for p in self.parameters() if p.requires_grad}.values())


__all__ = [
    "CLIP",
    "CLIPConfig",
    "ContrastiveOutput",
    "check_tower_configs",
    "clip_text_config",
    "clip_vision_config",
    "scale_of",
]
