"""RoI pool, RoI align and multi-scale RoI align equal torchvision's C++ kernels.

Forward to 1e-6 in float32 (float64: 1e-10) and the gradient w.r.t. the input, on random boxes
that include the awkward ones (inside a cell, on and past the border, zero size, inverted,
huge, fractional scale), every ``sampling_ratio`` mode and ``aligned``; ``gradcheck`` in float64.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_parity

from paperlab.detection import roi as R
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("F1", reference="torchvision.ops")


def _ops():
    return require("torchvision").ops


def _rois(k, g, n=2, size=24.0, dtype=torch.float32):
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * (size + 8) - 6
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * size / 1.5
    idx = torch.randint(0, n, (k, 1), generator=g).double()
    odd = torch.tensor([[0, 3.2, 4.1, 3.4, 4.3],      # inside one cell
                        [1, 5.0, 5.0, 5.0, 5.0],      # zero size
                        [0, 9.0, 9.0, 4.0, 6.0],      # inverted
                        [1, -30, -30, -12, -12],      # outside the map
                        [0, -3, -2, 60, 50],          # larger than the map
                        [1, 18.5, 14.5, 19.5, 15.5]], dtype=torch.float64)  # on the border
    return torch.cat((torch.cat((idx, xy, xy + wh), 1), odd)).to(dtype)


ALIGN_CASES = [dict(spatial_scale=1.0, sampling_ratio=-1, aligned=False),
               dict(spatial_scale=1.0, sampling_ratio=2, aligned=False),
               dict(spatial_scale=0.5, sampling_ratio=-1, aligned=True),
               dict(spatial_scale=0.37, sampling_ratio=3, aligned=True),
               dict(spatial_scale=2.0, sampling_ratio=0, aligned=False)]


@pytest.mark.parametrize("dtype,tol,grad_tol", [(torch.float32, 1e-6, 1e-5),
                                                (torch.float64, 1e-10, 1e-10)])
@pytest.mark.parametrize("case", ALIGN_CASES)
def test_roi_align_equals_torchvision(dtype, tol, grad_tol, case):
    """Forward 1e-6 in float32; the input gradient sums many boxes' float32 terms in another
    order than the C++ kernel, hence 1e-5 there (float64: 1e-10 for both)."""
    ops = _ops()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 16, 20, generator=g, dtype=dtype).requires_grad_()
    rois = _rois(40, g, dtype=dtype)
    assert_parity(lambda t: R.roi_align(t, rois, (4, 3), **case),
                  lambda t: ops.roi_align(t, rois, (4, 3), **case), [x],
                  atol=tol, rtol=tol, grad_atol=grad_tol, grad_rtol=grad_tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.37])
def test_roi_pool_equals_torchvision(dtype, scale):
    ops = _ops()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 20, generator=g, dtype=dtype)
    x = x.round(decimals=1).requires_grad_()  # ties inside bins: the first maximum wins
    # forward: the same maxima exactly; gradient: the same cells (sums of boxes' terms in
    # another order, hence 1e-6 in float32)
    rois = _rois(40, g, dtype=dtype)
    assert_parity(lambda t: R.roi_pool(t, rois, (3, 4), scale),
                  lambda t: ops.roi_pool(t, rois, (3, 4), scale), [x], atol=0, rtol=0,
                  grad_atol=1e-6 if dtype == torch.float32 else 1e-12, grad_rtol=0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(1, 5),
       st.sampled_from([0.25, 0.5, 1.0, 1.7]), st.integers(-1, 3), st.booleans())
def test_hypothesis_forward_equals_torchvision(seed, oh, ow, scale, ratio, aligned):
    ops = _ops()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 9, 11, generator=g)
    rois = _rois(12, g, size=12.0 / scale)
    torch.testing.assert_close(R.roi_align(x, rois, (oh, ow), scale, ratio, aligned),
                               ops.roi_align(x, rois, (oh, ow), scale, ratio, aligned),
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(R.roi_pool(x, rois, (oh, ow), scale),
                               ops.roi_pool(x, rois, (oh, ow), scale), atol=0, rtol=0)


def test_list_of_boxes_equals_batch_index_form_and_modules():
    ops = _ops()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 12, 12, generator=g)
    boxes = [_rois(5, g, n=1, size=10)[:5, 1:], _rois(3, g, n=1, size=10)[:3, 1:]]
    ours = R.roi_align(x, boxes, 2, 0.5, 2, True)
    torch.testing.assert_close(ours, ops.roi_align(x, boxes, 2, 0.5, 2, True), atol=1e-6,
                               rtol=1e-6)
    torch.testing.assert_close(ours, R.RoIAlign(2, 0.5, 2, True)(x, boxes))
    torch.testing.assert_close(R.RoIPool(3, 1.0)(x, boxes), ops.roi_pool(x, boxes, 3, 1.0))
    empty = R.roi_align(x, torch.zeros(0, 5), 3)
    assert empty.shape == (0, 3, 3, 3)


def test_adaptive_grids_in_several_chunks(monkeypatch):
    """A small chunk budget splits boxes of different grid sizes; the result does not change."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 30, 30, generator=g)
    rois = _rois(30, g, size=40)
    whole, whole_pool = R.roi_align(x, rois, 3), R.roi_pool(x, rois, 3)
    monkeypatch.setattr(R, "_BUDGET", 200)
    assert len(R._chunks(torch.arange(30) % 7 + 1, 36)) > 3
    torch.testing.assert_close(R.roi_align(x, rois, 3), whole, atol=0, rtol=0)
    torch.testing.assert_close(R.roi_pool(x, rois, 3), whole_pool, atol=0, rtol=0)


