"""DETR's set loss: cross-entropy, L1 and GIoU on a one-to-one matching (note F3).

The idea
--------
Given the Hungarian assignment sigma (``matcher.py``) of the n objects of an image to n of its
N predictions, the loss of a decoder layer's output is::

    L = w_ce  CE_w(logits, classes)             every query: matched ones their object's class,
                                                the others "no object" (class K)
      + w_l1  sum_{j} ||b_sigma(j) - b_j||_1 / n_boxes
      + w_giou sum_{j} (1 - GIoU(b_sigma(j), b_j)) / n_boxes

``CE_w`` is the class-weighted cross-entropy averaged with the weights (``sum w_y CE / sum
w_y``), weight ``eos_coef = 0.1`` on "no object" and 1 elsewhere, since most queries are
empty. ``n_boxes`` is the number of objects in the batch (at least 1; averaged over processes
under ``torch.distributed``). Weights (1, 5, 2) as in the paper. Because each object is owned by
one query, a second query predicting the same object is trained towards "no object": the loss
itself removes duplicates, the reason DETR needs no NMS.

Auxiliary decoding losses: the same loss, with its own matching, on the heads' outputs after
every earlier decoder layer, added to the total (keys ``loss_ce_0``, ``loss_bbox_0``, ... for
layer 1, as HF names them). The cardinality error ``|#{queries not argmax 'no object'} - n|``
averaged over images is logged (no gradient, not in the total).

Paper: Carion et al. 2020, section 3.1 and appendix A.2; reference: HF's
``ForObjectDetectionLoss`` (the same total and terms, tests/detection/test_detr.py).

Shapes: a ``DETROutput`` (logits (B, N, K + 1), boxes (B, N, 4) normalised cxcywh, optional
aux_*), targets a list of B dicts with ``labels`` (n,) and ``boxes`` (n, 4) normalised cxcywh
(``detr_targets`` converts pixel xyxy boxes). Returns (total loss, {name: scalar tensor}).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.detection.boxes import box_convert, generalized_box_iou
from paperlab.detection.detr import DETROutput
from paperlab.detection.matcher import HungarianMatcher, Target
from paperlab.errors import ArgumentError, check_int
from paperlab.registry import export_loss


def detr_targets(targets: Sequence[Mapping[str, torch.Tensor]],
                 image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
    """Targets with ``boxes`` xyxy in pixels -> normalised cxcywh (``image_sizes`` as (h, w))."""
    out = []
    for t, (h, w) in zip(targets, image_sizes, strict=True):
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=t["boxes"].device)
        boxes = box_convert(t["boxes"].float(), "xyxy", "cxcywh") / scale
        out.append({"labels": t["labels"].long(), "boxes": boxes})
    return out


def _num_boxes(targets: Sequence[Target], device: torch.device) -> float:
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        n = n / torch.distributed.get_world_size()
    return max(float(n), 1.0)


@export_loss("detr-set-loss", note="F3", paper="Carion et al. 2020")
class SetCriterion(nn.Module):
    """``SetCriterion(num_classes, matcher=None, eos_coef=0.1, ce_weight=1, bbox_weight=5,
    giou_weight=2)``; ``forward(output, targets)`` -> (total, terms).

    ``last_matching_cost`` holds, after each call, the final layer's mean matched cost per
    image (the quantity the Hungarian matcher minimised).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        eos_coef: float = 0.1,
        ce_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        if not eos_coef >= 0:
            raise ArgumentError(f"eos_coef must be >= 0, got {eos_coef}")
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"loss_ce": float(ce_weight), "loss_bbox": float(bbox_weight),
                        "loss_giou": float(giou_weight)}
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer("class_weight", weight, persistent=False)
        self.last_matching_cost = float("nan")

    def layer_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: Sequence[Target],
        num_boxes: float,
    ) -> tuple[dict[str, torch.Tensor], list[float]]:
        """The three terms and the cardinality error of one layer's output, and its costs."""
        if logits.shape[-1] != self.num_classes + 1:
            raise ArgumentError(f"logits must have num_classes + 1 = {self.num_classes + 1} "
                                f"columns, got {logits.shape[-1]}")
        image, query, target, costs = self.matcher.match_flat(logits, boxes, targets)
        dev = logits.device
        batch, query = torch.from_numpy(image).to(dev), torch.from_numpy(query).to(dev)
        target = torch.from_numpy(target).to(dev)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=dev)
        classes[batch, query] = torch.cat([t["labels"] for t in targets]).to(dev)[target]
        ce = F.cross_entropy(logits.transpose(1, 2), classes, self.class_weight.to(logits))
        pred = boxes[batch, query]
        tgt = torch.cat([t["boxes"] for t in targets]).to(pred)[target]
        giou = generalized_box_iou(box_convert(pred, "cxcywh", "xyxy")[:, None],
                                   box_convert(tgt, "cxcywh", "xyxy")[:, None])
        with torch.no_grad():
            count = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()
            sizes = torch.tensor([float(len(t["labels"])) for t in targets], device=count.device)
            card = (count - sizes).abs().mean()
        terms = {"loss_ce": ce,
                 "loss_bbox": (pred - tgt).abs().sum() / num_boxes,
                 "loss_giou": (1 - giou).sum() / num_boxes,
                 "cardinality_error": card}
        return terms, costs

    def forward(
        self, output: DETROutput, targets: Sequence[Target]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        num_boxes = _num_boxes(targets, output.logits.device)
        terms, costs = self.layer_loss(output.logits, output.boxes, targets, num_boxes)
        self.last_matching_cost = sum(costs) / max(len(costs), 1)
        if output.aux_logits is not None:
            for i, (lg, bx) in enumerate(zip(output.aux_logits, output.aux_boxes)):
                aux, _ = self.layer_loss(lg, bx, targets, num_boxes)
                terms.update({f"{k}_{i}": v for k, v in aux.items()})
        total = sum(v * self.weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k]
                    for k, v in terms.items() if not k.startswith("cardinality"))
        return total, terms


__all__ = ["SetCriterion", "detr_targets"]
