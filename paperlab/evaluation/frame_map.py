"""Per-frame mAP (note H1): how online action detection is scored, frame by frame.

The idea
--------
An online action detector emits, at every frame t, a score per class for "what is happening
now" (OadTR: the softmax of its current-frame head). The benchmark (THUMOS'14, TVSeries) ranks
*all frames of all test videos* by each class's score and asks how well the frames of that
class come first: per class an average precision over frames, then the mean over the action
classes,

    AP_c = (1 / P_c) sum_{k : frame k is of class c} precision@k,     mAP = mean_c AP_c,

with frames sorted by descending score of class c, P_c the number of class-c frames and
precision@k = TP_k / k. The background class is left out of the mean (it is not an action),
and frames labelled "ambiguous" (THUMOS's class 21) are dropped before ranking, as OadTR's
and TRN's evaluation does. Classes with no positive frame are left out (their AP is 0 / 0).

Calibrated AP (TVSeries; De Geest et al., 2016) corrects for how rare a class is: with
w = #negatives / #positives of the class, calibrated precision weighs the true positives by
w so that a class with few frames is not penalised for the many negatives it competes with,

    cPrec@k = w TP_k / (w TP_k + FP_k),      cAP_c = (1 / P_c) sum_{positives} cPrec@k.

Ties: frames with equal scores are one threshold (all of them enter together), as in
``sklearn.metrics.average_precision_score``; TRN's loop over ``argsort`` differs from this only
where scores tie. Scores should be probabilities (softmax over classes per frame), as OadTR
passes them: the ranking of class c is over its column.

Shapes: ``scores`` (T, K) float (any frames of any videos, concatenated), ``labels`` (T,) int
class ids in 0..K-1. Returns ``{"mAP", "per_class": {c: AP_c}, "cmAP", "per_class_cap"}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError


def _as_array(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be an array, got {type(x).__name__}") from None


def _threshold_counts(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (TP, FP) at each distinct score, highest first (ties enter together)."""
    order = np.argsort(-y_score, kind="mergesort")
    s, y = y_score[order], y_true[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last frame of each tie group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64)


def average_precision(y_true: Any, y_score: Any) -> float:
    """AP of one class: sum over thresholds of (recall step) x precision (sklearn's form,
    ties grouped); nan without a positive frame."""
    y = _as_array("y_true", y_true).astype(bool)
    s = _as_array("y_score", y_score).astype(np.float64)
    pos = y.sum()
    if pos == 0:
        return float("nan")
    tp, fp = _threshold_counts(y, s)
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0.0, tp]) / pos
    return float((recall_step * precision).sum())


def calibrated_average_precision(y_true: Any, y_score: Any) -> float:
    """cAP of one class: precision with true positives weighted by w = #neg / #pos."""
    y = _as_array("y_true", y_true).astype(bool)
    s = _as_array("y_score", y_score).astype(np.float64)
    pos = y.sum()
    if pos == 0:
        return float("nan")
    w = (len(y) - pos) / pos
    tp, fp = _threshold_counts(y, s)
    denom = w * tp + fp
    cprec = np.divide(w * tp, denom, out=np.ones_like(denom), where=denom > 0)
    recall_step = np.diff(np.r_[0.0, tp]) / pos
    return float((recall_step * cprec).sum())


def per_frame_map(
    scores: Any, labels: Any, *, background: int | None = 0, ignore: int | None = None
) -> dict[str, Any]:
    """Per-frame mAP and calibrated mAP over the action classes.

    ``scores`` (T, K) per-frame class scores (probabilities), ``labels`` (T,) ints in
    0..K-1. ``background`` (default 0; None: none) is not scored; frames labelled
    ``ignore`` (the ambiguous class, if any) are dropped and its column not scored. Returns
    ``"mAP"`` and ``"cmAP"`` (means over the scored classes that have positive frames),
    ``"per_class"`` and ``"per_class_cap"`` ({class id: value}), and ``"frames"`` (kept).
    """
    s = _as_array("scores", scores)
    y = _as_array("labels", labels)
    if s.ndim != 2:
        raise ShapeError(f"scores must be (T, K), got shape {s.shape}")
    if y.ndim != 1 or y.shape[0] != s.shape[0]:
        raise ShapeError(f"labels must be ({s.shape[0]},) to match scores {s.shape}, got "
                         f"shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ArgumentTypeError(f"labels must be integer class ids, got dtype {y.dtype}")
    if not np.issubdtype(s.dtype, np.floating) and not np.issubdtype(s.dtype, np.integer):
        raise ArgumentTypeError(f"scores must be numbers, got dtype {s.dtype}")
    if not np.isfinite(s).all():
        raise ArgumentError("scores must be finite (no NaN or inf)")
    k = s.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ArgumentError(f"labels must be in 0..{k - 1}, got values {y.min()}..{y.max()}")
    for name, c in (("background", background), ("ignore", ignore)):
        if c is not None and not (isinstance(c, (int, np.integer)) and 0 <= c < k):
            raise ArgumentError(f"{name} must be a class id in 0..{k - 1} or None, got {c!r}")
    if ignore is not None:
        keep = y != ignore
        s, y = s[keep], y[keep]
    ap: dict[int, float] = {}
    cap: dict[int, float] = {}
    for c in range(k):
        if c in (background, ignore):
            continue
        positive = y == c
        if not positive.any():
            continue
        ap[c] = average_precision(positive, s[:, c])
        cap[c] = calibrated_average_precision(positive, s[:, c])
    nan = float("nan")
    return {
        "mAP": float(np.mean(list(ap.values()))) if ap else nan,
        "per_class": ap,
        "cmAP": float(np.mean(list(cap.values()))) if cap else nan,
        "per_class_cap": cap,
        "frames": int(len(y)),
    }
