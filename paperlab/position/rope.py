"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer"; note A2).

The idea: realise a *relative* encoding with an *absolute* operation. Rotate the query at
position m and the key at position n by angles proportional to their positions; since a
rotation is orthogonal, their dot product sees only the difference of the angles::

    <R_m q, R_n k> = q^T R_m^T R_n k = q^T R_{n-m} k = <q, R_{n-m} k>

R_m is block diagonal: d/2 planes, plane i turned by m * theta_i, theta_i = base^(-2i/d),
base = 10000. In each plane (x_a, x_b) -> (x_a cos - x_b sin, x_b cos + x_a sin), i.e.
``x * cos + rotate_half(x) * sin`` with rotate_half turning every plane by 90 degrees.
Because the rotation is applied to q and k themselves (no N x M score table), RoPE also works
inside linear attention.

Which coordinates form a plane is a layout convention with the same maths:

- interleaved (RoFormer): planes (0, 1), (2, 3), ...; cos = [c0, c0, c1, c1, ...]
- half-split (GPT-NeoX, Llama): planes (i, i + d/2); cos = [c0, c1, ..., c0, c1, ...]

Variants: partial rotary (only the first rot_dim <= D dims turn, the rest pass through);
linear position interpolation (positions / factor, Chen et al. 2023); NTK-aware scaling
(base * factor^(d/(d-2)), "bloc97" 2023: stretches the low frequencies, keeps the high ones);
2-D axial RoPE for image patches (half the dims turn with the row, half with the column).

RoFormer's long-range decay: with q = k = 1 the score is sum_i e^{i (m-n) theta_i}; Abel
summation bounds |score| by sum_j |S_{j+1} - S_j| |h_j| with S_j = sum_{k<j} e^{i(m-n)theta_k},
and (1/(d/2)) sum_j |S_j| decays with |m - n| (RoFormer Fig. 2; experiment ``rope-relative``).

Shapes: x (..., N, D), typically (B, H, N, D); cos/sin (N, rot_dim), (B, N, rot_dim) (a head
axis is inserted) or anything that broadcasts to x's (..., N, rot_dim). Tables are computed
from float64 angles and returned in float32 by default; ``apply_rotary`` casts them to x's
dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.position.base import resolve_positions
from paperlab.registry import export_position

SCALINGS = (None, "linear", "ntk")


def _even(name: str, value: int, multiple: int = 2) -> int:
    check_int(name, value, minimum=multiple)
    if value % multiple:
        raise ArgumentError(f"{name} must be a multiple of {multiple}, got {value}")
    return value


# --- the tables ------------------------------------------------------------------------------


