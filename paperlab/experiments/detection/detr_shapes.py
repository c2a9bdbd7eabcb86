"""Experiment ``detr-shapes`` (note F3): a tiny DETR learns synthetic shapes and needs no NMS.

Data: ``data/formats/coco_detection.py``'s synthetic shapes (two coloured shapes per image,
exact boxes, five classes, light background noise), trained from scratch with the set loss
(``detection/set_criterion.py``: Hungarian matching, CE with eos_coef 0.1, L1 + GIoU,
auxiliary losses) and scored on held-out images with our COCO mAP (``detection/map.py``) on
the top-k queries, without NMS.

The note's point is that one-to-one matching makes the predictions a set: each object is
claimed by one query and the loss pushes any second query on it to "no object", so removing
duplicates (NMS) is left to the model. The control removes exactly that mechanism: the same
model, data and steps, trained with a **one-to-many** assignment (every query takes its
cheapest object under the same matching cost; nothing is "no object"), i.e. the loss no longer
punishes duplicates.

Measured per seed: COCO AP and AP50 without NMS; the same after class-wise NMS at IoU 0.5;
the top-n duplicate rate = the share of each image's n best detections (n = its number of
objects) that overlap a better one of them at IoU >= 0.5 (the shapes never overlap, so that is
a second detection of one object); the share of confident detections (score >= 0.5) that NMS
removes; the mean matched cost per image of the final decoder layer at every training step
(the matching cost curve, figure). At full size, if ``detection/faster_rcnn.py`` is present, a
tiny Faster R-CNN (``TinyBackbone``) is trained on the same data for the same CPU time as DETR
on the first seed and its AP reported beside DETR's (a metric, never a claim: DETR is known to
train slowly); quick size skips it for the tour's CPU budget.

Training: AdamW (lr 2e-3, warm-up 10% then cosine, weight decay 1e-4, gradients clipped at
1), batches of 64 images of 32 x 32, 8 queries, d_model 64, 150 steps at quick size (1,500 at
full), on one CPU thread (tiny tensors: one thread wastes no CPU time on synchronisation).

Claims (thresholds fixed from a pilot at seed 100 before the recorded runs; quick size; pilot
values in brackets, with the spread of four pilot variants of lr / queries / batch):

1. DETR learns the shapes: AP50 without NMS >= 0.15 on each of ``ctx.seeds(3)`` [0.275;
   variants 0.19-0.45]. Control: the untrained model's AP50.
2. Few duplicates without NMS: top-n duplicate rate <= 0.15 on each seed [0.035; variants
   0.01-0.135]. Control: the one-to-many model (first seed) [pilot 0.5: every image's two best
   detections on one object].
3. Set prediction needs no NMS: NMS at IoU 0.5 changes DETR's AP50 by <= +0.02 on each seed
   [-0.004; variants up to +0.044 with 4 queries, +0.017 with 8]. Control: the gain NMS gives
   the one-to-many model (first seed) [pilot +0.035].

Recorded (quick, seeds 0-2, one thread): claim 1 holds, AP50 0.301, 0.334, 0.282 (AP 0.176,
0.164, 0.144; untrained 0.0); claim 2 holds, 0.12, 0.07, 0.09 (one-to-many control 0.5); claim
3 **fails**: NMS raises AP50 by +0.034, +0.022, +0.020 (control +0.062): after 150 steps DETR
still leaves a few lower-scored second detections that NMS removes, fewer than the mechanism-
free control but not few enough for the threshold. (With two threads, an earlier recorded run
gave the same verdicts: AP50 0.294 / 0.210 / 0.266, duplicates 0.040 / 0.040 / 0.015, NMS gain
+0.024 / +0.021 / +0.014.) The matched cost per image falls from about 7.2-7.9 to -3.1 to -3.4
over training. Quick takes 33.5 s of user CPU for the whole ``paperlab run detr-shapes`` on the
2-core development machine at load average 3.4 (about 1.2x slower per step than idle; four
trainings of 150 steps, the rest start-up, imports and the figure).

A cheaper plan was piloted to fit the tour's 30 s (batch 40, 6 queries, d_model 48; new
thresholds from seed 100: AP50 >= 0.10, the others unchanged). It ran in 30.1 s under load but
trained a weaker DETR: recorded on seeds 0-2, claims 1 and 2 failed on seed 1 (AP50 0.096,
duplicates 0.175) and claim 3 held with a control that held it too (+0.016). It was dropped
for this plan, whose claims measure what they say.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from paperlab.data.formats.coco_detection import ShapesDetectionDataset, coco_results
from paperlab.detection.boxes import batched_nms, box_iou
from paperlab.detection.map import coco_evaluate
from paperlab.detection.matcher import HungarianMatcher
from paperlab.detection.set_criterion import SetCriterion, detr_targets
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.recipes.detr import detr_detector, small_detr
from paperlab.registry import export_experiment
from paperlab.training.schedules import warmup_cosine_factor

AP50_MIN = 0.15  # claim 1 (pilot at seed 100: 0.275)
DUP_MAX = 0.15  # claim 2 (pilot: 0.035)
NMS_GAIN_MAX = 0.02  # claim 3 (pilot: -0.004)
SCORE = 0.5  # a "confident" detection
IMAGE_SIZE = 32
CLASSES = 5
QUERIES = 8
D_MODEL = 64
BATCH = 64
LR = 2e-3


class OneToManyMatcher(HungarianMatcher):
    """The control: every query takes its cheapest object (no one-to-one constraint)."""

    @staticmethod
    def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if cost.shape[1] == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.arange(cost.shape[0]), cost.argmin(1)


def _data(n: int, seed: int) -> ShapesDetectionDataset:
    return ShapesDetectionDataset(n, seed=seed, image_size=IMAGE_SIZE, objects=2, noise=0.05,
                                  background=0.0)


def train_detr(train: ShapesDetectionDataset, seed: int, steps: int, matcher: HungarianMatcher,
               batch: int = BATCH, lr: float = LR, queries: int = QUERIES,
               d_model: int = D_MODEL) -> tuple[nn.Module, list[float], float]:
    """AdamW with warm-up and cosine decay, gradients clipped at 1; returns the model (eval),
    the matched cost per step and the CPU seconds spent."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = small_detr(CLASSES, num_queries=queries, d_model=d_model)
    criterion = SetCriterion(CLASSES, matcher=matcher)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    images = train.data.images
    targets = detr_targets([{"labels": lab, "boxes": b} for lab, b in
                            zip(train.data.labels, train.data.boxes)],
                           [(IMAGE_SIZE, IMAGE_SIZE)] * len(images))
    costs = []
    start = time.process_time()
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * warmup_cosine_factor(step, steps, max(1, steps // 10))
        idx = torch.randint(0, len(images), (batch,), generator=g)
        loss, _ = criterion(model(images[idx]), [targets[i] for i in idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        costs.append(criterion.last_matching_cost)
    return model.eval(), costs, time.process_time() - start


def _with_nms(pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keep = batched_nms(pred["boxes"], pred["scores"], pred["labels"], 0.5)
    return {k: v[keep] for k, v in pred.items()}


def top_n_duplicates(predictions: list[dict[str, torch.Tensor]], val: ShapesDetectionDataset
                     ) -> float:
    """The share of each image's n best detections (n = its number of objects) that overlap a
    better one of them at IoU >= 0.5. The shapes never overlap, so such a pair is two
    detections of one object: what NMS is there to remove."""
    dup = total = 0
    for p, boxes in zip(predictions, val.data.boxes):
        top = p["boxes"][p["scores"].argsort(descending=True)[: len(boxes)]]
        over = box_iou(top, top).triu(1) >= 0.5
        dup += int(over.any(0).sum())
        total += len(top)
    return dup / max(total, 1)


def score(predictions: list[dict[str, torch.Tensor]], val: ShapesDetectionDataset
          ) -> dict[str, float]:
    """AP / AP50 raw and after NMS, duplicate rates; labels 1..K."""
    gt = val.coco_ground_truth()

    def ap(preds):
        r = coco_evaluate(gt, coco_results(preds, val.image_ids, val.category_ids))
        return float(r.stats[0]), float(r.stats[1])

    nmsed = [_with_nms(p) for p in predictions]
    confident = sum(int((p["scores"] >= SCORE).sum()) for p in predictions)
    kept = sum(int((p["scores"] >= SCORE).sum()) for p in nmsed)
    (a, a50), (na, na50) = ap(predictions), ap(nmsed)
    return {"AP": a, "AP50": a50, "AP_nms": na, "AP50_nms": na50, "nms_gain_AP50": na50 - a50,
            "top_n_duplicate_rate": top_n_duplicates(predictions, val),
            "confident_per_image": confident / len(predictions),
            "confident_removed_by_nms": (confident - kept) / confident if confident
            else float("nan")}


def evaluate(model: nn.Module, val: ShapesDetectionDataset) -> dict[str, float]:
    preds = detr_detector(model, top_k=QUERIES)(list(val.data.images))
    return score(preds, val)


def faster_rcnn_at_equal_time(train: ShapesDetectionDataset, val: ShapesDetectionDataset,
                              seed: int, cpu_seconds: float) -> dict[str, Any]:
    """A tiny Faster R-CNN trained for ``cpu_seconds`` of CPU time; its COCO AP / AP50."""
    try:
        from paperlab.detection.faster_rcnn import FasterRCNN, TinyBackbone
    except ImportError as exc:
        return {"skipped": f"detection/faster_rcnn.py is not available ({exc})"}
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = FasterRCNN(TinyBackbone(out_channels=32, width=32), CLASSES + 1,
                       min_size=IMAGE_SIZE, max_size=IMAGE_SIZE, featmap_names=("0",),
                       anchor_sizes=((6, 10, 16),), rpn_pre_nms_top_n_train=200,
                       rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
                       rpn_post_nms_top_n_test=50, box_batch_size_per_image=64,
                       representation_size=128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    items = [train[i] for i in range(len(train))]
    start, steps = time.process_time(), 0
    model.train()
    while time.process_time() - start < cpu_seconds:
        idx = torch.randint(0, len(items), (16,), generator=g).tolist()
        losses = model([items[i][0] for i in idx], [items[i][1] for i in idx])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
    model.eval()
    with torch.no_grad():
        preds = model(list(val.data.images))
    r = coco_evaluate(val.coco_ground_truth(), coco_results(preds, val.image_ids,
                                                            val.category_ids))
    return {"AP": float(r.stats[0]), "AP50": float(r.stats[1]), "steps": steps,
            "cpu_seconds": time.process_time() - start}


@export_experiment(
    "detr-shapes",
    note="F3 DETR",
    title="A tiny DETR learns synthetic shapes and needs no NMS: one-to-one matching "
          "removes duplicates",
    tags=("detection", "detr"),
)
def detr_shapes(ctx: Context) -> Result:
    """DETR's AP without NMS, its duplicates and NMS gain vs a one-to-many control, 3 seeds."""
    steps = ctx.pick(smoke=6, quick=150, full=1500)
    batch = ctx.pick(smoke=8, quick=BATCH, full=BATCH)
    n_train, n_val = ctx.pick(smoke=32, quick=512, full=2048), ctx.pick(smoke=16, quick=100,
                                                                       full=300)
    seeds = ctx.seeds(3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and steadier
    try:
        return _run(ctx, steps, batch, n_train, n_val, seeds)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: Context, steps: int, batch: int, n_train: int, n_val: int, seeds: list[int]
         ) -> Result:
    runs, curves, times = [], [], []
    val = _data(n_val, seeds[0] + 7919)
    for s in ctx.track(seeds, label="seeds"):
        train = _data(n_train, s)
        model, costs, seconds = train_detr(train, s, steps, HungarianMatcher(), batch=batch)
        runs.append(evaluate(model, val))
        curves.append(costs)
        times.append(seconds)
        if s == seeds[0]:
            first_train = train
    torch.manual_seed(seeds[0])
    untrained = evaluate(small_detr(CLASSES, num_queries=QUERIES, d_model=D_MODEL).eval(), val)
    control_model, control_costs, _ = train_detr(first_train, seeds[0], steps,
                                                 OneToManyMatcher(), batch=batch)
    control = evaluate(control_model, val)
    frcnn = (faster_rcnn_at_equal_time(first_train, val, seeds[0], times[0])
             if ctx.size == "full" else {"skipped": "full size only (the tour's CPU budget)"})

    ap50 = [r["AP50"] for r in runs]
    gain = [r["nms_gain_AP50"] for r in runs]
    dup = [r["top_n_duplicate_rate"] for r in runs]
    claims = [
        Claim.over_seeds("a tiny DETR learns the shapes: COCO AP50 of its top-k queries without "
                         "NMS (control: the untrained model)", ap50, ">=", AP50_MIN,
                         control=untrained["AP50"]),
        Claim.over_seeds("few duplicates without NMS: the share of each image's n best "
                         "detections (n objects) lying on an object a better one already covers "
                         "(IoU >= 0.5) (control: the one-to-many model)", dup, "<=",
                         DUP_MAX, control=control["top_n_duplicate_rate"]),
        Claim.over_seeds("set prediction needs no NMS: NMS at IoU 0.5 raises DETR's AP50 by at "
                         "most this (control: the gain for the same model trained one-to-many)",
                         gain, "<=", NMS_GAIN_MAX, control=control["nms_gain_AP50"]),
    ]
    metrics: dict[str, Any] = {"steps": steps, "batch": batch, "train_images": n_train,
                               "val_images": n_val, "seeds": seeds, "untrained": untrained,
                               "one_to_many_control": control,
                               "faster_rcnn_equal_cpu_time": frcnn}
    for s, r, c, t in zip(seeds, runs, curves, times):
        k = max(1, len(c) // 10)
        metrics[f"seed{s}"] = {**r, "train_cpu_seconds": t,
                               "matching_cost_first": float(np.mean(c[:k])),
                               "matching_cost_last": float(np.mean(c[-k:]))}
    _figure(ctx, curves, control_costs, seeds)
    r0 = runs[0]
    summary = (f"DETR AP50 without NMS {min(ap50):.3f}-{max(ap50):.3f} over seeds (untrained "
               f"{untrained['AP50']:.3f}); NMS gain {max(gain):+.3f} at most (one-to-many "
               f"control {control['nms_gain_AP50']:+.3f}); top-n duplicate rate "
               f"{max(dup):.3f} at most (control {control['top_n_duplicate_rate']:.3f})")
    if "AP" in frcnn:
        summary += (f"; Faster R-CNN at equal CPU time AP50 {frcnn['AP50']:.3f} vs DETR "
                    f"{r0['AP50']:.3f}")
    return Result(summary=summary, metrics=metrics, claims=claims, figures=list(ctx.figures))


def _figure(ctx: Context, curves: list[list[float]], control: list[float], seeds: list[int]
            ) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for s, c in zip(seeds, curves):
        ax.plot(np.arange(1, len(c) + 1), c, lw=0.9, label=f"DETR, seed {s}")
    ax.plot(np.arange(1, len(control) + 1), control, lw=0.9, ls="--", color="0.4",
            label="one-to-many control (its own cost)")
    ax.set(xlabel="training step", ylabel="matched cost per image (final layer)",
           title="Hungarian matching cost over training")
    if all(math.isfinite(v) for c in curves for v in c):
        ax.legend(fontsize=8)
    ctx.savefig(fig, "detr_matching_cost")


__all__ = ["OneToManyMatcher", "detr_shapes", "evaluate", "score", "train_detr"]
