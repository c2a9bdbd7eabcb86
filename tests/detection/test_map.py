"""mAP (note F4): VOC against float64 loop transcriptions of the devkit, COCO against
pycocotools' COCOeval (and faster-coco-eval) on random data and on each edge case."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.data.synthetic.detections import synthetic_detections
from paperlab.detection.map import (
    MAX_DETS,
    RECALL_THRESHOLDS,
    coco_ap,
    coco_box_iou,
    coco_evaluate,
    voc_ap,
    voc_evaluate,
)
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("F4", reference="pycocotools COCOeval, VOC devkit formula")

TOL = 1e-12


def _close(ours, ref, what):
    """assert_close on float64 copies (recorded in the parity report), tolerance 1e-12."""
    as64 = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64))  # noqa: E731
    assert_close(as64(ours), as64(ref), atol=TOL, rtol=0.0, what=what)


# ------------------------------------------------------------------ references (loops)
def _devkit_voc_ap(rec, prec, use_07_metric=False):
    """py-faster-rcnn's voc_eval.voc_ap, written out with Python loops."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = [p for r, p in zip(rec, prec) if r >= t]
            ap = ap + (max(above) if above else 0.0) / 11.0
        return ap
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1)
               if mrec[i + 1] != mrec[i])


def _devkit_voc_eval(gts, dets, label, thr=0.5, use_07=False, plus=1.0):
    """voc_eval for one class: detections by score (stable), each against its image's
    best-IoU object only; TP if IoU > thr, not difficult and not yet detected."""
    recs = {}
    npos = 0
    for i, g in enumerate(gts):
        keep = [j for j in range(len(g["labels"])) if int(g["labels"][j]) == label]
        diff = [bool(g.get("difficult", [False] * len(g["labels"]))[j]) for j in keep]
        recs[i] = ([list(map(float, g["boxes"][j])) for j in keep], diff, [False] * len(keep))
        npos += sum(not d for d in diff)
    found = [(float(d["scores"][j]), i, list(map(float, d["boxes"][j])))
             for i, d in enumerate(dets) for j in range(len(d["labels"]))
             if int(d["labels"][j]) == label]
    order = sorted(range(len(found)), key=lambda k: -found[k][0])  # stable
    tp, fp = [], []
    for k in order:
        _, i, bb = found[k]
        boxes, diff, det = recs[i]
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(boxes):
            iw = max(min(bb[2], g[2]) - max(bb[0], g[0]) + plus, 0.0)
            ih = max(min(bb[3], g[3]) - max(bb[1], g[1]) + plus, 0.0)
            inter = iw * ih
            uni = ((bb[2] - bb[0] + plus) * (bb[3] - bb[1] + plus)
                   + (g[2] - g[0] + plus) * (g[3] - g[1] + plus) - inter)
            o = inter / uni
            if o > ovmax:
                ovmax, jmax = o, j
        t = f = 0
        if ovmax > thr:
            if not diff[jmax]:
                if not det[jmax]:
                    t, det[jmax] = 1, True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _devkit_voc_ap(list(rec), list(prec), use_07)


def _pycocotools(gt, dt):
    coco = require("pycocotools.coco")
    cocoeval = require("pycocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        g = coco.COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        e = cocoeval.COCOeval(g, g.loadRes(copy.deepcopy(dt)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _assert_equal_to_pycocotools(gt, dt):
    ref = _pycocotools(gt, dt)
    ours = coco_evaluate(gt, dt)
    _close(ours.stats, ref.stats, "stats")
    _close(ours.precision, ref.eval["precision"], "precision")
    _close(ours.recall, ref.eval["recall"], "recall")
    return ours, ref


# ------------------------------------------------------------------ VOC
def test_voc_ap_hand_example():
    # recall 0.5 at precision 1, then recall 1 at precision 0.5
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75, abs=1e-15)
    assert voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=True) == pytest.approx(8.5 / 11)
    assert voc_ap([], []) == 0.0 and voc_ap([], [], use_07_metric=True) == 0.0


@pytest.mark.parametrize("use_07", [False, True])
def test_voc_ap_equals_devkit_on_random_curves(use_07):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        hits = rng.random(n) < rng.random()
        npos = int(hits.sum() + rng.integers(0, 5)) or 1
        tp = np.cumsum(hits).astype(float)
        fp = np.cumsum(~hits).astype(float)
        rec = tp / npos
        if rng.random() < 0.3:  # recall exactly on the 11 points (0.3 = 3/10 and the like)
            rec = np.round(rec, 1)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ours = voc_ap(rec, prec, use_07_metric=use_07)
        _close(ours, _devkit_voc_ap(list(rec), list(prec), use_07), "voc_ap vs devkit loop")


