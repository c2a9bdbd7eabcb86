"""DETR's Hungarian matcher: the one-to-one assignment of predictions to objects (note F3).

The idea
--------
DETR predicts N (class, box) pairs; an image has n <= N objects. Training needs to know which
prediction answers for which object, and DETR asks for the assignment sigma (an injection of
objects into predictions) of least total cost::

    sigma* = argmin_sigma  sum_j C(sigma(j), j)
    C(i, j) = - w_class p_i(c_j)  +  w_bbox ||b_i - b_j||_1  -  w_giou GIoU(b_i, b_j)

with ``p_i`` the softmax over the K + 1 classes of prediction i, ``b`` normalised (cx, cy, w, h)
boxes (the L1 term on them, GIoU on their corners), weights (1, 5, 2) as in the paper. The
probability (not its log) makes the class term commensurate with the box terms. The
assignment is the linear sum assignment problem, solved exactly by
``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant; Kuhn's Hungarian method solves
the same problem). Predictions left unassigned are the "no object" class in the loss.

Batched over images: one (B N, sum n) cost matrix for the whole batch, cut per image. Costs
that are NaN or infinite (a diverged box) become the largest float, so the solver never fails
and such pairs are taken last. An image without objects gets empty index tensors.

Paper: Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020, section 3.1;
reference: ``transformers.loss.loss_for_object_detection.HungarianMatcher`` (the same indices,
tests/detection/test_detr.py).

Shapes: logits (B, N, K + 1), boxes (B, N, 4); targets a list of B dicts with ``labels`` (n,)
int64 and ``boxes`` (n, 4) normalised cxcywh. Returns B pairs ``(pred_idx, target_idx)`` of
int64 tensors of length min(N, n), ``pred_idx`` increasing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from paperlab.detection.boxes import box_convert, generalized_box_iou
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

Target = Mapping[str, torch.Tensor]


def check_targets(targets: Sequence[Target], batch: int) -> None:
    """Each of ``batch`` targets holds ``labels`` (n,) and ``boxes`` (n, 4)."""
    if isinstance(targets, Mapping) or not isinstance(targets, Sequence):
        raise ArgumentTypeError(f"targets must be a list of dicts, got {type(targets).__name__}")
    if len(targets) != batch:
        raise ShapeError(f"targets must hold one dict per image ({batch}), got {len(targets)}")
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or "labels" not in t or "boxes" not in t:
            raise ArgumentError(f"targets[{i}] must be a dict with 'labels' and 'boxes'")
        n = len(t["labels"])
        if t["labels"].dim() != 1 or tuple(t["boxes"].shape) != (n, 4):
            raise ShapeError(f"targets[{i}]: labels must be (n,) and boxes (n, 4), got "
                             f"{tuple(t['labels'].shape)} and {tuple(t['boxes'].shape)}")


def matching_cost(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: Sequence[Target],
    class_cost: float = 1.0,
    bbox_cost: float = 5.0,
    giou_cost: float = 2.0,
) -> list[torch.Tensor]:
    """The cost matrices C (N, n_b) of each image b, finite (NaN/inf -> the largest float)."""
    b, n = logits.shape[:2]
    if logits.dim() != 3 or boxes.shape != (b, n, 4):
        raise ShapeError(f"logits must be (B, N, K + 1) and boxes (B, N, 4), got "
                         f"{tuple(logits.shape)} and {tuple(boxes.shape)}")
    check_targets(targets, b)
    prob = logits.flatten(0, 1).softmax(-1)
    pred = boxes.flatten(0, 1)
    labels = torch.cat([t["labels"] for t in targets]).to(logits.device)
    tboxes = torch.cat([t["boxes"] for t in targets]).to(pred)
    cost = (bbox_cost * torch.cdist(pred, tboxes, p=1)
            - class_cost * prob[:, labels]
            - giou_cost * generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"),
                                              box_convert(tboxes, "cxcywh", "xyxy")))
    big = torch.finfo(cost.dtype).max
    cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big).view(b, n, -1).cpu()
    return [c[i] for i, c in enumerate(cost.split([len(t["labels"]) for t in targets], -1))]


class HungarianMatcher:
    """``HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)``; call with
    ``(logits, boxes, targets)`` -> list of ``(pred_idx, target_idx)`` per image."""

    def __init__(self, class_cost: float = 1.0, bbox_cost: float = 5.0, giou_cost: float = 2.0):
        costs = (class_cost, bbox_cost, giou_cost)
        if any(c < 0 for c in costs) or not any(costs):
            raise ArgumentError(f"costs must be >= 0 and not all 0, got class_cost={class_cost}, "
                                f"bbox_cost={bbox_cost}, giou_cost={giou_cost}")
        self.class_cost, self.bbox_cost, self.giou_cost = map(float, costs)

    @torch.no_grad()
    def match_flat(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
        """The assignments as flat arrays over the batch: image, query and target index (the
        target's row in the concatenation of all images' targets), and each image's cost."""
        parts, totals, offset = [], [], 0
        for i, c in enumerate(matching_cost(logits, boxes, targets, self.class_cost,
                                            self.bbox_cost, self.giou_cost)):
            c = c.numpy()
            rows, cols = self.assign(c)
            parts.append((np.full(len(rows), i), rows, cols + offset))
            totals.append(float(c[rows, cols].sum()))
            offset += c.shape[1]
        image, query, target = (np.concatenate(p).astype(np.int64) for p in zip(*parts))
        return image, query, target, totals

    @staticmethod
    def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The least-cost one-to-one assignment of a (N, n) cost matrix: (rows, cols)."""
        return linear_sum_assignment(cost)

    def match(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[float]]:
        """The assignments per image ``(pred_idx, target_idx)`` and each image's total cost."""
        image, query, target, totals = self.match_flat(logits, boxes, targets)
        starts = np.cumsum([0] + [len(t["labels"]) for t in targets])
        out = [(torch.from_numpy(query[image == i]),
                torch.from_numpy(target[image == i] - starts[i])) for i in range(len(targets))]
        return out, totals

    def __call__(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.match(logits, boxes, targets)[0]

    def __repr__(self) -> str:
        return (f"HungarianMatcher(class_cost={self.class_cost:g}, bbox_cost={self.bbox_cost:g}, "
                f"giou_cost={self.giou_cost:g})")


__all__ = ["HungarianMatcher", "check_targets", "matching_cost"]
