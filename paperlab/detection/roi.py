"""RoI pooling and RoI align: a fixed-size feature per box, from a feature map (note F1).

Idea. A two-stage detector crops every proposal out of the backbone's feature map and turns it
into an ``(output_h, output_w)`` grid the head can read, whatever the box's size.

- RoI pool (Fast R-CNN, Girshick 2015): the box is rounded to whole feature cells
  (``round(x * spatial_scale)``, rounding half away from zero), split into
  ``output_h x output_w`` bins ``[floor(i * h / output_h), ceil((i + 1) * h / output_h))``, and
  each bin takes its maximum. The rounding misaligns box and feature by up to half a cell.
- RoI align (Mask R-CNN, He et al. 2017): no rounding. Each bin is sampled at
  ``sampling_ratio x sampling_ratio`` regularly spaced points (``sampling_ratio <= 0``: the
  adaptive ``ceil(bin size)`` points per side, per box), each point is read by bilinear
  interpolation of its four neighbouring cells, and the bin is their mean. A point more than one
  cell outside the map reads 0; one within a cell of the border reads the border.
  ``aligned=True`` shifts the box by -0.5 cell first, so that a pixel's centre falls at
  its continuous coordinate (Detectron2's fix; torchvision's default ``False`` keeps the
  original behaviour, with boxes smaller than a cell stretched to one cell).
- Multi-scale RoI align (FPN, Lin et al. 2017, eq. 1): a box of area ``w h`` on the image is
  pooled from level ``k = floor(4 + log2(sqrt(w h) / 224) + 1e-6)``, clamped to the levels
  present; a level's scale is inferred as the power of two nearest feature size / image size.

How it runs without a loop per box. Each output bin is a *bag* of feature-map cells: RoI pool's
bag is the bin's cells and its value their max; RoI align's bag is the four neighbours of each
of its sample points, weighted ``wy * wx / count`` (bilinear weights are separable: a point's
weight on cell ``(y, x)`` is the product of one weight along y and one along x, and a point
outside the map is outside in y or in x). So for all boxes at once we compute, per axis, the
cell indices and weights of every bin and sample, form the bags by broadcasting, and reduce
them with ``embedding_bag`` over a channels-last ``(N*H*W, C)`` view of the input: one kernel
that reads each cell of each bag and reduces it, without materialising the gathered
``(bags, cells, C)`` tensor. Boxes with different adaptive grids are sorted by grid size and
taken in chunks padded to the chunk's largest grid, which also bounds memory. RoI align's
bags have a fixed size (padding and points outside the map read cell 0 with weight 0, as
torchvision's kernel reads a point outside: a NaN there reaches those bins in both), and their
indices and weights are broadcast with the boxes on the last, contiguous axis, then
transposed to one bag per row (broadcasting onto short trailing axes is several times
slower); one chunk of boxes in order (a fixed ``sampling_ratio``) is the output as it is.
RoI pool groups its bins by exact size ``(bh, bw)`` and takes each group's maxima with
``embedding_bag`` (bags of exactly ``bh * bw`` cells) or, for a group with many bins, with one
stride-1 ``max_pool2d`` over the map read at the bins' corners; both give the first maximum
in row-major order, the cell torchvision's kernel picks. A custom autograd function keeps
those cells and scatter-adds the gradient to them, as torchvision's backward does. Boxes get
no gradient, as in torchvision. RoI pool's result has channels-last strides (``reshape``,
not ``view``, flattens it). Non-finite cells: torchvision skips NaN and gives a bin of
``-inf`` ``-FLT_MAX``; we give ``-inf``, and NaN where the ``max_pool2d`` path reads one.

Shapes: ``input (N, C, H, W)``; ``boxes`` a ``(K, 5)`` tensor ``(batch index, x1, y1, x2, y2)``
or a list of N ``(L_i, 4)`` tensors; result ``(K, C, output_h, output_w)``. Anchor:
``torchvision.ops.roi_pool``, ``roi_align``, ``MultiScaleRoIAlign`` (same signatures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

_BUDGET = 1 << 22  # cell indices per chunk (32 MB of int64)


def _pair(name: str, size: int | Sequence[int]) -> tuple[int, int]:
    out = (size, size) if isinstance(size, int) else tuple(size)
    if len(out) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in out):
        raise ArgumentError(f"{name} must be a positive int or (height, width), got {size!r}")
    return out  # type: ignore[return-value]


def _check_input(input: Tensor) -> None:
    if not isinstance(input, Tensor):
        raise ArgumentTypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ShapeError(f"input must have shape (N, C, H, W), got {tuple(input.shape)}")


def boxes_to_rois(boxes: Tensor | Sequence[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """``(K, 5)`` rois ``(batch index, x1, y1, x2, y2)`` from a ``(K, 5)`` tensor or a list of
    per-image ``(L_i, 4)`` tensors."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ShapeError(f"boxes as one tensor must be (K, 5), got {tuple(boxes.shape)}")
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ShapeError(f"boxes[{i}] must be (L, 4), got {shape}")
        if not boxes:
            raise ShapeError("boxes is an empty list; give one (L, 4) tensor per image")
        ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
        rois = torch.cat([torch.cat(ids), torch.cat(list(boxes))], dim=1)
    else:
        raise ArgumentTypeError(f"boxes must be a (K, 5) tensor or a list of (L, 4) tensors, "
                                f"got {type(boxes).__name__}")
    rois = rois.detach()
    return rois if dtype is None else rois.to(dtype)