def _random_voc(rng, n_img=40, n_cls=4):
    gts, dets = [], []
    for _ in range(n_img):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (g, 2))
        wh = rng.uniform(4, 40, (g, 2))
        boxes = np.concatenate([xy, xy + wh], 1).round(0)
        gts.append({"boxes": boxes, "labels": rng.integers(0, n_cls, g),
                    "difficult": rng.random(g) < 0.15})
        k = int(rng.integers(0, 10))
        src = boxes[rng.integers(0, max(g, 1), k)] if g else rng.uniform(0, 80, (k, 4))
        jit = src + rng.normal(0, 4, (k, 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
        labels = gts[-1]["labels"][rng.integers(0, max(g, 1), k)] if g else rng.integers(
            0, n_cls, k)
        labels = np.where(rng.random(k) < 0.1, rng.integers(0, n_cls, k), labels)
        dets.append({"boxes": jit.round(0), "scores": rng.random(k).round(1), "labels": labels})
    return gts, dets


@pytest.mark.parametrize("use_07", [False, True])
@pytest.mark.parametrize("plus", [True, False])
def test_voc_evaluate_equals_devkit_loop(use_07, plus):
    rng = np.random.default_rng(1 + use_07 + 2 * plus)
    for _ in range(5):
        gts, dets = _random_voc(rng)
        res = voc_evaluate(gts, dets, use_07_metric=use_07, pixel_inclusive=plus)
        for label, ap in res.ap.items():
            npos = sum(int(((g["labels"] == label) & ~g["difficult"]).sum()) for g in gts)
            if npos == 0:
                assert np.isnan(ap)
                continue
            ref = _devkit_voc_eval(gts, dets, label, use_07=use_07, plus=1.0 if plus else 0.0)
            _close(ap, ref, f"voc_evaluate AP of class {label} vs devkit loop")
        valid = [v for v in res.ap.values() if not np.isnan(v)]
        assert res.map == pytest.approx(np.mean(valid), abs=TOL)


def test_voc_matching_rules():
    gt = [{"boxes": [[0, 0, 9, 9], [20, 20, 29, 29]], "labels": [1, 1],
           "difficult": [False, True]}]
    det = [{"boxes": [[0, 0, 9, 9], [0, 0, 9, 9], [20, 20, 29, 29], [50, 50, 60, 60]],
            "scores": [0.9, 0.8, 0.7, 0.6], "labels": [1, 1, 1, 1]}]
    rec, prec = voc_evaluate(gt, det).curves[1]
    # TP, duplicate FP, difficult (neither), miss FP
    np.testing.assert_allclose(rec, [1, 1, 1, 1])
    np.testing.assert_allclose(prec, [1, 0.5, 0.5, 1 / 3])
    # IoU exactly at the threshold is not a hit (strictly greater)
    half = [{"boxes": [[0, 0, 10, 5]], "labels": [0]}]
    d = [{"boxes": [[0, 0, 10, 10]], "scores": [1.0], "labels": [0]}]
    assert voc_evaluate(half, d, pixel_inclusive=False).ap[0] == 0.0
    assert voc_evaluate(half, d, pixel_inclusive=False, iou_threshold=0.49).ap[0] == 1.0


def test_voc_bad_input():
    with pytest.raises(ShapeError, match="recall and precision"):
        voc_ap([0.1, 0.2], [1.0])
    with pytest.raises(ArgumentError, match="finite"):
        voc_ap([np.nan], [1.0])
    with pytest.raises(ShapeError, match="same images"):
        voc_evaluate([{"boxes": [], "labels": []}], [])
    with pytest.raises(ArgumentError, match=r"detections\[0\] is missing 'scores'"):
        voc_evaluate([{"boxes": [], "labels": []}], [{"boxes": [], "labels": []}])
    with pytest.raises(ShapeError, match=r"ground_truth\[0\]\['boxes'\]"):
        voc_evaluate([{"boxes": [[1, 2, 3]], "labels": [0]}],
                     [{"boxes": [], "labels": [], "scores": []}])


def test_coco_ap_equals_accumulate_loop():
    """coco_ap on one curve: COCOeval.accumulate's loop for one (t, k, a, m)."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(1, 50))
        hits = rng.random(n) < 0.6
        npig = int(hits.sum() + rng.integers(0, 4)) or 1
        tp, fp = np.cumsum(hits).astype(float), np.cumsum(~hits).astype(float)
        rc, pr = tp / npig, tp / (fp + tp + np.spacing(1))
        env = pr.tolist()
        for i in range(n - 1, 0, -1):
            if env[i] > env[i - 1]:
                env[i - 1] = env[i]
        q = [0.0] * len(RECALL_THRESHOLDS)
        for ri, pi in enumerate(np.searchsorted(rc, RECALL_THRESHOLDS, side="left")):
            if pi >= n:
                break
            q[ri] = env[pi]
        _close(coco_ap(rc, pr), np.mean(q), "coco_ap vs accumulate loop")


def test_synthetic_detections_are_deterministic():
    a = synthetic_detections(30, seed=3)
    b = synthetic_detections(30, seed=3)
    c = synthetic_detections(30, seed=4)
    assert a == b and a != c
    gt, dt = a
    areas = np.array([x["area"] for x in gt["annotations"]])
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (
        areas > 96**2).any()
    assert any(x["iscrowd"] for x in gt["annotations"]) or len(gt["annotations"]) < 30
    assert len({d["score"] for d in dt}) < len(dt)  # ties in score


# ------------------------------------------------------------------ COCO parity
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_equals_pycocotools_random(seed):
    # hundreds of images; crowd, empty images, unused categories, many ties in score
    gt, dt = synthetic_detections(
        200 + 50 * seed, seed=seed, objects_per_image=3 + 2 * seed, crowd_fraction=0.08,
        empty_fraction=0.1, score_decimals=(2, 1, None)[seed], detections_per_image=15,
    )
    ours, ref = _assert_equal_to_pycocotools(gt, dt)
    assert (ours.stats > 0).all()
    for k, cid in enumerate(ours.category_ids.tolist()):
        s = ref.eval["precision"][:, :, k, 0, -1]
        expected = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        assert ours.per_category[cid] == pytest.approx(expected, abs=TOL)
    assert sum(v == -1.0 for v in ours.per_category.values()) == 2  # the unused categories


def test_coco_equals_pycocotools_crowded_grid():
    """Crowded scenes on an integer grid: identical boxes and ties in IoU and score, crowd
    and out-of-range objects competing for the same detections (the matching's tie rules)."""
    rng = np.random.default_rng(11)
    images, anns, dets = [{"id": i} for i in range(60)], [], []
    for i in range(60):
        for _ in range(int(rng.integers(0, 12))):
            x, y = (int(v) for v in rng.integers(0, 6, 2) * 8)
            w, h = (int(v) for v in rng.choice([8, 16, 40, 120], 2))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "area": float(w * h * rng.choice([0.5, 1.0])),
                         "iscrowd": int(rng.random() < 0.15)})
        for _ in range(int(rng.integers(0, 25))):
            x, y = (int(v) for v in rng.integers(0, 6, 2) * 8)
            w, h = (int(v) for v in rng.choice([8, 16, 40, 120], 2))
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "score": float(rng.integers(1, 5)) / 4})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c} for c in (1, 2, 3)]}
    ours, _ = _assert_equal_to_pycocotools(gt, dets)
    assert (ours.stats > 0).sum() >= 6


