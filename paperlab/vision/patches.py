"""Image patches on a grid (notes D3-D4): cutting and pasting, the patch embedding, and the
positions of the grid.

``patchify``/``unpatchify`` use MAE's pixel layout: patch n (row-major over the (H/p, W/p)
grid) holds its pixels as (p_row, p_col, C) flattened, so (B, C, H, W) <-> (B, N, p*p*C),
exactly as HF ``ViTMAEForPreTraining.patchify``. ``PatchEmbedding`` is a stride-p
convolution: patchify then a Linear. ``sincos_2d_positions`` is MAE's fixed 2-D sine-cosine
table; ``PatchRotary2D`` applies the registered ``rope-2d`` to [prefix tokens ; grid tokens]
inside an attention. The Vision Transformer (``vit.py``) is built from these.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.position.rope import RotaryEmbedding2D


def pair(name: str, value: Any) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints as (h, w)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return check_int(name, value[0], minimum=1), check_int(name, value[1], minimum=1)
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(name, value, minimum=1)
        return value, value
    raise ArgumentTypeError(f"{name} must be an int or an (h, w) pair, got {value!r}")


def check_images(
    images: Any, image_size: tuple[int, int] | None, patch_size: int, channels: int | None,
    name: str = "images",
) -> tuple[int, int]:
    """Check a (B, C, H, W) float tensor; return the patch grid (H/p, W/p)."""
    if not isinstance(images, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ShapeError(f"{name} must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ArgumentTypeError(f"{name} must be floating point, got dtype {images.dtype}")
    _, c, h, w = images.shape
    if channels is not None and c != channels:
        raise ShapeError(f"{name} must have C={channels} channels, got shape {tuple(images.shape)}")
    if image_size is not None and (h, w) != tuple(image_size):
        raise ShapeError(
            f"{name} must be {image_size[0]}x{image_size[1]} (the model's image_size), "
            f"got {h}x{w}"
        )
    if h % patch_size or w % patch_size:
        raise ShapeError(
            f"{name} size {h}x{w} is not divisible by patch_size={patch_size}"
        )
    return h // patch_size, w // patch_size


# --- the functions ---------------------------------------------------------------------------


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), N = (H/p)(W/p) row-major; pixels (p_row, p_col, C)."""
    check_int("patch_size", patch_size, minimum=1)
    gh, gw = check_images(images, None, patch_size, None)
    b, c = images.shape[:2]
    p = patch_size
    x = images.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, gh * gw, p * p * c)


def unpatchify(
    patches: torch.Tensor, patch_size: int, image_size: int | tuple[int, int], channels: int
) -> torch.Tensor:
    """The inverse of ``patchify``: (B, N, p*p*C) -> (B, C, H, W)."""
    p = check_int("patch_size", patch_size, minimum=1)
    h, w = pair("image_size", image_size)
    c = check_int("channels", channels, minimum=1)
    if h % p or w % p:
        raise ShapeError(f"image_size {h}x{w} is not divisible by patch_size={p}")
    gh, gw = h // p, w // p
    if not isinstance(patches, torch.Tensor) or patches.dim() != 3:
        got = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
        raise ShapeError(f"patches must be a (B, N, p*p*C) tensor, got {got}")
    if tuple(patches.shape[1:]) != (gh * gw, p * p * c):
        raise ShapeError(
            f"patches must be (B, {gh * gw}, {p * p * c}) for a {h}x{w} image with patch "
            f"{p} and {c} channels, got {tuple(patches.shape)}"
        )
    b = patches.shape[0]
    x = patches.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h, w)


def sincos_2d_positions(
    grid: tuple[int, int],
    dim: int,
    *,
    class_token: bool = False,
    temperature: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings (MAE), (N [+1], dim), computed in float64.

    With omega_k = temperature^(-k / (dim/4)), k < dim/4, the patch at (row r, column c) gets
    ``[sin(c omega) | cos(c omega) | sin(r omega) | cos(r omega)]`` (MAE's released layout:
    the column half first). A class token gets a zero row in front.
    """
    gh, gw = pair("grid", grid)
    check_int("dim", dim, minimum=4)
    if dim % 4:
        raise ConfigError(f"dim must be a multiple of 4 for 2-D sin-cos positions, got {dim}")
    quarter = dim // 4
    omega = temperature ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
        indexing="ij",
    )
    ang_r, ang_c = rows.reshape(-1, 1) * omega, cols.reshape(-1, 1) * omega
    table = torch.cat((ang_c.sin(), ang_c.cos(), ang_r.sin(), ang_r.cos()), dim=1)
    if class_token:
        table = torch.cat((torch.zeros(1, dim, dtype=torch.float64), table), dim=0)
    return table.to(dtype)


# --- the modules -----------------------------------------------------------------------------


class PatchEmbedding(nn.Module):
    """Cut into p x p patches and project to d: a stride-p ``Conv2d`` (``proj``).

    (B, C, H, W) -> (B, N, d); equal to ``patchify`` then a Linear whose weight is
    ``proj.weight`` permuted to (d, p, p, C).
    """

    def __init__(
        self, image_size: int | tuple[int, int], patch_size: int, in_channels: int, dim: int,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.image_size = pair("image_size", image_size)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        h, w = self.image_size
        if h % patch_size or w % patch_size:
            raise ConfigError(f"image_size {h}x{w} is not divisible by patch_size={patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.image_size, self.patch_size, self.in_channels)
        return self.proj(images).flatten(2).transpose(1, 2)


class PatchRotary2D(nn.Module):
    """2-D RoPE over the patch grid inside each attention; the first ``prefix`` tokens pass.

    Wraps the registered ``rope-2d`` (``RotaryEmbedding2D``) for sequences [prefix ; grid].
    """

    kind = "rotary"

    def __init__(self, head_dim: int, grid: tuple[int, int], prefix: int = 0) -> None:
        super().__init__()
        self.rope = RotaryEmbedding2D(head_dim)
        self.grid, self.prefix = grid, prefix

    def rotate(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        n = self.grid[0] * self.grid[1]
        if x.shape[-2] != self.prefix + n:
            raise ShapeError(
                f"2-D RoPE expects {self.prefix} prefix + {n} patch tokens, got {x.shape[-2]}"
            )
        turned = self.rope.rotate(x[..., self.prefix:, :], offset=offset, grid=self.grid)
        return torch.cat((x[..., : self.prefix, :], turned), dim=-2)


__all__ = [
    "PatchEmbedding",
    "PatchRotary2D",
    "check_images",
    "pair",
    "patchify",
    "sincos_2d_positions",
    "unpatchify",
]
