"""Mean average precision (note F4): PASCAL VOC's two AP definitions and COCO's AP@[.5:.95].

The idea
--------
A detector outputs scored boxes. Sorted by score, each detection is a true positive (it
matches a ground-truth object not matched before, at IoU above a threshold) or a false
positive. After the first n detections, recall = TP_n / #objects and precision = TP_n / n;
average precision (AP) summarises the precision-recall curve of one class in one number,
and mAP is its mean over classes. The definitions differ in how they read the curve:

- VOC2007, 11-point: ``AP = 1/11 sum_{t in 0, .1, ..., 1} max_{r >= t} p(r)``;
- VOC2010+, all-point: the exact area under the monotone envelope ``p_env(r) = max_{r' >= r}
  p(r')``: ``AP = sum_i (r_{i+1} - r_i) p_env(r_{i+1})`` over the recall steps;
- COCO: the envelope read at 101 recall points 0, .01, ..., 1 (the first detection whose recall
  reaches each point; 0 past the last recall), averaged over 10 IoU thresholds .5:.05:.95,
  over classes, per area range (small < 32^2 <= medium <= 96^2 < large, by the annotation's
  ``area`` field, bounds inclusive) and per limit on detections per image (1, 10, 100).

Matching. VOC (the devkit's ``VOCevaldet`` / py-faster-rcnn's ``voc_eval``): detections in
score order; each is tried against the ground truth of its image and class with the largest
IoU only; IoU > threshold (strictly) and that object unmatched: TP; matched already: FP;
"difficult": neither; IoU below: FP. Boxes are pixel-inclusive (``+1`` in widths) as in the
devkit unless ``pixel_inclusive=False``. COCO (``pycocotools.cocoeval.COCOeval``): per image
and class, detections in score order (stable) each take the unmatched object of largest IoU >=
threshold (ties: the later one), preferring regular objects over ignored ones; ignored are
crowd regions (IoU = intersection / detection area; they absorb any number of detections) and
objects outside the area range. A detection matched to an ignored object, or unmatched and
outside the area range, counts neither way. Images without ground truth still count their
detections as false positives; a class without ground truth is -1 and left out of the means.

Paper/code: Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010;
Lin et al., "Microsoft COCO", ECCV 2014; pycocotools' ``cocoeval.py`` (whose every rule this
file follows; ``coco_evaluate`` equals it, tested to 1e-12, in tests/detection/test_map.py).

Vectorised with numpy: the IoUs of every (detection, object) pair of the same image and class
in one call; the greedy matching of all images, classes, 4 area ranges and 10 IoU thresholds
at once, one step per rank of detection within its image and class (only detections with an
IoU >= .5 candidate take part: the others match nothing at any threshold); the accumulation of
all classes at once, visiting only the true positives. Those two pieces live in
``coco_matching.py`` (``match``, ``accumulate``, ``paired_iou``); this file holds the
definitions, VOC's evaluation and the COCO pipeline around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperlab.detection.coco import (
    COCODetections,
    COCOGroundTruth,
    load_detections,
    load_ground_truth,
)
from paperlab.detection.coco_matching import accumulate, match, paired_iou
from paperlab.errors import ArgumentError, ShapeError
from paperlab.registry import export_metric

# COCOeval's Params.setDetParams, written the same way (linspace: arange drifts).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0**2, 1e5**2), (0.0**2, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


# ----------------------------------------------------------------------------- VOC
def voc_ap(recall: Any, precision: Any, use_07_metric: bool = False) -> float:
    """AP of one class from its PR curve (recall, precision: (n,) in detection order).

    ``use_07_metric``: VOC2007's 11-point average of max precision at recall >= t, t = 0, .1,
    ..., 1 (the devkit's ``0:0.1:1``); otherwise VOC2010+'s area under the monotone envelope.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if rec.ndim != 1 or rec.shape != prec.shape:
        raise ShapeError(f"recall and precision must be 1-D of one length, got "
                         f"{rec.shape} and {prec.shape}")
    if not (np.isfinite(rec).all() and np.isfinite(prec).all()):
        raise ArgumentError("recall and precision must be finite")
    if use_07_metric:
        points = np.arange(0.0, 1.1, 0.1)  # the devkit's thresholds, 0.30000000000000004 included
        reach = rec[None, :] >= points[:, None]
        best = np.where(reach, prec[None, :], -np.inf).max(axis=1, initial=-np.inf)
        return float(np.where(np.isfinite(best), best, 0.0).sum() / 11.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def coco_ap(recall: Any, precision: Any) -> float:
    """COCO's 101-point AP of one PR curve (recall, precision: (n,) in detection order): the
    mean over r = 0, .01, ..., 1 of the envelope max_{i >= i_r} p_i at the first detection
    i_r whose recall reaches r (0 where the recall never does), as ``COCOeval.accumulate``."""
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if rec.ndim != 1 or rec.shape != prec.shape:
        raise ShapeError(f"recall and precision must be 1-D of one length, got "
                         f"{rec.shape} and {prec.shape}")
    env = np.append(np.maximum.accumulate(prec[::-1])[::-1], 0.0)
    return float(np.mean(env[np.searchsorted(rec, RECALL_THRESHOLDS, side="left")]))


@dataclass
class VOCResult:
    """Per-class AP (NaN for a class without non-difficult ground truth), their mean over
    the other classes, and each class's PR curve (recall, precision in detection order)."""

    map: float
    ap: dict[int, float]
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = field(repr=False)


def _as_array(x: Any, shape_tail: tuple[int, ...], name: str, dtype: Any) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=dtype)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ShapeError(f"{name} must have shape (n, {', '.join(map(str, shape_tail))})"
                         f"[:1+{len(shape_tail)}], got {arr.shape}")
    return arr


def _voc_iou(det: np.ndarray, gt: np.ndarray, plus: float) -> np.ndarray:
    """IoU of pairs ``det[i], gt[i]`` (xyxy), py-faster-rcnn's ``voc_eval`` arithmetic
    (``plus`` = 1: pixel-inclusive widths)."""
    iw = np.maximum(np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]) + plus, 0.0)
    ih = np.maximum(np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]) + plus, 0.0)
    inter = iw * ih
    union = ((det[:, 2] - det[:, 0] + plus) * (det[:, 3] - det[:, 1] + plus)
             + (gt[:, 2] - gt[:, 0] + plus) * (gt[:, 3] - gt[:, 1] + plus) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _voc_stack(images: Sequence[Mapping[str, Any]], name: str, keys: tuple[str, str],
               optional: str | None = None) -> list[np.ndarray]:
    """Concatenate per-image ``boxes`` (n, 4) and the (n,) fields ``keys`` (and ``optional``,
    zeros where absent), plus each row's image index."""
    fields = (*keys, optional) if optional else keys
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fields) + 2)]
    for i, m in enumerate(images):
        for key in ("boxes", *keys):
            if key not in m:
                raise ArgumentError(f"{name}[{i}] is missing {key!r}")
        boxes = _as_array(m["boxes"], (4,), f"{name}[{i}]['boxes']", np.float64)
        cols = [_as_array(m.get(k, np.zeros(len(boxes))), (), f"{name}[{i}][{k!r}]",
                          np.float64) for k in fields]
        if any(len(c) != len(boxes) for c in cols):
            raise ShapeError(f"{name}[{i}]: boxes, {', '.join(fields)} differ in length "
                             f"({len(boxes)}, {', '.join(str(len(c)) for c in cols)})")
        for part, x in zip(parts, (boxes, *cols, np.full(len(boxes), i))):
            part.append(x)
    if not parts[0]:
        return [np.zeros((0, 4))] + [np.zeros(0) for _ in range(len(fields) + 1)]
    return [np.concatenate(p) for p in parts]


