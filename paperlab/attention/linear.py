"""Linear attention: remove the softmax (Katharopoulos et al. 2020, "Transformers are RNNs"; B1).

The idea: softmax attention must build the N x M matrix exp(Q K^T) before it can multiply by
V, because the exp sits between Q and K^T. Replace exp(q . k) by a kernel phi(q) . phi(k) with
a non-negative feature map phi, and the product becomes associative::

    out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)
          = phi(q_i)^T S / phi(q_i)^T z,    S = sum_j phi(k_j) v_j^T  (D x Dv),
                                            z = sum_j phi(k_j)        (D)

S and z are computed once in O(M D Dv), then every query costs O(D Dv): linear in the length
instead of quadratic. phi = elu(x) + 1 (the paper's choice, "elu+1": positive, and 1 + x is
exp's first-order Taylor expansion) or relu; any callable works.

Causal (decoder) attention sums over j <= i only, so S and z become prefix sums -- an RNN whose
state is the D x Dv matrix S_i and the vector z_i::

    S_i = S_{i-1} + phi(k_i) v_i^T,   z_i = z_{i-1} + phi(k_i)
    out_i = phi(q_i)^T S_i / phi(q_i)^T z_i

Three forms compute the same causal output (the tests prove them equal in float64):

- recurrent (``linear_attention_step``, looped by ``linear_attention_recurrent``): O(1) per
  token, the decoding form;
- masked quadratic (``chunk_size >= N``): (phi(Q) phi(K)^T masked to j <= i) V, parallel but
  O(N^2);
- chunked (the default for training, chunk C): quadratic inside each chunk of C tokens, the
  state S, z carried across chunks by a prefix sum -- O(N C D + N D Dv), fully parallel.

A small ``eps`` is added to the denominator (a relu feature map can give phi(q).z = 0). The
state is kept in float32 under float16/bfloat16 inputs (in float64 under float64), and the
output is cast back. ``key_padding_mask`` (B, M), True = padding, zeroes phi(k) of padded keys
so they add nothing to S or z.

RoPE with linear attention (RoFormer, Su et al. 2021, section 3.3): rotate the *features*
phi(q_i), phi(k_j) by their positions in the numerator only; the denominator keeps the
un-rotated features, so it stays positive::

    out_i = sum_j (R_i phi(q_i))^T (R_j phi(k_j)) v_j / sum_j phi(q_i)^T phi(k_j)

The numerator's scores depend on i - j only. The state then holds S = sum R_j phi(k_j) v_j^T
(rotated) and z = sum phi(k_j) (un-rotated). Pass ``rotate`` = a rotary encoding's
``rotate(x, offset=...)``.

Shapes: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv); causal needs N == M (self-attention,
queries and keys at the same positions, continuing from ``state.position``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention.base import AttentionModule
from paperlab.attention.masks import (
    accumulation_dtype,
    check_key_padding_mask,
    check_qkv,
)
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_attention

DEFAULT_CHUNK = 64


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al.)."""
    return F.elu(x) + 1.0


FEATURE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu+1": elu_plus_one,
    "relu": F.relu,
}

Rotate = Callable[..., torch.Tensor]  # rotate(x (B, H, L, D), offset=int) -> (B, H, L, D)


