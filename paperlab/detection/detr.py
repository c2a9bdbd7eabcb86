"""DETR: detection as direct set prediction (note F3; Carion et al., "End-to-End Object Detection
with Transformers", ECCV 2020).

The idea
--------
A detector outputs a *set* of boxes. Faster R-CNN gets there through anchors, thousands of
near-duplicate candidates and non-maximum suppression. DETR predicts a fixed number N of
(class, box) pairs at once and trains them against the ground truth with a one-to-one
(Hungarian) matching (``matcher.py``, ``set_criterion.py``): each object is owned by exactly one
prediction, every other prediction is pushed to "no object", so duplicates are penalised by the
loss itself and no NMS is needed at test time. The architecture::

    image (B, 3, H, W) --CNN--> features (B, C, h, w) --1x1 conv--> (B, d, h, w) -> (B, hw, d)
    encoder:  x = EncoderLayer(x, pos)                  q = k = x + pos, v = x   (every layer)
    decoder:  y = 0 (B, N, d);  y = DecoderLayer(y, memory, query_pos, pos)
              self-attention  q = k = y + query_pos, v = y
              cross-attention q = y + query_pos, k = memory + pos, v = memory
    heads:    logits = Linear(d, K + 1)(LN(y))          the last class is "no object"
              boxes  = sigmoid(MLP_3(LN(y)))            normalised (cx, cy, w, h) in [0, 1]

``query_pos`` are N learned *object queries* (``nn.Embedding(N, d)``); ``pos`` is DETR's 2-D
sine encoding: with the valid-pixel mask's running counts ``y_e`` (down) and ``x_e`` (across)
normalised to (0, 2 pi], each axis gets d/2 channels of the 1-D sinusoidal encoding
(``position/sinusoidal.py``, base 10000), ``pos = concat(PE(y_e), PE(x_e))``. With auxiliary
decoding losses the heads also run on the (normed) output of every decoder layer.

Post-processing (``postprocess``) is per query: ``score, label = max over the K real classes
of softmax(logits)``, keep the top-k queries by score, scale the boxes to the image. No NMS.

The backbone is a small ResNet laid out like HF's ``ResNetConfig`` (a 7x7/2 stem and max-pool,
stages of basic or bottleneck blocks, the first stage at stride 1 unless
``downsample_in_first_stage``), with frozen batch norm (``y = (x - mean) / sqrt(var + 1e-5) *
w + b``, all buffers) for imported weights or ordinary batch norm for training from scratch.

Reference: HF ``DetrForObjectDetection`` (``hub/detr.py`` imports its weights; parity in
tests/detection/test_detr.py). One departure from the paper that HF makes is reproduced on
request: with ``auxiliary_loss=True`` HF feeds each decoder layer the *normed* output of the one
before and norms the final output twice; ``renorm_intermediate=True`` does the same (the
importer sets it from the HF config), the default is the paper's decoder.

Shapes: images (B, 3, H, W); ``padding_mask`` (B, H, W) bool, True = padding; ``DETROutput``:
logits (B, N, K + 1), boxes (B, N, 4); ``aux_logits`` (L - 1, B, N, K + 1) and ``aux_boxes``
(L - 1, B, N, 4) for decoder layers 1..L-1, or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.detection.boxes import box_convert
from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.position.sinusoidal import sinusoidal_encoding
from paperlab.registry import export_model
from paperlab.sequence.transformer_layers import (
    DecoderLayer,
    EncoderLayer,
    check_activation,
    cross_attention_kv,
)


@dataclass
class DETRConfig(Config):
    """DETR's sizes. Backbone fields follow HF's ``ResNetConfig``; transformer fields
    ``DetrConfig``'s (``d_model``, ``encoder_ffn_dim``, ...)."""

    num_classes: int = 5
    num_queries: int = 20
    d_model: int = 64
    encoder_layers: int = 2
    decoder_layers: int = 2
    encoder_heads: int = 4
    decoder_heads: int = 4
    encoder_ffn_dim: int = 128
    decoder_ffn_dim: int = 128
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"
    aux_loss: bool = True
    renorm_intermediate: bool = False
    temperature: float = 10000.0
    in_channels: int = 3
    embedding_size: int = 16
    hidden_sizes: tuple[int, ...] = (16, 32, 64)
    depths: tuple[int, ...] = (1, 1, 1)
    layer_type: str = "basic"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    frozen_batchnorm: bool = False

    def check(self) -> None:
        for name in ("num_classes", "num_queries", "d_model", "encoder_layers", "decoder_layers",
                     "encoder_heads", "decoder_heads", "encoder_ffn_dim", "decoder_ffn_dim",
                     "in_channels", "embedding_size"):
            check_int(name, getattr(self, name), minimum=0 if name == "encoder_layers" else 1)
        if self.d_model % 4:
            raise ConfigError(f"d_model must be a multiple of 4 (sine pairs per axis), got "
                              f"{self.d_model}")
        for name in ("encoder_heads", "decoder_heads"):
            if self.d_model % getattr(self, name):
                raise ConfigError(f"d_model={self.d_model} must divide by {name}="
                                  f"{getattr(self, name)}")
        if not self.hidden_sizes or len(self.hidden_sizes) != len(self.depths):
            raise ConfigError(f"hidden_sizes and depths must be non-empty and of one length, got "
                              f"{self.hidden_sizes} and {self.depths}")
        if self.layer_type not in ("basic", "bottleneck"):
            raise ConfigError(f"layer_type must be 'basic' or 'bottleneck', got "
                              f"{self.layer_type!r}")
        check_activation(self.activation)


