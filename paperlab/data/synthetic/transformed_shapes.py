"""Shapes under random rotation and scaling: a geometric-transformation classification task.

Each image holds one shape of ``shapes.SHAPES`` (circle, square, triangle, diamond, cross),
drawn from its exact coverage (``shapes.shape_coverage``, antialiased) at a canonical size, then
rotated by ``angle`` degrees, scaled by ``scale`` and shifted by up to ``shift`` pixels with one
bilinear warp (``affine_grid`` + ``grid_sample``), on a noisy grey background. The label is the
shape. Rotations are kept within +-20 degrees by default: a square turned 45 degrees is the
diamond, so larger angles would make the classes ambiguous.

``make_transformed_shapes(n, scales=..., angles=..., seed=...)`` draws scale and angle uniformly
from the given ranges, so a test set can use transformations no training image had (scales
outside the training range, say).

Shapes: images ``(n, 1, size, size)`` float32, labels ``(n,)`` int64; ``params`` ``(n, 2)``
holds each image's (scale, angle in degrees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from paperlab.data.synthetic.shapes import SHAPES, shape_coverage
from paperlab.errors import ArgumentError, check_int

CANONICAL = 0.22  # canonical half-extent / image size (scale 1)


@dataclass
class TransformedShapes:
    images: torch.Tensor
    labels: torch.Tensor
    params: torch.Tensor


def _templates(size: int) -> torch.Tensor:
    r = CANONICAL * size
    return torch.stack([torch.from_numpy(shape_coverage(s, size / 2, size / 2, r, size,
                                                        antialias=True)) for s in SHAPES])


def make_transformed_shapes(n: int, *, size: int = 32, scales: tuple[float, float] = (0.6, 1.4),
                            angles: tuple[float, float] = (-20.0, 20.0), shift: float = 2.0,
                            noise: float = 0.1, seed: int = 0) -> TransformedShapes:
    """``n`` images of one randomly rotated, scaled and shifted shape each (see module doc)."""
    check_int("n", n, minimum=1)
    check_int("size", size, minimum=8)
    for name, (lo, hi) in (("scales", scales), ("angles", angles)):
        if not lo <= hi:
            raise ArgumentError(f"{name} must be a (low, high) range, got {(lo, hi)}")
    if scales[0] <= 0:
        raise ArgumentError(f"scales must be positive, got {scales}")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(SHAPES), (n,), generator=g)
    scale = scales[0] + (scales[1] - scales[0]) * torch.rand(n, generator=g)
    angle = angles[0] + (angles[1] - angles[0]) * torch.rand(n, generator=g)
    move = (torch.rand(n, 2, generator=g) * 2 - 1) * shift * 2 / size  # in [-1, 1] units
    theta = angle * math.pi / 180
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    # output -> template coordinates: inverse rotation and scale, then the shift
    affine = torch.stack((torch.stack((cos, -sin, -move[:, 0]), 1),
                          torch.stack((sin, cos, -move[:, 1]), 1)), 1)
    template = _templates(size)[labels][:, None]
    grid = torch.nn.functional.affine_grid(affine, [n, 1, size, size], align_corners=False)
    shape = torch.nn.functional.grid_sample(template, grid, align_corners=False)
    images = 0.2 + 0.7 * shape + noise * torch.randn(n, 1, size, size, generator=g)
    return TransformedShapes(images, labels, torch.stack((scale, angle), 1))
