"""Shapes, masks and dtypes shared by every attention in ``paperlab.attention``.

Conventions (those of ``torch.nn.functional.scaled_dot_product_attention``):

- ``q`` (B, H, N, D), ``k`` (B, H, M, D), ``v`` (B, H, M, Dv): N queries, M keys; the values
  may have their own head dim Dv. Modules take and return (B, N, C) with C = H * D.
- ``mask``: boolean, broadcastable to (B, H, N, M), **True means attend**. A float additive
  mask is not a mask here: pass it as ``bias`` (added to the scaled scores).
- ``key_padding_mask``: boolean (B, M), **True means padding** (ignore that key), the convention
  of ``torch.nn.MultiheadAttention``. ``padding_to_mask`` turns it into an attend-mask.
- ``causal``: aligned **bottom-right**, like a KV cache: the N queries are the last N of the M
  keys, so query i sees keys j <= i + (M - N). For N == M this is the usual lower triangle.
  torch's ``is_causal`` aligns top-left (j <= i) instead; the two agree only when N == M.
- Half precision (float16, bfloat16) inputs are computed in float32 (``accumulation_dtype``)
  and the result is cast back.

Every check raises a ``paperlab.errors`` type naming the argument, the expected and the actual
shape or dtype; nothing is silently broadcast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from paperlab.errors import ArgumentTypeError, ShapeError, check_int


class AttentionShape(NamedTuple):
    """The sizes read off checked q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv)."""

    batch: int
    heads: int
    queries: int
    keys: int
    head_dim: int
    value_dim: int

    @property
    def scores(self) -> tuple[int, int, int, int]:
        """(B, H, N, M): the shape every mask and bias must broadcast to."""
        return (self.batch, self.heads, self.queries, self.keys)


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def check_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None
) -> AttentionShape:
    """Check q (B, H, N, D), k (B, H, M, D) and (optional) v (B, H, M, Dv); return the sizes."""
    named = [("q", q), ("k", k)] + ([("v", v)] if v is not None else [])
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ShapeError(f"{name} must be 4-D (B, H, L, D), got shape {_shape(t)}")
        if not t.is_floating_point():
            raise ArgumentTypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if k.dtype != q.dtype or (v is not None and v.dtype != q.dtype):
        got = f"q {q.dtype}, k {k.dtype}" + (f", v {v.dtype}" if v is not None else "")
        raise ArgumentTypeError(f"q, k and v must share one dtype, got {got}")
    b, h, n, d = q.shape
    if k.shape[:2] != (b, h):
        raise ShapeError(
            f"k must have q's batch and heads (B, H) = {(b, h)}: q {_shape(q)}, k {_shape(k)}"
        )
    if k.shape[-1] != d:
        raise ShapeError(
            f"q and k must have the same head dim D: q {_shape(q)} has D={d}, "
            f"k {_shape(k)} has D={k.shape[-1]}"
        )
    m = k.shape[-2]
    dv = d
    if v is not None:
        if v.shape[:3] != (b, h, m):
            raise ShapeError(
                f"v must be (B, H, M, Dv) with k's (B, H, M) = {(b, h, m)}: "
                f"k {_shape(k)}, v {_shape(v)}"
            )
        dv = v.shape[-1]
    return AttentionShape(b, h, n, m, d, dv)


def _broadcasts(t: torch.Tensor, shape: tuple[int, ...]) -> bool:
    if t.dim() > len(shape):
        return False
    try:
        return torch.broadcast_shapes(tuple(t.shape), shape) == torch.Size(shape)
    except RuntimeError:
        return False


def check_mask(
    mask: torch.Tensor | None, shape: tuple[int, int, int, int], name: str = "mask"
) -> torch.Tensor | None:
    """A boolean attend-mask (True = attend) broadcastable to ``shape`` = (B, H, N, M)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ArgumentTypeError(
            f"{name} must have dtype torch.bool (True = attend), got {mask.dtype}; "
            f"pass an additive float mask as bias= instead"
        )
    if not _broadcasts(mask, shape):
        raise ShapeError(
            f"{name} must broadcast to (B, H, N, M) = {shape}, got shape {_shape(mask)}"
        )
    return mask


def check_bias(
    bias: torch.Tensor | None, shape: tuple[int, int, int, int], name: str = "bias"
) -> torch.Tensor | None:
    """A floating additive bias broadcastable to ``shape`` = (B, H, N, M)."""
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a float torch.Tensor, got {type(bias).__name__}")
    if not bias.is_floating_point():
        raise ArgumentTypeError(
            f"{name} must be floating point (added to the scores), got dtype {bias.dtype}; "
            f"pass a boolean mask as mask= instead"
        )
    if not _broadcasts(bias, shape):
        raise ShapeError(
            f"{name} must broadcast to (B, H, N, M) = {shape}, got shape {_shape(bias)}"
        )
    return bias