# --- the backbone ------------------------------------------------------------------------------


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all buffers (DETR's backbone)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                           ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), fill))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[:, None, None] + shift[:, None, None]


class ConvNorm(nn.Module):
    """Conv (no bias, 'same' padding) -> batch norm -> optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, relu: bool, frozen: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.norm = FrozenBatchNorm2d(cout) if frozen else nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """Basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 at width/4) block, projection shortcut
    where the width or the stride changes; ``relu(branch(x) + shortcut(x))``."""

    def __init__(self, cin: int, cout: int, stride: int, c: DETRConfig) -> None:
        super().__init__()
        fz = c.frozen_batchnorm
        self.shortcut = (ConvNorm(cin, cout, 1, stride, False, fz)
                         if cin != cout or stride != 1 else nn.Identity())
        if c.layer_type == "basic":
            convs = [ConvNorm(cin, cout, 3, stride, True, fz),
                     ConvNorm(cout, cout, 3, 1, False, fz)]
        else:
            mid, first = cout // 4, c.downsample_in_bottleneck
            convs = [ConvNorm(cin, mid, 1, stride if first else 1, True, fz),
                     ConvNorm(mid, mid, 3, 1 if first else stride, True, fz),
                     ConvNorm(mid, cout, 1, 1, False, fz)]
        self.convs = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """stem (7x7/2 conv, 3x3/2 max-pool) -> stages; (B, 3, H, W) -> (B, C_last, H/s, W/s)."""

    def __init__(self, c: DETRConfig) -> None:
        super().__init__()
        self.stem = ConvNorm(c.in_channels, c.embedding_size, 7, 2, True, c.frozen_batchnorm)
        stages, cin = [], c.embedding_size
        for i, (cout, depth) in enumerate(zip(c.hidden_sizes, c.depths)):
            stride = 2 if (i > 0 or c.downsample_in_first_stage) else 1
            blocks = [ResidualBlock(cin, cout, stride, c)]
            blocks += [ResidualBlock(cout, cout, 1, c) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(F.max_pool2d(self.stem(x), 3, 2, 1))


# --- the position encoding ---------------------------------------------------------------------


def sine_position_encoding_2d(
    valid: torch.Tensor, dim: int, temperature: float = 10000.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """DETR's 2-D sine encoding of a valid-pixel mask (B, h, w) bool -> (B, h, w, dim).

    ``y_e``, ``x_e``: cumulative counts of valid pixels down and across, divided by the last
    one (+1e-6) and scaled by 2 pi; channels ``[PE(y_e) (dim/2), PE(x_e) (dim/2)]`` with PE
    the interleaved sin/cos encoding of ``position/sinusoidal.py``.
    """
    v = valid.to(torch.float64)
    y, x = v.cumsum(1), v.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * (2 * math.pi)
    x = x / (x[:, :, -1:] + 1e-6) * (2 * math.pi)
    half = dim // 2
    return torch.cat((sinusoidal_encoding(y, half, temperature, dtype=dtype),
                      sinusoidal_encoding(x, half, temperature, dtype=dtype)), dim=-1)


# --- the model ---------------------------------------------------------------------------------


@dataclass
class DETROutput:
    """logits (B, N, K + 1), boxes (B, N, 4) normalised cxcywh; aux_* for earlier layers."""

    logits: torch.Tensor
    boxes: torch.Tensor
    aux_logits: torch.Tensor | None = None
    aux_boxes: torch.Tensor | None = None

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, boxes) of every decoder layer with outputs, the final one last."""
        aux = [] if self.aux_logits is None else list(zip(self.aux_logits, self.aux_boxes))
        return [*aux, (self.logits, self.boxes)]


