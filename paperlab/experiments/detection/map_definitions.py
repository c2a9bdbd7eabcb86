"""Experiment ``map-definitions`` (note F4): three AP definitions on the same detections.

A synthetic detector (``data/synthetic/detections.py``: 10 classes + 2 never present, about 6
objects and 20 detections per image, 85% of the objects found with jittered boxes, 10% of them
twice, the rest false positives; no crowd regions, so VOC and COCO see the same objects) is
scored by ``voc_evaluate`` (IoU > .5, continuous box coordinates: ``pixel_inclusive=False``, as
COCO) and by ``coco_evaluate``. Each class's precision-recall curve is then read three ways:
VOC2007's 11-point average (``voc_ap(..., use_07_metric=True)``), VOC2010+'s all-point area
(``voc_ap``) and COCO's 101-point average (``coco_ap``), so the definitions differ in the
interpolation alone. The full COCO numbers (AP50, AP@[.5:.95]) are metrics.

Claims (thresholds fixed from a pilot at seed 100 before the recorded runs; quick size, 300
images per seed, pilot values in brackets):

1. the two VOC definitions differ measurably: the mean over classes of |AP_11 - AP_all| is >=
   0.005 (half an AP point) on each of ``ctx.seeds(3)`` [pilot 0.020; 0.014 at smoke size].
   The differences have both signs (11 points drop the precision past the last sampled
   recall and count the recall-0 point at full weight), so the mean of absolute differences
   is the measure. Control: a perfect detector, where all three definitions give 1.0 (0.0).
2. COCO's 101 points approximate the all-point area much better than 11 do: mean |AP_101 -
   AP_all| / mean |AP_11 - AP_all| <= 0.5 on each seed [pilot 0.056]. Control: the same ratio
   with the mechanism removed, 11 points in place of 101 (1.0).
3. COCO AP equals pycocotools in the same run (only where pycocotools is installed; otherwise
   the summary says it was skipped): the largest difference between ``coco_evaluate``'s 12
   numbers and precision array and pycocotools' is <= 1e-12 on each seed. Control: the VOC
   all-point mAP against pycocotools' AP50, a neighbouring definition the same check must
   reject.

Recorded (quick, 300 images per seed): claim 1 gives 0.0107, 0.0160, 0.0224 on seeds 0-2 and
0.0126 on seed 3 (control 1e-17: the 11 sampled ones sum to 1 within rounding); claim 2 gives
0.235, 0.127, 0.067 and 0.121 on seed 3; claim 3 gives 0.0 on every seed (control 0.0023,
0.0017, 0.0006). At mAP level the 11-point definition is 0.002-0.022 below the all-point one.
Full size (2,000 images): 0.014, 0.016, 0.011; 0.118, 0.107, 0.097; 0.0. Quick takes about
7 s of CPU time, most of it in pycocotools.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np

from paperlab.data.synthetic.detections import synthetic_detections
from paperlab.detection.map import (
    RECALL_THRESHOLDS,
    coco_ap,
    coco_evaluate,
    voc_ap,
    voc_evaluate,
)
from paperlab.errors import MissingExtraError, require
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment

DIFF_MIN = 0.005  # claim 1 (pilot at seed 100: 0.020)
RATIO_MAX = 0.5  # claim 2 (pilot at seed 100: 0.056)
PARITY_TOL = 1e-12


def to_voc(gt: dict[str, Any], dt: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """COCO structures -> per-image VOC dicts (boxes xyxy), in the ground truth's image order."""
    where = {im["id"]: i for i, im in enumerate(gt["images"])}
    g = [{"boxes": [], "labels": []} for _ in where]
    d = [{"boxes": [], "labels": [], "scores": []} for _ in where]
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        e = g[where[a["image_id"]]]
        e["boxes"].append([x, y, x + w, y + h])
        e["labels"].append(a["category_id"])
    for a in dt:
        x, y, w, h = a["bbox"]
        e = d[where[a["image_id"]]]
        e["boxes"].append([x, y, x + w, y + h])
        e["labels"].append(a["category_id"])
        e["scores"].append(a["score"])
    return g, d


