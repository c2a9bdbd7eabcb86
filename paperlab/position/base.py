"""What every position encoding shares: the three kinds, position ids from ``offset`` or
``position_ids``, and the shape checks.

The plug-in interface (``kind = "absolute" | "rotary" | "bias"``) is described in
``paperlab/position/__init__.py``; each encoding's file imports its helpers from here.
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
