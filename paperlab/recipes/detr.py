"""``detr``: a small DETR trained with the set loss, on synthetic shapes or your COCO data.

``paperlab train detr`` trains on ``data/synthetic/shapes.py`` (64 x 64 images, two coloured
shapes each, exact boxes; ``data/formats/coco_detection.py``'s ``detection_data``);
``--set data=annotations.json --set images=DIR`` trains on a COCO detection file instead (a
seeded ``val_fraction`` of its images held out). Augmentation: horizontal flip
(``flip``). The loss is ``detection/set_criterion.py``'s (Hungarian matching, CE with
``eos_coef``, L1 + GIoU, auxiliary losses of every decoder layer); evaluation runs
``detect`` (top-k queries, no NMS) on the held-out images, writes their detections as a COCO
results JSON (``<out>/detections.json``) and scores them with our COCO mAP
(``detection/map.py``): AP, AP50, AP75, ... .

Labels: the data gives classes 1..K (0 is Faster R-CNN's background); DETR's K classes are
0..K-1 plus "no object", so targets are shifted down by one and predictions back up.

The helpers (``small_detr``, ``detr_batch_loss``, ``detr_detector``) are shared with the
experiment ``detr-shapes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperlab.data.formats.coco_detection import (
    detection_collate,
    detection_data,
    evaluate_detections,
)
from paperlab.detection.detr import DETR, DETRConfig, detect, pad_batch
from paperlab.detection.set_criterion import SetCriterion, detr_targets
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig


def small_detr(num_classes: int, *, num_queries: int = 10, d_model: int = 64,
               hidden_sizes: Sequence[int] = (16, 32, 64), **fields: Any) -> DETR:
    """A small DETR (1 encoder, 2 decoder layers, FFN 2 d, trainable batch norm) for tiny images."""
    cfg = dict(num_classes=num_classes, num_queries=num_queries, d_model=d_model,
               encoder_layers=1, decoder_layers=2, encoder_heads=4, decoder_heads=4,
               encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model, dropout=0.0,
               embedding_size=16, hidden_sizes=tuple(hidden_sizes),
               depths=(1,) * len(hidden_sizes))
    return DETR(DETRConfig(**{**cfg, **fields}))


def detr_batch_loss(model: nn.Module, criterion: SetCriterion, images: list[torch.Tensor],
                    targets: list[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
    """The set loss of a ``detection_collate`` batch (labels 1..K) and its logged terms."""
    batch, padding = pad_batch(images)
    out = model(batch, padding_mask=padding if bool(padding.any()) else None)
    shifted = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    total, terms = criterion(out, detr_targets(shifted, sizes))
    logged = {k: float(terms[k].detach()) for k in ("loss_ce", "loss_bbox", "loss_giou",
                                           "cardinality_error")}
    logged["matching_cost"] = criterion.last_matching_cost
    return total, logged


def detr_detector(model: DETR, top_k: int = 100
                  ) -> Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """``images -> detections`` with labels 1..K, as ``evaluate_detections`` wants."""
    def run(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [{**d, "labels": d["labels"] + 1} for d in detect(model, images, top_k)]
    return run


@dataclass
class DETRRecipeConfig(TrainConfig):
    """``detr`` settings: the shared training fields, the data and the model's size."""

    steps: int = 3000
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    clip_norm: float = 1.0
    data: str = ""  # COCO annotations JSON; empty: synthetic shapes
    images: str = ""  # the folder of the annotations' file_names
    image_size: int = 64  # synthetic shapes only
    shapes_images: int = 512  # synthetic shapes only: training images (a quarter as many val)
    val_fraction: float = 0.2
    flip: float = 0.5
    num_queries: int = 10
    d_model: int = 64
    eos_coef: float = 0.1
    top_k: int = 100
    eval_batch_size: int = 16


@export_recipe("detr", config=DETRRecipeConfig)
def detr_recipe(cfg: DETRRecipeConfig) -> Task:
    """Small DETR; evaluation: COCO AP of top-k detections (no NMS) on held-out images."""
    data = cfg.data or None
    images = cfg.images or None
    common = dict(seed=cfg.seed, val_fraction=cfg.val_fraction, image_size=cfg.image_size)
    n = (cfg.shapes_images, max(1, cfg.shapes_images // 4)) if data is None else (None, None)
    train_set = detection_data(data, images, split="train", flip=cfg.flip, n=n[0], **common)
    val_set = detection_data(data, images, split="val", n=n[1], **common)
    classes = len(train_set.category_ids)
    model = small_detr(classes, num_queries=cfg.num_queries, d_model=cfg.d_model)
    criterion = SetCriterion(classes, eos_coef=cfg.eos_coef)
    out = Path(cfg.out or "runs/train/detr")

    def loss(model: nn.Module, batch: tuple[list[torch.Tensor], list[dict[str, Any]]]):
        return detr_batch_loss(model, criterion, *batch)

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        return evaluate_detections(detr_detector(model, cfg.top_k), val_set,
                                   results_path=out / "detections.json",
                                   batch_size=cfg.eval_batch_size, device=device)

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate,
                collate=detection_collate)


__all__ = ["DETRRecipeConfig", "detr_batch_loss", "detr_detector", "detr_recipe", "small_detr"]
