"""Sinusoidal absolute position encoding (Vaswani et al. 2017, "Attention Is All You Need").

The idea: give position ``p`` a fixed vector of sines and cosines at geometrically spaced
frequencies and add it to the token embedding. Nothing is learned, any position has a vector,
and ``PE(p + k)`` is a linear (rotation) function of ``PE(p)`` for every fixed ``k`` -- an
absolute encoding "that wants to be relative", the seed of RoPE (note A2).

Formula, for ``i = 0 .. d/2 - 1``::

    PE(p, 2i)     = sin(p / base^(2i/d))
    PE(p, 2i + 1) = cos(p / base^(2i/d))          base = 10000

Shapes: ``sinusoidal_encoding(positions, dim)`` maps positions of any shape (...) to (..., d);
``sinusoidal_table(n, d)`` is the (n, d) table of positions ``0..n-1``. The module takes
x (B, N, C=d) and returns ``x + PE`` for positions ``offset..offset+N-1`` or ``position_ids``.
The angles are computed in float64 and the result is cast to the requested dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.position.base import resolve_positions
from paperlab.registry import export_position


def _check_dim(dim: int) -> int:
    check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ArgumentError(f"dim must be even (sin/cos pairs), got {dim}")
    return dim


def sinusoidal_encoding(
    positions: torch.Tensor, dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """PE of arbitrary (even fractional) ``positions`` (...) -> (..., dim), sin/cos interleaved."""
    _check_dim(dim)
    if base <= 0:
        raise ArgumentError(f"base must be > 0, got {base}")
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,)
    angles = positions.to(torch.float64)[..., None] * inv_freq.to(positions.device)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (..., d/2, 2): sin at 2i, cos at 2i+1
    return pe.flatten(-2).to(dtype)


def sinusoidal_table(
    n_positions: int, dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The (n_positions, dim) table of positions ``0..n_positions-1``."""
    check_int("n_positions", n_positions, minimum=0)
    return sinusoidal_encoding(torch.arange(n_positions), dim, base, dtype=dtype)


@export_position("sinusoidal", note="A1", paper="Vaswani et al. 2017")
class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal absolute encoding: (B, N, C) -> x + PE (no parameters)."""

    kind = "absolute"

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        self.base = float(base)

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
        """PE alone: (N, C) for ``offset`` positions, (N, C) or (B, N, C) for ``position_ids``."""
        pos = resolve_positions(
            n, offset=offset, position_ids=position_ids, batch=batch, device=device
        )
        return sinusoidal_encoding(pos, self.dim, self.base, dtype=dtype)

    def forward(
        self, x: torch.Tensor, *, offset: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"x must be (B, N, C={self.dim}), got {tuple(x.shape)}")
        pe = self.encoding(
            x.shape[1],
            offset=offset,
            position_ids=position_ids,
            dtype=x.dtype,
            batch=x.shape[0],
            device=x.device,
        )
        return x + pe

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}"