def score(gt: dict[str, Any], dt: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-class AP by the three interpolations of the VOC curves, plus COCO's numbers."""
    g, d = to_voc(gt, dt)
    voc = voc_evaluate(g, d, pixel_inclusive=False)
    per: dict[str, list[float]] = {"11": [], "all": [], "101": []}
    curves = {}
    for label, (rec, prec) in voc.curves.items():
        if np.isnan(voc.ap[label]):
            continue  # no ground truth (the unused classes)
        per["11"].append(voc_ap(rec, prec, use_07_metric=True))
        per["all"].append(voc_ap(rec, prec))
        per["101"].append(coco_ap(rec, prec))
        curves[label] = (rec, prec)
    arr = {k: np.array(v) for k, v in per.items()}
    coco = coco_evaluate(gt, dt)
    return {"per_class": arr, "curves": curves, "coco": coco,
            "diff11": float(np.abs(arr["11"] - arr["all"]).mean()),
            "diff101": float(np.abs(arr["101"] - arr["all"]).mean())}


def pycocotools_stats(gt: dict[str, Any], dt: list[dict[str, Any]]) -> tuple[np.ndarray, Any]:
    """pycocotools' 12 numbers and precision array (raises MissingExtraError if absent)."""
    coco = require("pycocotools.coco", extra="test", purpose="experiment 'map-definitions'")
    cocoeval = require("pycocotools.cocoeval", extra="test",
                       purpose="experiment 'map-definitions'")
    with contextlib.redirect_stdout(io.StringIO()):
        g = coco.COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        e = cocoeval.COCOeval(g, g.loadRes(copy.deepcopy(dt)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats), e.eval["precision"]


@export_experiment(
    "map-definitions",
    note="F4 mAP",
    title="VOC07 11-point, VOC all-point and COCO 101-point AP differ on the same detections",
    tags=("detection", "map"),
)
def map_definitions(ctx: Context) -> Result:
    """The three interpolations on 3 seeds, a perfect-detector control, pycocotools parity."""
    n = ctx.pick(smoke=40, quick=300, full=2000)
    seeds = ctx.seeds(3)
    runs, parity, neighbour = [], [], []
    skipped = None
    for s in ctx.track(seeds, label="seeds"):
        gt, dt = synthetic_detections(n, seed=s, crowd_fraction=0.0)
        r = score(gt, dt)
        runs.append(r)
        if skipped is None:
            try:
                stats, precision = pycocotools_stats(gt, dt)
            except MissingExtraError as exc:
                skipped = str(exc)
                continue
            parity.append(max(float(np.abs(r["coco"].stats - stats).max()),
                              float(np.abs(r["coco"].precision - precision).max())))
            neighbour.append(abs(float(r["per_class"]["all"].mean()) - float(stats[1])))
    perfect_gt, perfect_dt = synthetic_detections(
        n, seed=seeds[0], crowd_fraction=0.0, noise=0.0, recall=1.0, duplicate_fraction=0.0,
        false_positives=False)
    perfect = score(perfect_gt, perfect_dt)
    diff11 = [r["diff11"] for r in runs]
    ratio = [r["diff101"] / r["diff11"] for r in runs]
    claims = [
        Claim.over_seeds("the VOC07 11-point and VOC2010 all-point AP of a class differ "
                         "measurably: mean |AP_11 - AP_all| over classes (control: a perfect "
                         "detector)", diff11, ">=", DIFF_MIN, control=perfect["diff11"]),
        Claim.over_seeds("COCO's 101 points approximate the all-point area far better than 11: "
                         "mean |AP_101 - AP_all| / mean |AP_11 - AP_all| (control: 11 points "
                         "in place of 101)", ratio, "<=", RATIO_MAX, control=1.0),
    ]
    if skipped is None:
        claims.append(Claim.over_seeds(
            "COCO AP equals pycocotools in the same run: max |ours - pycocotools| over the 12 "
            "numbers and the precision array (control: VOC all-point mAP vs pycocotools AP50)",
            parity, "<=", PARITY_TOL, control=neighbour))
    metrics: dict[str, Any] = {"images_per_seed": n, "seeds": seeds}
    for s, r in zip(seeds, runs):
        metrics[f"seed{s}"] = {
            "mAP_11": float(r["per_class"]["11"].mean()),
            "mAP_all": float(r["per_class"]["all"].mean()),
            "mAP_101": float(r["per_class"]["101"].mean()),
            "mean_abs_11_minus_all": r["diff11"],
            "mean_abs_101_minus_all": r["diff101"],
            "coco_AP50": float(r["coco"].stats[1]),
            "coco_AP": float(r["coco"].stats[0]),
        }
    metrics["perfect_detector"] = {k: float(v.mean()) for k, v in perfect["per_class"].items()}
    metrics["pycocotools"] = ("skipped: " + skipped) if skipped else {
        "max_abs_difference": parity, "neighbour_definition_difference": neighbour}
    _figure(ctx, runs, seeds)
    r0 = metrics[f"seed{seeds[0]}"]
    summary = (f"seed {seeds[0]}: mAP 11-point {r0['mAP_11']:.4f}, all-point "
               f"{r0['mAP_all']:.4f}, 101-point {r0['mAP_101']:.4f}; mean |11 - all| per class "
               f"{min(diff11):.4f}-{max(diff11):.4f} over seeds (perfect detector: "
               f"{perfect['diff11']:.1f}); ")
    summary += (f"COCO equals pycocotools to {max(parity):.1e}" if skipped is None
                else "pycocotools comparison skipped (not installed)")
    return Result(summary=summary, metrics=metrics, claims=claims, figures=list(ctx.figures))


def _figure(ctx: Context, runs: list[dict[str, Any]], seeds: list[int]) -> None:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = runs[0]
    # the class whose two VOC definitions differ most
    k = int(np.argmax(np.abs(r["per_class"]["11"] - r["per_class"]["all"])))
    label = list(r["curves"])[k]
    rec, prec = r["curves"][label]
    env = np.maximum.accumulate(prec[::-1])[::-1]
    ax.plot(rec, prec, color="0.6", lw=0.8, label="precision")
    ax.fill_between(np.r_[0.0, rec], np.r_[env[0], env], step="pre", alpha=0.25,
                    label=f"all-point area = {r['per_class']['all'][k]:.3f}")
    t11 = np.arange(0.0, 1.1, 0.1)
    p11 = [prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in t11]
    ax.plot(t11, p11, "o", color="C3", label=f"11-point = {r['per_class']['11'][k]:.3f}")
    env0 = np.append(env, 0.0)
    p101 = env0[np.searchsorted(rec, RECALL_THRESHOLDS, side="left")]
    ax.plot(RECALL_THRESHOLDS, p101, ".", ms=3, color="C2",
            label=f"101-point = {r['per_class']['101'][k]:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title=f"class {label}, seed {seeds[0]}")
    ax.legend(fontsize=8, loc="lower left")
    for i, run in enumerate(runs):
        d11 = run["per_class"]["11"] - run["per_class"]["all"]
        d101 = run["per_class"]["101"] - run["per_class"]["all"]
        x = np.full(len(d11), float(i))
        bx.plot(x - 0.1, d11, "o", color="C3", ms=4,
                label="11-point - all-point" if i == 0 else None)
        bx.plot(x + 0.1, d101, "o", color="C2", ms=4,
                label="101-point - all-point" if i == 0 else None)
    bx.axhline(0, color="0.5", lw=0.8)
    bx.set(xticks=range(len(seeds)), xticklabels=[f"seed {s}" for s in seeds],
           ylabel="AP difference per class", title="the same PR curves, three definitions")
    bx.legend(fontsize=8)
    ctx.savefig(fig, "map_definitions")
