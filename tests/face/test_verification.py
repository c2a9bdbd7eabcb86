"""Verification: ROC / AUC / TAR@FAR equal sklearn's; the LFW protocol equals a transcription
of insightface's eval/verification.py (sklearn KFold, scipy interp1d, threshold loops); the flip
sum; LFW pairs.txt reading with errors naming file and line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

from paperlab.data.formats.common import DataFormatError, MissingFileError
from paperlab.data.formats.face_pairs import read_lfw_pairs
from paperlab.errors import ArgumentError, ShapeError
from paperlab.face.verification import (
    kfold_indices,
    lfw_protocol,
    pair_distances,
    roc_auc,
    roc_curve,
    tar_at_far,
    verify_pairs,
)

pytestmark = pytest.mark.note("E1", reference="sklearn roc_curve; insightface verification.py")


def _scores(n=3000, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    s = rng.normal(size=n) + 1.5 * same
    if ties:
        s = np.round(s, 1)  # many tied scores
    return s, same


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_and_auc_equal_sklearn(ties, drop):
    metrics = require("sklearn.metrics")
    s, same = _scores(ties=ties)
    fpr, tpr, thr = roc_curve(s, same, drop_intermediate=drop)
    rf, rt, rthr = metrics.roc_curve(same, s, drop_intermediate=drop)
    np.testing.assert_array_equal(thr, rthr)
    np.testing.assert_allclose(fpr, rf, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, rt, rtol=0, atol=1e-15)
    assert abs(roc_auc(s, same) - metrics.roc_auc_score(same, s)) < 1e-12


@pytest.mark.parametrize("ties", [True, False])
def test_tar_at_far_equals_the_sklearn_roc_read_out(ties):
    metrics = require("sklearn.metrics")
    s, same = _scores(n=40000, seed=1, ties=ties)
    rf, rt, _ = metrics.roc_curve(same, s, drop_intermediate=False)
    values = []
    for far in (1e-1, 1e-2, 1e-3, 1e-4):
        ok = rf <= far
        expected = rt[ok][rf[ok] == rf[ok].max()].max()
        got = tar_at_far(s, same, far)
        assert got == expected
        values.append(got)
    assert values[0] > values[-1] > 0 or not ties  # the read-out moves with the FAR


# --- a transcription of insightface's recognition/arcface_torch/eval/verification.py ---------


def _insightface_evaluate(embeddings1, embeddings2, actual_issame, nrof_folds=10):
    from scipy import interpolate
    from sklearn.model_selection import KFold

    def calculate_accuracy(threshold, dist, actual_issame):
        predict_issame = np.less(dist, threshold)
        tp = np.sum(np.logical_and(predict_issame, actual_issame))
        fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
        tn = np.sum(np.logical_and(np.logical_not(predict_issame),
                                   np.logical_not(actual_issame)))
        fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
        tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
        fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
        acc = float(tp + tn) / dist.size
        return tpr, fpr, acc

    def calculate_val_far(threshold, dist, actual_issame):
        predict_issame = np.less(dist, threshold)
        true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
        false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
        n_same = np.sum(actual_issame)
        n_diff = np.sum(np.logical_not(actual_issame))
        return float(true_accept) / float(n_same), float(false_accept) / float(n_diff)

    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    nrof_pairs = len(actual_issame)
    indices = np.arange(nrof_pairs)
    thresholds = np.arange(0, 4, 0.01)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    tprs = np.zeros((nrof_folds, len(thresholds)))
    fprs = np.zeros((nrof_folds, len(thresholds)))
    accuracy = np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        acc_train = np.zeros(len(thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = calculate_accuracy(
                threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = \
                calculate_accuracy(threshold, dist[test_set], actual_issame[test_set])
        _, _, accuracy[fold_idx] = calculate_accuracy(
            thresholds[best_threshold_index], dist[test_set], actual_issame[test_set])
    tpr, fpr = np.mean(tprs, 0), np.mean(fprs, 0)

    thresholds = np.arange(0, 4, 0.001)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        far_train = np.zeros(len(thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = calculate_val_far(
                threshold, dist[train_set], actual_issame[train_set])
        if np.max(far_train) >= 1e-3:
            # current scipy refuses duplicate x: keep each FAR at its first threshold
            far_u, first = np.unique(far_train, return_index=True)
            f = interpolate.interp1d(far_u, thresholds[first], kind="slinear")
            threshold = f(1e-3)
        else:
            threshold = 0.0
        val[fold_idx], far[fold_idx] = calculate_val_far(threshold, dist[test_set],
                                                         actual_issame[test_set])
    return tpr, fpr, accuracy, np.mean(val), np.std(val), np.mean(far)


def _embeddings(p=1203, d=16, seed=0):
    """Pairs of unit embeddings: same pairs close, different pairs random."""
    rng = np.random.default_rng(seed)
    same = np.zeros(p, dtype=bool)
    same[rng.permutation(p)[: p // 2]] = True
    e1 = rng.normal(size=(p, d))
    e2 = np.where(same[:, None], e1 + 0.9 * rng.normal(size=(p, d)), rng.normal(size=(p, d)))
    n = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return n(e1), n(e2), same


def test_lfw_protocol_equals_insightface_transcription():
    require("sklearn")
    e1, e2, same = _embeddings()
    tpr, fpr, acc, val, val_std, far = _insightface_evaluate(e1, e2, same)
    res = verify_pairs(e1, e2, same)
    np.testing.assert_allclose(res.fold_accuracies, acc, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.tpr, tpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.fpr, fpr, rtol=0, atol=1e-15)
    assert res.accuracy == pytest.approx(acc.mean(), abs=1e-15)
    assert res.accuracy_std == pytest.approx(acc.std(), abs=1e-15)
    assert (res.val, res.val_std, res.far) == pytest.approx((val, val_std, far), abs=1e-12)
    assert 0.6 < res.accuracy < 0.99 and 0 < res.val < 1  # a non-trivial case


def test_kfold_indices_equal_sklearn():
    model_selection = require("sklearn.model_selection")
    for n, k in [(1203, 10), (20, 10), (37, 4)]:
        ref = list(model_selection.KFold(n_splits=k, shuffle=False).split(np.arange(n)))
        for (a, b), (ra, rb) in zip(kfold_indices(n, k), ref):
            np.testing.assert_array_equal(a, ra)
            np.testing.assert_array_equal(b, rb)


def test_flip_sum_normalises_after_summing():
    e1, e2, same = _embeddings(p=40)
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=e1.shape), rng.normal(size=e2.shape)
    d = pair_distances(e1 * 3.0, e2, flipped1=f1 * 3.0, flipped2=f2)
    a = (e1 + f1) / np.linalg.norm(e1 + f1, axis=1, keepdims=True)
    b = (e2 + f2) / np.linalg.norm(e2 + f2, axis=1, keepdims=True)
    np.testing.assert_allclose(d, ((a - b) ** 2).sum(1), rtol=1e-12)
    # without flips: squared L2 of normalised embeddings = 2 - 2 cos
    np.testing.assert_allclose(pair_distances(e1 * 5.0, e2), 2 - 2 * (e1 * e2).sum(1),
                               atol=1e-12)


def test_perfect_separation_gives_accuracy_one():
    e1, e2, same = _embeddings(p=200)
    dist = np.where(same, 0.5, 2.5)
    res = lfw_protocol(dist, same)
    assert res.accuracy == 1.0 and res.accuracy_std == 0.0
    assert set(res.best_thresholds) == {0.51}  # the first threshold above every same pair
    # VAL@FAR interpolates between FAR 0 (threshold 0) and FAR 1 (2.501): threshold ~0.0025,
    # below every distance, so VAL = 0 -- the protocol's reading of a two-valued distance
    assert res.val == 0.0 and res.far == 0.0


def test_bad_inputs_are_named():
    s, same = _scores(n=50)
    with pytest.raises(ShapeError, match="same"):
        roc_curve(s, same[:-1])
    with pytest.raises(ArgumentError, match="both"):
        roc_curve(s, np.ones(50, dtype=bool))
    with pytest.raises(ArgumentError, match="far"):
        tar_at_far(s, same, 2.0)
    with pytest.raises(ShapeError, match="embeddings1 and embeddings2"):
        pair_distances(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ShapeError, match="flipped1"):
        pair_distances(np.ones((3, 4)), np.ones((3, 4)), flipped1=np.ones((2, 4)))
    with pytest.raises(ArgumentError, match="folds"):
        lfw_protocol(np.ones(5), np.array([1, 0, 1, 0, 1]), folds=10)


# --- LFW pairs.txt ----------------------------------------------------------------------------

GOOD = """2\t2
Abel_Pacheco\t1\t4
Akhmed_Zakayev\t1\t3
Abdel_Madi_Shabneh\t1\tDean_Barker\t1
Abdel_Madi_Shabneh\t1\tGiancarlo_Fisichella\t1
Zico\t1\t2
Zoe_Ball\t2 3
Ab\t1\tCd\t2
Ef\t3\tGh\t4
"""


def test_read_lfw_pairs(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text(GOOD)
    pairs = read_lfw_pairs(f, root=tmp_path / "lfw")
    assert len(pairs) == 8
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4
    assert pairs[0].path1 == tmp_path / "lfw" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    assert pairs[0].path2.name == "Abel_Pacheco_0004.jpg"
    assert pairs[2].path2.name == "Dean_Barker_0001.jpg" and pairs[2].line == 4
    # a file without header: one fold of whatever it holds
    f.write_text("A\t1\t2\nB\t1\tC\t2\n")
    assert [p.same for p in read_lfw_pairs(f)] == [True, False]


@pytest.mark.parametrize("text, line, message", [
    ("2\t2\nA\t1\t2\n", 1, "announces 2 fold"),
    ("1\t1\nA\t1\t2\nB\t1\n", 3, "expected 3 fields"),
    ("1\t1\nA\tx\t2\nB\t1\tC\t1\n", 2, "integer"),
    ("1\t1\nA\t1\t0\nB\t1\tC\t1\n", 2, ">= 1"),
    ("1\t1\nB\t1\tC\t1\nA\t1\t2\n", 2, "same-identity pair here"),
])
def test_bad_pairs_files_name_file_and_line(tmp_path, text, line, message):
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    with pytest.raises(DataFormatError, match=message) as info:
        read_lfw_pairs(f)
    assert info.value.line == line and str(f) in str(info.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        read_lfw_pairs(tmp_path / "nope.txt")
    f = tmp_path / "pairs.txt"
    f.write_text("1\t1\nA\t1\t2\nB\t1\tC\t1\n")
    (tmp_path / "lfw" / "A").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="A_0001.jpg") as info:
        read_lfw_pairs(f, root=tmp_path / "lfw", check_files=True)
    assert info.value.line == 2
