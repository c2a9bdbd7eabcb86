"""Per-frame mAP: per-class AP equals sklearn's, cAP equals TRN's loop, background/ambiguous."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

from paperlab.errors import ArgumentError, ShapeError
from paperlab.evaluation.frame_map import (
    average_precision,
    calibrated_average_precision,
    per_frame_map,
)

pytestmark = pytest.mark.note("H1", reference="sklearn average_precision_score; TRN/OadTR loop")


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _data(t=600, k=5, seed=0, signal=1.5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=t)
    logits = rng.normal(size=(t, k))
    logits[np.arange(t), labels] += signal
    return _softmax(logits), labels


def _trn_loop(gt, prob):
    """TRN's / OadTR's frame_level_map_n_cap loop for one class (no ties)."""
    w = np.sum(gt == 0) / np.sum(gt == 1)
    tp, psum, cpsum = 0, 0.0, 0.0
    for k, idx in enumerate(np.argsort(-prob)):
        if gt[idx] == 1:
            tp += 1
            fp = (k + 1) - tp
            psum += tp / (tp + fp)
            cpsum += w * tp / (w * tp + fp)
    return psum / gt.sum(), cpsum / gt.sum()


@pytest.mark.parametrize("rounding", [None, 1])
def test_per_class_ap_equals_sklearn(rounding):
    metrics = require("sklearn.metrics")
    scores, labels = _data()
    if rounding is not None:
        scores = np.round(scores, rounding)  # many ties
    out = per_frame_map(scores, labels)
    assert sorted(out["per_class"]) == [1, 2, 3, 4]
    for c, ap in out["per_class"].items():
        ref = metrics.average_precision_score(labels == c, scores[:, c])
        assert ap == pytest.approx(ref, abs=1e-12)
    assert out["mAP"] == pytest.approx(np.mean(list(out["per_class"].values())))


def test_ap_and_cap_equal_trn_loop_without_ties():
    scores, labels = _data(seed=1)
    out = per_frame_map(scores, labels)
    for c in range(1, 5):
        ap, cap = _trn_loop((labels == c).astype(int), scores[:, c])
        assert out["per_class"][c] == pytest.approx(ap, abs=1e-12)
        assert out["per_class_cap"][c] == pytest.approx(cap, abs=1e-12)


def test_perfect_random_and_calibration():
    rng = np.random.default_rng(2)
    y = np.zeros(1000, dtype=bool)
    y[:50] = True
    assert average_precision(y, y.astype(float) + 0.01 * rng.random(1000)) == 1.0
    random = [average_precision(y, rng.random(1000)) for _ in range(20)]
    assert abs(np.mean(random) - 0.05) < 0.02  # AP of a random ranking ~ prevalence
    crandom = [calibrated_average_precision(y, rng.random(1000)) for _ in range(20)]
    assert abs(np.mean(crandom) - 0.5) < 0.08  # calibrated: as if positives were half


def test_background_and_ambiguous_frames():
    scores, labels = _data(k=4, seed=3)
    amb = 3
    out = per_frame_map(scores, labels, ignore=amb)
    assert sorted(out["per_class"]) == [1, 2] and out["frames"] == int((labels != amb).sum())
    keep = labels != amb
    assert out["per_class"][1] == pytest.approx(average_precision(labels[keep] == 1,
                                                                  scores[keep, 1]))
    assert out["per_class"][1] != pytest.approx(average_precision(labels == 1, scores[:, 1]))
    with_bg = per_frame_map(scores, labels, background=None)
    assert 0 in with_bg["per_class"]
    only = per_frame_map(scores, np.where(labels == 2, 0, labels))  # class 2 has no frames
    assert 2 not in only["per_class"]


def test_torch_input_and_errors():
    import torch

    scores, labels = _data(t=50)
    a = per_frame_map(torch.from_numpy(scores), torch.from_numpy(labels))
    assert a["mAP"] == per_frame_map(scores, labels)["mAP"]
    with pytest.raises(ShapeError, match="labels"):
        per_frame_map(scores, labels[:-1])
    with pytest.raises(ShapeError, match="scores"):
        per_frame_map(scores[:, 0], labels)
    with pytest.raises(ArgumentError, match="labels"):
        per_frame_map(scores, labels + 5)
    with pytest.raises(ArgumentError, match="ignore"):
        per_frame_map(scores, labels, ignore=9)
    bad = scores.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ArgumentError, match="finite"):
        per_frame_map(bad, labels)
