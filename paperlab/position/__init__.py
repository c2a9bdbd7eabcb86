"""Position encodings (notes A1, A2): how a transformer learns the order of its tokens.

Attention alone is permutation-equivariant: shuffle the tokens and the outputs shuffle with
them. A position encoding breaks the symmetry. The families differ in *where* the position
enters, and that is the whole plug-in interface a later attention module needs. Every position
module carries a class attribute ``kind``:

``kind = "absolute"`` -- acts on the input, before attention (``sinusoidal``, ``learned``)::

    x = pe(x, offset=0, position_ids=None)          # (B, N, C) -> x + p  (B, N, C)
    p = pe.encoding(n, offset=0, position_ids=None)  # the encoding alone: (N, C) or (B, N, C)

``kind = "rotary"`` -- rotates queries and keys inside attention (``rope``, ``rope-2d``)::

    q = pe.rotate(q, offset=0, position_ids=None)   # (B, H, N, D) -> (B, H, N, D)
    k = pe.rotate(k, offset=0, position_ids=None)   # rotate keys before they enter a cache
    cos, sin = pe(position_ids)                      # the tables alone, float32 by default

``kind = "bias"`` -- adds a term to the attention logits (``shaw``, ``t5``, ``xl``,
``deberta``, ``alibi``)::

    scale = pe.default_scale(D)                      # the paper's logit scale (T5: 1.0)
    bias = pe(q, k, scale=scale, offset=None)        # (B or 1, H, N, M)
    logits = q @ k.transpose(-1, -2) * scale + bias

  ``offset`` is the absolute position of the first query; ``None`` means the queries are the
  last N of the M keys (``offset = M - N``: 0 for plain self-attention, the cache length when
  decoding). ``pe.content_dependent`` is ``False`` for ``t5`` and ``alibi``, whose bias depends
  on positions only (compute it once per shape and pass it as an ``attn_mask``); ``shaw``,
  ``xl`` and ``deberta`` read q and k (their terms are already multiplied by ``scale``). The
  causal ``alibi`` bias carries ``-inf`` above the diagonal; the others leave masking to the
  attention.

``kind_of(name)`` returns the kind of a registered encoding, so a config can name one
(``create("position", "rope", dim=64)``) and the attention knows where to plug it.

Positions: ``offset`` (an int >= 0) shifts ``0..N-1`` to ``offset..offset+N-1`` for
incremental decoding; ``position_ids`` ((N,) or (B, N) integers >= 0) gives them explicitly;
not both. The functions (``sinusoidal_table``, ``apply_rotary``, ``t5_relative_bucket``, ...)
accept any positions; the modules check them.
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int

KINDS = ("absolute", "rotary", "bias")


def resolve_positions(
    n: int,
    *,
    offset: int = 0,
    position_ids: torch.Tensor | None = None,
    batch: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Integer positions for N tokens: ``offset + arange(n)`` or the checked ``position_ids``.

    Returns a long tensor of shape (N,) or, for (B, N) ``position_ids``, (B, N); ``batch``
    (when given) is the batch size a (B, N) ``position_ids`` must match (or be 1).
    """
    check_int("offset", offset, minimum=0)
    if position_ids is None:
        return torch.arange(offset, offset + n, device=device)
    if not isinstance(position_ids, torch.Tensor):
        raise ArgumentTypeError(
            f"position_ids must be a torch.Tensor, got {type(position_ids).__name__}"
        )
    if offset != 0:
        raise ArgumentError(f"give offset or position_ids, not both (offset={offset})")
    if position_ids.is_floating_point() or position_ids.is_complex():
        raise ArgumentTypeError(f"position_ids must hold integers, got dtype {position_ids.dtype}")
    if position_ids.dim() not in (1, 2) or position_ids.shape[-1] != n:
        raise ShapeError(
            f"position_ids must have shape (N,) or (B, N) with N={n}, "
            f"got {tuple(position_ids.shape)}"
        )
    if position_ids.dim() == 2 and batch is not None and position_ids.shape[0] not in (1, batch):
        raise ShapeError(
            f"position_ids has batch {position_ids.shape[0]}, but the input has batch {batch}"
        )
    if position_ids.numel() and int(position_ids.min()) < 0:
        raise ArgumentError(f"position_ids must be >= 0, got min {int(position_ids.min())}")
    return position_ids.long()