def test_coco_equals_faster_coco_eval():
    fce = require("faster_coco_eval")
    gt, dt = synthetic_detections(300, seed=5, crowd_fraction=0.05)
    quiet = lambda *a, **k: None  # noqa: E731
    g = fce.COCO(copy.deepcopy(gt), print_function=quiet)
    e = fce.COCOeval_faster(g, g.loadRes(copy.deepcopy(dt)), "bbox", print_function=quiet)
    e.evaluate()
    e.accumulate()
    e.summarize()
    ours = coco_evaluate(gt, dt)
    _close(ours.stats, e.stats, "stats vs faster-coco-eval")
    _close(ours.precision, e.eval["precision"], "precision vs faster-coco-eval")
    _close(ours.recall, e.eval["recall"], "recall vs faster-coco-eval")


def test_coco_box_iou_equals_pycocotools_mask_iou():
    mask = require("pycocotools.mask")
    rng = np.random.default_rng(3)
    d = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(0, 30, (30, 2))], 1)
    g = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(0, 30, (20, 2))], 1)
    d[:3, 2] = 0.0  # zero-area detections
    g[5] = d[7]  # identical
    crowd = rng.random(20) < 0.4
    ref = mask.iou(d.tolist(), g.tolist(), crowd.astype(np.uint8).tolist())
    _close(coco_box_iou(d, g, crowd), ref, "COCO box IoU vs pycocotools.mask.iou")
    # a crowd region: intersection over the detection's area
    inside = coco_box_iou([[10, 10, 5, 5]], [[0, 0, 100, 100]], [True])
    assert inside[0, 0] == 1.0


def _case(anns, dets, images=(1, 2), cats=(1, 2)):
    gt = {"images": [{"id": i} for i in images],
          "categories": [{"id": c} for c in cats],
          "annotations": [{"id": k + 1, "iscrowd": 0, **a} for k, a in enumerate(anns)]}
    return gt, dets


def _box(x, y, w, h, **kw):
    return {"bbox": [x, y, w, h], "area": w * h, **kw}


