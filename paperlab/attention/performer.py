"""Performer: softmax attention by positive orthogonal random features (FAVOR+; note B3).

Choromanski et al. 2021, "Rethinking Attention with Performers". Softmax attention weighs key
j by exp(q . k_j) (q, k already scaled by D^-1/4, so q . k = q k^T / sqrt(D)). FAVOR+ writes
that kernel as an expectation over Gaussian vectors w ~ N(0, I_D)::

    exp(q . k) = E_w[ exp(w . q - |q|^2 / 2) exp(w . k - |k|^2 / 2) ]

and estimates it with m draws w_1..w_m (the rows of W, (m, D)): the *positive random
features* phi(x) = exp(W x - |x|^2 / 2) / sqrt(m), so exp(q . k) ~ phi(q) . phi(k). With a
feature map in hand, attention is linear attention (``linear.py``): phi(Q) (phi(K)^T V) /
phi(Q) phi(K)^T 1, O(N m D) instead of O(N^2 D).

Why *positive*: the older trigonometric features (Rahimi & Recht) phi(x) = exp(|x|^2 / 2) /
sqrt(m) [sin(W x), cos(W x)] estimate the same kernel, but their estimate can be negative and
its variance does not vanish where the kernel does -- exactly the many small softmax weights
attention is made of -- so the denominator can reach 0 or below. The positive estimator's
variance goes to 0 with the kernel value.

Why *orthogonal*: drawing the w's in blocks of D mutually orthogonal directions (QR of a
Gaussian matrix) with chi_D-distributed lengths keeps each w marginally N(0, I) but makes the
draws negatively correlated, which lowers the estimator's variance (for any m <= D per block).

Numerics (the "max-stabiliser"): exp(W x - |x|^2/2) can overflow. A factor common to all the
features of one query cancels between numerator and denominator, so each query subtracts its
own row maximum. Keys need one shared constant: non-causal attention subtracts the maximum
over all (unpadded) keys; **causal attention must not look at future keys**, so it subtracts
a data-independent bound instead: w . k - |k|^2 / 2 <= |w|^2 / 2 for every k, so
max_f |w_f|^2 / 2 bounds every key's exponent without reading any key. Both cancel exactly.
The bound prevents overflow but not underflow: causal keys of large norm (|k|^2 D^-1/2 >~ 60
in float32) give features that underflow to 0 -- then compute in float64, or use the
non-causal form, whose shared maximum adapts to the data.

Feature redraw: the module keeps W as a buffer and draws a new one on ``redraw_features()``
or every ``redraw_every`` training calls (the paper redraws periodically during training).

Shapes: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv); W (m, D); modules (B, N, C).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import AttentionModule
from paperlab.attention.linear import linear_attention_features
from paperlab.attention.masks import accumulation_dtype, check_key_padding_mask, check_qkv
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_attention

FEATURE_KINDS = ("positive", "trig")


# --- drawing the random directions ------------------------------------------------------------


def draw_projection(
    num_features: int,
    dim: int,
    *,
    orthogonal: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """W (num_features, dim): rows w_f ~ N(0, I_dim), iid or in orthogonal blocks.

    Orthogonal: blocks of ``dim`` rows from the Q factor of a Gaussian matrix (orthonormal),
    each row rescaled by the norm of an independent Gaussian vector (chi_dim distributed), so
    every row is still marginally N(0, I) while rows within a block are exactly orthogonal.
    """
    m = check_int("num_features", num_features, minimum=1)
    d = check_int("dim", dim, minimum=1)
    gauss = torch.randn(m, d, generator=generator, dtype=torch.float64)
    if not orthogonal:
        return gauss.to(dtype=dtype, device=device)
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(g)
        q = q * torch.sign(torch.diagonal(r))  # a Haar-distributed rotation
        blocks.append(q.T)  # rows orthonormal
    rows = torch.cat(blocks)[:m]
    lengths = gauss.norm(dim=-1, keepdim=True)  # chi_d: the length of a N(0, I_d) vector
    return (rows * lengths).to(dtype=dtype, device=device)


# --- the feature maps -------------------------------------------------------------------------


def _check_projection(w: torch.Tensor, d: int) -> None:
    if not isinstance(w, torch.Tensor):
        raise ArgumentTypeError(f"features must be a (m, D) torch.Tensor, got {type(w).__name__}")
    if w.dim() != 2 or w.shape[1] != d or w.shape[0] < 1:
        raise ShapeError(
            f"features must be the projection W of shape (m, D) with D={d} and m >= 1, "
            f"got {tuple(w.shape)}"
        )


def _check_kind(kind: str) -> str:
    if kind not in FEATURE_KINDS:
        raise ArgumentError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    return kind


def random_features(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    kind: str = "positive",
    shift: torch.Tensor | float | None = 0.0,
) -> torch.Tensor:
    """phi(x) (..., m) for positive features, (..., 2m) for trigonometric ones.

    positive: exp(W x - |x|^2 / 2 - shift) / sqrt(m);  trig: exp(|x|^2 / 2 - shift) / sqrt(m)
    [sin(W x), cos(W x)]. ``shift`` is the stabiliser (broadcast against the exponent; it
    must be one constant per query row or one for all keys to cancel); ``None`` = each row's
    own maximum (valid for queries only). x (..., D), W (m, D). Exact kernel estimates use
    shift 0: phi(q) . phi(k) ~ exp(q . k).
    """
    kind = _check_kind(kind)
    m = w.shape[0]
    proj = x @ w.T.to(x.dtype)  # (..., m)
    half_sq = 0.5 * (x * x).sum(dim=-1, keepdim=True)
    if kind == "positive":
        expo = proj - half_sq
        if shift is None:
            shift = expo.amax(dim=-1, keepdim=True).detach()
        return torch.exp(expo - shift) / math.sqrt(m)
    if shift is None:
        shift = half_sq.detach()
    scale = torch.exp(half_sq - shift) / math.sqrt(m)
    return torch.cat((torch.sin(proj), torch.cos(proj)), dim=-1) * scale


def kernel_estimate(
    q: torch.Tensor, k: torch.Tensor, w: torch.Tensor, *, kind: str = "positive"
) -> torch.Tensor:
    """phi(q) phi(k)^T, the unstabilised estimate of exp(q k^T): (..., N, M)."""
    _check_projection(w, q.shape[-1])
    return random_features(q, w, kind=kind) @ random_features(k, w, kind=kind).transpose(-1, -2)


def _key_shift(
    k: torch.Tensor, w: torch.Tensor, kind: str, causal: bool, padding: torch.Tensor | None
) -> torch.Tensor | float:
    """The keys' shared stabiliser: max over unpadded keys, or a key-free bound when causal."""
    half_sq = 0.5 * (k * k).sum(dim=-1, keepdim=True)  # (B, H, M, 1)
    if causal:
        if kind == "positive":  # w.k - |k|^2/2 <= |w|^2/2: reads no key at all
            return float(0.5 * (w.double() ** 2).sum(dim=-1).max())
        return 0.0  # the trigonometric map has no key-free bound; left unstabilised
    expo = (k @ w.T.to(k.dtype) - half_sq) if kind == "positive" else half_sq
    if padding is not None:
        expo = expo.masked_fill(padding[:, None, :, None], float("-inf"))
    shift = expo.amax(dim=(-2, -1), keepdim=True).detach()
    return torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))


