"""Boxes: formats, areas, the IoU family, non-maximum suppression, and the detection utilities
that turn boxes into training targets (note F1).

Idea. A box is ``(x1, y1, x2, y2)`` in absolute pixels (``xyxy``); ``xywh`` keeps the corner and
the size, ``cxcywh`` the centre and the size. Everything a detector does with boxes is one of:

- overlap: ``IoU(a, b) = |a ∩ b| / |a ∪ b|``; GIoU subtracts the share of the smallest enclosing
  box C not covered by the union, ``IoU - (|C| - |a ∪ b|) / |C|`` (Rezatofighi et al. 2019);
  DIoU subtracts the squared centre distance over the squared diagonal of C,
  ``IoU - ρ²(a, b) / c²``; CIoU also subtracts ``α v`` with the aspect-ratio term
  ``v = 4/π² (atan(w_b/h_b) - atan(w_a/h_a))²`` and ``α = v / (1 - IoU + v)`` (Zheng et al. 2020).
- NMS: sort by score, keep the best box, drop every box whose IoU with a kept box is strictly
  greater than the threshold, repeat. Equal scores keep index order (a stable sort).
- box coding (R-CNN, Girshick et al. 2014): a proposal P and its target G become
  ``(wx (Gx - Px) / Pw, wy (Gy - Py) / Ph, ww log(Gw / Pw), wh log(Gh / Ph))`` on centres and
  sizes; decoding inverts it, with ``log`` sizes clamped at ``log(1000 / 16)``.
- matching (Faster R-CNN): each prediction takes its best ground truth if the quality is at
  least ``high``; in ``[low, high)`` it is ignored (-2), below ``low`` it is background (-1);
  optionally a ground truth's best predictions are matched even when their quality is low.
- sampling: a fixed-size batch of anchors/proposals with at most ``positive_fraction`` positives.

How NMS runs without a loop per box. The boxes are sorted once and suppressed in rounds. A
round takes the first boxes left (a short first round of ``block / 4``: in a detector's output
most boxes are suppressed by a few; ``block`` afterwards) and solves the greedy rule among
them, the triangular system ``keep[i] = not any(keep[k] and over[i, k] for k < i)`` on one
IoU matrix; it has one solution, and iterating it from ``keep = all`` fixes one more
leading position per step and stops at that solution (Cluster-NMS, Zheng et al. 2020),
usually after one to four steps. The boxes kept then drop
every later box they overlap (one kept x rest matrix), and the survivors are the next round's
problem: boxes kept earlier no longer touch them. A small problem (at most ``block / 2``
boxes, or 5/4 of a round) is one round, one dense matrix. IoU is computed with the
very float operations of torchvision's kernel (``inter / (area_i + area_j - inter)`` in the
boxes' dtype, and ``> threshold`` with the threshold's float64 meaning), so the kept indices
are exactly torchvision's. Cost: on the CPU each tensor operation costs a few microseconds
whatever its size, about what torchvision's whole call costs for a hundred boxes, so the
code keeps the operation count low (a round is about 25) and every matrix in float (0/1
comparisons included: boolean tensors are slower); ``nms`` is within 2x of torchvision's C++
from about a thousand boxes, 3-5x below a few hundred.

Shapes: boxes ``(..., N, 4)``; pairwise functions return ``(..., N, M)``; ``nms`` takes
``(N, 4)`` and ``(N,)`` and returns int64 indices sorted by decreasing score.
Anchors: ``torchvision.ops.boxes`` and ``torchvision.models.detection._utils`` (same names,
same argument order, same results; tests/detection/test_boxes.py proves it).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

FORMATS = ("xyxy", "xywh", "cxcywh")


def _check_boxes(name: str, boxes: object, *, ndim: int | None = None) -> Tensor:
    if not isinstance(boxes, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() == 0 or boxes.shape[-1] != 4 or (ndim is not None and boxes.dim() != ndim):
        want = "(N, 4)" if ndim == 2 else "(..., 4)"
        raise ShapeError(f"{name} must have shape {want}, got {tuple(boxes.shape)}")
    return boxes


def _check_fmt(name: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ArgumentError(f"{name} must be one of {FORMATS}, got {fmt!r}")
    return fmt


def _upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 and small ints -> int32, so products do not overflow."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


# ----------------------------------------------------------------------------- formats, areas


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert ``(..., 4)`` boxes between ``xyxy``, ``xywh`` and ``cxcywh``."""
    _check_boxes("boxes", boxes)
    _check_fmt("in_fmt", in_fmt)
    _check_fmt("out_fmt", out_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":  # to xyxy first
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area of each ``(..., 4)`` box: ``(x2 - x1) * (y2 - y1)`` or ``w * h``."""
    _check_boxes("boxes", boxes)
    _check_fmt("fmt", fmt)
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def _corners(boxes: Tensor, fmt: str) -> tuple[Tensor, Tensor]:
    """Top-left and bottom-right corners ``(..., 2)`` each, without rounding xyxy boxes."""
    if fmt == "xyxy":
        return boxes[..., :2], boxes[..., 2:]
    if fmt == "xywh":
        return boxes[..., :2], boxes[..., :2] + boxes[..., 2:]
    return boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2


def _inter_union(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas, ``(..., N, M)`` each."""
    area1, area2 = box_area(boxes1, fmt), box_area(boxes2, fmt)
    lt1, rb1 = _corners(boxes1, fmt)
    lt2, rb2 = _corners(boxes2, fmt)
    lt = torch.max(lt1[..., :, None, :], lt2[..., None, :, :])
    rb = torch.min(rb1[..., :, None, :], rb2[..., None, :, :])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area1[..., :, None] + area2[..., None, :] - inter


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Pairwise IoU ``|a ∩ b| / |a ∪ b|`` of ``(..., N, 4)`` and ``(..., M, 4)``: ``(..., N, M)``.

    Two zero-area boxes give 0/0 = NaN, as in torchvision.
    """
    _check_boxes("boxes1", boxes1)
    _check_boxes("boxes2", boxes2)
    _check_fmt("fmt", fmt)
    inter, union = _inter_union(boxes1, boxes2, fmt)
    return inter / union


def _enclosing(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Width and height ``(..., N, M, 2)`` of the smallest box enclosing each pair."""
    lt = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    return _upcast(rb - lt).clamp(min=0)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU ``IoU - (|C| - |a ∪ b|) / |C|`` with C the enclosing box; xyxy, ``(..., N, M)``."""
    _check_boxes("boxes1", boxes1)
    _check_boxes("boxes2", boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    wh = _enclosing(boxes1, boxes2)
    area_c = wh[..., 0] * wh[..., 1]
    return inter / union - (area_c - union) / area_c


def _diou_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    iou = box_iou(boxes1, boxes2)
    wh = _enclosing(boxes1, boxes2)
    diagonal2 = wh[..., 0] ** 2 + wh[..., 1] ** 2 + eps
    cx1, cy1 = (boxes1[..., 0] + boxes1[..., 2]) / 2, (boxes1[..., 1] + boxes1[..., 3]) / 2
    cx2, cy2 = (boxes2[..., 0] + boxes2[..., 2]) / 2, (boxes2[..., 1] + boxes2[..., 3]) / 2
    centres2 = (_upcast(cx1[..., :, None] - cx2[..., None, :]) ** 2
                + _upcast(cy1[..., :, None] - cy2[..., None, :]) ** 2)
    return iou - centres2 / diagonal2, iou


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """DIoU ``IoU - ρ² / c²``: squared centre distance over the enclosing box's squared diagonal."""
    _check_boxes("boxes1", boxes1)
    _check_boxes("boxes2", boxes2)
    return _diou_iou(_upcast(boxes1), _upcast(boxes2), eps)[0]


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """CIoU ``DIoU - α v``, ``v = 4/π² (atan(w2/h2) - atan(w1/h1))²``, ``α = v / (1 - IoU + v)``.

    ``α`` is treated as a constant (no gradient), as in the paper and torchvision.
    """
    _check_boxes("boxes1", boxes1)
    _check_boxes("boxes2", boxes2)
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    diou, iou = _diou_iou(boxes1, boxes2, eps)
    w1 = boxes1[..., :, None, 2] - boxes1[..., :, None, 0]
    h1 = boxes1[..., :, None, 3] - boxes1[..., :, None, 1]
    w2 = boxes2[..., None, :, 2] - boxes2[..., None, :, 0]
    h2 = boxes2[..., None, :, 3] - boxes2[..., None, :, 1]
    v = (4 / math.pi**2) * (torch.atan(w1 / h1) - torch.atan(w2 / h2)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes into an image of ``size = (height, width)``."""
    _check_boxes("boxes", boxes)
    if len(size) != 2:
        raise ArgumentError(f"size must be (height, width), got {size!r}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the boxes whose width and height are both at least ``min_size``."""
    _check_boxes("boxes", boxes)
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return torch.where((w >= min_size) & (h >= min_size))[0]


# ----------------------------------------------------------------------------- NMS


def _over(a: Tensor, b: Tensor, thr: float) -> Tensor:
    """``IoU > thr`` as a float 0/1 matrix ``(n, m)`` between the boxes of ``a`` ``(5, n)`` and
    ``b`` ``(5, m)``, given as rows ``x1, y1, -x2, -y2, area``.

    One ``maximum`` over the four rows gives ``max(x1)``, ``max(y1)``, ``-min(x2)``,
    ``-min(y2)`` at once (negation is exact), so ``max(x1) - min(x2) = -w`` and the
    intersection is the product of the two clamped negatives: torchvision's float operations
    (``w = max(0, min(x2) - max(x1))``, ``inter / (area_a + area_b - inter)``), in the boxes'
    dtype, in 8 tensor operations. Everything stays float (comparisons write 0/1 floats):
    boolean intermediates are several times slower on the CPU."""
    m = torch.maximum(a[:4, :, None], b[:4, None])
    neg = torch.add(m[:2], m[2:]).clamp_(max=0)  # (-w, -h)
    inter = neg[0].mul_(neg[1])
    return inter.div_((a[4, :, None] + b[4]).sub_(inter)).gt_(thr)


@functools.lru_cache(maxsize=64)
def _threshold(iou_threshold: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number ``u <= iou_threshold``: ``x > u`` iff ``x > iou_threshold``
    for every ``x`` of that dtype, so the comparison runs in the boxes' dtype yet means the
    float64 comparison of torchvision's kernel (a Python float, exact in ``dtype``)."""
    u = torch.tensor(iou_threshold, dtype=dtype)
    if float(u) > iou_threshold:
        u = torch.nextafter(u, torch.tensor(-math.inf, dtype=dtype))
    return float(u)


def _greedy(lower: Tensor) -> Tensor:
    """Solve ``keep[i] = ~any_k<i(keep[k] & over[i, k])`` for a round's ``IoU > threshold``
    given as a float 0/1 matrix with only the pairs ``k < i`` (the strict lower triangle)
    set; returns keep as a float 0/1 vector.

    Iterating from ``keep = all`` fixes at least one more leading position per step; a step
    that changes nothing has reached the unique solution (usually after 1-4 steps). Each step
    counts the kept boxes suppressing each box, a matrix-vector product (exact in float).
    """
    keep = lower.sum(1).eq_(0)  # the first step, from keep = all
    while True:
        new = torch.mv(lower, keep).eq_(0)
        if torch.equal(new, keep):
            return new
        keep = new


def _nms_sorted(coords: Tensor, index: Tensor, iou_threshold: float, block: int) -> Tensor:
    """Indices kept by the greedy NMS, in order; ``coords`` ``(5, N)`` rows
    ``x1, y1, -x2, -y2, area`` sorted by decreasing score, ``index`` ``(N,)`` the boxes'
    indices.

    Rounds: the greedy rule among the first boxes left (one IoU matrix; ``block / 4`` boxes
    in the first round, ``block`` afterwards), then those kept drop every later box they
    overlap (one kept x rest matrix); the survivors are the next round's problem, which the
    kept boxes no longer touch. Where the previous round kept most of its boxes, the round's
    matrix and the rest's are one (left x round) matrix (fewer operations, little extra
    arithmetic). At most 5/4 of a round's size left, or at most ``block / 2`` boxes in all:
    one round, a single dense matrix.
    """
    thr = _threshold(iou_threshold, coords.dtype)
    parts = []
    size = max(1, block // 4)
    dense = False
    while True:
        m = coords.shape[1]
        if 4 * m <= 5 * size or (not parts and 2 * m <= block):  # the last round
            keep = _greedy(_over(coords, coords, thr).tril_(-1))
            parts.append(index.index_select(0, keep.nonzero()[:, 0]))
            break
        head = coords[:, :size]
        if dense:  # most boxes survive: one (m, size) matrix for the round and the rest
            over = _over(coords, head, thr)
            keep = _greedy(over[:size].tril(-1))
            alive = torch.mv(over[size:], keep).eq_(0).nonzero()[:, 0]
            kept = keep.nonzero()[:, 0]
        else:  # most are suppressed: the rest only against the few kept
            kept = _greedy(_over(head, head, thr).tril_(-1)).nonzero()[:, 0]
            rest = _over(head.index_select(1, kept), coords[:, size:], thr)
            alive = rest.sum(0).eq_(0).nonzero()[:, 0]
        parts.append(index[:size].index_select(0, kept))
        if alive.numel() == 0:
            break
        dense = 2 * len(kept) > size
        coords = coords[:, size:].index_select(1, alive)
        index = index[size:].index_select(0, alive)
        size = block
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _sorted_coords(boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """``coords`` ``(5, N)`` (rows ``x1, y1, -x2, -y2, area``) and the indices of the boxes
    sorted by decreasing score, ties in index order (a stable sort)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if not boxes.is_floating_point():  # integer coordinates: float64 holds them exactly
        boxes = boxes.double()
    elif boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    coords = boxes.new_empty(5, boxes.shape[0])
    torch.index_select(boxes.t(), 1, order, out=coords[:4])
    x1, y1, x2, y2, area = coords.unbind()
    torch.mul(x2 - x1, y2 - y1, out=area)  # (x2 - x1) * (y2 - y1), as torchvision
    coords[2:4].neg_()
    return coords, order


def _check_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    _check_boxes("boxes", boxes, ndim=2)
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ShapeError(f"scores must have shape ({boxes.shape[0]},), got {shape}")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)):
        raise ArgumentTypeError(f"iou_threshold must be a float, got {iou_threshold!r}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, *, block: int = 256) -> Tensor:
    """Greedy non-maximum suppression; int64 indices of the kept boxes by decreasing score.

    A box is dropped when its IoU with a higher-scoring kept box is ``> iou_threshold``
    (strictly). Equal scores keep index order. ``boxes`` ``(N, 4)`` xyxy, ``scores`` ``(N,)``.
    ``block`` sets the round size (1/4 of it in the first round; up to ``block / 2`` boxes
    are one round; at most ``block`` x the boxes left IoU entries at a time); it does not
    change the result.
    """
    _check_nms(boxes, scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if boxes.requires_grad or scores.requires_grad:  # (out= takes no autograd inputs)
        boxes, scores = boxes.detach(), scores.detach()
    coords, order = _sorted_coords(boxes, scores)
    return _nms_sorted(coords, order, float(iou_threshold), block)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs`` (boxes of different categories never suppress).

    Like torchvision: up to 4,000 coordinates on the CPU (100,000 on a GPU) the boxes of each
    category are shifted apart by ``idx * (max + 1)`` and one NMS runs; above that each category
    is suppressed on its own coordinates (one NMS per category, as there). The two
    can differ by rounding of the shifted coordinates, so we follow the same switch; in the
    second branch torchvision orders the kept boxes by an unstable sort of their scores, so
    equal scores come out in that sort's order, and ours uses the same call.
    """
    _check_nms(boxes, scores, iou_threshold)
    if not isinstance(idxs, Tensor) or idxs.shape != scores.shape:
        shape = tuple(idxs.shape) if isinstance(idxs, Tensor) else type(idxs).__name__
        raise ShapeError(f"idxs must have shape ({boxes.shape[0]},), got {shape}")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes, scores = boxes.detach(), scores.detach()
    if boxes.numel() <= (4000 if boxes.device.type == "cpu" else 100_000):
        offsets = idxs.to(boxes) * (boxes.max() + 1)  # in the boxes' dtype, as torchvision
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep = []
    for category in torch.unique(idxs):  # one NMS per category: no work across categories
        where = torch.where(idxs == category)[0]
        keep.append(where[nms(boxes[where], scores[where], iou_threshold)])
    kept = torch.sort(torch.cat(keep)).values  # then by score with torch's default sort, as
    return kept[scores[kept].sort(descending=True)[1]]  # torchvision does (ties: its order)


# ----------------------------------------------------------------------------- training targets


class BoxCoder:
    """R-CNN box coding: ``encode`` boxes against proposals into deltas, ``decode`` back.

    ``weights = (wx, wy, ww, wh)`` scale the deltas (Faster R-CNN's heads use (10, 10, 5, 5));
    decoded log-sizes are clamped at ``bbox_xform_clip`` so ``exp`` cannot overflow.
    """

    def __init__(self, weights: tuple[float, float, float, float],
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        if len(weights) != 4:
            raise ArgumentError(f"weights must have 4 values (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        """Per-image deltas of ``reference_boxes`` (targets) w.r.t. ``proposals``."""
        if len(reference_boxes) != len(proposals):
            raise ArgumentError(f"reference_boxes has {len(reference_boxes)} images, "
                                f"proposals has {len(proposals)}")
        sizes = [len(b) for b in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes), torch.cat(proposals))
        return targets.split(sizes, 0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas ``(N, 4)`` of ``reference_boxes`` ``(N, 4)`` w.r.t. ``proposals`` ``(N, 4)``."""
        _check_boxes("reference_boxes", reference_boxes, ndim=2)
        _check_boxes("proposals", proposals, ndim=2)
        wx, wy, ww, wh = torch.as_tensor(self.weights, dtype=reference_boxes.dtype,
                                         device=reference_boxes.device)
        pw = proposals[:, 2:3] - proposals[:, 0:1]
        ph = proposals[:, 3:4] - proposals[:, 1:2]
        px, py = proposals[:, 0:1] + 0.5 * pw, proposals[:, 1:2] + 0.5 * ph
        gw = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
        gh = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
        gx, gy = reference_boxes[:, 0:1] + 0.5 * gw, reference_boxes[:, 1:2] + 0.5 * gh
        return torch.cat((wx * (gx - px) / pw, wy * (gy - py) / ph,
                          ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=1)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        """Boxes ``(N, K, 4)`` from deltas ``(N, 4K)`` and per-image reference boxes (N total)."""
        if not isinstance(boxes, (list, tuple)):
            raise ArgumentTypeError(f"boxes must be a list of (L, 4) tensors, got "
                                    f"{type(boxes).__name__}")
        total = sum(b.shape[0] for b in boxes)
        if total > 0:
            rel_codes = rel_codes.reshape(total, -1)
        pred = self.decode_single(rel_codes, torch.cat(boxes, 0))
        return pred.reshape(total, -1, 4) if total > 0 else pred

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``(N, 4K)`` from deltas ``(N, 4K)`` w.r.t. reference ``boxes`` ``(N, 4)``."""
        boxes = boxes.to(rel_codes.dtype)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
        wx, wy, ww, wh = self.weights
        dx, dy = rel_codes[:, 0::4] / wx, rel_codes[:, 1::4] / wy
        dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pcx, pcy = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
        half_w = 0.5 * (torch.exp(dw) * w[:, None])
        half_h = 0.5 * (torch.exp(dh) * h[:, None])
        return torch.stack((pcx - half_w, pcy - half_h, pcx + half_w, pcy + half_h),
                           dim=2).flatten(1)


class Matcher:
    """Assign each prediction its best ground truth by a ``(M gt, N pred)`` quality matrix.

    Returns int64 ``(N,)``: the gt index where the best quality is ``>= high_threshold``,
    ``BETWEEN_THRESHOLDS`` (-2) in ``[low, high)``, ``BELOW_LOW_THRESHOLD`` (-1) below ``low``.
    With ``allow_low_quality_matches`` every prediction tied for a gt's highest quality gets
    its own best gt back, even when that quality is low (Faster R-CNN's RPN rule).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float,
                 allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ArgumentError(f"low_threshold ({low_threshold}) must be <= high_threshold "
                                f"({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        if match_quality_matrix.dim() != 2:
            raise ShapeError(f"match_quality_matrix must be (M, N), got "
                             f"{tuple(match_quality_matrix.shape)}")
        if match_quality_matrix.numel() == 0:
            which = "ground-truth boxes" if match_quality_matrix.shape[0] == 0 else "predictions"
            raise ShapeError(f"match_quality_matrix has no {which}: shape "
                             f"{tuple(match_quality_matrix.shape)}")
        values, matches = match_quality_matrix.max(dim=0)
        best = matches.clone() if self.allow_low_quality_matches else None
        matches[values < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[(values >= self.low_threshold) & (values < self.high_threshold)] = (
            self.BETWEEN_THRESHOLDS)
        if best is not None:
            highest = match_quality_matrix.max(dim=1).values
            preds = torch.where(match_quality_matrix == highest[:, None])[1]
            matches[preds] = best[preds]
        return matches


class BalancedPositiveNegativeSampler:
    """Sample ``batch_size_per_image`` elements per image, at most ``positive_fraction`` positive.

    ``matched_idxs`` per image: ``>= 1`` positive, ``0`` negative, ``-1`` ignored. Returns two
    lists of uint8 masks (positives, negatives). Draws come from ``generator`` (or the global
    RNG when ``None``, then the masks equal torchvision's for the same seed).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float,
                 generator: torch.Generator | None = None) -> None:
        if not 0.0 <= positive_fraction <= 1.0:
            raise ArgumentError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.generator = generator

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        pos_masks, neg_masks = [], []
        for m in matched_idxs:
            positive = torch.where(m >= 1)[0]
            negative = torch.where(m == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), device=m.device,
                                   generator=self.generator)[:num_pos]
            perm2 = torch.randperm(negative.numel(), device=m.device,
                                   generator=self.generator)[:num_neg]
            pos = torch.zeros_like(m, dtype=torch.uint8)
            neg = torch.zeros_like(m, dtype=torch.uint8)
            pos[positive[perm1]] = 1
            neg[negative[perm2]] = 1
            pos_masks.append(pos)
            neg_masks.append(neg)
        return pos_masks, neg_masks