def test_coco_edge_cases_equal_pycocotools():
    obj = [_box(0, 0, 10, 10, image_id=1, category_id=1), _box(50, 50, 40, 40, image_id=1,
           category_id=1), _box(0, 0, 200, 200, image_id=2, category_id=1)]
    det = lambda b, s, i=1, c=1: {"image_id": i, "category_id": c, "bbox": b, "score": s}  # noqa: E731
    cases = {
        # a crowd region absorbs several detections, counted neither way
        "crowd": _case(obj + [_box(100, 100, 100, 100, image_id=1, category_id=1, iscrowd=1)],
                       [det([110, 110, 20, 20], 0.9), det([150, 150, 30, 30], 0.8),
                        det([0, 0, 10, 10], 0.7), det([50, 50, 40, 41], 0.95)]),
        # an image without ground truth: its detections are false positives
        "fp-on-empty-image": _case(obj[:2], [det([0, 0, 10, 10], 0.9),
                                             det([0, 0, 10, 10], 0.95, i=2)]),
        # areas exactly on the range bounds (32^2, 96^2) are inside both ranges
        "area-bounds": _case([_box(0, 0, 32, 32, image_id=1, category_id=1),
                              _box(100, 100, 96, 96, image_id=1, category_id=1)],
                             [det([0, 0, 32, 32], 0.9), det([100, 100, 96, 96], 0.8)]),
        # more than 100 detections on one image: only the best 100 count
        "max-dets": _case(obj, [det([0.1 * k, 0, 10, 10], 1 - k / 1000) for k in range(130)]
                          + [det([50, 50, 40, 40], 0.5)]),
        # all scores equal: the stable sort decides
        "ties": _case(obj, [det([0, 0, 10, 10], 0.5), det([1, 0, 10, 10], 0.5),
                            det([50, 50, 40, 40], 0.5), det([0, 0, 200, 200], 0.5, i=2),
                            det([0, 0, 190, 200], 0.5, i=2)]),
        # a category with no ground truth is -1; zero-width detection boxes
        "unused-category": _case(obj, [det([0, 0, 10, 10], 0.9), det([0, 0, 10, 10], 0.8, c=2),
                                       det([0, 0, 0, 10], 0.7)]),
        # no ground truth at all: every number is -1
        "no-ground-truth": _case([], [det([0, 0, 10, 10], 0.9)]),
        # annotation id 0: pycocotools records matches by id, so a match to it counts as none
        "annotation-id-0": (lambda g: (g[0] | {"annotations": [dict(a, id=k) for k, a in
                            enumerate(g[0]["annotations"])]}, g[1]))(
                                _case(obj, [det([0, 0, 10, 10], 0.9)])),
    }
    for name, (gt, dt) in cases.items():
        ours, _ = _assert_equal_to_pycocotools(gt, dt)
        if name == "no-ground-truth":
            assert (ours.stats == -1).all()
        if name == "unused-category":
            assert ours.per_category[2] == -1.0 and (ours.precision[:, :, 1] == -1).all()


def test_coco_empty_detections_give_zero():
    gt, _ = synthetic_detections(20, seed=0)
    res = coco_evaluate(gt, [])
    assert (res.stats[[0, 1, 2, 6, 7, 8]] == 0).all()
    assert set(np.unique(res.stats)) <= {0.0, -1.0}
    # pycocotools itself cannot load an empty result list; one detection on an unknown
    # category is ignored there, which scores the same as none
    assert res.precision.shape == (10, len(RECALL_THRESHOLDS), 12, 4, len(MAX_DETS))


def test_coco_files_equal_memory(tmp_path):
    import json

    gt, dt = synthetic_detections(30, seed=4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    a = coco_evaluate(tmp_path / "gt.json", str(tmp_path / "dt.json"))
    b = coco_evaluate(gt, dt)
    np.testing.assert_array_equal(a.stats, b.stats)
    assert a.as_dict()["AP"] == b.stats[0]


def test_coco_perfect_detector_is_one():
    gt, dt = synthetic_detections(50, seed=2, noise=0.0, recall=1.0, false_positives=False,
                                  crowd_fraction=0.0, duplicate_fraction=0.0)
    res = coco_evaluate(gt, dt)
    every = np.r_[0:6, 7:12]  # AR@1 is below 1 where an image holds two objects of a class
    assert (res.stats[every] == 1.0).all() and res.stats[6] < 1.0


def test_coco_bad_arguments():
    gt, dt = synthetic_detections(3, seed=0)
    with pytest.raises(ArgumentError, match="iou_type"):
        coco_evaluate(gt, dt, iou_type="segm")
    with pytest.raises(ShapeError, match="iscrowd"):
        coco_box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], [True, False])