def performer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    features: torch.Tensor,
    kind: str = "positive",
    causal: bool = False,
    scale: float | None = None,
    chunk_size: int | None = None,
    key_padding_mask: torch.Tensor | None = None,
    eps: float | None = None,
) -> torch.Tensor:
    """FAVOR+ estimate of softmax(q k^T * scale) v: (B, H, N, Dv).

    ``features`` is the projection W (m, D) from ``draw_projection``; ``kind`` "positive"
    (FAVOR+) or "trig" (sin/cos, for comparison); ``scale`` defaults to 1/sqrt(D) (q and k
    are each multiplied by sqrt(scale)); ``causal`` (N == M) uses the chunked prefix-sum form
    of ``linear.py`` with ``chunk_size``. ``key_padding_mask`` (B, M), True = padding.
    ``eps`` is added to the denominator (default: the dtype's smallest normal number, which
    only turns an all-underflow 0/0 into 0).
    """
    b, h, n, m, d, _ = check_qkv(q, k, v)
    _check_projection(features, d)
    kind = _check_kind(kind)
    padding = check_key_padding_mask(key_padding_mask, b, m)
    if scale is None:
        scale = d**-0.5
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ArgumentError(f"scale must be a number > 0, got {scale!r}")
    acc = accumulation_dtype(q.dtype)
    w = features.to(device=q.device, dtype=acc)
    root = math.sqrt(scale)
    qs, ks = q.to(acc) * root, k.to(acc) * root
    fq = random_features(qs, w, kind=kind, shift=None)
    fk = random_features(ks, w, kind=kind, shift=_key_shift(ks, w, kind, causal, padding))
    if padding is not None:
        fk = fk.masked_fill(padding[:, None, :, None], 0.0)
    eps = float(torch.finfo(acc).tiny) if eps is None else eps
    out = linear_attention_features(fq, fk, v.to(acc), causal=causal, chunk_size=chunk_size,
                                    eps=eps)
    return out.to(q.dtype)


