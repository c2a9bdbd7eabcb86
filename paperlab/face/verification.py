"""Face verification: the LFW protocol (10-fold accuracy, VAL@FAR) and ROC / AUC / TAR@FAR.

The question
------------
Verification asks "are these two faces the same person?" for pairs of identities the model
never saw in training (open set). Each face becomes an L2-normalised embedding; a pair's
distance is the squared L2 distance ||e1 - e2||^2 = 2 - 2 cos in [0, 4]; "same" is predicted
when the distance is below a threshold.

The LFW protocol, as insightface's ``eval/verification.py`` runs it
-------------------------------------------------------------------
- optionally, each image's embedding is the sum of the embeddings of the image and of its
  horizontal flip, normalised after summing (``flipped1`` / ``flipped2``);
- the pairs are cut into 10 folds in order, without shuffling (sklearn's ``KFold(10,
  shuffle=False)``: the first n % 10 folds hold one pair more);
- for each fold, the threshold in 0, 0.01, ..., 3.99 with the best accuracy on the other 9
  folds (the first such, ``np.argmax``) is applied to the held-out fold: the accuracy is the
  mean +- std (numpy's, ddof 0) of the 10 held-out accuracies;
- the ROC (TPR, FPR per threshold) is the mean over the 10 held-out folds;
- VAL@FAR = 1e-3: on the 9 folds, the threshold (grid 0..4 step 0.001) whose FAR is 1e-3, by
  linear interpolation of threshold against FAR, or 0 when no threshold reaches that FAR;
  applied to the held-out fold, VAL = TA / n_same and FAR = FA / n_diff; mean +- std of VAL
  and the mean FAR. insightface interpolates with scipy's ``interp1d(far_train, thresholds,
  kind="slinear")``, which current scipy refuses when two thresholds share a FAR (always: the
  FAR is a step function of the threshold); we interpolate over the distinct FAR values, each
  at its smallest threshold, which is what that call computes wherever it runs.

Score-based metrics (``roc_curve``, ``roc_auc``, ``tar_at_far``): scores where higher means
more alike (cosine similarity, or minus the distance). ``roc_curve`` follows
``sklearn.metrics.roc_curve`` exactly (thresholds at the distinct scores in decreasing order,
a first point (0, 0) at threshold +inf, collinear points dropped unless
``drop_intermediate=False``); ``roc_auc`` is the trapezoidal area under it (equal to
``roc_auc_score``). ``tar_at_far(scores, same, far)`` is the TPR at the largest FPR not above
``far`` on the full ROC: the face-recognition TAR@FAR, read at 1e-1 .. 1e-4.

Shapes: embeddings (P, D) for P pairs (row i of ``embeddings1`` with row i of
``embeddings2``); ``same`` (P,) bool; scores (P,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_metric

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


def _array(name: str, x: Any, *, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy() if x.is_floating_point() else x.cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _same(same: Any, n: int) -> np.ndarray:
    arr = _array("same", same, ndim=1)
    if arr.shape != (n,):
        raise ShapeError(f"same must have shape ({n},) to match the pairs, got {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ArgumentError("same must be booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def _scores(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _array("scores", scores, ndim=1).astype(np.float64)
    y = _same(same, len(s))
    if not np.isfinite(s).all():
        raise ArgumentError("scores must be finite")
    if y.all() or not y.any():
        raise ArgumentError("same must hold both same-identity and different-identity pairs")
    return s, y


# ---------------------------------------------------------------------------------------------
# ROC, AUC and TAR@FAR from scores
# ---------------------------------------------------------------------------------------------


def roc_curve(scores: Any, same: Any, *, drop_intermediate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) like ``sklearn.metrics.roc_curve(same, scores)``: one point per
    distinct score in decreasing order, preceded by (0, 0) at threshold +inf."""
    s, y = _scores(scores, same)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order].astype(np.float64)
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(y)[idx]
    fps = 1 + idx - tps
    thresholds = s[idx]
    if drop_intermediate and len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(scores: Any, same: Any) -> float:
    """Area under the ROC by the trapezoidal rule (``sklearn.metrics.roc_auc_score``)."""
    fpr, tpr, _ = roc_curve(scores, same)
    return float(np.trapezoid(tpr, fpr))