def feature_map_fn(
    feature_map: str | Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The feature map phi: a name in ``FEATURE_MAPS`` or a callable (elementwise, >= 0)."""
    if callable(feature_map):
        return feature_map
    if isinstance(feature_map, str) and feature_map in FEATURE_MAPS:
        return FEATURE_MAPS[feature_map]
    raise ArgumentError(
        f"feature_map must be one of {', '.join(map(repr, FEATURE_MAPS))} or a callable, "
        f"got {feature_map!r}"
    )


@dataclass(frozen=True)
class LinearState:
    """The causal linear attention's recurrent state after ``position`` tokens.

    S (B, H, D, Dv) = sum_j phi(k_j) v_j^T (features rotated when RoPE is used);
    z (B, H, D) = sum_j phi(k_j) (never rotated); float32 for half inputs.
    """

    S: torch.Tensor
    z: torch.Tensor
    position: int

    @classmethod
    def zeros(cls, like: torch.Tensor, value_dim: int) -> LinearState:
        """The empty state for heads ``like`` (B, H, L, D), in the accumulation dtype."""
        b, h, _, d = like.shape
        acc = accumulation_dtype(like.dtype)
        s = like.new_zeros(b, h, d, value_dim, dtype=acc)
        return cls(s, like.new_zeros(b, h, d, dtype=acc), 0)


def _check_eps(eps: float) -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise ArgumentError(f"eps must be a number >= 0, got {eps!r}")
    return float(eps)


def _check_state(state: LinearState | None, b: int, h: int, d: int, dv: int) -> None:
    if state is None:
        return
    if not isinstance(state, LinearState):
        raise ArgumentTypeError(f"state must be a LinearState, got {type(state).__name__}")
    if tuple(state.S.shape) != (b, h, d, dv) or tuple(state.z.shape) != (b, h, d):
        raise ShapeError(
            f"state must hold S (B, H, D, Dv) = {(b, h, d, dv)} and z (B, H, D) = {(b, h, d)}, "
            f"got S {tuple(state.S.shape)}, z {tuple(state.z.shape)}"
        )


def _features(
    q: torch.Tensor,
    k: torch.Tensor,
    phi: Callable[[torch.Tensor], torch.Tensor],
    key_padding_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi(q), phi(k) in the accumulation dtype; padded keys' features are zero."""
    acc = accumulation_dtype(q.dtype)
    fq, fk = phi(q.to(acc)), phi(k.to(acc))
    if key_padding_mask is not None:
        fk = fk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
    return fq, fk


def _rotated(
    fq: torch.Tensor, fk: torch.Tensor, rotate: Rotate | None, offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The numerator's features: R phi(q), R phi(k) (the same tensors without RoPE)."""
    if rotate is None:
        return fq, fk
    return rotate(fq, offset=offset), rotate(fk, offset=offset)


# --- the parallel forms ----------------------------------------------------------------------


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """[v | 1]: one product then gives the numerator (first Dv columns) and denominator (last)."""
    return torch.cat((v, v.new_ones(*v.shape[:-1], 1)), dim=-1)


def _noncausal(
    fq: torch.Tensor,
    fk: torch.Tensor,
    fq_n: torch.Tensor,
    fk_n: torch.Tensor,
    v: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """phi(Q) (phi(K)^T V) / phi(Q) z: O(N D Dv)."""
    if fq_n is fq:  # no rotation: [S | z] = phi(K)^T [V | 1] in one product
        nd = fq @ (fk.transpose(-1, -2) @ _with_ones(v))
        num, den = nd[..., :-1], nd[..., -1:]
    else:
        num = fq_n @ (fk_n.transpose(-1, -2) @ v)  # S = sum R phi(k) v^T
        den = fq @ fk.sum(dim=-2)[..., None]  # z = sum phi(k), un-rotated
    return num / (den + eps)


def _chunk_scan(
    qb: torch.Tensor, kb: torch.Tensor, vb: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_{j <= i} (q_i . k_j) u_j + q_i . U_0 over chunks: (B, H, T, C, E) and the final U.

    qb, kb (B, H, T, C, D), vb (B, H, T, C, E), state U_0 (B, H, D, E). Inside a chunk the
    masked quadratic form; across chunks the state U = U_0 + sum k_j u_j^T before each chunk,
    an exclusive prefix sum of the per-chunk sums.
    """
    out = (qb @ kb.transpose(-1, -2)).tril() @ vb  # (B, H, T, C, E)
    incl = state[:, :, None] + (kb.transpose(-1, -2) @ vb).cumsum(dim=2)  # (B, H, T, D, E)
    prev = torch.cat((state[:, :, None], incl[:, :, :-1]), dim=2)
    return out + qb @ prev, incl[:, :, -1]


def _causal_chunked(
    fq: torch.Tensor,
    fk: torch.Tensor,
    fq_n: torch.Tensor,
    fk_n: torch.Tensor,
    v: torch.Tensor,
    chunk: int,
    s0: torch.Tensor,
    z0: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal output and the final (S, z): quadratic inside chunks, prefix sums across them."""
    b, h, n, _ = fq.shape
    dv = v.shape[-1]
    c = min(chunk, n)
    t = math.ceil(n / c)
    pad = t * c - n

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, E) -> (B, H, T, C, E), zero-padded
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(b, h, t, c, x.shape[-1])

    qd, kd = blocks(fq), blocks(fk)
    if fq_n is fq:  # no rotation: numerator and denominator in one scan over [V | 1]
        nd, state = _chunk_scan(qd, kd, blocks(_with_ones(v)), torch.cat((s0, z0[..., None]), -1))
        num, den, s, z = nd[..., :dv], nd[..., dv:], state[..., :dv], state[..., dv]
    else:  # RoPE: rotated features in the numerator only
        num, s = _chunk_scan(blocks(fq_n), blocks(fk_n), blocks(v), s0)
        ones = fk.new_ones(b, h, t, c, 1)
        den, z = _chunk_scan(qd, kd, ones, z0[..., None])
        z = z[..., 0]
    out = num / (den + eps)
    return out.reshape(b, h, t * c, dv)[:, :, :n], s, z


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    feature_map: str | Callable[[torch.Tensor], torch.Tensor] = "elu+1",
    chunk_size: int | None = None,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
    rotate: Rotate | None = None,
    state: LinearState | None = None,
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, LinearState]:
    """Linear attention phi(q_i)^T S_i / phi(q_i)^T z_i over the keys visible to i: (B, H, N, Dv).

    ``causal=False``: every key, in O(N D Dv). ``causal=True`` (N == M): keys j <= i, by the
    chunked form with ``chunk_size`` tokens per chunk (``None``: 64; ``>= N``: the masked
    quadratic form; 1: pure prefix sums), continuing from ``state`` if given (positions start
    at ``state.position``); ``return_state=True`` also returns the final ``LinearState``.
    ``rotate``: RoPE on the numerator's features (see the module docstring).
    """
    shape = check_qkv(q, k, v)
    b, h, n, m, d, dv = shape
    phi = feature_map_fn(feature_map)
    eps = _check_eps(eps)
    key_padding_mask = check_key_padding_mask(key_padding_mask, b, m)
    if not causal:
        if chunk_size is not None:
            raise ArgumentError(f"chunk_size={chunk_size} only applies to causal=True")
        if state is not None or return_state:
            raise ArgumentError("a recurrent state only exists for causal=True")
    else:
        if n != m:
            raise ShapeError(
                f"causal linear attention is self-attention: q and k need the same length, "
                f"got N={n} (q {tuple(q.shape)}) and M={m} (k {tuple(k.shape)})"
            )
        chunk = DEFAULT_CHUNK if chunk_size is None else check_int("chunk_size", chunk_size,
                                                                   minimum=1)
    acc = accumulation_dtype(q.dtype)
    _check_state(state, b, h, d, dv)
    offset = 0 if state is None else state.position
    fq, fk = _features(q, k, phi, key_padding_mask)
    fq_n, fk_n = _rotated(fq, fk, rotate, offset)
    va = v.to(acc)
    if not causal:
        return _noncausal(fq, fk, fq_n, fk_n, va, eps).to(q.dtype)
    start = LinearState.zeros(q, dv) if state is None else state
    s0, z0 = start.S.to(acc), start.z.to(acc)
    if n == 0:
        out, s, z = fq.new_zeros(b, h, 0, dv), s0, z0
    else:
        out, s, z = _causal_chunked(fq, fk, fq_n, fk_n, va, chunk, s0, z0, eps)
    out = out.to(q.dtype)
    return (out, LinearState(s, z, offset + n)) if return_state else out


def linear_attention_features(
    fq: torch.Tensor,
    fk: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    chunk_size: int | None = None,
    normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The linear-attention core on features already mapped: (B, H, N, Dv).

    fq (B, H, N, F), fk (B, H, M, F) are phi(q), phi(k) (any feature map: Performer's random
    features, TransNormer's kernel); v (B, H, M, Dv). ``normalize=True`` divides by
    phi(q_i)^T z_i + eps as ``linear_attention`` does; ``normalize=False`` returns the
    numerator phi(q_i)^T S_i alone (TransNormer's NormAttention). ``causal`` (N == M) uses the
    chunked form (``chunk_size``, default 64). Half inputs are accumulated in float32.
    """
    b, h, n, m, _, dv = check_qkv(fq, fk, v)
    eps = _check_eps(eps)
    acc = accumulation_dtype(fq.dtype)
    fq, fk, va = fq.to(acc), fk.to(acc), v.to(acc)
    if not causal:
        if chunk_size is not None:
            raise ArgumentError(f"chunk_size={chunk_size} only applies to causal=True")
        if normalize:
            return _noncausal(fq, fk, fq, fk, va, eps).to(v.dtype)
        return (fq @ (fk.transpose(-1, -2) @ va)).to(v.dtype)
    if n != m:
        raise ShapeError(f"causal linear attention needs N == M, got N={n}, M={m}")
    chunk = DEFAULT_CHUNK if chunk_size is None else check_int("chunk_size", chunk_size,
                                                               minimum=1)
    if n == 0:
        return v.new_zeros(b, h, 0, dv)
    if normalize:
        s0 = fq.new_zeros(b, h, fq.shape[-1], dv)
        z0 = fq.new_zeros(b, h, fq.shape[-1])
        return _causal_chunked(fq, fk, fq, fk, va, chunk, s0, z0, eps)[0].to(v.dtype)
    c = min(chunk, n)
    t = math.ceil(n / c)
    pad = t * c - n

    def blocks(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, pad)) if pad else x
        return x.reshape(b, h, t, c, x.shape[-1])

    s0 = fq.new_zeros(b, h, fq.shape[-1], dv)
    out = _chunk_scan(blocks(fq), blocks(fk), blocks(va), s0)[0]
    return out.reshape(b, h, t * c, dv)[:, :, :n].to(v.dtype)


# --- the recurrent form ----------------------------------------------------------------------


def linear_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: LinearState | None = None,
    *,
    feature_map: str | Callable[[torch.Tensor], torch.Tensor] = "elu+1",
    eps: float = 1e-6,
    rotate: Rotate | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LinearState]:
    """One token of causal linear attention, the RNN form: (out_t (B, H, Dv), new state).

    q_t, k_t (B, H, D), v_t (B, H, Dv); ``state`` ``None`` starts from S = 0, z = 0 at
    position 0. ``key_padding_mask`` (B,) True = this token is padding (it does not update
    the state). S += phi(k_t) v_t^T, z += phi(k_t), out = phi(q_t)^T S / (phi(q_t)^T z + eps).
    """
    for name, t in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ShapeError(f"{name} must be a (B, H, D) tensor, got {got}")
    q4, k4, v4 = q_t[:, :, None], k_t[:, :, None], v_t[:, :, None]
    b, h, _, _, d, dv = check_qkv(q4, k4, v4)
    phi = feature_map_fn(feature_map)
    eps = _check_eps(eps)
    acc = accumulation_dtype(q_t.dtype)
    _check_state(state, b, h, d, dv)
    if key_padding_mask is not None:
        key_padding_mask = check_key_padding_mask(key_padding_mask[:, None], b, 1)
    position = 0 if state is None else state.position
    fq, fk = _features(q4, k4, phi, key_padding_mask)
    fq_n, fk_n = _rotated(fq, fk, rotate, position)
    s = fk_n.transpose(-1, -2) * v4.to(acc)  # phi(k_t) v_t^T: (B, H, D, Dv)
    z = fk[:, :, 0]
    if state is not None:
        s = state.S.to(acc) + s
        z = state.z.to(acc) + z
    num = (fq_n @ s)[:, :, 0]  # (B, H, Dv)
    den = (fq[:, :, 0] * z).sum(dim=-1, keepdim=True)
    return (num / (den + eps)).to(q_t.dtype), LinearState(s, z, position + 1)


def linear_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    feature_map: str | Callable[[torch.Tensor], torch.Tensor] = "elu+1",
    key_padding_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
    rotate: Rotate | None = None,
    state: LinearState | None = None,
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, LinearState]:
    """Causal linear attention token by token with ``linear_attention_step`` (the RNN form).

    Same arguments and result as ``linear_attention(causal=True)``; O(N) sequential steps.
    """
    b, _, n, m, _, dv = check_qkv(q, k, v)
    if n != m:
        raise ShapeError(f"causal linear attention needs N == M, got N={n}, M={m}")
    key_padding_mask = check_key_padding_mask(key_padding_mask, b, m)
    outs = []
    for t in range(n):
        pad = None if key_padding_mask is None else key_padding_mask[:, t]
        out, state = linear_attention_step(
            q[:, :, t], k[:, :, t], v[:, :, t], state,
            feature_map=feature_map, eps=eps, rotate=rotate, key_padding_mask=pad,
        )
        outs.append(out)
    out = torch.stack(outs, dim=2) if outs else q.new_zeros(b, q.shape[1], 0, dv)
    if not return_state:
        return out
    return out, LinearState.zeros(q, dv) if state is None else state


# --- the module ------------------------------------------------------------------------------


@export_attention("linear", note="B1", paper="Katharopoulos et al. 2020")
class LinearAttention(AttentionModule):
    """Multi-head linear attention on (B, N, C): phi(Q)(phi(K)^T V), causal as an RNN.

    ``LinearAttention(dim, num_heads, *, causal=False, dropout=0.0, bias=True, position=None,
    position_kwargs=None, feature_map="elu+1", chunk_size=None, eps=1e-6)``. ``position`` may
    be a rotary encoding (``"rope"``), applied to the numerator's features as in RoFormer;
    score biases need the N x M matrix linear attention avoids and are refused. With
    ``use_cache=True`` (causal only) the cache is the ``LinearState`` (S, z, position): constant
    size however long the prefix. ``dropout`` is applied to the attention output.
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
        feature_map: str | Callable[[torch.Tensor], torch.Tensor] = "elu+1",
        chunk_size: int | None = None,
        eps: float = 1e-6,
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
        self.feature_map = feature_map
        feature_map_fn(feature_map)
        if chunk_size is not None:
            if not causal:
                raise ArgumentError(f"chunk_size={chunk_size} only applies to causal=True")
            check_int("chunk_size", chunk_size, minimum=1)
        self.chunk_size = chunk_size
        self.eps = _check_eps(eps)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        cache: LinearState | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, LinearState]:
        """(B, N, C) -> (B, N, C), or ``(out, state)`` with ``use_cache=True``."""
        self.check_cache(cache, use_cache, LinearState)
        q, k, v = self.project(x)
        rotate = self.position.rotate if self.position_kind == "rotary" else None
        kw: dict[str, Any] = dict(feature_map=self.feature_map, eps=self.eps, rotate=rotate)
        state = None
        if not self.causal:
            o = linear_attention(q, k, v, key_padding_mask=key_padding_mask, **kw)
        elif q.shape[-2] == 1 and cache is not None:  # decoding one token: the RNN step
            b = q.shape[0]
            pad = check_key_padding_mask(key_padding_mask, b, 1)
            o, state = linear_attention_step(
                q[:, :, 0], k[:, :, 0], v[:, :, 0], cache,
                key_padding_mask=None if pad is None else pad[:, 0], **kw,
            )
            o = o[:, :, None]
        else:
            o, state = linear_attention(
                q, k, v, causal=True, chunk_size=self.chunk_size,
                key_padding_mask=key_padding_mask, state=cache, return_state=True, **kw,
            )
        o = F.dropout(o, self.dropout, self.training)
        out = self.output(o)
        return (out, state) if use_cache else out

    def extra_repr(self) -> str:
        fm = self.feature_map if isinstance(self.feature_map, str) else "custom"
        return super().extra_repr() + f", feature_map={fm!r}, chunk_size={self.chunk_size}"