# --- the module -------------------------------------------------------------------------------


@export_attention("performer", note="B3", paper="Choromanski et al. 2021")
class PerformerAttention(AttentionModule):
    """Multi-head FAVOR+ attention on (B, N, C), non-causal or causal.

    ``PerformerAttention(dim, num_heads, *, causal=False, dropout=0.0, bias=True,
    position=None, position_kwargs=None, num_features=None, orthogonal=True,
    kind="positive", redraw_every=None, chunk_size=None, seed=None)``.
    ``num_features`` m defaults to round(D ln D) (the paper's choice), at least D; the
    projection W (m, D) is a buffer shared by all heads. ``redraw_every`` k redraws W every k
    forward calls in training mode; ``redraw_features()`` redraws now. ``seed`` fixes the
    draws. A rotary ``position`` rotates q and k before the feature map. ``dropout`` drops
    the attention output. Incremental decoding (a cache) is not supported: re-run the prefix.
    """

    position_kinds = ("rotary",)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        causal: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        position: str | nn.Module | None = None,
        position_kwargs: dict[str, Any] | None = None,
        num_features: int | None = None,
        orthogonal: bool = True,
        kind: str = "positive",
        redraw_every: int | None = None,
        chunk_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            causal=causal,
            dropout=dropout,
            bias=bias,
            position=position,
            position_kwargs=position_kwargs,
        )
        d = self.head_dim
        if num_features is None:
            num_features = max(d, round(d * math.log(max(d, 2))))
        self.num_features = check_int("num_features", num_features, minimum=1)
        self.orthogonal = bool(orthogonal)
        self.kind = _check_kind(kind)
        self.redraw_every = (
            None if redraw_every is None else check_int("redraw_every", redraw_every, minimum=1)
        )
        if chunk_size is not None:
            if not causal:
                raise ArgumentError(f"chunk_size={chunk_size} only applies to causal=True")
            check_int("chunk_size", chunk_size, minimum=1)
        self.chunk_size = chunk_size
        self.generator = torch.Generator()
        self.generator.manual_seed(
            int(torch.randint(0, 2**62, (1,))) if seed is None else int(seed)
        )
        self.calls = 0
        self.register_buffer("projection", self._draw())

    def _draw(self) -> torch.Tensor:
        return draw_projection(
            self.num_features, self.head_dim, orthogonal=self.orthogonal, generator=self.generator
        )

    @torch.no_grad()
    def redraw_features(self) -> None:
        """Draw a new projection W (same m, same kind of draw)."""
        buf = self.projection
        self.projection = self._draw().to(device=buf.device, dtype=buf.dtype)
        self.calls = 0

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        if cache is not None or use_cache:
            raise ArgumentError(
                "PerformerAttention keeps no decoding cache (its features may be redrawn); "
                "call it on the whole prefix"
            )
        if self.training and self.redraw_every is not None:
            if self.calls >= self.redraw_every:
                self.redraw_features()
            self.calls += 1
        q, k, v = self.project(x)
        q, k = self.rotate(q, 0), self.rotate(k, 0)
        o = performer_attention(
            q, k, v, features=self.projection, kind=self.kind, causal=self.causal,
            chunk_size=self.chunk_size, key_padding_mask=key_padding_mask,
        )
        o = F.dropout(o, self.dropout, self.training)
        return self.output(o)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", num_features={self.num_features}, kind={self.kind!r}, "
            f"orthogonal={self.orthogonal}, redraw_every={self.redraw_every}"
        )


__all__ = [
    "FEATURE_KINDS",
    "PerformerAttention",
    "draw_projection",
    "kernel_estimate",
    "performer_attention",
    "random_features",
]
