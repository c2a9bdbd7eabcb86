"""Recursive absolute position encoding (FLOATER: Liu et al. 2020, "Learning to Encode Position
for Transformer with Continuous Dynamical Model").

The idea: do not store a vector per position, produce them by a recurrence. Start from a
vector ``p_0`` and apply one learned map ``f`` per step, ``p_{k+1} = f(p_k)``, like an RNN run
over positions with no input. A table stops at its last row; a recurrence can be rolled as far
as needed, so every position has a vector, and what was learned about the step from one
position to the next is the same everywhere. FLOATER writes the recurrence as a neural ODE,
``dp/dt = h(t, p(t); theta)``, and points out that the sinusoidal encoding is the solution of a
*linear* one: ``dp/dt = A p`` with ``A`` block-diagonal 2x2 rotation generators of frequency
``w_i``, whose exact flow over one position is the rotation ``R`` by the angles ``w_i``.

Formula (ours: the exact linear flow plus one Euler step of a learned nonlinearity, kept on
the sphere where the sinusoidal vectors lie)::

    p_0      = r * start / |start|                     (start learned, initialised to PE_sin(0))
    u_k      = R(w) p_k + h (W_2 tanh(W_1 p_k + b_1) + b_2)
    p_{k+1}  = f(p_k) = r * u_k / |u_k|                r = sqrt(d / 2) = |PE_sin(k)|

    R(w): in each pair (2i, 2i + 1), (s, c) -> (s cos w_i + c sin w_i, c cos w_i - s sin w_i)
    w_i = base^(-2i/d) at initialisation, learned afterwards

With the correction ``W_2 tanh(...) + b_2`` set to zero, ``p_k = R^k p_0`` is exactly the
sinusoidal table ``PE(k, 2i) = sin(k w_i)``, ``PE(k, 2i+1) = cos(k w_i)`` (a test checks it;
the rotation keeps the norm, so the projection does nothing there). ``h`` is the Euler step
of the learned part of the ODE (default 0.05): the correction adds up over the positions, so
with h = 1 and ``W_2`` ~ N(0, 0.02) the table is unrecognisable after 30 positions already
at initialisation (|p_31 - PE(31)| = 4 = r, against 0.3 with h = 0.05, d = 32),
and Adam's first steps on ``W_2`` scramble it further (measured: the first models trained
with h = 1 reached 0.3-0.5 accuracy on half of the seeds where the sinusoidal one reaches
0.99). A small h keeps training near the sinusoidal encoding and lets it move away slowly.
Why the projection: without
it, any net drift of the correction adds up step after step, and after a few dozen positions
the position vectors outgrow the token embeddings a hundredfold (measured: norm 4 -> 200 at
k = 31 after 200 training steps) and drown them. FLOATER's ODE is kept in range by training;
a recurrence rolled 4x past its training length gets no training there, so we bound it by
construction. (FLOATER also adds the recurrence's output to every layer; we add it to the
input only, as the other ``absolute`` encodings do.) The recurrence is sequential: O(N)
small steps, one (d, d) rotation matrix built per table.

Shapes: ``roll_recurrence(start, step, n)``: start (d,), ``step`` maps (d,) -> (d,), returns
the (n, d) table of ``p_0 .. p_{n-1}``. The module takes x (B, N, C=d) and returns
``x + p`` for positions ``offset..offset+N-1`` or ``position_ids``; positions past any length
seen in training are fine (the recurrence runs on).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.position.base import resolve_positions
from paperlab.registry import export_position


def roll_recurrence(
    start: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor], n: int
) -> torch.Tensor:
    """The (n, d) table ``p_0 = start, p_{k+1} = step(p_k)`` for ``k < n - 1``."""
    if not isinstance(start, torch.Tensor) or start.dim() != 1:
        shape = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
        raise ShapeError(f"start must be a (d,) tensor, got {shape}")
    if not callable(step):
        raise ArgumentTypeError(f"step must be callable, got {type(step).__name__}")
    check_int("n", n, minimum=0)
    rows = []
    p = start
    for _ in range(n):
        rows.append(p)
        p = step(p)
    return torch.stack(rows) if rows else start.new_zeros(0, start.shape[0])


def rotate_pairs(p: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """R(angles) p: pair (2i, 2i+1) = (s, c) -> (s cos a_i + c sin a_i, c cos a_i - s sin a_i).

    p (..., d), angles (d/2,). Maps (sin x, cos x) to (sin(x + a), cos(x + a)).
    """
    return p @ rotation_matrix(angles).T


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """The block-diagonal (d, d) matrix of ``rotate_pairs``: [[cos a, sin a], [-sin a, cos a]]."""
    cos, sin = angles.cos(), angles.sin()
    blocks = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)
    return torch.block_diag(*blocks)  # (d/2, 2, 2) -> (d, d)


@export_position("recursive", note="A1", paper="Liu et al. 2020 (FLOATER)")
class RecursivePositionalEncoding(nn.Module):
    """Positions from a learned recurrence ``p_{k+1} = f(p_k)``: (B, N, C) -> x + p."""

    kind = "absolute"

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        base: float = 10000.0,
        step_size: float = 0.05,
    ) -> None:
        super().__init__()
        check_int("dim", dim, minimum=2)
        if dim % 2:
            raise ArgumentError(f"dim must be even (rotated pairs), got {dim}")
        if base <= 0:
            raise ArgumentError(f"base must be > 0, got {base}")
        self.dim = dim
        self.hidden = check_int("hidden", dim if hidden is None else hidden, minimum=1)
        self.base = float(base)
        if not step_size > 0:
            raise ArgumentError(f"step_size must be > 0, got {step_size}")
        self.step_size = float(step_size)
        self.start = nn.Parameter(torch.empty(dim))
        self.angles = nn.Parameter(torch.empty(dim // 2))
        self.up = nn.Linear(dim, self.hidden)
        self.down = nn.Linear(self.hidden, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Start at the sinusoidal encoding: p_0 = PE(0), w_i = base^(-2i/d), small W_2."""
        with torch.no_grad():
            self.start.copy_(torch.arange(self.dim) % 2)  # sin 0 = 0 at 2i, cos 0 = 1 at 2i+1
            i = torch.arange(0, self.dim, 2, dtype=torch.float64)
            self.angles.copy_(self.base ** (-i / self.dim))
        self.up.reset_parameters()
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)

    @property
    def radius(self) -> float:
        """|PE_sin(k)| = sqrt(d / 2): the sphere the positions stay on."""
        return (self.dim / 2) ** 0.5

    def _project(self, u: torch.Tensor) -> torch.Tensor:
        return u * (self.radius / u.norm(dim=-1, keepdim=True))

    def step(self, p: torch.Tensor, rotation: torch.Tensor | None = None) -> torch.Tensor:
        """One step: f(p) = r * u / |u|, u = R(w) p + h (W_2 tanh(W_1 p + b_1) + b_2).

        ``rotation``: R(w) from ``rotation_matrix(self.angles)``, if already built.
        """
        if rotation is None:
            rotation = rotation_matrix(self.angles)
        correction = self.down(torch.tanh(self.up(p)))
        return self._project(p @ rotation.T + self.step_size * correction)

    def table(self, n: int) -> torch.Tensor:
        """The (n, C) table of positions ``0..n-1``, rolled from ``start``."""
        rotation = rotation_matrix(self.angles)
        return roll_recurrence(self._project(self.start), lambda p: self.step(p, rotation), n)

    def encoding(
        self,
        n: int,
        *,
        offset: int = 0,
        position_ids: torch.Tensor | None = None,
        batch: int | None = None,
    ) -> torch.Tensor:
        """p alone: (N, C) for ``offset`` positions, (N, C) or (B, N, C) for ``position_ids``."""
        pos = resolve_positions(
            n, offset=offset, position_ids=position_ids, batch=batch, device=self.start.device
        )
        length = int(pos.max()) + 1 if pos.numel() else 0
        return self.table(length)[pos]

    def forward(
        self, x: torch.Tensor, *, offset: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"x must be (B, N, C={self.dim}), got {shape}")
        pe = self.encoding(x.shape[1], offset=offset, position_ids=position_ids, batch=x.shape[0])
        return x + pe.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, base={self.base:g}, "
            f"step_size={self.step_size:g}"
        )
