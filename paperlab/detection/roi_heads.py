"""The second stage of Faster R-CNN: classify and refine each proposal (Fast R-CNN; note F1).

Idea (Girshick 2015; Ren et al. 2015). Each proposal is cropped from the feature maps into a
fixed ``7 x 7`` grid (``MultiScaleRoIAlign``, sampling ratio 2, ``roi.py``), flattened and read
by a two-layer MLP (``fc6``, ``fc7``, ReLU, 1024 units); two linear layers then give ``K + 1``
class logits (0 = background) and ``4 (K + 1)`` class-specific box deltas.

Training. The ground-truth boxes are added to the proposals; each proposal is matched to its
best ground truth (``Matcher(0.5, 0.5)``: foreground at IoU >= 0.5, background below) and
takes its class (0 for background); 512 per image are sampled, at most 25 % foreground. With
``BoxCoder`` weights (10, 10, 5, 5), over the N sampled proposals (foreground F):

    loss_classifier = mean_N CE(logits, label)
    loss_box_reg = sum_F smoothL1_beta(deltas[label] - encode(gt, proposal)) / N,  beta = 1/9

Inference. Softmax over classes; every proposal is decoded once per foreground class and
clipped; candidates with score <= 0.05 or a side under 0.01 px are dropped; NMS at 0.5 within
each class; the 100 best remain per image.

Shapes: ``features`` dict of ``(N, C, H_l, W_l)``; ``proposals`` per image ``(P_i, 4)``;
``image_shapes`` per image ``(h, w)``. Returns per image ``{"boxes" (D, 4), "scores" (D,),
"labels" (D,)}`` (eval) or the two losses (training).
Anchor: ``torchvision.models.detection.roi_heads.RoIHeads`` (same names and results).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlab.detection.boxes import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    remove_small_boxes,
)
from paperlab.detection.roi import MultiScaleRoIAlign
from paperlab.errors import ArgumentError


class TwoMLPHead(nn.Module):
    """``flatten -> fc6 -> ReLU -> fc7 -> ReLU``: pooled ``(R, C, 7, 7)`` to ``(R, 1024)``."""

    def __init__(self, in_channels: int, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits ``(R, K + 1)`` and class-specific deltas ``(R, 4 (K + 1))``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                  regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled proposals; smooth-L1 (beta 1/9) on the true class's
    deltas of the foreground ones, divided by the number of sampled proposals."""
    labels_all, targets_all = torch.cat(labels), torch.cat(regression_targets)
    classification = F.cross_entropy(class_logits, labels_all)
    fg = torch.where(labels_all > 0)[0]
    per_class = box_regression.reshape(class_logits.shape[0], -1, 4)
    box = F.smooth_l1_loss(per_class[fg, labels_all[fg]], targets_all[fg], beta=1 / 9,
                           reduction="sum") / labels_all.numel()
    return classification, box


class RoIHeads(nn.Module):
    """RoI align + box head + predictor; sampling and losses in training, detections in eval."""

    def __init__(self, box_roi_pool: MultiScaleRoIAlign, box_head: nn.Module,
                 box_predictor: nn.Module, *, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25,
                 bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100) -> None:
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img

    # ------------------------------------------------------------------ training samples

    def assign_targets_to_proposals(self, proposals: list[Tensor], gt_boxes: list[Tensor],
                                    gt_labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: the matched gt index (clamped to >= 0) and the class (0: background,
        -1: between the thresholds)."""
        matched, labels = [], []
        for props, boxes, classes in zip(proposals, gt_boxes, gt_labels):
            if boxes.numel() == 0:
                zeros = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
                matched.append(zeros)
                labels.append(zeros.clone())
                continue
            idx = self.proposal_matcher(box_iou(boxes, props))
            lab = classes[idx.clamp(min=0)].to(torch.int64)
            lab[idx == Matcher.BELOW_LOW_THRESHOLD] = 0
            lab[idx == Matcher.BETWEEN_THRESHOLDS] = -1
            matched.append(idx.clamp(min=0))
            labels.append(lab)
        return matched, labels

    def select_training_samples(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
                                ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Ground truth added to the proposals, matched, sampled (in index order); returns the
        sampled proposals, their labels and their regression targets."""
        gt_boxes = [t["boxes"].to(proposals[0].dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]
        proposals = [torch.cat((p, g)) for p, g in zip(proposals, gt_boxes)]
        matched, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        pos, neg = self.fg_bg_sampler(labels)
        matched_boxes = []
        for i in range(len(proposals)):
            keep = torch.where(pos[i] | neg[i])[0]
            proposals[i], labels[i], matched[i] = (proposals[i][keep], labels[i][keep],
                                                   matched[i][keep])
            boxes = gt_boxes[i] if gt_boxes[i].numel() else gt_boxes[i].new_zeros(1, 4)
            matched_boxes.append(boxes[matched[i]])
        return proposals, labels, list(self.box_coder.encode(matched_boxes, proposals))

    # ------------------------------------------------------------------ inference

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor,
                               proposals: list[Tensor], image_shapes: list[tuple[int, int]]
                               ) -> list[dict[str, Tensor]]:
        """Softmax, per-class decode and clip, score > thresh, size >= 0.01, per-class NMS."""
        num_classes = class_logits.shape[-1]
        boxes_all = self.box_coder.decode(box_regression, proposals)
        scores_all = F.softmax(class_logits, -1)
        sizes = [len(p) for p in proposals]
        out = []
        for boxes, scores, shape in zip(boxes_all.split(sizes), scores_all.split(sizes),
                                        image_shapes):
            boxes = clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=boxes.device).expand_as(scores)
            # drop the background column, then one candidate per (proposal, class)
            boxes, scores, labels = (boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1),
                                     labels[:, 1:].reshape(-1))
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

    # ------------------------------------------------------------------ forward

    def box_outputs(self, features: dict[str, Tensor], proposals: list[Tensor],
                    image_shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """Class logits and box deltas of every proposal (all images concatenated)."""
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        return self.box_predictor(self.box_head(pooled))

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ArgumentError("RoIHeads needs targets in training mode")
            proposals, labels, regression_targets = self.select_training_samples(proposals,
                                                                                 targets)
            class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
            cls, box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_classifier": cls, "loss_box_reg": box}
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        return self.postprocess_detections(class_logits, box_regression, proposals,
                                           image_shapes), {}