@export_metric("tar-at-far", note="E3")
def tar_at_far(scores: Any, same: Any, far: float) -> float:
    """True accept rate at the largest false accept rate not above ``far``, on the full ROC
    (scores: higher means more alike)."""
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 <= far <= 1:
        raise ArgumentError(f"far must be a number in [0, 1], got {far!r}")
    fpr, tpr, _ = roc_curve(scores, same, drop_intermediate=False)
    ok = fpr <= far
    return float(tpr[ok][fpr[ok] == fpr[ok].max()].max())


# ---------------------------------------------------------------------------------------------
# The LFW protocol on distances
# ---------------------------------------------------------------------------------------------


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (sklearn's ``preprocessing.normalize``: zero rows stay)."""
    norms = np.sqrt((x * x).sum(1, keepdims=True))
    norms[norms == 0] = 1.0
    return x / norms


def pair_distances(embeddings1: Any, embeddings2: Any, *, flipped1: Any = None,
                   flipped2: Any = None) -> np.ndarray:
    """Squared L2 distance of L2-normalised embeddings, (P,); with the flipped images'
    embeddings, each side is normalize(e + e_flip) first (insightface's flip test)."""
    sides = []
    for name, e, f in (("embeddings1", embeddings1, flipped1),
                       ("embeddings2", embeddings2, flipped2)):
        e = _array(name, e, ndim=2).astype(np.float64)
        if f is not None:
            f = _array(name.replace("embeddings", "flipped"), f, ndim=2).astype(np.float64)
            if f.shape != e.shape:
                raise ShapeError(f"{name.replace('embeddings', 'flipped')} must match {name}'s "
                                 f"shape {e.shape}, got {f.shape}")
            e = e + f
        sides.append(l2_normalize(e))
    if sides[0].shape != sides[1].shape:
        raise ShapeError(f"embeddings1 and embeddings2 must have the same shape, got "
                         f"{sides[0].shape} and {sides[1].shape}")
    return ((sides[0] - sides[1]) ** 2).sum(1)


def kfold_indices(n: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of ``KFold(folds, shuffle=False)``: consecutive test blocks,
    the first n % folds of them one longer."""
    n, folds = check_int("n", n, minimum=1), check_int("folds", folds, minimum=2)
    if folds > n:
        raise ArgumentError(f"folds must be <= the number of pairs {n}, got {folds}")
    out, start = [], 0
    for k in range(folds):
        size = n // folds + (1 if k < n % folds else 0)
        test = np.arange(start, start + size)
        out.append((np.r_[np.arange(0, start), np.arange(start + size, n)], test))
        start += size
    return out


def _counts(thresholds: np.ndarray, dist: np.ndarray, same: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """For each threshold t: (#same with dist < t, #different with dist < t), and the totals;
    by binary search in the sorted distances (the same counts as comparing every pair)."""
    d_same, d_diff = np.sort(dist[same]), np.sort(dist[~same])
    return (np.searchsorted(d_same, thresholds, side="left"),
            np.searchsorted(d_diff, thresholds, side="left"), len(d_same), len(d_diff))


def _accuracy(thresholds: np.ndarray, dist: np.ndarray, same: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tpr, fpr, accuracy) per threshold of predicting "same" where dist < threshold
    (a rate with an empty denominator is 0, as insightface's)."""
    tp, fp, n_same, n_diff = _counts(np.atleast_1d(thresholds), dist, same)
    tn = n_diff - fp
    tpr = tp / n_same if n_same else np.zeros(len(tp))
    fpr = fp / n_diff if n_diff else np.zeros(len(fp))
    return tpr, fpr, (tp + tn) / dist.size


def _val_far(thresholds: np.ndarray, dist: np.ndarray, same: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(VAL, FAR) per threshold: true accepts / n_same, false accepts / n_diff."""
    ta, fa, n_same, n_diff = _counts(np.atleast_1d(thresholds), dist, same)
    if n_same == 0 or n_diff == 0:
        raise ArgumentError("every fold needs same and different pairs for VAL@FAR")
    return ta / n_same, fa / n_diff


def _far_threshold(far_train: np.ndarray, thresholds: np.ndarray, far_target: float) -> float:
    """The threshold where the training folds' FAR reaches ``far_target``, by linear
    interpolation of threshold against FAR over the distinct FAR values (each kept at its
    smallest threshold); 0 when no threshold reaches the target (insightface's rule)."""
    if np.max(far_train) < far_target:
        return 0.0
    far_u, first = np.unique(far_train, return_index=True)
    return float(np.interp(far_target, far_u, thresholds[first]))


@dataclass(frozen=True)
class VerificationResult:
    """The LFW protocol's numbers.

    ``accuracy`` / ``accuracy_std``: mean and std of the held-out fold accuracies
    (``fold_accuracies``) at the thresholds picked on the other folds (``best_thresholds``);
    ``tpr`` / ``fpr``: the ROC over ``thresholds`` averaged over folds; ``val`` /
    ``val_std`` / ``far``: VAL@FAR = ``far_target``.
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    best_thresholds: np.ndarray
    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    val: float
    val_std: float
    far: float
    far_target: float


def lfw_protocol(dist: Any, same: Any, *, folds: int = 10, far_target: float = 1e-3,
                 thresholds: Any = None, val_thresholds: Any = None) -> VerificationResult:
    """insightface's ``evaluate``: 10-fold accuracy, mean fold ROC and VAL@FAR on pair
    distances (squared L2 of normalised embeddings, ``pair_distances``)."""
    d = _array("dist", dist, ndim=1).astype(np.float64)
    y = _same(same, len(d))
    thr = ACCURACY_THRESHOLDS if thresholds is None else _array("thresholds", thresholds, ndim=1)
    vthr = VAL_THRESHOLDS if val_thresholds is None else _array("val_thresholds",
                                                                val_thresholds, ndim=1)
    splits = kfold_indices(len(d), folds)
    tprs, fprs = np.zeros((folds, len(thr))), np.zeros((folds, len(thr)))
    acc, best = np.zeros(folds), np.zeros(folds)
    val, far = np.zeros(folds), np.zeros(folds)
    for k, (train, test) in enumerate(splits):
        acc_train = _accuracy(thr, d[train], y[train])[2]
        best[k] = thr[int(np.argmax(acc_train))]
        tprs[k], fprs[k], _ = _accuracy(thr, d[test], y[test])
        acc[k] = _accuracy(best[k], d[test], y[test])[2][0]
        far_train = _val_far(vthr, d[train], y[train])[1]
        v, f = _val_far(_far_threshold(far_train, vthr, far_target), d[test], y[test])
        val[k], far[k] = v[0], f[0]
    return VerificationResult(
        accuracy=float(acc.mean()), accuracy_std=float(acc.std()), fold_accuracies=acc,
        best_thresholds=best, thresholds=np.asarray(thr), tpr=tprs.mean(0), fpr=fprs.mean(0),
        val=float(val.mean()), val_std=float(val.std()), far=float(far.mean()),
        far_target=far_target)


def verify_pairs(embeddings1: Any, embeddings2: Any, same: Any, *, flipped1: Any = None,
                 flipped2: Any = None, folds: int = 10, far_target: float = 1e-3
                 ) -> VerificationResult:
    """The LFW protocol on pairs of embeddings (optionally with the flipped images')."""
    dist = pair_distances(embeddings1, embeddings2, flipped1=flipped1, flipped2=flipped2)
    return lfw_protocol(dist, same, folds=folds, far_target=far_target)