def check_key_padding_mask(
    key_padding_mask: torch.Tensor | None, batch: int, keys: int, name: str = "key_padding_mask"
) -> torch.Tensor | None:
    """A boolean (B, M) key padding mask, True = padding (ignored key)."""
    if key_padding_mask is None:
        return None
    if not isinstance(key_padding_mask, torch.Tensor):
        raise ArgumentTypeError(
            f"{name} must be a bool torch.Tensor, got {type(key_padding_mask).__name__}"
        )
    if key_padding_mask.dtype != torch.bool:
        raise ArgumentTypeError(
            f"{name} must have dtype torch.bool (True = padding), got {key_padding_mask.dtype}"
        )
    if tuple(key_padding_mask.shape) != (batch, keys):
        raise ShapeError(
            f"{name} must have shape (B, M) = {(batch, keys)}, "
            f"got {tuple(key_padding_mask.shape)}"
        )
    return key_padding_mask


def check_sequence(x: torch.Tensor, dim: int, name: str = "x") -> tuple[int, int]:
    """x must be a floating (B, N, C) tensor with C == ``dim``; returns (B, N)."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ShapeError(f"{name} must have shape (B, N, C) with C={dim}, got {_shape(x)}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{name} must be floating point, got dtype {x.dtype}")
    return x.shape[0], x.shape[1]


# --- building masks --------------------------------------------------------------------------


def _query_offset(n: int, m: int, offset: int | None) -> int:
    """Absolute position of the first query; ``None`` = bottom-right alignment (M - N)."""
    return m - n if offset is None else offset


def causal_mask(
    n: int, m: int, *, offset: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """(N, M) attend-mask: query i (at position offset + i) sees keys j <= offset + i.

    ``offset=None`` aligns bottom-right (offset = M - N: the queries are the last N keys, as
    with a KV cache). ``offset=0`` gives torch's top-left ``is_causal`` convention. With
    N > M (bottom-right) the first N - M queries have a negative position and see no key.
    """
    check_int("n", n, minimum=0)
    check_int("m", m, minimum=0)
    off = _query_offset(n, m, offset)
    query = torch.arange(n, device=device)[:, None] + off
    key = torch.arange(m, device=device)[None, :]
    return key <= query


def band_mask(
    n: int,
    m: int,
    window: int,
    *,
    causal: bool = False,
    offset: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(N, M) attend-mask of a sliding window: key j is visible to query i when |p_i - j| < window.

    p_i = offset + i is the query's position (``offset=None``: M - N, bottom-right). With
    ``causal=True`` only keys at or before the query count: 0 <= p_i - j < window, i.e. the
    query and the window - 1 keys before it. ``window`` >= 1.
    """
    check_int("window", window, minimum=1)
    check_int("n", n, minimum=0)
    check_int("m", m, minimum=0)
    off = _query_offset(n, m, offset)
    distance = (torch.arange(n, device=device)[:, None] + off) - torch.arange(m, device=device)
    visible = distance.abs() < window
    if causal:
        visible &= distance >= 0
    return visible


def padding_to_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """(B, M) True = padding  ->  (B, 1, 1, M) True = attend."""
    return ~key_padding_mask[:, None, None, :]


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of the given attend-masks (``None`` entries ignored); ``None`` if none given."""
    out: torch.Tensor | None = None
    for mask in masks:
        if mask is not None:
            out = mask if out is None else out & mask
    return out


def attend_mask(
    shape: AttentionShape | tuple[int, int, int, int],
    *,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    offset: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Check and AND together a mask, a key padding mask and the causal triangle.

    Returns a bool mask broadcastable to (B, H, N, M) (True = attend), or ``None`` when nothing
    is masked.
    """
    b, h, n, m = shape.scores if isinstance(shape, AttentionShape) else shape
    mask = check_mask(mask, (b, h, n, m))
    key_padding_mask = check_key_padding_mask(key_padding_mask, b, m)
    padding = None if key_padding_mask is None else padding_to_mask(key_padding_mask)
    tri = causal_mask(n, m, offset=offset, device=device) if causal else None
    return combine_masks(mask, padding, tri)


# --- heads and dtypes ------------------------------------------------------------------------


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, H * D) -> (B, H, N, D)."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, D) -> (B, N, H * D)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (float16, bfloat16); the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


__all__ = [
    "AttentionShape",
    "accumulation_dtype",
    "attend_mask",
    "band_mask",
    "causal_mask",
    "check_bias",
    "check_key_padding_mask",
    "check_mask",
    "check_qkv",
    "check_sequence",
    "combine_masks",
    "merge_heads",
    "padding_to_mask",
    "split_heads",
]
