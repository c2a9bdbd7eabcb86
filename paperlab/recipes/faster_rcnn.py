"""``faster-rcnn``: a small Faster R-CNN (note F1) trained by the shared Trainer.

Data (``data/formats/coco_detection.py``'s ``detection_data``): by default the synthetic
shapes (``image_size`` px images, ``objects`` shapes each, 5 classes, exact boxes), a training
set and a validation set drawn from other seeds; with ``--set data=annotations.json --set
images=DIR`` a COCO detection file and its image folder, split by a seeded permutation into
train and ``val_fraction`` validation images. Training images are flipped left-right with
probability ``flip`` (boxes move with them).

Model (``detection/faster_rcnn.py``): ``TinyBackbone`` (``levels`` feature maps from stride 8,
``width`` channels), anchors ``anchor_sizes`` x (0.5, 1, 2) (with ``levels`` > 1, one size
per level), images resized to ``min_size`` / ``max_size`` (0: the shapes' own size, or
512 / 853 for a COCO file). The loss is the sum of the four Faster R-CNN losses; each is
logged. Evaluation: COCO AP, AP50, ... of the validation images (``detection/map.py``), whose
detections are written as COCO results JSON to ``<out>/predictions.json``.
"""

from __future__ import annotations

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
from paperlab.detection.faster_rcnn import FasterRCNN, TinyBackbone
from paperlab.errors import ConfigError
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig


@dataclass
class FasterRCNNConfig(TrainConfig):
    """``faster-rcnn`` settings: the shared training fields, the data and the model's size."""

    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    data: str = ""  # a COCO detection JSON; empty: synthetic shapes
    images: str = ""  # the folder of its images
    val_fraction: float = 0.2
    n_train: int = 512
    n_val: int = 128
    image_size: int = 64
    objects: int = 2
    flip: float = 0.5
    width: int = 32
    levels: int = 1
    anchor_sizes: tuple[int, ...] = (12, 24, 48)
    min_size: int = 0
    max_size: int = 0
    representation_size: int = 256
    rpn_post_nms_train: int = 300  # proposals per image (torchvision: 2000 / 1000; these
    rpn_post_nms_test: int = 300  # images have at most a few hundred anchors)
    box_batch_size: int = 128  # sampled proposals per image (torchvision: 512)
    eval_batch_size: int = 16

    def validate(self) -> None:
        super().validate()
        if bool(self.data) != bool(self.images):
            raise ConfigError("data and images go together: --set data=annotations.json "
                              "--set images=DIR")
        if self.levels > 1 and len(self.anchor_sizes) != self.levels:
            raise ConfigError(f"with levels={self.levels} give one anchor size per level, got "
                              f"anchor_sizes={self.anchor_sizes}")


def build_model(cfg: FasterRCNNConfig, num_classes: int) -> FasterRCNN:
    """The recipe's Faster R-CNN for ``num_classes`` (background included)."""
    coco = bool(cfg.data)
    min_size = cfg.min_size or (512 if coco else cfg.image_size)
    max_size = cfg.max_size or (min_size * 5 + 2) // 3
    sizes = (tuple((s,) for s in cfg.anchor_sizes) if cfg.levels > 1
             else (tuple(cfg.anchor_sizes),))
    return FasterRCNN(TinyBackbone(cfg.width, cfg.width, cfg.levels), num_classes,
                      min_size=min_size, max_size=max_size, anchor_sizes=sizes,
                      featmap_names=[str(i) for i in range(cfg.levels)],
                      representation_size=cfg.representation_size,
                      rpn_pre_nms_top_n_train=2 * cfg.rpn_post_nms_train,
                      rpn_post_nms_top_n_train=cfg.rpn_post_nms_train,
                      rpn_pre_nms_top_n_test=2 * cfg.rpn_post_nms_test,
                      rpn_post_nms_top_n_test=cfg.rpn_post_nms_test,
                      box_batch_size_per_image=cfg.box_batch_size)


def datasets(cfg: FasterRCNNConfig) -> tuple[Any, Any]:
    """Training and validation sets of the recipe's data."""
    common: dict[str, Any] = dict(seed=cfg.seed)
    if cfg.data:
        common.update(data=cfg.data, images=cfg.images, val_fraction=cfg.val_fraction)
        return (detection_data(split="train", flip=cfg.flip, **common),
                detection_data(split="val", **common))
    common.update(image_size=cfg.image_size, objects=cfg.objects)
    return (detection_data(split="train", n=cfg.n_train, flip=cfg.flip, **common),
            detection_data(split="val", n=cfg.n_val, **common))


def detection_loss(model: nn.Module, batch: tuple[list[torch.Tensor], list[dict[str, Any]]]
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """The sum of the detector's losses; each one logged."""
    images, targets = batch
    losses = model(images, targets)
    return sum(losses.values()), {k: float(v.detach()) for k, v in losses.items()}


@export_recipe("faster-rcnn", config=FasterRCNNConfig)
def faster_rcnn(cfg: FasterRCNNConfig) -> Task:
    """Faster R-CNN on synthetic shapes or a COCO file; evaluation: COCO AP on the val images."""
    train_set, val_set = datasets(cfg)
    model = build_model(cfg, train_set.num_classes)
    results = Path(cfg.out or "runs/train/faster-rcnn") / "predictions.json"

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        return evaluate_detections(model, val_set, results_path=results,
                                   batch_size=cfg.eval_batch_size, device=device)

    return Task(model=model, train_set=train_set, loss=detection_loss, evaluate=evaluate,
                collate=detection_collate)
