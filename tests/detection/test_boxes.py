"""Boxes, the IoU family, NMS and the detection utilities equal torchvision's, bit for bit.

References: ``torchvision.ops`` (box functions, ``nms``, ``batched_nms``) and
``torchvision.models.detection._utils`` (``BoxCoder``, ``Matcher``,
``BalancedPositiveNegativeSampler``). Random boxes plus the degenerate ones (zero area,
identical, nested, touching); NMS also against a float64 loop transcription of the greedy rule.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab.benchmarks.detection.ops import clustered_boxes
from paperlab.detection import boxes as B
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("F1", reference="torchvision.ops")


def _tv():
    return require("torchvision")


def _same(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _random_boxes(n, g, scale=100.0, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale / 3
    return torch.cat((xy, xy + wh), 1).to(dtype)


def _degenerate(dtype=torch.float32):
    return torch.tensor([
        [0, 0, 10, 10], [0, 0, 10, 10],      # identical
        [2, 2, 5, 5],                          # nested
        [10, 0, 20, 10],                       # touching (shared edge)
        [10, 10, 20, 20],                      # touching (shared corner)
        [3, 3, 3, 8],                          # zero width
        [4, 4, 4, 4], [4, 4, 4, 4],            # zero area, identical
        [0, 0, 20, 20],                        # enclosing
    ], dtype=dtype)


def _all_boxes(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.cat((_degenerate(dtype), _random_boxes(40, g, dtype=dtype)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_functions_equal_torchvision(dtype):
    ops = _tv().ops
    a, b = _all_boxes(0, dtype), _all_boxes(1, dtype)
    _same(B.box_area(a), ops.box_area(a))
    _same(B.box_iou(a, b), ops.box_iou(a, b))
    _same(B.generalized_box_iou(a[5:], b[5:]), ops.generalized_box_iou(a[5:], b[5:]))
    _same(B.distance_box_iou(a, b), ops.distance_box_iou(a, b))
    _same(B.complete_box_iou(a, b), ops.complete_box_iou(a, b))
    for fmt in ("xywh", "cxcywh"):
        c = ops.box_convert(a, "xyxy", fmt)
        _same(B.box_iou(c, c, fmt=fmt), ops.box_iou(c, c, fmt=fmt))
        _same(B.box_area(c, fmt=fmt), ops.box_area(c, fmt=fmt))
    # leading batch dimensions
    _same(B.box_iou(a[:48].view(2, -1, 4), b[:48].view(2, -1, 4)),
          ops.box_iou(a[:48].view(2, -1, 4), b[:48].view(2, -1, 4)))


def test_box_convert_clip_remove_equal_torchvision():
    ops = _tv().ops
    a = _all_boxes(2)
    for i in ("xyxy", "xywh", "cxcywh"):
        for o in ("xyxy", "xywh", "cxcywh"):
            _same(B.box_convert(a, i, o), ops.box_convert(a, i, o))
    shifted = a - 30
    _same(B.clip_boxes_to_image(shifted, (40, 50)), ops.clip_boxes_to_image(shifted, (40, 50)))
    for m in (0.0, 3.0, 10.0):
        _same(B.remove_small_boxes(a, m), ops.remove_small_boxes(a, m))


def test_iou_known_values():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [2, 0, 4, 2], [0, 0, 2, 2]])
    assert torch.allclose(B.box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))
    # GIoU of the touching pair: IoU 0, enclosing area 8 = union 8 -> 0; disjoint -> negative
    far = torch.tensor([[4.0, 0, 6, 2]])
    assert torch.allclose(B.generalized_box_iou(a, far), torch.tensor([[-(12 - 8) / 12]]))


def _loop_nms(boxes, scores, thr):
    """Transcription of torchvision's CPU kernel in the boxes' dtype: greedy, box by box."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # Python sort: stable
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    suppressed, keep = set(), []
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if j in suppressed:
                continue
            w = (torch.min(x2[i], x2[j]) - torch.max(x1[i], x1[j])).clamp(min=0)
            h = (torch.min(y2[i], y2[j]) - torch.max(y1[i], y1[j])).clamp(min=0)
            inter = w * h
            if float(inter / (area[i] + area[j] - inter)) > thr:
                suppressed.add(j)
    return torch.tensor(keep, dtype=torch.int64)


