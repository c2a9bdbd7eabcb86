"""Deformable convolution v1/v2 equals torchvision.ops.deform_conv2d, forward and every gradient
(input, offset, mask, weight, bias: float64 1e-10, float32 1e-5), and reduces to what it must:
zero offset == conv2d, mask 1 == v1, a (+1, 0) offset everywhere == the conv of the input shifted
up by one row; gradcheck in float64; the modules start as a plain convolution."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_parity

from paperlab.detection.deform_conv import DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("F2", reference="torchvision.ops.deform_conv2d")

CASES = [  # (C, C_out, groups, offset groups, kernel, stride, padding, dilation)
    (4, 6, 1, 1, 3, 1, 1, 1),
    (6, 4, 2, 3, 3, 2, 1, 2),
    (4, 8, 4, 2, (2, 3), 1, (0, 2), 1),
    (3, 5, 1, 3, 1, 1, 0, 1),
]


def _inputs(case, dtype, g, scale=2.0, h=9, w=10, n=2):
    c, c_out, groups, og, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (p, p) if isinstance(p, int) else p
    ho, wo = (h + 2 * ph - d * (kh - 1) - 1) // s + 1, (w + 2 * pw - d * (kw - 1) - 1) // s + 1
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    off = torch.randn(n, 2 * og * kh * kw, ho, wo, generator=g, dtype=dtype) * scale
    weight = torch.randn(c_out, c // groups, kh, kw, generator=g, dtype=dtype)
    bias = torch.randn(c_out, generator=g, dtype=dtype)
    mask = torch.rand(n, og * kh * kw, ho, wo, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, off, weight, bias, mask)], dict(stride=s, padding=p,
                                                                           dilation=d)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("modulated", [False, True])
def test_equals_torchvision_forward_and_gradients(dtype, tol, case, modulated):
    ops = require("torchvision").ops
    g = torch.Generator().manual_seed(hash((case, modulated)) % 1000)
    inputs, kw = _inputs(case, dtype, g)
    if not modulated:
        inputs = inputs[:4]
    assert_parity(lambda x, o, w, b, *m: deform_conv2d(x, o, w, b, mask=m[0] if m else None,
                                                       **kw),
                  lambda x, o, w, b, *m: ops.deform_conv2d(x, o, w, b, mask=m[0] if m else None,
                                                           **kw),
                  inputs, atol=tol, rtol=tol)


def test_zero_offset_is_conv2d_and_mask_one_is_v1():
    g = torch.Generator().manual_seed(1)
    for case in CASES:
        (x, off, w, b, mask), kw = _inputs(case, torch.float64, g)
        groups = case[0] // w.shape[1]
        zero = torch.zeros_like(off)
        conv = torch.nn.functional.conv2d(x, w, b, groups=groups, **kw)
        torch.testing.assert_close(deform_conv2d(x, zero, w, b, **kw), conv, atol=1e-10,
                                   rtol=1e-10)
        torch.testing.assert_close(deform_conv2d(x, off, w, b, mask=torch.ones_like(mask), **kw),
                                   deform_conv2d(x, off, w, b, **kw), atol=1e-12, rtol=1e-12)
        # the mask scales each kernel point's contribution: mask 0 leaves only the bias
        torch.testing.assert_close(deform_conv2d(x, off, w, b, mask=0 * mask, **kw),
                                   b.view(1, -1, 1, 1).expand_as(conv), atol=1e-12, rtol=0)


def test_unit_offset_is_conv_of_shifted_input():
    """Δy = +1 at every kernel point reads row r + 1: the plain conv of the input shifted up by
    one row, i.e. padded by 0 rows on top and 2 below instead of 1 and 1."""
    pad, conv = torch.nn.functional.pad, torch.nn.functional.conv2d
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 9, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    off = torch.zeros(2, 18, 8, 9, dtype=torch.float64)
    off[:, 0::2] = 1.0  # (dy, dx) = (+1, 0)
    up = conv(pad(x, (1, 1, 0, 2)), w)
    torch.testing.assert_close(deform_conv2d(x, off, w, padding=1), up, atol=1e-12, rtol=1e-12)
    off[:, 0::2], off[:, 1::2] = 0.0, -1.0  # (0, -1): reads column c - 1
    torch.testing.assert_close(deform_conv2d(x, off, w, padding=1), conv(pad(x, (2, 0, 1, 1)), w),
                               atol=1e-12, rtol=1e-12)
    off[:, 0::2], off[:, 1::2] = 0.5, 0.0  # half a row: the mean of the two neighbours
    torch.testing.assert_close(deform_conv2d(x, off, w, padding=1),
                               (conv(x, w, padding=1) + up) / 2, atol=1e-12, rtol=1e-12)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    (x, off, w, b, mask), kw = _inputs(CASES[1], torch.float64, g, h=6, w=5, n=1)
    off = (off.detach() * 0.7 + 0.013).requires_grad_()  # away from integer sampling points
    assert torch.autograd.gradcheck(
        lambda *t: deform_conv2d(t[0], t[1], t[2], t[3], mask=t[4], **kw),
        (x, off, w, b, mask))


def test_modules_start_as_plain_convolution_and_learn_offsets():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    v1 = DeformConv2d(4, 6, 3, padding=1, offset_groups=2)
    conv = torch.nn.functional.conv2d(x, v1.weight, v1.bias, padding=1)
    torch.testing.assert_close(v1(x), conv)
    v2 = ModulatedDeformConv2d(4, 6, 3, padding=1, bias=False)
    offset, mask = v2.offsets(x)
    assert offset.shape == (2, 18, 7, 7) and mask.shape == (2, 9, 7, 7)
    assert bool((offset == 0).all()) and bool((mask == 0.5).all())  # sigmoid(0): v2's init
    torch.testing.assert_close(v2(x), 0.5 * torch.nn.functional.conv2d(x, v2.weight, padding=1))
    v1(x).square().sum().backward()
    assert v1.offset_conv.weight.grad is not None and v1.offset_conv.weight.grad.abs().sum() > 0


def test_bad_arguments_are_named():
    x, w = torch.zeros(1, 4, 5, 5), torch.zeros(2, 4, 3, 3)
    with pytest.raises(ShapeError, match="offset must have 2"):
        deform_conv2d(x, torch.zeros(1, 5, 3, 3), w)
    with pytest.raises(ShapeError, match="offset must have shape"):
        deform_conv2d(x, torch.zeros(1, 18, 4, 4), w)
    with pytest.raises(ShapeError, match="mask"):
        deform_conv2d(x, torch.zeros(1, 18, 3, 3), w, mask=torch.zeros(1, 18, 3, 3))
    with pytest.raises(ShapeError, match="offset groups"):
        deform_conv2d(x, torch.zeros(1, 54, 3, 3), w)
    with pytest.raises(ArgumentError, match="stride"):
        deform_conv2d(x, torch.zeros(1, 18, 3, 3), w, stride=0)
    with pytest.raises(ArgumentError, match="groups"):
        DeformConv2d(4, 6, 3, groups=4)