@pytest.mark.parametrize("bag_ns", [0.0, 1e9])  # every size group by embedding_bag / max_pool2d
def test_roi_pool_both_reductions_equal_torchvision(monkeypatch, bag_ns):
    ops = _ops()
    monkeypatch.setattr(R, "_BAG_NS", bag_ns)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 16, 20, generator=g).round(decimals=1).requires_grad_()  # ties
    rois = _rois(40, g)
    assert_parity(lambda t: R.roi_pool(t, rois, (3, 4), 0.5),
                  lambda t: ops.roi_pool(t, rois, (3, 4), 0.5), [x], atol=0, rtol=0,
                  grad_atol=1e-6, grad_rtol=0)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 5.2, 4.9], [0, 2.0, 1.0, 7.5, 6.5],
                         [0, -0.8, -0.5, 3.0, 2.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: R.roi_align(t, rois, 3, 1.0, -1, False), (x,))
    assert torch.autograd.gradcheck(lambda t: R.roi_align(t, rois, (2, 3), 0.9, 2, True), (x,))
    assert torch.autograd.gradcheck(lambda t: R.roi_pool(t, rois, 2, 1.0), (x,))


def test_roi_align_reads_non_finite_cells_as_torchvision():
    """Zero-weight cells are read, as in torchvision's kernel (a point outside the map reads
    cell 0 of its image with weight 0): NaN and inf reach the same bins in both."""
    ops = _ops()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 12, 14, generator=g)
    x[1, :, 0, 0] = float("nan")
    x[0, :, 11, 13] = float("inf")
    x[0, 1, 5, 6] = float("nan")
    rois = torch.tensor([[1, -30.0, -30, -12, -12], [1, 4.0, 3, 11, 9], [0, 2.0, 2, 8, 7],
                         [0, 9.0, 8, 13.9, 11.9], [1, 0.0, 0, 3, 3]])
    for aligned in (False, True):
        ours = R.roi_align(x, rois, 3, 1.0, 2, aligned)
        ref = ops.roi_align(x, rois, 3, 1.0, 2, aligned)
        assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
        assert torch.allclose(ours, ref, atol=1e-6, equal_nan=True)


def test_multiscale_roi_align_equals_torchvision():
    ops = _ops()
    g = torch.Generator().manual_seed(5)
    feats = OrderedDict(p2=torch.randn(2, 4, 64, 64, generator=g),
                        p3=torch.randn(2, 4, 32, 32, generator=g),
                        p4=torch.randn(2, 4, 16, 16, generator=g),
                        p5=torch.randn(2, 4, 8, 8, generator=g))
    boxes = []
    for _ in range(2):  # sizes from 4 to 980 px: every level, and clamping at both ends
        xy = torch.rand(25, 2, generator=g) * 100
        wh = torch.exp(torch.rand(25, 2, generator=g) * 5.5) * 4
        boxes.append(torch.cat((xy, xy + wh), 1))
    shapes = [(256, 256), (240, 250)]
    for names in (["p2", "p3", "p4", "p5"], ["p3", "p4"], ["p4"]):
        ours = R.MultiScaleRoIAlign(names, 5, 2)(feats, boxes, shapes)
        ref = ops.MultiScaleRoIAlign(names, 5, 2)(feats, boxes, shapes)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    with pytest.raises(ArgumentError, match="consecutive"):
        R.MultiScaleRoIAlign(["p3", "p5"], 5, 2)(feats, boxes, shapes)
    levels = R.fpn_levels(boxes, 2, 5)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    # eq. 1: a 224 x 224 box goes to level 4, 112 x 112 to level 3
    two = [torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 2000, 2000]])]
    assert (R.fpn_levels(two, 2, 5) + 2).tolist() == [4, 3, 5]


def test_bad_arguments_are_named():
    x = torch.zeros(1, 2, 5, 5)
    with pytest.raises(ShapeError, match="input"):
        R.roi_align(torch.zeros(2, 5, 5), torch.zeros(1, 5), 2)
    with pytest.raises(ShapeError, match="boxes"):
        R.roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(ShapeError, match=r"boxes\[1\]"):
        R.roi_pool(x, [torch.zeros(1, 4), torch.zeros(1, 5)], 2)
    with pytest.raises(ArgumentError, match="output_size"):
        R.roi_align(x, torch.zeros(1, 5), (2, 0))
