"""Experiment ``faster-rcnn-shapes`` (note F1): a tiny Faster R-CNN learns the synthetic shapes.

The ``faster-rcnn`` recipe (``recipes/faster_rcnn.py``: ``TinyBackbone`` with BatchNorm, one
stride-8 level, anchors 10/20/32 px x 3 ratios, a 128-unit box head) is trained by the shared
Trainer on synthetic shapes (5 classes, exact boxes, flips) and scored with our COCO mAP
(``detection/map.py``) on held-out images drawn from another seed. Measured per seed:

- COCO AP50 and AP@[.5:.95] of the trained model and of the control, the same network at its
  initialisation (same seed, zero steps: the mechanism, training, removed);
- the RPN's recall of the ground truth (IoU >= 0.5 with one of the top-k proposals) at 100 and
  300 proposals per image, trained and untrained.

Claim (threshold fixed from a pilot at seed 100 before the recorded runs): AP50 >= AP50_MIN on
each of ``ctx.seeds(3)``; the control's AP50 is reported beside it. The sizes: quick trains
100 steps of 8 images (48 px, one object each), full 600 steps (64 px, two objects). Quick
makes the point that the detector learns, not that it is good: its AP is far from the full
size's, and the threshold is set for quick. A figure shows held-out detections of the first
seed and AP50 per seed, trained vs control.

The quick plan was 40 steps until 2026-12-02, with AP50_MIN = 0.10 (about half its seed-100
pilot, 0.21). Its recorded AP50 were 0.291, 0.200, 0.140 on one machine and 0.291, 0.200,
0.090 on another (the claim failed on seed 2): too close to its threshold. Quick now trains
100 steps (about 15 s of CPU), and the threshold was fixed again, before the recorded runs,
by the rule "half the lowest of the three pilot seeds, rounded down to 0.01":

Pilot (``--seed 100``: seeds 100, 101, 102, quick, 100 steps): AP50 0.371, 0.433, 0.453 (AP
0.258, 0.284, 0.254; control AP50 0.002, 0.004, 0.000); RPN recall@100 0.975, 1.00, 1.00
(untrained 0.30, 0.55, 0.30). AP50_MIN = 0.18. The detector reads 100 proposals per image
(``rpn_post_nms_test``); the recall at 300 is measured with the limit raised to 300 (on
these 48 px images there are 324 anchors, so 300 is nearly all that survive NMS).

Recorded (quick, 100 steps, seeds 0, 1, 2): AP50 0.330, 0.391, 0.346 (control 0.001, 0.002,
0.000); AP 0.223, 0.242, 0.204; RPN recall@100 and @300 1.00 on every seed (untrained 0.45,
0.55, 0.45 @100; 0.50, 0.60, 0.575 @300). 15.4 s of user CPU for the whole run.
Full (600 steps, 64 px, two objects, seeds 0-2): AP50 0.998, 0.993, 0.980 and AP 0.886,
0.860, 0.854 (control AP50 <= 0.001); RPN recall 1.00 at 100 and 300 (untrained 0.76, 0.59,
0.51 @100); about 13 minutes on the loaded 2-core development machine. The threshold is
quick's: at full size it is far below what is reached.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.data.formats.coco_detection import evaluate_detections
from paperlab.detection.boxes import box_iou
from paperlab.detection.faster_rcnn import FasterRCNN, resize_boxes
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.recipes.faster_rcnn import FasterRCNNConfig, build_model, datasets
from paperlab.registry import export_experiment
from paperlab.training.checkpoint import load_checkpoint
from paperlab.training.trainer import train

AP50_MIN = 0.18  # quick size (100 steps); pilot seeds 100-102: 0.371, 0.433, 0.453
RECALL_AT = (100, 300)


def config(ctx: Context, seed: int) -> FasterRCNNConfig:
    """The recipe's settings at this size (smoke: a few steps, only to run the code)."""
    size = ctx.pick(smoke=dict(steps=2, n_train=16, n_val=8, image_size=48, objects=1),
                    quick=dict(steps=100, n_train=320, n_val=40, image_size=48, objects=1),
                    full=dict(steps=600, n_train=2048, n_val=200, image_size=64, objects=2))
    return FasterRCNNConfig(seed=seed, lr=5e-3, batch_size=8, warmup=5, box_batch_size=32,
                            rpn_post_nms_train=100, rpn_post_nms_test=100,
                            representation_size=128, anchor_sizes=(10, 20, 32), progress=False,
                            out=str(ctx.out / f"seed{seed}"), **size)


@torch.no_grad()
def rpn_recall(model: FasterRCNN, dataset: Any, ks: tuple[int, ...] = RECALL_AT,
               iou: float = 0.5) -> dict[int, float]:
    """Fraction of ground-truth boxes with IoU >= ``iou`` to one of the top-k proposals."""
    model.eval()
    kept = model.rpn._post_nms_top_n["testing"]
    model.rpn._post_nms_top_n["testing"] = max(ks)  # only here: the detector itself reads 100
    found = {k: 0 for k in ks}
    total = 0
    for i in range(len(dataset)):
        image, target = dataset[i]
        batch, sizes, _ = model.transform([image])
        (proposals,), _ = model.rpn(batch, sizes, model.features(batch))
        gt = resize_boxes(target["boxes"], image.shape[-2:], sizes[0])
        total += len(gt)
        if len(gt) == 0 or len(proposals) == 0:
            continue
        overlap = box_iou(gt, proposals)  # proposals come sorted by objectness
        for k in ks:
            found[k] += int((overlap[:, :k].max(1).values >= iou).sum())
    model.rpn._post_nms_top_n["testing"] = kept
    return {k: found[k] / max(total, 1) for k in ks}


