"""Learned absolute position embeddings (BERT, GPT-2, ViT).

The idea: treat the position as a token id of its own. A trainable table ``P`` with one row
per position up to ``max_positions`` is looked up and added to the input,
``x_p <- x_p + P[p]``. It is the simplest encoding and fits whatever the data needs, but it
has no vector for a position it never saw: it cannot extrapolate past ``max_positions``
(the A1 survey's main criticism).

Shapes: ``lookup_positions(table, positions)`` maps a (P, C) table and positions (...) to
(..., C); the module takes x (B, N, C) and returns ``x + P[offset : offset+N]`` (or the rows
of ``position_ids``). Initialisation: N(0, 0.02), as in BERT.
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.position.base import resolve_positions
from paperlab.registry import export_position


def lookup_positions(table: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (P, C) at integer ``positions`` (...) -> (..., C); range-checked."""
    if table.dim() != 2:
        raise ShapeError(f"table must be (max_positions, C), got {tuple(table.shape)}")
    if positions.numel():
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= table.shape[0]:
            raise ArgumentError(
                f"positions must lie in [0, max_positions={table.shape[0]}), got [{lo}, {hi}] "
                f"(a learned table has no row past its last trained position)"
            )
    return table[positions]


@export_position("learned", note="A1", paper="Devlin et al. 2019 (BERT)")
class LearnedPositionalEmbedding(nn.Module):
    """Trainable absolute embedding table: (B, N, C) -> x + P[positions]."""

    kind = "absolute"

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.max_positions = check_int("max_positions", max_positions, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def encoding(
        self,
        n: int,
        *,
        offset: int = 0,
        position_ids: torch.Tensor | None = None,
        batch: int | None = None,
    ) -> torch.Tensor:
        """P alone: (N, C) for ``offset`` positions, (N, C) or (B, N, C) for ``position_ids``."""
        pos = resolve_positions(
            n, offset=offset, position_ids=position_ids, batch=batch, device=self.weight.device
        )
        return lookup_positions(self.weight, pos)

    def forward(
        self, x: torch.Tensor, *, offset: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"x must be (B, N, C={self.dim}), got {tuple(x.shape)}")
        pe = self.encoding(x.shape[1], offset=offset, position_ids=position_ids, batch=x.shape[0])
        return x + pe.to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, dim={self.dim}"