def _chunks(cost: Tensor, per_unit: int) -> list[Tensor]:
    """Split box indices, sorted by decreasing ``cost``, into chunks of at most ``_BUDGET``
    cell indices, where a chunk pads every box to its first (largest) cost."""
    order = torch.sort(cost, descending=True, stable=True).indices
    sorted_cost = cost[order].tolist()
    out, start, k = [], 0, len(sorted_cost)
    while start < k:
        n = max(1, _BUDGET // max(1, per_unit * int(sorted_cost[start])))
        out.append(order[start:start + n])
        start += n
    return out


# ----------------------------------------------------------------------------- RoI pool


def _pool_bins(start: Tensor, end: Tensor, pooled: int, size: int,
               dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Integer bin bounds ``[lo, hi)`` ``(K, pooled)`` along one axis, as torchvision's kernel
    computes them (bin size in the input's float type)."""
    bin_size = (end - start + 1).clamp(min=1).to(dtype) / pooled
    p = torch.arange(pooled, device=start.device, dtype=bin_size.dtype)
    lo = torch.floor(p[None] * bin_size[:, None]).long() + start[:, None]
    hi = torch.ceil((p[None] + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


# Measured CPU cost, one thread, per cell and channel: embedding_bag's max reads a cell of a
# bag in ~2.5 ns; a stride-1 max_pool2d over the whole channels-last map costs ~0.5 ns per
# cell of its window plus ~1.5 ns per map cell (both with the argmax).
_BAG_NS, _POOL_NS, _POOL_BASE_NS = 2.5, 0.5, 1.5


def roi_pool(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> Tensor:
    """Max of each of ``output_size`` integer bins of each rounded box: ``(K, C, oh, ow)``."""
    _check_input(input)
    ph, pw = _pair("output_size", output_size)
    rois = boxes_to_rois(boxes, input.dtype)
    k, c = rois.shape[0], input.shape[1]
    if k == 0 or c == 0:
        return input.new_zeros(k, c, ph, pw)
    return _RoIPool.apply(input, rois, ph, pw, spatial_scale)


class _RoIPool(torch.autograd.Function):
    """Forward: the bins' maxima and their cells; backward: one scatter-add to those cells.

    Bins are grouped by their exact size ``(bh, bw)`` (a 7 x 7 pool of boxes of a few dozen
    cells has a few dozen sizes). A group is reduced either by ``embedding_bag`` over bags of
    exactly ``bh * bw`` cells (no padding), or, when it has many bins, by one stride-1
    ``max_pool2d((bh, bw), return_indices=True)`` over the whole channels-last map, read at
    the bins' top-left cells; whichever the cost model above finds cheaper. Both return the
    first maximum in row-major order (a later cell must be strictly larger), as torchvision's
    kernel. The argmax is kept as a channels-last cell number per output element (an empty
    bin points at an extra zero row), and the backward adds the gradient there, as
    torchvision's kernel does; this is much cheaper than autograd through a gather.
    """

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, ph: int, pw: int,  # type: ignore[override]
                spatial_scale: float) -> Tensor:
        n, c, height, width = input.shape
        k, dev = rois.shape[0], input.device
        scale = torch.tensor(spatial_scale, dtype=rois.dtype, device=rois.device)
        corner = _round_half_away(rois[:, 1:] * scale).long()
        hlo, hhi = _pool_bins(corner[:, 1], corner[:, 3], ph, height, rois.dtype)
        wlo, whi = _pool_bins(corner[:, 0], corner[:, 2], pw, width, rois.dtype)

        def per_bin(t: Tensor) -> Tensor:  # (K, ph, 1) or (K, 1, pw) -> (K * ph * pw,)
            return t.expand(k, ph, pw).reshape(-1)

        bh, bw = per_bin((hhi - hlo)[:, :, None]), per_bin((whi - wlo)[:, None, :])
        y0, x0 = per_bin(hlo[:, :, None]), per_bin(wlo[:, None, :])
        batch = per_bin(rois[:, 0].long()[:, None, None])
        plane, cells = height * width, n * height * width
        size = torch.where((bh > 0) & (bw > 0), bh * (width + 1) + bw, 0)  # 0: empty bin
        x = input.detach().contiguous(memory_format=torch.channels_last)
        flat = x.permute(0, 2, 3, 1).reshape(cells, c)
        out = input.new_zeros(k * ph * pw, c)
        argmax = torch.full((k * ph * pw, c), cells, dtype=torch.long, device=dev)
        sizes, group = torch.unique(size, return_inverse=True)
        order = torch.argsort(group, stable=True)
        start = 0
        for key, count in zip(sizes.tolist(), torch.bincount(group).tolist()):
            ids, start = order[start:start + count], start + count
            if key == 0:
                continue
            kh, kw = divmod(key, width + 1)
            top_left = batch[ids] * plane + y0[ids] * width + x0[ids]
            if count * kh * kw * _BAG_NS < cells * (_POOL_NS * kh * kw + _POOL_BASE_NS):
                rows = torch.arange(kh, device=dev)[:, None] * width
                window = (rows + torch.arange(kw, device=dev)).reshape(-1)
                bags = (top_left[:, None] + window).reshape(-1)
                offsets = torch.arange(0, count * kh * kw, kh * kw, device=dev)
                value, _, _, cell = torch.embedding_bag(flat, bags, offsets, False, 2)
            else:
                value, cell = nn.functional.max_pool2d(x, (kh, kw), 1, return_indices=True)
                oh, ow = value.shape[2:]
                at = (batch[ids] * oh + y0[ids]) * ow + x0[ids]
                value = value.permute(0, 2, 3, 1).reshape(-1, c).index_select(0, at)
                cell = cell.permute(0, 2, 3, 1).reshape(-1, c).index_select(0, at)
                cell += (batch[ids] * plane)[:, None]  # a cell of the plane -> of the batch
            out.index_copy_(0, ids, value)
            argmax.index_copy_(0, ids, cell)
        ctx.save_for_backward(argmax)
        ctx.input_shape = input.shape
        return out.view(k, ph, pw, c).permute(0, 3, 1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (argmax,) = ctx.saved_tensors
        n, c, height, width = ctx.input_shape
        flat = grad.new_zeros(n * height * width + 1, c)  # the last row takes empty bins
        flat.scatter_add_(0, argmax, grad.permute(0, 2, 3, 1).reshape(-1, c))
        grad_input = flat[:-1].view(n, height, width, c).permute(0, 3, 1, 2)
        return grad_input, None, None, None, None


# ----------------------------------------------------------------------------- RoI align


def _align_axis(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, samples: int,
                size: int) -> tuple[Tensor, Tensor]:
    """Row (or column) indices and weights ``(pooled, samples, 2, K)`` of every sample point,
    boxes last (so that the broadcasts below run along a long contiguous axis).

    Sample ``i`` of bin ``p`` sits at ``start + p * bin + (i + 0.5) * bin / grid`` (the float
    operations of torchvision's kernel). Points past ``grid`` (padding) or more than one cell
    outside ``[0, size - 1]`` get zero weight; the rest are clamped into the map and split
    between their two neighbouring cells.
    """
    dt = start.dtype
    p = torch.arange(pooled, device=start.device, dtype=dt)[:, None, None]
    i = torch.arange(samples, device=start.device)[None, :, None]
    coord = (start + p * bin_size) + ((i.to(dt) + 0.5) * bin_size / grid.clamp(min=1).to(dt))
    ok = (coord >= -1.0) & (coord <= size) & (i < grid)
    coord = torch.where(ok, coord, 0).clamp(min=0)
    low = coord.long()
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge | ~ok, low, low + 1)  # a point outside reads cell 0 (weight 0)
    frac = torch.where(edge, 0, coord - low.to(dt))
    weights = torch.stack((1 - frac, frac), dim=2) * ok[:, :, None]
    return torch.stack((low, high), dim=2), weights


def roi_align(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """Mean of bilinearly sampled points in each of ``output_size`` bins of each box.

    Returns ``(K, C, output_h, output_w)``. ``sampling_ratio <= 0``: ``ceil(box size /
    output size)`` points per bin side, per box. ``aligned``: shift boxes by -0.5 cell.
    """
    _check_input(input)
    ph, pw = _pair("output_size", output_size)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise ArgumentTypeError(f"sampling_ratio must be an int, got {sampling_ratio!r}")
    rois = boxes_to_rois(boxes, input.dtype)
    return _roi_align(input, rois, ph, pw, spatial_scale, sampling_ratio,
                      aligned).permute(0, 3, 1, 2).contiguous()


def _roi_align(input: Tensor, rois: Tensor, ph: int, pw: int, spatial_scale: float,
               sampling_ratio: int, aligned: bool) -> Tensor:
    """:func:`roi_align` on checked arguments, channels last: ``(K, ph, pw, C)``."""
    n, c, height, width = input.shape
    k = rois.shape[0]
    if k == 0 or c == 0:
        return input.new_zeros(k, ph, pw, c)
    dt = rois.dtype
    scale = torch.tensor(spatial_scale, dtype=dt, device=rois.device)
    offset = torch.tensor(0.5 if aligned else 0.0, dtype=dt, device=rois.device)
    x1, y1, x2, y2 = (rois[:, 1:] * scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # malformed boxes become one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, device=rois.device, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h, grid_w = torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()
    count = (grid_h * grid_w).clamp(min=1).to(dt)
    flat = input.permute(0, 2, 3, 1).reshape(n * height * width, c)
    # every cell of a bag is read, zero weights included, as torchvision's kernel reads the
    # 2 x 2 neighbours of a point whatever their weights and cell 0 for a point outside
    cell_dtype = torch.int32 if n * height * width < 2**31 else torch.int64
    base = (rois[:, 0].long() * (height * width)).to(cell_dtype)
    out = input.new_empty(k, ph, pw, c)
    chunks = _chunks(grid_h.clamp(min=1) * grid_w.clamp(min=1), 4 * ph * pw)
    for idx in chunks:
        gh, gw = max(1, int(grid_h[idx].max())), max(1, int(grid_w[idx].max()))
        rows, wy = _align_axis(y1[idx], bin_h[idx], grid_h[idx], ph, gh, height)
        cols, wx = _align_axis(x1[idx], bin_w[idx], grid_w[idx], pw, gw, width)
        # bag (k, a, b): the 2 x 2 neighbours of its gh x gw points, weight wy * wx / count,
        # in (y sample, x sample, y neighbour, x neighbour) order; built boxes last, then
        # transposed to one bag per row
        rows = rows.to(cell_dtype).mul_(width).add_(base[idx])
        cell = (rows[:, None, :, None, :, None] + cols.to(cell_dtype)[None, :, None, :, None, :])
        wy = (wy / count[idx]).to(input.dtype)
        weight = wy[:, None, :, None, :, None] * wx.to(input.dtype)[None, :, None, :, None, :]
        size = gh * gw * 4
        cell = cell.permute(6, 0, 1, 2, 3, 4, 5).reshape(-1, size)
        weight = weight.permute(6, 0, 1, 2, 3, 4, 5).reshape(-1, size)
        pooled = nn.functional.embedding_bag(cell, flat, mode="sum", per_sample_weights=weight)
        pooled = pooled.reshape(len(idx), ph, pw, c)
        if len(chunks) == 1 and sampling_ratio > 0:  # one chunk, boxes in order (equal grids)
            return pooled
        out.index_copy_(0, idx, pooled)  # autograd records it
    return out


class RoIPool(nn.Module):
    """:func:`roi_pool` with a fixed ``output_size`` and ``spatial_scale``."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = _pair("output_size", output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | Sequence[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)


class RoIAlign(nn.Module):
    """:func:`roi_align` with fixed settings."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float,
                 sampling_ratio: int, aligned: bool = False) -> None:
        super().__init__()
        self.output_size = _pair("output_size", output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | Sequence[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)


# ----------------------------------------------------------------------------- FPN


def fpn_levels(boxes: Sequence[Tensor], k_min: int, k_max: int, canonical_scale: int = 224,
               canonical_level: int = 4, eps: float = 1e-6) -> Tensor:
    """FPN eq. 1: ``clamp(floor(k0 + log2(sqrt(area) / s0) + eps), k_min, k_max) - k_min``."""
    area = torch.cat([(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b in boxes])
    s = torch.sqrt(area)
    level = torch.floor(canonical_level + torch.log2(s / canonical_scale)
                        + torch.tensor(eps, dtype=s.dtype))
    return (level.clamp(min=k_min, max=k_max).to(torch.int64) - k_min)


def _infer_scale(feature: Tensor, image_size: tuple[int, int]) -> float:
    """The power of two nearest ``feature height / image height``."""
    approx = float(feature.shape[-2]) / float(image_size[0])
    return 2.0 ** float(torch.tensor(approx).log2().round())


class MultiScaleRoIAlign(nn.Module):
    """RoI align over FPN levels: each box is pooled from the level FPN's eq. 1 assigns it.

    ``forward(x, boxes, image_shapes)``: ``x`` a dict of feature maps (the names in
    ``featmap_names`` are used, finest first), ``boxes`` per-image ``(L_i, 4)`` boxes in image
    pixels, ``image_shapes`` per-image ``(height, width)`` before the backbone. Returns
    ``(sum L_i, C, output_h, output_w)``. Scales are inferred on the first call and kept. The
    levels must be consecutive (p2..p5, say): where torchvision gives zeros to a box whose
    level is missing, we raise.
    """

    def __init__(self, featmap_names: list[str], output_size: int | Sequence[int],
                 sampling_ratio: int, *, canonical_scale: int = 224,
                 canonical_level: int = 4) -> None:
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = _pair("output_size", output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.scales: list[float] | None = None
        self.k_min = self.k_max = 0

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [v for name, v in x.items() if name in self.featmap_names]
        if not features:
            raise ArgumentError(f"x has none of the feature maps {self.featmap_names}; "
                                f"got {list(x)}")
        if self.scales is None:
            if not image_shapes:
                raise ArgumentError("image_shapes is empty; give (height, width) per image")
            size = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
            self.scales = [_infer_scale(f, size) for f in features]
            self.k_min = int(-math.log2(self.scales[0]))
            self.k_max = int(-math.log2(self.scales[-1]))
            if self.k_max - self.k_min + 1 != len(features):
                raise ArgumentError(
                    f"featmap_names {self.featmap_names} must be consecutive pyramid levels "
                    f"(scales 1/2^k for k = {self.k_min}..{self.k_max}), got scales "
                    f"{self.scales}; torchvision silently returns zeros for boxes mapped to "
                    f"a missing level")
        rois = boxes_to_rois(boxes)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0],
                             self.sampling_ratio)
        levels = fpn_levels(boxes, self.k_min, self.k_max, self.canonical_scale,
                            self.canonical_level)
        ph, pw = self.output_size
        out = features[0].new_empty(len(rois), features[0].shape[1], ph, pw)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.where(levels == level)[0]
            pooled = _roi_align(feature, rois[idx].to(feature.dtype), ph, pw, scale,
                                self.sampling_ratio, False)
            out.permute(0, 2, 3, 1).index_copy_(0, idx, pooled)  # autograd records it
        return out