def run_seed(ctx: Context, seed: int) -> dict[str, Any]:
    cfg = config(ctx, seed)
    train_set, val_set = datasets(cfg)
    torch.manual_seed(seed)  # the Trainer's initialisation: the control is the run's step 0
    control = build_model(cfg, train_set.num_classes).eval()
    control_stats = evaluate_detections(control, val_set, batch_size=16)
    control_recall = rpn_recall(control, val_set)
    summary = train("faster-rcnn", cfg)
    model = build_model(cfg, train_set.num_classes)
    load_checkpoint(summary.checkpoint, model, restore_rng=False)
    model.eval()
    return {"AP50": summary.eval["AP50"], "AP": summary.eval["AP"],
            "control_AP50": control_stats["AP50"], "control_AP": control_stats["AP"],
            "recall": rpn_recall(model, val_set), "control_recall": control_recall,
            "seconds": summary.seconds, "model": model, "val": val_set}


@export_experiment(
    "faster-rcnn-shapes",
    note="F1 Faster R-CNN",
    title="A tiny Faster R-CNN learns synthetic shapes: COCO AP50 and RPN recall vs untrained",
    tags=("detection", "faster-rcnn"),
)
def faster_rcnn_shapes(ctx: Context) -> Result:
    """Train on 3 seeds; AP50 / AP and RPN recall@100/300 vs the untrained network."""
    seeds = ctx.seeds(3)
    runs = [run_seed(ctx, s) for s in ctx.track(seeds, label="seeds")]
    ap50 = [r["AP50"] for r in runs]
    claims = [Claim.over_seeds(
        f"a tiny Faster R-CNN trained on synthetic shapes reaches COCO AP50 >= {AP50_MIN} on "
        f"held-out images (control: the same network untrained)",
        ap50, ">=", AP50_MIN, control=[r["control_AP50"] for r in runs])]
    metrics: dict[str, Any] = {"seeds": seeds, "steps": config(ctx, seeds[0]).steps}
    for s, r in zip(seeds, runs):
        metrics[f"seed{s}"] = {
            "AP50": r["AP50"], "AP": r["AP"], "control_AP50": r["control_AP50"],
            "control_AP": r["control_AP"], "train_seconds": r["seconds"],
            **{f"rpn_recall@{k}": v for k, v in r["recall"].items()},
            **{f"control_rpn_recall@{k}": v for k, v in r["control_recall"].items()}}
    _figure(ctx, runs, seeds)
    r0 = runs[0]
    summary = (f"AP50 {min(ap50):.3f}-{max(ap50):.3f} over seeds {seeds} (untrained "
               f"{max(r['control_AP50'] for r in runs):.3f} at most), AP {r0['AP']:.3f} on seed "
               f"{seeds[0]}; RPN recall@100 {r0['recall'][100]:.2f}, @300 "
               f"{r0['recall'][300]:.2f} (untrained {r0['control_recall'][100]:.2f}, "
               f"{r0['control_recall'][300]:.2f})")
    return Result(summary=summary, metrics=metrics, claims=claims, figures=list(ctx.figures))


def _figure(ctx: Context, runs: list[dict[str, Any]], seeds: list[int]) -> None:
    from paperlab.data.synthetic.shapes import SHAPES

    plt = pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
    model, val = runs[0]["model"], runs[0]["val"]
    with torch.no_grad():
        images = [val[i][0] for i in range(4)]
        preds = model(images)
    for ax, i, image, pred in zip(axes, range(4), images, preds):
        ax.imshow(image.permute(1, 2, 0).numpy())
        for x1, y1, x2, y2 in val[i][1]["boxes"].tolist():
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                       ec="white", ls="--", lw=1))
        keep = slice(0, len(val[i][1]["boxes"]))  # the best-scored detections, one per object
        for (x1, y1, x2, y2), lab, sc in zip(pred["boxes"][keep].tolist(),
                                             pred["labels"][keep].tolist(),
                                             pred["scores"][keep].tolist()):
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                       ec="C1", lw=1.5))
            ax.text(x1, y1 - 1, f"{SHAPES[lab - 1]} {sc:.2f}", color="C1", fontsize=7)
        ax.set(xticks=[], yticks=[], title=f"held-out image {i}")
    fig.suptitle(f"seed {seeds[0]}: ground truth dashed, the best-scored detection per object "
                 f"in orange", fontsize=9)
    bx = axes[-1]
    x = torch.arange(len(seeds)).float()
    bx.bar(x - 0.2, [r["AP50"] for r in runs], 0.4, label="trained")
    bx.bar(x + 0.2, [r["control_AP50"] for r in runs], 0.4, label="untrained")
    bx.axhline(AP50_MIN, color="C3", ls=":", label=f"threshold {AP50_MIN}")
    bx.set(xticks=x.tolist(), xticklabels=[f"seed {s}" for s in seeds], ylabel="COCO AP50",
           title="held-out AP50")
    bx.legend(fontsize=7)
    ctx.savefig(fig, "faster_rcnn_shapes")
