"""The region proposal network of Faster R-CNN (Ren et al. 2015, section 3.1; note F1).

Idea. A small fully convolutional head slides over every feature level and, for each of the
``A`` anchors of each cell (``anchors.py``), predicts an objectness logit and four box deltas:

    t = relu(conv3x3(feature));  objectness = conv1x1_A(t);  deltas = conv1x1_4A(t)

Proposals = anchors moved by the deltas (``BoxCoder`` with weights (1, 1, 1, 1)). Filtering,
per image: the ``pre_nms_top_n`` highest logits of each level, ``sigmoid``, clipping to the
image, dropping boxes under ``min_size`` = 1e-3 px or scores under ``score_thresh``, NMS at
``nms_thresh`` = 0.7 within each level, then the ``post_nms_top_n`` best (2000 / 2000 in
training, 1000 / 1000 in testing, torchvision's defaults).

Training. Anchors are matched to ground truth by IoU (``Matcher(0.7, 0.3,
allow_low_quality_matches=True)``: positive at IoU >= 0.7, negative below 0.3, ignored
between, and each ground truth's best anchors positive whatever their IoU); 256 anchors per
image are sampled, at most half positive (``BalancedPositiveNegativeSampler``). Losses over
the sampled anchors S (positives P):

    loss_objectness = mean_S BCE(logit, label)
    loss_rpn_box_reg = sum_P smoothL1_beta(deltas - encode(gt, anchor)) / |S|,  beta = 1/9

Shapes: ``features`` a dict of ``(N, C, H_l, W_l)``; ``images`` the padded batch ``(N, 3, H,
W)`` and ``image_sizes`` each image's ``(h, w)`` inside it; targets per image ``boxes (k, 4)``.
Returns per-image proposals ``(P_i, 4)`` and the losses (empty outside training).
Anchor: ``torchvision.models.detection.rpn`` (same parameters' names, same proposals).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlab.detection.anchors import AnchorGenerator
from paperlab.detection.boxes import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    remove_small_boxes,
)
from paperlab.errors import ArgumentError


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to ``A`` objectness logits and ``4A`` deltas per cell.

    Weights ~ N(0, 0.01), biases 0. ``conv`` is nested as torchvision's ``conv.0.0``."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True)))
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = [], []
        for f in features:
            t = self.conv(f)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_predictions(logits: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-level ``(N, A, H, W)`` / ``(N, 4A, H, W)`` -> ``(N * sum HWA, 1)`` and ``(.., 4)``,
    each image's anchors in ``anchors.py``'s order (cell-major, then anchor; levels in turn)."""
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas):
        n, a, h, w = lg.shape
        flat_logits.append(lg.reshape(n, a, 1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 1))
        flat_deltas.append(dl.reshape(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
    return torch.cat(flat_logits, 1).flatten(0, -2), torch.cat(flat_deltas, 1).reshape(-1, 4)


class RegionProposalNetwork(nn.Module):
    """Anchors + ``RPNHead`` + proposal filtering, and in training the two RPN losses."""

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, *,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int] | None = None,
                 post_nms_top_n: dict[str, int] | None = None, nms_thresh: float = 0.7,
                 score_thresh: float = 0.0, min_size: float = 1e-3) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        self._pre_nms_top_n = pre_nms_top_n or {"training": 2000, "testing": 1000}
        self._post_nms_top_n = post_nms_top_n or {"training": 2000, "testing": 1000}
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, min_size

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    # ------------------------------------------------------------------ proposals

    def filter_proposals(self, proposals: Tensor, objectness: Tensor,
                         image_sizes: list[tuple[int, int]], per_level: list[int]
                         ) -> tuple[list[Tensor], list[Tensor]]:
        """Top-n per level, sigmoid, clip, small boxes out, per-level NMS, top-n overall."""
        n = proposals.shape[0]
        objectness = objectness.detach().reshape(n, -1)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64, device=proposals.device)
                            for i, k in enumerate(per_level)])[None].expand_as(objectness)
        top, offset = [], 0
        for scores in objectness.split(per_level, 1):
            k = min(self.pre_nms_top_n(), scores.shape[1])
            top.append(scores.topk(k, dim=1).indices + offset)
            offset += scores.shape[1]
        top_idx = torch.cat(top, 1)
        rows = torch.arange(n, device=proposals.device)[:, None]
        objectness, levels, proposals = (objectness[rows, top_idx], levels[rows, top_idx],
                                         proposals[rows, top_idx])
        probs = torch.sigmoid(objectness)
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, size in zip(proposals, probs, levels, image_sizes):
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    # ------------------------------------------------------------------ training

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
                                  ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: labels (1 positive, 0 negative, -1 ignored; float) and matched gt boxes."""
        labels, matched = [], []
        for anchors_i, target in zip(anchors, targets):
            gt = target["boxes"]
            if gt.numel() == 0:
                matched.append(torch.zeros_like(anchors_i))
                labels.append(torch.zeros(anchors_i.shape[0], device=anchors_i.device))
                continue
            idx = self.proposal_matcher(box_iou(gt, anchors_i))
            matched.append(gt[idx.clamp(min=0)])
            lab = (idx >= 0).to(torch.float32)
            lab[idx == Matcher.BELOW_LOW_THRESHOLD] = 0.0
            lab[idx == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(lab)
        return labels, matched

    def compute_loss(self, objectness: Tensor, deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat((pos, torch.where(torch.cat(neg))[0]))
        labels_all, targets_all = torch.cat(labels), torch.cat(regression_targets)
        box_loss = F.smooth_l1_loss(deltas[pos], targets_all[pos], beta=1 / 9,
                                    reduction="sum") / sampled.numel()
        obj_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled],
                                                      labels_all[sampled])
        return obj_loss, box_loss

    # ------------------------------------------------------------------ forward

    def forward(self, images: Tensor, image_sizes: list[tuple[int, int]],
                features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        maps = list(features.values())
        logits, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [lg[0].numel() for lg in logits]  # A * H * W per level
        objectness, pred_deltas = flatten_predictions(logits, deltas)
        proposals = self.box_coder.decode(pred_deltas.detach(), anchors)
        proposals = proposals.reshape(len(anchors), -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, image_sizes, per_level)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ArgumentError("the RPN needs targets in training mode")
            labels, matched = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched, anchors)
            obj, box = self.compute_loss(objectness, pred_deltas, labels, list(regression_targets))
            losses = {"loss_objectness": obj, "loss_rpn_box_reg": box}
        return boxes, losses
