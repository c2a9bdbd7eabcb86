"""Multiplicative absolute position encoding: ``x_k * p_k`` instead of ``x_k + p_k``.

The idea: the A1 survey's absolute family adds a position vector to each token embedding.
The multiplicative member scales it instead, elementwise: feature j of token k is multiplied
by ``p_k[j]``, so the position *modulates* the content rather than shifting it. Dot products
between two modulated tokens then mix content and position multiplicatively,
``<x_m * p_m, x_n * p_n> = sum_j x_m[j] x_n[j] p_m[j] p_n[j]``, with no content-free
``<p_m, p_n>`` term and no position-free ``<x_m, x_n>`` term, unlike the additive form. The
complex-valued word embeddings of Wang et al. 2020 ("Encoding word order in complex
embeddings", ICLR) are the same idea with ``p_k = e^{i w k}``; RoPE (note A2), which rotates
pairs of features by position-dependent angles, is its real 2x2 version applied to q and k.

Formula::

    y_k = x_k * p_k                                    (elementwise, k = 0 .. N-1)
    p_k = PE_sin(k)       table="sinusoidal" (fixed; PE(k, 2i) = sin(k w_i), PE(k, 2i+1)
                          = cos(k w_i), w_i = base^(-2i/d), as in ``position/sinusoidal.py``)
    p_k = P[k]            table="learned" (trainable, initialised to 1 + N(0, 0.02): the
                          identity plus noise, so training starts from "no position")

Caveat of the fixed table, stated rather than hidden: ``sin(k w_i)`` is 0 at k = 0 and small
for the slow frequencies, so those features of the first tokens are nearly zeroed; the cos
features (near 1 there) carry the content. A learned table has no row past
``max_positions``, as in ``position/learned.py``.

Shapes: ``multiply_positions(x, p)``: x (B, N, C), p (N, C) or (B, N, C) -> (B, N, C). The
module takes x (B, N, C) and returns ``x * p`` for positions ``offset..offset+N-1`` or
``position_ids``.
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.position.base import resolve_positions
from paperlab.position.learned import lookup_positions
from paperlab.position.sinusoidal import sinusoidal_encoding
from paperlab.registry import export_position

TABLES = ("sinusoidal", "learned")


def multiply_positions(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``x * p``: x (B, N, C) times p (N, C) or (B or 1, N, C), elementwise; no broadcasting
    beyond the batch."""
    if x.dim() != 3:
        raise ShapeError(f"x must be (B, N, C), got {tuple(x.shape)}")
    if p.shape[-2:] != x.shape[-2:] or p.dim() not in (2, 3):
        raise ShapeError(
            f"p must be (N, C) or (B, N, C) for x {tuple(x.shape)}, got {tuple(p.shape)}"
        )
    if p.dim() == 3 and p.shape[0] not in (1, x.shape[0]):
        raise ShapeError(f"p has batch {p.shape[0]}, but x has batch {x.shape[0]}")
    return x * p.to(x.dtype)


@export_position("multiplicative", note="A1", paper="Su 2021 (position-encoding survey)")
class MultiplicativePositionalEncoding(nn.Module):
    """Absolute positions that multiply the input: (B, N, C) -> x * p."""

    kind = "absolute"

    def __init__(
        self,
        dim: int,
        table: str = "sinusoidal",
        max_positions: int = 1024,
        base: float = 10000.0,
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        if table not in TABLES:
            raise ArgumentError(f"table must be one of {', '.join(TABLES)}, got {table!r}")
        self.table = table
        self.max_positions = check_int("max_positions", max_positions, minimum=1)
        if base <= 0:
            raise ArgumentError(f"base must be > 0, got {base}")
        self.base = float(base)
        if table == "sinusoidal" and dim % 2:
            raise ArgumentError(f"dim must be even for the sinusoidal table, got {dim}")
        self.weight = None
        if table == "learned":
            self.weight = nn.Parameter(torch.empty(max_positions, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            with torch.no_grad():
                self.weight.normal_(1.0, 0.02)

    def encoding(
        self,
        n: int,
        *,
        offset: int = 0,
        position_ids: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        batch: int | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """p alone: (N, C) for ``offset`` positions, (N, C) or (B, N, C) for ``position_ids``."""
        if self.weight is not None:
            device = self.weight.device
        pos = resolve_positions(
            n, offset=offset, position_ids=position_ids, batch=batch, device=device
        )
        if self.weight is not None:
            return lookup_positions(self.weight, pos)
        return sinusoidal_encoding(pos, self.dim, self.base, dtype=dtype)

    def forward(
        self, x: torch.Tensor, *, offset: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"x must be (B, N, C={self.dim}), got {shape}")
        p = self.encoding(
            x.shape[1],
            offset=offset,
            position_ids=position_ids,
            dtype=x.dtype,
            batch=x.shape[0],
            device=x.device,
        )
        return multiply_positions(x, p)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, table={self.table!r}, max_positions={self.max_positions}"
