"""Deformable convolution v1 and v2: a convolution whose sampling grid is learned (note F2).

Idea. A ``kh x kw`` convolution reads its input at the fixed grid ``p0 + p_k`` around each
output position ``p0``. Deformable convolution (Dai et al. 2017, "Deformable Convolutional
Networks") adds a learned, per-position, per-kernel-point offset ``Δp_k`` predicted from the
input by an ordinary convolution, and reads the input there by bilinear interpolation:

    v1:  y(p0) = sum_k w_k · x(p0 + p_k + Δp_k)
    v2:  y(p0) = sum_k w_k · m_k · x(p0 + p_k + Δp_k),   m_k = sigmoid(·) in [0, 1]

v2 (Zhu et al. 2019, "Deformable ConvNets v2: More Deformable, Better Results") adds the
modulation ``m_k``, which lets a kernel point fade out. With ``Δp = 0`` (and ``m = 1``) both are
the plain convolution, so the offset (and mask) convolutions are initialised to zero and training
starts from a plain convolution (v2's mask starts at sigmoid(0) = 0.5, as in the paper, i.e. a
plain convolution at half gain). ``x`` outside the image is 0 (bilinear interpolation with zero
padding).

Layout (torchvision's): ``offset`` ``(N, 2 * offset_groups * kh * kw, Ho, Wo)``, for offset group
``g`` and kernel point ``k = i * kw + j`` channel ``2 (g kh kw + k)`` holds ``Δy`` and the next
``Δx``; ``mask`` ``(N, offset_groups * kh * kw, Ho, Wo)``. Input channels are split into
``offset_groups`` consecutive groups that share one set of offsets; ``groups`` splits the weight
as in ``conv2d``.

How it runs (im2col). For every output position, kernel point and offset group the sampling
point's four neighbours and their bilinear weights (times the mask, zero for neighbours outside
the image) are computed at once; each column entry is then a weighted bag of four input cells,
reduced by ``embedding_bag`` over a channels-last view of the input (no ``(…, 4, C)`` tensor is
materialised); the columns ``(N, Ho Wo, C kh kw)`` meet the weight in one matmul. Autograd gives
the gradients w.r.t. input, offset, mask, weight and bias; they equal torchvision's hand-written
kernels (tests/detection/test_deform_conv.py).

Shapes: ``input (N, C, H, W)``, ``weight (C_out, C / groups, kh, kw)``, result
``(N, C_out, Ho, Wo)`` with ``Ho = (H + 2 pad - dilation (kh - 1) - 1) // stride + 1``.
Anchor: ``torchvision.ops.deform_conv2d`` (same signature and layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError


def _pair(name: str, value: int | Sequence[int], minimum: int) -> tuple[int, int]:
    out = (value, value) if isinstance(value, int) else tuple(value)
    if len(out) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                            for v in out):
        raise ArgumentError(f"{name} must be an int >= {minimum} or a pair of them, got "
                            f"{value!r}")
    return out  # type: ignore[return-value]


def _neighbours(y: Tensor, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Cell numbers ``(..., 4)`` and bilinear weights ``(..., 4)`` of points ``(y, x)``, in the
    order (low, low), (low, high), (high, low), (high, high); cells outside the image get
    weight 0 (and a harmless index 0)."""
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    y0, x0 = y0.long(), x0.long()
    rows = torch.stack((y0, y0, y0 + 1, y0 + 1), dim=-1)
    cols = torch.stack((x0, x0 + 1, x0, x0 + 1), dim=-1)
    wy = torch.stack((1 - ly, 1 - ly, ly, ly), dim=-1)
    wx = torch.stack((1 - lx, lx, 1 - lx, lx), dim=-1)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    cells = torch.where(inside, rows * width + cols, 0)
    return cells, wy * wx * inside


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, mask: Tensor | None = None) -> Tensor:
    """Deformable convolution: v1 without ``mask``, v2 (modulated) with it.

    ``input (N, C, H, W)``, ``offset (N, 2 G kh kw, Ho, Wo)``, ``weight (C_out, C / groups, kh,
    kw)``, ``mask (N, G kh kw, Ho, Wo)``; ``G`` (offset groups) and ``groups`` are read from the
    shapes, as torchvision does. Returns ``(N, C_out, Ho, Wo)``.
    """
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ShapeError(f"{name} must be 4-D, got shape {tuple(t.shape)}")
    sh, sw = _pair("stride", stride, 1)
    ph, pw = _pair("padding", padding, 0)
    dh, dw = _pair("dilation", dilation, 1)
    n, c, height, width = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    k = kh * kw
    if c_per_group == 0 or c % c_per_group or c_out % (c // c_per_group):
        raise ShapeError(f"weight {tuple(weight.shape)} does not split input channels {c} and "
                         f"output channels {c_out} into equal groups")
    groups = c // c_per_group
    ho = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if offset.shape[1] == 0 or offset.shape[1] % (2 * k):
        raise ShapeError(f"offset must have 2 * offset_groups * {kh} * {kw} channels, got "
                         f"{offset.shape[1]}")
    g = offset.shape[1] // (2 * k)
    if tuple(offset.shape) != (n, 2 * g * k, ho, wo):
        raise ShapeError(f"offset must have shape {(n, 2 * g * k, ho, wo)}, got "
                         f"{tuple(offset.shape)}")
    if c % g:
        raise ShapeError(f"input channels {c} must split into {g} offset groups")
    if mask is not None and tuple(mask.shape) != (n, g * k, ho, wo):
        raise ShapeError(f"mask must have shape {(n, g * k, ho, wo)}, got {tuple(mask.shape)}")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ShapeError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")

    # sampling points (N, G, K, Ho, Wo): the regular grid plus the learned offsets
    off = offset.view(n, g, k, 2, ho, wo)
    dt, dev = input.dtype, input.device
    base_y = (torch.arange(ho, device=dev) * sh - ph)[:, None] + torch.zeros(wo, device=dev)
    base_x = (torch.arange(wo, device=dev) * sw - pw)[None, :] + torch.zeros(ho, 1, device=dev)
    ki = (torch.arange(kh, device=dev) * dh).repeat_interleave(kw)  # kernel rows, k = i kw + j
    kj = (torch.arange(kw, device=dev) * dw).repeat(kh)
    y = (base_y[None] + ki[:, None, None]).to(dt) + off[:, :, :, 0]
    x = (base_x[None] + kj[:, None, None]).to(dt) + off[:, :, :, 1]
    cells, weights = _neighbours(y, x, height, width)  # (N, G, K, Ho, Wo, 4)
    if mask is not None:
        weights = weights * mask.view(n, g, k, ho, wo, 1)
    # every (n, g) has its own H*W block of the channels-last table (N*G*H*W, C / G)
    block = (torch.arange(n * g, device=dev) * (height * width)).view(n, g, 1, 1, 1, 1)
    table = input.reshape(n, g, c // g, height * width).transpose(2, 3).reshape(-1, c // g)
    cols = nn.functional.embedding_bag((cells + block).view(-1, 4), table,
                                       per_sample_weights=weights.reshape(-1, 4), mode="sum")
    # columns (N, Ho*Wo, C*K) in the weight's (channel, kernel point) order
    cols = cols.view(n, g, k, ho * wo, c // g).permute(0, 3, 1, 4, 2).reshape(
        n, ho * wo, groups, c_per_group * k)
    w = weight.reshape(groups, c_out // groups, c_per_group * k)
    out = torch.einsum("nlgi,goi->ngol", cols, w).reshape(n, c_out, ho, wo)
    return out if bias is None else out + bias.view(1, c_out, 1, 1)


class _DeformBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int], padding: int | tuple[int, int],
                 dilation: int | tuple[int, int], groups: int, bias: bool,
                 offset_groups: int, mask_channels: int) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(f"in_channels {in_channels} and out_channels {out_channels} "
                                f"must be divisible by groups {groups}")
        if in_channels % offset_groups:
            raise ArgumentError(f"in_channels {in_channels} must be divisible by "
                                f"offset_groups {offset_groups}")
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # conv2d's initialisation
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels // groups * kh * kw)
            nn.init.uniform_(self.bias, -bound, bound)
        # predicts the offsets (and mask) from the input, on the same output grid
        self.offset_conv = nn.Conv2d(in_channels, offset_groups * kh * kw * (2 + mask_channels),
                                     self.kernel_size, self.stride, self.padding, self.dilation)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        self.offset_groups = offset_groups

    def offsets(self, input: Tensor) -> tuple[Tensor, Tensor | None]:
        """The predicted ``offset`` ``(N, 2 G kh kw, Ho, Wo)`` and ``mask`` (v2) or ``None``."""
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:
        offset, mask = self.offsets(input)
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask)


class DeformConv2d(_DeformBase):
    """Deformable convolution v1: offsets predicted by a zero-initialised conv of the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 offset_groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, offset_groups, mask_channels=0)

    def offsets(self, input: Tensor) -> tuple[Tensor, None]:
        return self.offset_conv(input), None


class ModulatedDeformConv2d(_DeformBase):
    """Deformable convolution v2: offsets and a sigmoid mask from one zero-initialised conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 offset_groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, offset_groups, mask_channels=1)

    def offsets(self, input: Tensor) -> tuple[Tensor, Tensor]:
        out = self.offset_conv(input)
        split = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        return out[:, :split], torch.sigmoid(out[:, split:])