@pytest.mark.parametrize("n,thr,block", [(0, 0.5, 512), (1, 0.5, 512), (60, 0.3, 512),
                                         (300, 0.5, 64), (300, 0.7, 512), (1200, 0.5, 256)])
def test_nms_keeps_exactly_torchvisions_indices(n, thr, block):
    ops = _tv().ops
    g = torch.Generator().manual_seed(n)
    boxes = _random_boxes(n, g, scale=200.0)
    scores = torch.rand(n, generator=g)
    ours = B.nms(boxes, scores, thr, block=block)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, ops.nms(boxes, scores, thr))


def test_nms_ties_degenerate_and_strict_threshold():
    ops = _tv().ops
    boxes = _degenerate()
    for scores in (torch.ones(len(boxes)), torch.tensor([3.0, 3, 2, 2, 2, 1, 1, 1, 0.5])):
        for thr in (0.0, 0.09, 0.5, 1.0):
            ours = B.nms(boxes, scores, thr)
            assert torch.equal(ours, ops.nms(boxes, scores, thr)), (scores, thr)
            assert torch.equal(ours, _loop_nms(boxes, scores, thr))
    # IoU exactly 0.5 is not suppressed at threshold 0.5 (strictly greater suppresses)
    pair = torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]])
    assert B.nms(pair, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert B.nms(pair, torch.tensor([1.0, 0.5]), 0.4999).tolist() == [0]
    # equal scores keep index order
    same = torch.tensor([[0.0, 0, 1, 1]] * 3)
    assert B.nms(same, torch.ones(3), 0.5).tolist() == [0]
    assert B.nms(same, torch.ones(3), 1.0).tolist() == [0, 1, 2]
    empty = B.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)


@pytest.mark.parametrize("block", [16, 64, 256])
@pytest.mark.parametrize("kind", ["clustered", "scattered"])
def test_nms_rounds_keep_torchvisions_indices(kind, block):
    """Several rounds, the probe round, and both ways a round suppresses the rest (against
    the few boxes kept when most are suppressed, one round x rest matrix when most survive),
    plus the per-label form of batched_nms's large branch."""
    ops = _tv().ops
    g = torch.Generator().manual_seed(block + len(kind))
    n = 700
    boxes = (clustered_boxes(n, g, objects=12) if kind == "clustered"
             else _random_boxes(n, g, scale=800.0) / 4)
    scores = torch.rand(n, generator=g)
    for dtype in (torch.float32, torch.float64):
        b, s = boxes.to(dtype), scores.to(dtype)
        for thr in (0.3, 0.5):
            assert torch.equal(B.nms(b, s, thr, block=block), ops.nms(b, s, thr))
    idxs = torch.randint(0, 3, (1200,), generator=g)
    boxes = torch.cat((boxes, boxes[:500] + 1.5))
    scores = torch.rand(1200, generator=g)
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.5),
                       ops.batched_nms(boxes, scores, idxs, 0.5))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 80), st.floats(0.0, 1.0),
       st.sampled_from([4, 16, 512]), st.booleans())
def test_nms_hypothesis(seed, n, thr, block, quantised):
    ops = _tv().ops
    g = torch.Generator().manual_seed(seed)
    boxes = _random_boxes(n, g, scale=30.0)
    scores = torch.rand(n, generator=g)
    if quantised:  # integer coordinates and few distinct scores: many ties and exact IoUs
        boxes, scores = boxes.round(), (scores * 4).round()
    assert torch.equal(B.nms(boxes, scores, thr, block=block), ops.nms(boxes, scores, thr))


@pytest.mark.parametrize("n", [0, 50, 600, 1500])  # both of torchvision's branches (4000 coords)
def test_batched_nms_equals_torchvision(n):
    ops = _tv().ops
    g = torch.Generator().manual_seed(n + 1)
    boxes = _random_boxes(n, g, scale=100.0)
    scores = (torch.rand(n, generator=g) * 20).round()  # ties
    idxs = torch.randint(0, 5, (n,), generator=g)
    for thr in (0.3, 0.6):
        assert torch.equal(B.batched_nms(boxes, scores, idxs, thr),
                           ops.batched_nms(boxes, scores, idxs, thr))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40))
