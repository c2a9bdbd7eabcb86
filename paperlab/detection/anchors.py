"""Anchors: the reference boxes a region proposal network scores and refines (note F1).

Idea (Faster R-CNN, Ren et al. 2015, section 3.1.1). At every cell of a feature map of stride
``s`` the RPN considers ``A = len(sizes) * len(aspect_ratios)`` boxes centred on the cell's
corner ``(x s, y s)``. A box of size ``S`` and aspect ratio ``r = h / w`` keeps the area
``S^2``:

    h = S sqrt(r),   w = S / sqrt(r),   base anchor = round((-w/2, -h/2, w/2, h/2))

Base anchors are rounded and centred at 0; the anchors of a level are every base anchor
shifted by ``(x s_w, y s_h, x s_w, y s_h)`` for ``x in arange(W)``, ``y in arange(H)``, with
``s = image size // feature size`` per axis (the padded batch's size). Order: row-major over
cells, then the cell's A anchors, ratio-major (all sizes of the first ratio, then the next),
so anchor ``a`` of cell ``(y, x)`` is number ``(y W + x) A + a``, which is the order in which
``rpn.py`` flattens the head's ``(N, A, H, W)`` outputs. The levels are concatenated.

Shapes: ``sizes`` and ``aspect_ratios`` are tuples per level (``((32,), (64,))`` and
``((0.5, 1.0, 2.0),) * 2``); ``forward(images (N, C, H, W), feature_maps [(N, C_l, H_l, W_l)])``
returns N tensors ``(sum_l H_l W_l A_l, 4)`` (the same for every image).
Anchor: ``torchvision.models.detection.anchor_utils.AnchorGenerator`` (same results,
tests/detection/test_faster_rcnn.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paperlab.errors import ArgumentError, ShapeError


def base_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """``(len(ratios) * len(sizes), 4)`` zero-centred rounded anchors, ratio-major."""
    scales = torch.as_tensor(sizes, dtype=dtype)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype)
    h = torch.sqrt(ratios)  # h / w = r with h * w = 1
    w = 1 / h
    ws = (w[:, None] * scales[None, :]).reshape(-1)
    hs = (h[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack((-ws, -hs, ws, hs), dim=1) / 2).round()


def shifted_anchors(base: Tensor, grid: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """Every base anchor at every cell: ``(H W A, 4)``, cell-major (row by row), then anchor."""
    (h, w), (sh, sw) = grid, stride
    xs = torch.arange(w, dtype=torch.int32, device=base.device) * sw
    ys = torch.arange(h, dtype=torch.int32, device=base.device) * sh
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    shifts = torch.stack((x, y, x, y), dim=1)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


class AnchorGenerator(nn.Module):
    """Anchors of ``sizes[l]`` x ``aspect_ratios[l]`` on feature level ``l`` (no parameters)."""

    def __init__(self, sizes: Sequence[Sequence[float]] = ((128, 256, 512),),
                 aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            raise ArgumentError(f"sizes must be one tuple per feature level, e.g. ((32,), (64,)); "
                                f"got {sizes!r}")
        if len(sizes) != len(aspect_ratios):
            raise ArgumentError(f"sizes has {len(sizes)} levels but aspect_ratios has "
                                f"{len(aspect_ratios)}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
        self.cell_anchors = [base_anchors(s, a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self) -> list[int]:
        """``A_l = len(sizes[l]) * len(aspect_ratios[l])`` per level."""
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, images: Tensor, feature_maps: Sequence[Tensor]) -> list[Tensor]:
        if len(feature_maps) != len(self.cell_anchors):
            raise ShapeError(f"{len(feature_maps)} feature maps but anchors for "
                             f"{len(self.cell_anchors)} levels (sizes={self.sizes})")
        height, width = images.shape[-2:]
        ref = feature_maps[0]
        levels = []
        for base, fmap in zip(self.cell_anchors, feature_maps):
            gh, gw = fmap.shape[-2:]
            base = base.to(dtype=ref.dtype, device=ref.device)
            levels.append(shifted_anchors(base, (gh, gw), (height // gh, width // gw)))
        anchors = torch.cat(levels)
        return [anchors for _ in range(images.shape[0])]
