"""The conditional UNet of latent diffusion (note G1): eps_theta(x_t, t, context).

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models") predict
the noise in a latent x_t with a UNet whose convolutional ResNet blocks take the timestep and
whose spatial Transformer blocks attend to a context sequence (a text encoding, a class
embedding):

- timestep embedding: sinusoidal features of t (``timestep_embedding``; half cosines, half
  sines, frequencies 10000^(-k / (d/2))), then Linear -> SiLU -> Linear to 4 C_0;
- ``ResBlock``: h = conv(SiLU(GN(x))) + Linear(SiLU(temb)); h = conv(SiLU(GN(h)));
  out = shortcut(x) + h (a 1x1 conv when channels change);
- ``SpatialTransformer``: GN -> 1x1 conv -> per-pixel tokens (B, H W, C) -> blocks of
  x += SelfAttn(LN(x)); x += CrossAttn(LN(x), context); x += GEGLU-FF(LN(x)) -> 1x1 conv,
  plus the input (a residual over the whole block). Attention takes queries from the pixels
  and keys and values from the context (cross) or the pixels (self), written out in
  ``paperlab.attention.scaled_dot_product_attention`` (``fused=False``) or torch's fused
  kernel (the default); GEGLU is
  a * GELU(b) for [a, b] = Linear(x) (Shazeer 2020), inner width 4 C;
- down path: per level ``layers_per_block`` ResBlocks (each followed by a SpatialTransformer
  in a cross-attention level), then a stride-2 conv (not at the last level); every output is
  kept as a skip; middle: ResBlock, SpatialTransformer, ResBlock; up path: per level
  ``layers_per_block + 1`` ResBlocks, each on [h, skip] concatenated along channels (plus a
  SpatialTransformer in cross-attention levels), then nearest x2 upsampling and a conv;
  out: GN -> SiLU -> conv.

This is the layout of diffusers' ``UNet2DConditionModel`` with ``CrossAttnDownBlock2D`` /
``DownBlock2D`` / ``UpBlock2D`` / ``CrossAttnUpBlock2D`` blocks and a cross-attention middle
block; ``paperlab.hub.diffusers`` imports its weights, and a test proves the same output.

Shapes: x (B, C_in, H, W) with H, W divisible by 2^(levels - 1); t (B,) or a number; context
(B, M, cross_attention_dim) -> (B, C_out, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention import scaled_dot_product_attention
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    *,
    flip_sin_to_cos: bool = True,
    freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal features of timesteps t (B,) -> (B, dim) float32: [cos(t w), sin(t w)]
    (``flip_sin_to_cos``; else sin first), w_k = max_period^(-k / (dim/2 - freq_shift))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    angles = t.float()[:, None] * freqs[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    return F.pad(emb, (0, dim % 2))


def geglu(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """GEGLU: a * GELU(b) where [a, b] = proj(x) split in halves along the last dim."""
    a, b = proj(x).chunk(2, dim=-1)
    return a * F.gelu(b)


@dataclass
class UNetConfig:
    """The UNet's shape. ``levels`` gives each resolution level: "cross" (ResBlocks with
    spatial Transformers) or "plain" (ResBlocks only), top (full resolution) first; the up
    path mirrors it. ``num_heads`` is per attention layer (head dim = channels / heads)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (32, 64)
    levels: tuple[str, ...] = ("cross", "plain")
    layers_per_block: int = 1
    cross_attention_dim: int = 32
    num_heads: int = 8
    norm_num_groups: int = 8
    norm_eps: float = 1e-5
    transformer_layers: int = 1

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        self.levels = tuple(self.levels)
        if len(self.levels) != len(self.block_out_channels):
            raise ConfigError(
                f"levels must give one entry per block_out_channels entry "
                f"({len(self.block_out_channels)}), got {len(self.levels)}"
            )
        for kind in self.levels:
            if kind not in ("cross", "plain"):
                raise ConfigError(f"levels entries must be 'cross' or 'plain', got {kind!r}")
        for c in self.block_out_channels:
            if c % self.norm_num_groups or c % self.num_heads:
                raise ConfigError(
                    f"block_out_channels {c} must be divisible by norm_num_groups "
                    f"({self.norm_num_groups}) and num_heads ({self.num_heads})"
                )


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the timestep embedding added in between; residual.

    ``temb`` None: no timestep input (the autoencoder's blocks)."""

    def __init__(self, cin: int, cout: int, temb: int | None, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(temb, cout) if temb is not None else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class Attention(nn.Module):
    """Multi-head attention, queries from x (B, N, C), keys/values from ``context`` (B, M, Cc)
    or, when it is None, from x.

    ``fused`` (the default) calls torch's fused ``scaled_dot_product_attention``;
    ``fused=False`` the written-out ``paperlab.attention.scaled_dot_product_attention``
    (no masks here, so the two compute the same softmax(q k^T / sqrt(d)) v; a test checks it).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.fused = True
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        src = x if context is None else context
        B, N, C = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(B, y.shape[1], self.heads, C // self.heads).transpose(1, 2)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(src)), heads(self.to_v(src))
        attend = F.scaled_dot_product_attention if self.fused else scaled_dot_product_attention
        out = attend(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(B, N, C))


class TransformerBlock(nn.Module):
    """x += SelfAttn(LN x); x += CrossAttn(LN x, context); x += GEGLU-FF(LN x)."""

    def __init__(self, dim: int, heads: int, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_proj = nn.Linear(dim, 8 * dim)  # GEGLU: two halves of inner width 4 * dim
        self.ff_out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff_out(geglu(self.norm3(x), self.ff_proj))


class SpatialTransformer(nn.Module):
    """GN -> 1x1 conv -> pixels as tokens through TransformerBlocks -> 1x1 conv, + input."""

    def __init__(self, dim: int, heads: int, context_dim: int, groups: int, depth: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, context_dim) for _ in range(depth))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, H W, C)
        for block in self.blocks:
            h = block(h, context)
        return self.proj_out(h.transpose(1, 2).reshape(B, C, H, W)) + x


class Level(nn.Module):
    """One resolution level of the down or up path: ResBlocks (+ spatial Transformers) and
    an optional resampling conv."""

    def __init__(
        self,
        resnets: list[ResBlock],
        attentions: list[SpatialTransformer],
        resample: nn.Conv2d | None,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)
        self.resample = resample


class UNet(nn.Module):
    """eps_theta(x_t, t, context): the conditional UNet (module docstring).

    ``set_fused_attention(False)`` switches every attention to the written-out function."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or UNetConfig()
        chans, g, eps = cfg.block_out_channels, cfg.norm_num_groups, cfg.norm_eps
        temb = 4 * chans[0]
        n = len(chans)

        def transformer(c: int) -> SpatialTransformer:
            return SpatialTransformer(
                c, cfg.num_heads, cfg.cross_attention_dim, g, cfg.transformer_layers
            )

        self.conv_in = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.time_linear_1 = nn.Linear(chans[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)
        self.down = nn.ModuleList()
        skips = [chans[0]]
        cin = chans[0]
        for i, (c, kind) in enumerate(zip(chans, cfg.levels)):
            resnets, attns = [], []
            for _ in range(cfg.layers_per_block):
                resnets.append(ResBlock(cin, c, temb, g, eps))
                if kind == "cross":
                    attns.append(transformer(c))
                cin = c
                skips.append(c)
            last = i == n - 1
            down = None if last else nn.Conv2d(c, c, 3, stride=2, padding=1)
            if not last:
                skips.append(c)
            self.down.append(Level(resnets, attns, down))
        self.mid_resnet_1 = ResBlock(chans[-1], chans[-1], temb, g, eps)
        self.mid_attention = transformer(chans[-1])
        self.mid_resnet_2 = ResBlock(chans[-1], chans[-1], temb, g, eps)
        self.up = nn.ModuleList()
        for i, (c, kind) in enumerate(zip(reversed(chans), reversed(cfg.levels))):
            resnets, attns = [], []
            for _ in range(cfg.layers_per_block + 1):
                resnets.append(ResBlock(cin + skips.pop(), c, temb, g, eps))
                if kind == "cross":
                    attns.append(transformer(c))
                cin = c
            up = None if i == n - 1 else nn.Conv2d(c, c, 3, padding=1)
            self.up.append(Level(resnets, attns, up))
        self.norm_out = nn.GroupNorm(g, chans[0], eps=eps)
        self.conv_out = nn.Conv2d(chans[0], cfg.out_channels, 3, padding=1)

    def set_fused_attention(self, fused: bool) -> UNet:
        """Use torch's fused attention (True) or the written-out function (False) everywhere."""
        for m in self.modules():
            if isinstance(m, Attention):
                m.fused = bool(fused)
        return self

    def _check(
        self, x: torch.Tensor, t: torch.Tensor | int | float, context: torch.Tensor | None
    ) -> torch.Tensor:
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != cfg.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"x must have shape (B, {cfg.in_channels}, H, W), got {got}")
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ShapeError(
                f"x's height and width must be divisible by {factor}, got {tuple(x.shape[2:])}"
            )
        if context is None:
            raise ArgumentError(
                "context is None: this UNet cross-attends to a context "
                f"(B, M, {cfg.cross_attention_dim})"
            )
        if (
            context.dim() != 3
            or context.shape[0] != x.shape[0]
            or context.shape[2] != cfg.cross_attention_dim
        ):
            raise ShapeError(
                f"context must have shape ({x.shape[0]}, M, {cfg.cross_attention_dim}), "
                f"got {tuple(context.shape)}"
            )
        if isinstance(t, bool):
            raise ArgumentTypeError("t must be a number or a tensor of timesteps, got a bool")
        if not isinstance(t, torch.Tensor):
            t = torch.tensor([t], device=x.device)
        t = t.to(x.device).reshape(-1)
        if t.shape[0] == 1:
            t = t.expand(x.shape[0])
        if t.shape[0] != x.shape[0]:
            raise ShapeError(f"t must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
        return t

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | int | float, context: torch.Tensor | None
    ) -> torch.Tensor:
        t = self._check(x, t, context)
        context = context.to(x.dtype)
        emb = timestep_embedding(t, self.config.block_out_channels[0]).to(x.dtype)
        temb = self.time_linear_2(F.silu(self.time_linear_1(emb)))
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for k, res in enumerate(level.resnets):
                h = res(h, temb)
                if len(level.attentions):
                    h = level.attentions[k](h, context)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.mid_resnet_1(h, temb)
        h = self.mid_attention(h, context)
        h = self.mid_resnet_2(h, temb)
        for level in self.up:
            for k, res in enumerate(level.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                if len(level.attentions):
                    h = level.attentions[k](h, context)
            if level.resample is not None:
                size = skips[-1].shape[2:]
                h = level.resample(F.interpolate(h, size=size, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