def rotary_inv_freq(
    dim: int, base: float = 10000.0, *, scaling: str | None = None, scaling_factor: float = 1.0
) -> torch.Tensor:
    """theta_i = base^(-2i/dim), i < dim/2, in float64 (NTK scaling raises the base first)."""
    _even("dim", dim)
    if base <= 0:
        raise ArgumentError(f"base must be > 0, got {base}")
    if scaling == "ntk":
        if dim < 4:
            raise ArgumentError(f"dim must be >= 4 for ntk scaling (d/(d-2)), got {dim}")
        base = base * scaling_factor ** (dim / (dim - 2))
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def rotary_cos_sin(
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    *,
    interleaved: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles ``positions * theta`` laid out for ``apply_rotary``.

    positions (...) of any real values; inv_freq (d/2,). Returns two (..., d) tensors.
    """
    angles = positions.to(torch.float64)[..., None] * inv_freq.to(positions.device, torch.float64)
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)  # t0 t0 t1 t1 ...
    else:
        angles = torch.cat((angles, angles), dim=-1)  # t0 t1 ... t0 t1 ...
    return angles.cos().to(dtype), angles.sin().to(dtype)


# --- the rotation ----------------------------------------------------------------------------


def _planes(t: torch.Tensor, *, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the first and second coordinate of every plane, in the chosen layout."""
    if interleaved:
        return t[..., 0::2], t[..., 1::2]
    half = t.shape[-1] // 2
    return t[..., :half], t[..., half:]  # slices, not chunk(): autograd lets us write to them


def _align(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the shapes and give cos/sin x's number of axes (a (B, N, R) table gets head axes)."""
    for name, t in (("x", x), ("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ArgumentTypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if sin.shape != cos.shape:
        raise ShapeError(f"sin must have cos's shape {tuple(cos.shape)}, got {tuple(sin.shape)}")
    if x.dim() < 2 or cos.dim() < 2 or cos.dim() > x.dim():
        raise ShapeError(
            f"x must be (..., N, D) and cos (N, rot_dim) / (B, N, rot_dim) / broadcastable; "
            f"got x {tuple(x.shape)}, cos {tuple(cos.shape)}"
        )
    rot = cos.shape[-1]
    if rot % 2:
        raise ShapeError(f"cos/sin last dim (rot_dim) must be even, got {rot}")
    if rot > x.shape[-1]:
        raise ShapeError(f"rot_dim = cos.shape[-1] = {rot} exceeds x's head dim D = {x.shape[-1]}")
    if cos.dim() == 3 and x.dim() > 3:  # (B, N, R) -> (B, 1, ..., N, R)
        view = (cos.shape[0],) + (1,) * (x.dim() - 3) + tuple(cos.shape[1:])
        cos, sin = cos.view(view), sin.view(view)
    lead, want = tuple(cos.shape[:-1]), tuple(x.shape[:-1])
    try:
        ok = torch.broadcast_shapes(lead, want) == torch.Size(want)
    except RuntimeError:
        ok = False
    if not ok:
        raise ShapeError(f"cos/sin {tuple(cos.shape)} do not broadcast to x {tuple(x.shape)}")
    return cos, sin


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """R_pos x: rotate the first rot_dim = cos.shape[-1] dims of x (..., N, D); rest pass.

    In every plane (a, b): a' = a cos - b sin, b' = b cos + a sin. Written as ``x * cos`` then
    two in-place multiply-adds on plane views, which is x * cos + rotate_half(x) * sin without
    building rotate_half(x) (about twice as fast on a CPU; see ``paperlab bench rope``).
    """
    cos, sin = _align(x, cos, sin)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rot = cos.shape[-1]
    x_rot = x[..., :rot]
    turned = x_rot * cos
    a, b = _planes(x_rot, interleaved=interleaved)
    turned_a, turned_b = _planes(turned, interleaved=interleaved)
    sin_a, sin_b = _planes(sin, interleaved=interleaved)
    turned_a.addcmul_(b, sin_a, value=-1)  # a cos - b sin
    turned_b.addcmul_(a, sin_b)  # b cos + a sin
    if rot == x.shape[-1]:
        return turned
    return torch.cat((turned, x[..., rot:]), dim=-1)


# --- 2-D (axial) RoPE for image patches --------------------------------------------------------


def grid_positions(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(h*w, 2) integer (row, column) of a row-major patch grid."""
    check_int("h", h, minimum=1)
    check_int("w", w, minimum=1)
    rows, cols = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return torch.stack((rows.flatten(), cols.flatten()), dim=-1)


def axial_cos_sin(
    positions: torch.Tensor,
    dim: int,
    base: float = 10000.0,
    *,
    interleaved: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for (row, col) ``positions`` (..., 2): [row part | column part], (..., dim)."""
    _even("dim", dim, 4)
    if positions.shape[-1:] != (2,):
        raise ShapeError(f"positions must be (..., 2) (row, col), got {tuple(positions.shape)}")
    inv_freq = rotary_inv_freq(dim // 2, base)
    cr, sr = rotary_cos_sin(positions[..., 0], inv_freq, interleaved=interleaved, dtype=dtype)
    cc, sc = rotary_cos_sin(positions[..., 1], inv_freq, interleaved=interleaved, dtype=dtype)
    return torch.cat((cr, cc), dim=-1), torch.cat((sr, sc), dim=-1)


def axial_rotary(
    h: int,
    w: int,
    dim: int,
    base: float = 10000.0,
    *,
    interleaved: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (h*w, dim) of a row-major h x w grid for ``apply_axial_rotary``."""
    return axial_cos_sin(grid_positions(h, w), dim, base, interleaved=interleaved, dtype=dtype)


def apply_axial_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first rot_dim/2 dims of x by the row angles, the next rot_dim/2 by the column.

    Each half is an independent 1-D rotary block (in the interleaved layout this equals
    ``apply_rotary``, since no plane straddles the halves).
    """
    cos, sin = _align(x, cos, sin)
    rot = cos.shape[-1]
    if rot % 4:
        raise ShapeError(f"cos/sin last dim must be a multiple of 4 for 2-D RoPE, got {rot}")
    half = rot // 2
    row = apply_rotary(x[..., :half], cos[..., :half], sin[..., :half], interleaved=interleaved)
    rest = apply_rotary(x[..., half:], cos[..., half:], sin[..., half:], interleaved=interleaved)
    return torch.cat((row, rest), dim=-1)


# --- modules ---------------------------------------------------------------------------------


def _table_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@export_position("rope", note="A2", paper="Su et al. 2021 (RoFormer)")
class RotaryEmbedding(nn.Module):
    """1-D RoPE: ``forward(position_ids) -> (cos, sin)``; ``rotate(x)`` turns (B, H, N, D).

    ``dim`` is the number of rotated dims (partial rotary when it is below the head dim).
    ``scaling="linear"`` divides positions by ``scaling_factor``; ``"ntk"`` raises the base to
    ``base * factor^(dim/(dim-2))``. ``max_positions`` precomputes a float32 table for positions
    below it (others are computed on the fly, with the same values).
    """

    kind = "rotary"

    def __init__(
        self,
        dim: int,
        base: float = 10000.0,
        *,
        interleaved: bool = False,
        scaling: str | None = None,
        scaling_factor: float = 1.0,
        max_positions: int | None = None,
    ) -> None:
        super().__init__()
        if scaling not in SCALINGS:
            raise ArgumentError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if not (isinstance(scaling_factor, (int, float)) and scaling_factor > 0):
            raise ArgumentError(f"scaling_factor must be a number > 0, got {scaling_factor!r}")
        if scaling is None and scaling_factor != 1.0:
            raise ArgumentError(
                f"scaling_factor={scaling_factor} needs scaling='linear' or 'ntk'"
            )
        self.dim = _even("dim", dim)
        self.base = float(base)
        self.interleaved = bool(interleaved)
        self.scaling = scaling
        self.scaling_factor = float(scaling_factor)
        rotary_inv_freq(dim, base, scaling=scaling, scaling_factor=scaling_factor)  # validate
        self.max_positions = max_positions
        if max_positions is not None:
            check_int("max_positions", max_positions, minimum=1)
            cos, sin = self._compute(torch.arange(max_positions), torch.float32)
            self.register_buffer("cos_cached", cos, persistent=False)
            self.register_buffer("sin_cached", sin, persistent=False)

    def _compute(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = rotary_inv_freq(
            self.dim, self.base, scaling=self.scaling, scaling_factor=self.scaling_factor
        )
        pos = positions.to(torch.float64)
        if self.scaling == "linear":
            pos = pos / self.scaling_factor  # position interpolation
        return rotary_cos_sin(pos, inv_freq, interleaved=self.interleaved, dtype=dtype)

    def forward(
        self,
        position_ids: torch.Tensor | None = None,
        *,
        seq_len: int | None = None,
        offset: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of shape (N, dim) or, for (B, N) ``position_ids``, (B, N, dim)."""
        if seq_len is not None:
            n = check_int("seq_len", seq_len, minimum=0)
        elif position_ids is None:
            raise ArgumentError("give position_ids or seq_len (with an optional offset)")
        else:
            n = position_ids.shape[-1] if isinstance(position_ids, torch.Tensor) else -1
        pos = resolve_positions(n, offset=offset, position_ids=position_ids, device=device)
        if self._use_cache(pos, dtype):
            pos = pos.to(self.cos_cached.device)
            return self.cos_cached[pos], self.sin_cached[pos]
        return self._compute(pos, dtype)

    def _use_cache(self, pos: torch.Tensor, dtype: torch.dtype) -> bool:
        if self.max_positions is None or dtype != torch.float32:
            return False
        if self.cos_cached.dtype != torch.float32:  # the module was cast: recompute exactly
            return False
        return pos.numel() == 0 or int(pos.max()) < self.max_positions

    def rotate(
        self, x: torch.Tensor, *, offset: int = 0, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """R x for x (B, H, N, D) at positions ``offset..offset+N-1`` or ``position_ids``."""
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ShapeError("x must be a (..., N, D) tensor")
        cos, sin = self(
            position_ids, seq_len=x.shape[-2], offset=offset, dtype=_table_dtype(x), device=x.device
        )
        return apply_rotary(x, cos, sin, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        s = f"dim={self.dim}, base={self.base:g}, interleaved={self.interleaved}"
        if self.scaling:
            s += f", scaling={self.scaling!r}, scaling_factor={self.scaling_factor:g}"
        return s


@export_position("rope-2d", note="A2", paper="Su 2021 (2-D RoPE); Heo et al. 2024 (RoPE-ViT)")
class RotaryEmbedding2D(nn.Module):
    """Axial 2-D RoPE for image patches: half the dims turn with the row, half with the column.

    ``forward(position_ids=(N, 2) or (B, N, 2), grid=(h, w)) -> (cos, sin)``; ``rotate(x)``
    turns (B, H, N, D) patch tokens; with neither argument, N must be a square grid.
    Scores then depend only on (row difference, column difference).
    """

    kind = "rotary"

    def __init__(self, dim: int, base: float = 10000.0, *, interleaved: bool = False) -> None:
        super().__init__()
        self.dim = _even("dim", dim, 4)
        self.base = float(base)
        self.interleaved = bool(interleaved)

    def positions(
        self, n: int, position_ids: torch.Tensor | None, grid: tuple[int, int] | None
    ) -> torch.Tensor:
        """Checked (row, col) positions (N, 2) or (B, N, 2) for N tokens."""
        if position_ids is not None and grid is not None:
            raise ArgumentError("give position_ids or grid, not both")
        if position_ids is not None:
            if not isinstance(position_ids, torch.Tensor) or position_ids.is_floating_point():
                raise ArgumentTypeError("position_ids must be an integer tensor (N, 2)")
            if position_ids.dim() not in (2, 3) or position_ids.shape[-2:] != (n, 2):
                raise ShapeError(
                    f"position_ids must be (N, 2) or (B, N, 2) with N={n}, "
                    f"got {tuple(position_ids.shape)}"
                )
            if position_ids.numel() and int(position_ids.min()) < 0:
                raise ArgumentError("position_ids must be >= 0")
            return position_ids.long()
        if grid is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ShapeError(f"N={n} tokens are not a square grid; pass grid=(h, w)")
            grid = (side, side)
        h, w = grid
        if h * w != n:
            raise ShapeError(f"grid={grid} has {h * w} cells but there are N={n} tokens")
        return grid_positions(h, w)

    def forward(
        self,
        position_ids: torch.Tensor | None = None,
        *,
        grid: tuple[int, int] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of shape (N, dim) or (B, N, dim): [row part | column part]."""
        if position_ids is None and grid is None:
            raise ArgumentError("give position_ids (N, 2) or grid=(h, w)")
        n = position_ids.shape[-2] if isinstance(position_ids, torch.Tensor) else -1
        if grid is not None:
            n = grid[0] * grid[1]
        pos = self.positions(n, position_ids, grid)
        pos = pos if device is None else pos.to(device)
        return axial_cos_sin(pos, self.dim, self.base, interleaved=self.interleaved, dtype=dtype)

    def rotate(
        self,
        x: torch.Tensor,
        *,
        offset: int = 0,
        position_ids: torch.Tensor | None = None,
        grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """R x for patch tokens x (B, H, N, D); ``offset`` must be 0 (no decoding on a grid)."""
        if offset != 0:
            raise ArgumentError(f"offset must be 0 for 2-D RoPE, got {offset}")
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ShapeError("x must be a (..., N, D) tensor")
        pos = self.positions(x.shape[-2], position_ids, grid).to(x.device)
        cos, sin = axial_cos_sin(
            pos, self.dim, self.base, interleaved=self.interleaved, dtype=_table_dtype(x)
        )
        return apply_axial_rotary(x, cos, sin, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, interleaved={self.interleaved}"