def test_pairwise_hypothesis(seed, n):
    ops = _tv().ops
    g = torch.Generator().manual_seed(seed)
    a = _random_boxes(n, g, scale=10.0).round()
    b = _random_boxes(n + 3, g, scale=10.0).round()
    _same(B.box_iou(a, b), ops.box_iou(a, b))
    _same(B.distance_box_iou(a, b), ops.distance_box_iou(a, b))
    _same(B.complete_box_iou(a, b), ops.complete_box_iou(a, b))


def test_box_coder_equals_torchvision():
    utils = require("torchvision.models.detection._utils")
    g = torch.Generator().manual_seed(3)
    gt, props = _random_boxes(30, g) + 1, _random_boxes(30, g) + 1
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        ours, ref = B.BoxCoder(weights), utils.BoxCoder(weights)
        enc_o, enc_r = ours.encode([gt[:10], gt[10:]], [props[:10], props[10:]]), ref.encode(
            [gt[:10], gt[10:]], [props[:10], props[10:]])
        for x, y in zip(enc_o, enc_r):
            _same(x, y)
        codes = torch.randn(30, 12, generator=g) * 3  # 3 classes, some past the clip
        _same(ours.decode(codes, [props[:10], props[10:]]),
              ref.decode(codes, [props[:10], props[10:]]))
        # decode inverts encode
        back = ours.decode_single(ours.encode_single(gt, props), props)
        torch.testing.assert_close(back, gt, rtol=1e-5, atol=1e-4)
    assert B.BoxCoder((1, 1, 1, 1)).bbox_xform_clip == math.log(1000 / 16)


@pytest.mark.parametrize("allow_low", [False, True])
def test_matcher_equals_torchvision(allow_low):
    utils = require("torchvision.models.detection._utils")
    g = torch.Generator().manual_seed(4)
    gt, preds = _random_boxes(6, g), _random_boxes(200, g)
    q = B.box_iou(gt, preds)
    q[:, 5] = q[:, 6]  # ties
    ours = B.Matcher(0.5, 0.3, allow_low)(q)
    ref = utils.Matcher(0.5, 0.3, allow_low)(q)
    assert torch.equal(ours, ref)
    assert set(ours.unique().tolist()) <= {-2, -1, *range(6)}
    with pytest.raises(ShapeError, match="ground-truth"):
        B.Matcher(0.5, 0.3)(torch.zeros(0, 3))
    with pytest.raises(ArgumentError, match="low_threshold"):
        B.Matcher(0.3, 0.5)


def test_sampler_equals_torchvision_and_uses_generator():
    utils = require("torchvision.models.detection._utils")
    g = torch.Generator().manual_seed(5)
    matched = [torch.randint(-1, 4, (300,), generator=g), torch.randint(-1, 2, (40,), generator=g)]
    torch.manual_seed(11)
    ref = utils.BalancedPositiveNegativeSampler(64, 0.25)(matched)
    torch.manual_seed(11)
    ours = B.BalancedPositiveNegativeSampler(64, 0.25)(matched)
    for x, y in zip(ours[0] + ours[1], ref[0] + ref[1]):
        assert torch.equal(x, y)

    def sample():
        generator = torch.Generator().manual_seed(0)
        return B.BalancedPositiveNegativeSampler(64, 0.25, generator)(matched)

    pos, neg = sample()
    assert int(pos[0].sum()) == 16 and int(neg[0].sum()) == 48
    assert bool((matched[0][pos[0].bool()] >= 1).all())
    assert bool((matched[0][neg[0].bool()] == 0).all())
    again = sample()
    assert torch.equal(again[0][0], pos[0])


def test_bad_arguments_are_named():
    with pytest.raises(ShapeError, match="boxes"):
        B.box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ArgumentError, match="in_fmt"):
        B.box_convert(torch.zeros(3, 4), "xyz", "xyxy")
    with pytest.raises(ShapeError, match="scores"):
        B.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ShapeError, match="idxs"):
        B.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0))
def test_threshold_in_box_dtype_means_the_float64_comparison(t):
    u = B._threshold(t, torch.float32)
    near = torch.tensor(t, dtype=torch.float32)
    up = torch.nextafter(near, torch.tensor(2.0))
    down = torch.nextafter(near, torch.tensor(-1.0))
    for x in (near, up, down, torch.nextafter(up, torch.tensor(2.0))):
        assert bool(x > u) == (float(x) > t)