def query_offset(n: int, m: int, offset: int | None) -> int:
    """The absolute position of the first of N queries against M keys (``None``: M - N)."""
    if offset is None:
        if m < n:
            raise ShapeError(
                f"with offset=None the N={n} queries must be the last of the M={m} keys "
                f"(need M >= N); pass offset explicitly"
            )
        return m - n
    return check_int("offset", offset, minimum=0)


def check_qk(q: torch.Tensor, k: torch.Tensor, num_heads: int | None = None) -> None:
    """q (B, H, N, D) and k (B, H, M, D) agree in batch, heads and head dim."""
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ShapeError(f"{name} must be a (B, H, N, D) tensor, got {shape}")
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ShapeError(
            f"k must be (B, H, M, D) matching q's B, H, D; q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if num_heads is not None and q.shape[1] != num_heads:
        raise ShapeError(f"q must have H={num_heads} heads, got shape {tuple(q.shape)}")


class PositionBias(nn.Module):
    """Base of the ``kind = "bias"`` encodings: ``forward(q, k, *, scale, offset) -> bias``."""

    kind = "bias"
    content_dependent = True

    def default_scale(self, head_dim: int) -> float:
        """The logit scale the paper uses with this bias: 1/sqrt(D) unless a subclass says so."""
        return check_int("head_dim", head_dim, minimum=1) ** -0.5


def kind_of(name: str) -> str:
    """``"absolute"``, ``"rotary"`` or ``"bias"``: where the registered encoding ``name`` acts."""
    from paperlab.registry import get

    return get("position", name).obj.kind


# The techniques, re-exported (they import the helpers above, so these come last).
from paperlab.position.alibi import ALiBi, alibi_bias, alibi_slopes  # noqa: E402
from paperlab.position.learned import LearnedPositionalEmbedding  # noqa: E402
from paperlab.position.relative import (  # noqa: E402
    DebertaRelativePosition,
    ShawRelativePosition,
    XLRelativePosition,
    deberta_position_terms,
    rel_shift,
    shaw_relative_index,
    shaw_scores,
    shaw_values,
    xl_position_terms,
    xl_relative_scores,
)
from paperlab.position.rope import (  # noqa: E402
    RotaryEmbedding,
    RotaryEmbedding2D,
    apply_axial_rotary,
    apply_rotary,
    axial_rotary,
    rotary_cos_sin,
    rotary_inv_freq,
)
from paperlab.position.sinusoidal import (  # noqa: E402
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
    sinusoidal_table,
)
from paperlab.position.t5 import T5RelativeBias, t5_relative_bucket  # noqa: E402

__all__ = [
    "KINDS",
    "ALiBi",
    "PositionBias",
    "DebertaRelativePosition",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "ShawRelativePosition",
    "SinusoidalPositionalEncoding",
    "T5RelativeBias",
    "XLRelativePosition",
    "alibi_bias",
    "alibi_slopes",
    "apply_axial_rotary",
    "apply_rotary",
    "axial_rotary",
    "check_qk",
    "deberta_position_terms",
    "kind_of",
    "query_offset",
    "rel_shift",
    "resolve_positions",
    "rotary_cos_sin",
    "rotary_inv_freq",
    "shaw_relative_index",
    "shaw_scores",
    "shaw_values",
    "sinusoidal_encoding",
    "sinusoidal_table",
    "t5_relative_bucket",
    "xl_position_terms",
    "xl_relative_scores",
]