@export_model("detr", note="F3", paper="Carion et al. 2020")
class DETR(nn.Module):
    """Backbone -> 1x1 projection -> encoder -> decoder over object queries -> class / box heads.

    ``DETR(config)`` or ``DETR(**fields)``. Submodules (named for the HF mapping):
    ``backbone`` (``stem``, ``stages``), ``input_projection``, ``query_embed``, ``encoder``
    and ``decoder`` (``EncoderLayer`` / ``DecoderLayer``), ``decoder_norm``, ``class_head``,
    ``box_head`` (3 Linear layers). ``forward(images, padding_mask=None, queries=None)`` ->
    ``DETROutput``.
    """

    def __init__(self, config: DETRConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = DETRConfig(**fields)
        elif fields:
            config = DETRConfig.from_dict({**config.to_dict(), **fields})
        if not isinstance(config, DETRConfig):
            raise ArgumentTypeError(f"config must be a DETRConfig, got {type(config).__name__}")
        config.check()
        self.config = c = config
        d = c.d_model
        self.backbone = ResNetBackbone(c)
        self.input_projection = nn.Conv2d(self.backbone.channels, d, 1)
        self.query_embed = nn.Embedding(c.num_queries, d)
        common = dict(dropout=c.dropout, attention_dropout=c.attention_dropout,
                      activation=c.activation)
        self.encoder = nn.ModuleList(EncoderLayer(d, c.encoder_heads, c.encoder_ffn_dim, **common)
                                     for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(d, c.decoder_heads, c.decoder_ffn_dim, causal=False, **common)
            for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.class_head = nn.Linear(d, c.num_classes + 1)
        self.box_head = nn.ModuleList([nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 4)])

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder states (..., d) -> logits (..., K + 1), boxes (..., 4) in [0, 1]."""
        b = h
        for i, layer in enumerate(self.box_head):
            b = layer(b) if i == len(self.box_head) - 1 else F.relu(layer(b))
        return self.class_head(h), b.sigmoid()

    def encode(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """images -> memory (B, hw, d), pos (B, hw, d), memory padding (B, hw) or None."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or \
                images.shape[1] != self.config.in_channels:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ShapeError(f"images must be (B, {self.config.in_channels}, H, W), got {got}")
        feats = self.backbone(images)
        b, _, h, w = feats.shape
        if padding_mask is not None:
            if padding_mask.shape != (b, *images.shape[-2:]):
                raise ShapeError(f"padding_mask must be (B, H, W) = {(b, *images.shape[-2:])}, "
                                 f"got {tuple(padding_mask.shape)}")
            padding = F.interpolate(padding_mask[None].float(), size=(h, w))[0].bool()
        else:
            padding = torch.zeros(b, h, w, dtype=torch.bool, device=images.device)
        pos = sine_position_encoding_2d(~padding, self.config.d_model, self.config.temperature,
                                        dtype=feats.dtype).flatten(1, 2)
        x = self.input_projection(feats).flatten(2).transpose(1, 2)
        key_padding = padding.flatten(1) if padding_mask is not None else None
        for layer in self.encoder:
            x = layer(x, key_padding, pos=pos)
        return x, pos, key_padding

    def forward(self, images: torch.Tensor, padding_mask: torch.Tensor | None = None,
                queries: torch.Tensor | None = None) -> DETROutput:
        """``queries`` (B, N, d): the decoder's initial content (default zeros, the paper's;
        HF's ``decoder_inputs_embeds``); the object queries are always added as positions."""
        memory, pos, key_padding = self.encode(images, padding_mask)
        query_pos = self.query_embed.weight[None].expand(memory.shape[0], -1, -1)
        if queries is not None and queries.shape != query_pos.shape:
            raise ShapeError(f"queries must be (B, N, d) = {tuple(query_pos.shape)}, got "
                             f"{tuple(queries.shape)}")
        y = torch.zeros_like(query_pos) if queries is None else queries
        c = self.config
        inter = []
        for i, layer in enumerate(self.decoder):
            y, _ = layer(y, cross_attention_kv(layer.cross_attn, memory, pos), key_padding,
                         query_pos=query_pos)
            if c.aux_loss and i < len(self.decoder) - 1:
                normed = self.decoder_norm(y)
                inter.append(normed)
                if c.renorm_intermediate:
                    y = normed
        if c.aux_loss and c.renorm_intermediate:
            y = self.decoder_norm(y)  # HF: the last layer's output is normed twice
        logits, boxes = self.heads(self.decoder_norm(y))
        if not inter:
            return DETROutput(logits, boxes)
        aux_logits, aux_boxes = self.heads(torch.stack(inter))
        return DETROutput(logits, boxes, aux_logits, aux_boxes)


def pad_batch(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (3, H_i, W_i) images -> zero-padded (B, 3, H, W) and padding mask (B, H, W)."""
    if not isinstance(images, (list, tuple)) or not images:
        raise ArgumentTypeError("images must be a non-empty list of (C, H, W) tensors")
    h = max(int(im.shape[-2]) for im in images)
    w = max(int(im.shape[-1]) for im in images)
    batch = images[0].new_zeros(len(images), images[0].shape[0], h, w)
    padding = torch.ones(len(images), h, w, dtype=torch.bool, device=images[0].device)
    for i, im in enumerate(images):
        if im.dim() != 3 or im.shape[0] != batch.shape[1]:
            raise ShapeError(f"images[{i}] must be ({batch.shape[1]}, H, W), got "
                             f"{tuple(im.shape)}")
        batch[i, :, : im.shape[-2], : im.shape[-1]] = im
        padding[i, : im.shape[-2], : im.shape[-1]] = False
    return batch, padding


@torch.no_grad()
def detect(model: DETR, images: list[torch.Tensor], top_k: int = 100
           ) -> list[dict[str, torch.Tensor]]:
    """Images of any sizes -> per image the top-k detections in its own pixels (no NMS)."""
    batch, padding = pad_batch(images)
    out = model(batch, padding_mask=padding if bool(padding.any()) else None)
    # the boxes are relative to each image's valid region, as the sine encoding is
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    return postprocess(out, sizes, top_k)


@torch.no_grad()
def postprocess(
    output: DETROutput, image_sizes: torch.Tensor | list[tuple[int, int]], top_k: int = 100
) -> list[dict[str, torch.Tensor]]:
    """Per image the ``top_k`` queries by score, boxes xyxy in pixels; no NMS.

    ``image_sizes`` (B, 2) as (height, width). ``score, label = max_k softmax(logits)[k]``
    over the real classes (the no-object column is dropped). Returns a list of dicts with
    ``boxes`` (k, 4), ``scores`` (k,), ``labels`` (k,) int64, sorted by decreasing score.
    """
    check_int("top_k", top_k, minimum=1)
    prob = output.logits.softmax(-1)[..., :-1]
    scores, labels = prob.max(-1)
    sizes = torch.as_tensor(image_sizes, dtype=output.boxes.dtype, device=output.boxes.device)
    if sizes.shape != (len(scores), 2):
        raise ShapeError(f"image_sizes must be (B, 2) = ({len(scores)}, 2) as (height, width), "
                         f"got {tuple(sizes.shape)}")
    scale = torch.stack((sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]), -1)[:, None]
    boxes = box_convert(output.boxes, "cxcywh", "xyxy") * scale
    k = min(top_k, scores.shape[1])
    top, idx = scores.topk(k, dim=1)
    return [{"boxes": boxes[i, idx[i]], "scores": top[i], "labels": labels[i, idx[i]]}
            for i in range(len(scores))]


__all__ = [
    "DETR",
    "ConvNorm",
    "DETRConfig",
    "DETROutput",
    "FrozenBatchNorm2d",
    "ResNetBackbone",
    "ResidualBlock",
    "detect",
    "pad_batch",
    "postprocess",
    "sine_position_encoding_2d",
]