def voc_evaluate(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_inclusive: bool = True,
) -> VOCResult:
    """PASCAL VOC mAP with the devkit's matching rule (see the module docstring).

    ``ground_truth[i]``: image i's ``{"boxes": (G, 4) xyxy, "labels": (G,), "difficult":
    (G,) bool, optional}``; ``detections[i]``: ``{"boxes": (D, 4), "scores": (D,), "labels":
    (D,)}`` (torchmetrics' layout; numpy arrays, lists or CPU tensors). Detections are ranked
    by score over all images with a stable sort (ties: image order, then input order, like
    MATLAB's ``sort`` in the devkit; py-faster-rcnn's quicksort leaves ties unordered). IoUs
    are computed only between boxes of the same image and class.
    """
    if len(ground_truth) != len(detections):
        raise ShapeError(f"ground_truth and detections must list the same images, got "
                         f"{len(ground_truth)} and {len(detections)}")
    gb, gl, gd, gi = _voc_stack(ground_truth, "ground_truth", ("labels",), "difficult")
    db, dl, ds, di = _voc_stack(detections, "detections", ("labels", "scores"))
    gl, gd, dl = gl.astype(np.int64), gd.astype(bool), dl.astype(np.int64)
    labels = np.union1d(gl, dl)
    n_img = len(ground_truth)
    g_key = np.searchsorted(labels, gl) * n_img + gi.astype(np.int64)
    g_ord = np.argsort(g_key, kind="stable")
    g_key, gb, gd, gl = g_key[g_ord], gb[g_ord], gd[g_ord], gl[g_ord]
    d_ord = np.lexsort((-ds, dl))  # by class, then score (stable)
    db, dl, di = db[d_ord], dl[d_ord], di[d_ord].astype(np.int64)
    d_key = np.searchsorted(labels, dl) * n_img + di
    # every (detection, object) pair of the same image and class
    start = np.searchsorted(g_key, d_key, side="left")
    count = np.searchsorted(g_key, d_key, side="right") - start
    pair_d = np.repeat(np.arange(len(d_key)), count)
    pair_g = np.repeat(start, count) + np.arange(len(pair_d)) - np.repeat(
        np.cumsum(count) - count, count)
    plus = 1.0 if pixel_inclusive else 0.0
    iou = _voc_iou(db[pair_d], gb[pair_g], plus)
    # each detection's best object: the largest IoU, the first such (np.argmax)
    ovmax = np.full(len(d_key), -np.inf)
    np.maximum.at(ovmax, pair_d, iou)
    jmax = np.full(len(d_key), len(g_key))
    best = iou == ovmax[pair_d]
    np.minimum.at(jmax, pair_d[best], pair_g[best])
    hit = ovmax > iou_threshold
    difficult = hit & np.append(gd, False)[jmax]
    first = np.zeros(len(d_key), bool)  # the first detection (by score) to hit each object
    cand = np.flatnonzero(hit & ~difficult)
    _, first_pos = np.unique(jmax[cand], return_index=True)
    first[cand[first_pos]] = True
    false_pos = ~hit | (hit & ~difficult & ~first)
    ap: dict[int, float] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for label in labels.tolist():
        npos = int((~gd[gl == label]).sum())
        sel = dl == label
        tp = np.cumsum(first[sel]).astype(np.float64)
        fp = np.cumsum(false_pos[sel]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        curves[label] = (rec, prec)
        ap[label] = voc_ap(rec, prec, use_07_metric) if npos > 0 else float("nan")
    valid = [v for v in ap.values() if not np.isnan(v)]
    return VOCResult(float(np.mean(valid)) if valid else float("nan"), ap, curves)


# ----------------------------------------------------------------------------- COCO
@dataclass
class COCOResult:
    """COCOeval's output. ``stats`` (12,): AP, AP50, AP75, AP small/medium/large, AR@1/10/100,
    AR small/medium/large (``STAT_NAMES``), -1 where nothing was measurable; ``precision``
    (T=10, R=101, K, A=4, M=3) and ``recall`` (T, K, A, M), -1 for a class without ground
    truth in that area range; ``per_category``: category id -> AP@[.5:.95] (area all, 100
    detections), -1 without ground truth."""

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    per_category: dict[int, float]
    category_ids: np.ndarray
    iou_thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    recall_thresholds: np.ndarray = field(default_factory=lambda: RECALL_THRESHOLDS.copy())

    def as_dict(self) -> dict[str, float]:
        """The 12 numbers by name."""
        return {n: float(v) for n, v in zip(STAT_NAMES, self.stats)}


def coco_box_iou(detections: Any, ground_truth: Any, iscrowd: Any) -> np.ndarray:
    """COCO's box IoU, (D, 4) x (G, 4) ``[x, y, w, h]`` -> (D, G) float64: for a crowd region
    (``iscrowd[g]``) the union is the detection's area alone (the part of the detection that
    lies in the crowd). Not ``boxes.box_iou``: this rule is COCO's own."""
    d = _as_array(detections, (4,), "detections", np.float64)
    g = _as_array(ground_truth, (4,), "ground_truth", np.float64)
    crowd = _as_array(iscrowd, (), "iscrowd", bool)
    if len(crowd) != len(g):
        raise ShapeError(f"iscrowd must have one flag per ground truth box ({len(g)}), got "
                         f"{len(crowd)}")
    dd, gg = np.broadcast_arrays(d[:, None, :], g[None, :, :])
    return paired_iou(dd.reshape(-1, 4), gg.reshape(-1, 4),
                       np.broadcast_to(crowd, dd.shape[:2]).reshape(-1)).reshape(len(d), len(g))


@export_metric("coco-map", note="F4", reference="pycocotools COCOeval")
def coco_evaluate(
    ground_truth: str | Path | Mapping[str, Any] | COCOGroundTruth,
    detections: str | Path | Sequence[Mapping[str, Any]] | COCODetections,
    iou_type: str = "bbox",
) -> COCOResult:
    """COCO box AP/AR, equal to ``pycocotools.cocoeval.COCOeval(gt, dt, "bbox")``'s
    ``evaluate(); accumulate(); summarize()`` (see the module docstring for the rules).

    ``ground_truth``: a COCO JSON file's path or its dict; ``detections``: a results file's
    path or its list (``coco.py`` validates both). Only ``iou_type="bbox"`` is implemented.
    """
    if iou_type != "bbox":
        raise ArgumentError(f"iou_type must be 'bbox' (segm and keypoints are not "
                            f"implemented), got {iou_type!r}")
    gt = load_ground_truth(ground_truth)
    dt = load_detections(detections, gt)
    return _evaluate(gt, dt)


def _evaluate(gt: COCOGroundTruth, dt: COCODetections) -> COCOResult:
    n_cat = len(gt.category_ids)
    T, R, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETS)
    lo = np.array([a[0] for a in AREA_RANGES])
    hi = np.array([a[1] for a in AREA_RANGES])
    # ground truth grouped by (image, category), file order inside a group
    g_key = gt.image * n_cat + gt.category
    g_ord = np.argsort(g_key, kind="stable")
    g_key = g_key[g_ord]
    g_box, g_crowd = gt.boxes[g_ord], gt.iscrowd[g_ord]
    g_ign = g_crowd[None, :] | (gt.area[g_ord][None, :] < lo[:, None]) | (
        gt.area[g_ord][None, :] > hi[:, None])  # (A, G)
    g_id_ok = gt.ids[g_ord] != 0  # pycocotools stores the matched id, 0 meaning "none"
    # detections grouped likewise, by score (stable) inside a group, the best 100 kept
    d_key = dt.image * n_cat + dt.category
    d_ord = np.lexsort((-dt.scores, d_key))
    d_key = d_key[d_ord]
    first = np.searchsorted(d_key, d_key, side="left")
    rank = np.arange(len(d_key)) - first
    keep = rank < MAX_DETS[-1]
    d_ord, d_key, rank = d_ord[keep], d_key[keep], rank[keep]
    d_box = dt.boxes[d_ord]
    d_area = d_box[:, 2] * d_box[:, 3]
    tp_ok, dt_ign = match(d_key, d_box, g_key, g_box, g_crowd, g_ign, g_id_ok, IOU_THRESHOLDS)
    d_out = (d_area[None, :] < lo[:, None]) | (d_area[None, :] > hi[:, None])  # (A, D)
    dt_ign |= ~tp_ok & d_out[:, None, :]
    tps = tp_ok & ~dt_ign  # (A, T, D); the false positives are the rest, less dt_ign
    # accumulate: per category, detections of all images by score (stable: image, then rank)
    d_cat, d_img = dt.category[d_ord], dt.image[d_ord]
    order = np.lexsort((d_ord, d_img, -dt.scores[d_ord], d_cat))
    npig = np.stack([np.bincount(gt.category[g_ord], weights=~g_ign[a], minlength=n_cat)
                     for a in range(A)])  # (A, K): objects that count
    precision = -np.ones((T, R, n_cat, A, M))
    recall = -np.ones((T, n_cat, A, M))
    for m, max_det in enumerate(MAX_DETS):
        sel = order[rank[order] < max_det]
        q, rc_last = accumulate(tps[:, :, sel], dt_ign[:, :, sel], d_cat[sel], npig,
                                RECALL_THRESHOLDS)
        has = (npig > 0).T  # (K, A)
        precision[..., m] = np.where(has[None, None], q.transpose(1, 3, 2, 0), -1.0)
        recall[..., m] = np.where(has[None], rc_last.transpose(1, 2, 0), -1.0)
    stats = _summarize(precision, recall)
    per_category = {}
    for k, cid in enumerate(gt.category_ids.tolist()):
        s = precision[:, :, k, 0, -1]
        per_category[cid] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
    return COCOResult(stats, precision, recall, per_category, gt.category_ids.copy())


def _summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """COCOeval.summarize's 12 numbers: means over the entries > -1, else -1."""

    def mean(s: np.ndarray) -> float:
        return float(np.mean(s[s > -1])) if (s > -1).any() else -1.0

    t50 = np.where(IOU_THRESHOLDS == 0.5)[0]
    t75 = np.where(IOU_THRESHOLDS == 0.75)[0]
    m100 = MAX_DETS.index(100)
    out = [mean(precision[:, :, :, 0, m100]), mean(precision[t50][:, :, :, 0, m100]),
           mean(precision[t75][:, :, :, 0, m100])]
    out += [mean(precision[:, :, :, a, m100]) for a in (1, 2, 3)]
    out += [mean(recall[:, :, 0, m]) for m in range(len(MAX_DETS))]
    out += [mean(recall[:, :, a, m100]) for a in (1, 2, 3)]
    return np.array(out)
