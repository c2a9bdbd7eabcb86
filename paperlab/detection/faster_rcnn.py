"""Faster R-CNN: backbone, region proposal network, RoI heads (Ren et al. 2015; note F1).

Idea. One network proposes and classifies. A backbone turns the image into feature maps; the
RPN (``rpn.py``) scores anchors (``anchors.py``) everywhere and keeps about a thousand refined
boxes; the RoI heads (``roi_heads.py``) pool each proposal to 7 x 7 and predict its class and
a class-specific refinement. Trained end to end with four losses summed:

    L = loss_objectness + loss_rpn_box_reg + loss_classifier + loss_box_reg

The image transform, before the backbone (``DetectionTransform``):

- normalise: ``(x - mean) / std`` per channel (ImageNet's by default);
- resize (bilinear) by ``scale = min(min_size / min(h, w), max_size / max(h, w))``, so the
  short side is ``min_size`` unless the long side would pass ``max_size``; the boxes scale by
  ``new / old`` per axis (in training ``min_size`` may be a tuple, one size drawn per image);
- batch: zero-pad every image to the batch's largest size, rounded up to a multiple of 32;
- after detection, the boxes are mapped back to each original image by the inverse ratios.

``FasterRCNN(backbone, num_classes)`` takes any backbone that has ``out_channels`` and returns
a feature map or a dict of them (e.g. ``TinyBackbone`` here, or an FPN of any CNN): a tensor is
named ``"0"``; the RoI heads pool from the levels in ``featmap_names``. Training mode
(``model(images, targets)``, targets per image ``{"boxes" (k, 4) xyxy, "labels" (k,) in
1..K}``) returns the four losses; eval mode ``model(images)`` returns per image ``{"boxes"
(D, 4), "scores" (D,), "labels" (D,)}`` in the original image's pixels.

Images: a list of ``(3, H_i, W_i)`` float tensors in [0, 1]. Anchor:
``torchvision.models.detection.FasterRCNN``: the same parameter names (its ``state_dict``
loads into ours) and, stage by stage, the same outputs (tests/detection/test_faster_rcnn.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlab.detection.anchors import AnchorGenerator
from paperlab.detection.roi import MultiScaleRoIAlign
from paperlab.detection.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from paperlab.detection.rpn import RegionProposalNetwork, RPNHead
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_boxes(boxes: Tensor, old: Sequence[int], new: Sequence[int]) -> Tensor:
    """Scale xyxy ``boxes`` from an image of size ``old = (h, w)`` to ``new = (h, w)``."""
    ratio_h, ratio_w = (torch.tensor(n, dtype=torch.float32, device=boxes.device)
                        / torch.tensor(o, dtype=torch.float32, device=boxes.device)
                        for n, o in zip(new, old))
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class DetectionTransform(nn.Module):
    """Normalise, resize to ``min_size`` / ``max_size``, pad into one batch (multiple of 32)."""

    def __init__(self, min_size: int | Sequence[int], max_size: int,
                 image_mean: Sequence[float], image_std: Sequence[float],
                 size_divisible: int = 32) -> None:
        super().__init__()
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.max_size = max_size
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.size_divisible = size_divisible

    def resize(self, image: Tensor, target: dict[str, Tensor] | None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        h, w = image.shape[-2:]
        if self.training:  # one draw of the global RNG per image, as torchvision's torch_choice
            size = self.min_size[int(torch.empty(1).uniform_(0.0, len(self.min_size)).item())]
        else:
            size = self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        image = F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                              recompute_scale_factor=True, align_corners=False)[0]
        if target is not None:
            target = {**target, "boxes": resize_boxes(target["boxes"], (h, w), image.shape[-2:])}
        return image, target

    def batch(self, images: list[Tensor]) -> Tensor:
        """Zero-padded ``(N, C, H, W)``, H and W the largest rounded up to ``size_divisible``."""
        c = max(im.shape[0] for im in images)
        h, w = (int(math.ceil(max(im.shape[d] for im in images) / self.size_divisible)
                    * self.size_divisible) for d in (1, 2))
        out = images[0].new_zeros(len(images), c, h, w)
        for i, im in enumerate(images):
            out[i, : im.shape[0], : im.shape[1], : im.shape[2]].copy_(im)
        return out

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[Tensor, list[tuple[int, int]], list[dict[str, Tensor]] | None]:
        out_images, out_targets = [], [] if targets is not None else None
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ShapeError(f"images[{i}] must be a (C, H, W) tensor, got {got}")
            if not image.is_floating_point():
                raise ArgumentTypeError(f"images[{i}] must be float in [0, 1], got {image.dtype}")
            mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
            std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
            image, target = self.resize((image - mean[:, None, None]) / std[:, None, None],
                                        targets[i] if targets is not None else None)
            out_images.append(image)
            if out_targets is not None:
                out_targets.append(target)
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in out_images]
        return self.batch(out_images), sizes, out_targets

    def postprocess(self, detections: list[dict[str, Tensor]], sizes: list[tuple[int, int]],
                    original: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes back from the resized image to the original one."""
        return [{**d, "boxes": resize_boxes(d["boxes"], s, o)}
                for d, s, o in zip(detections, sizes, original)]


@export_model("faster-rcnn", note="F1", paper="Ren et al. 2015")
class FasterRCNN(nn.Module):
    """Faster R-CNN around ``backbone`` (with ``out_channels``) for ``num_classes`` classes
    including the background; every default is torchvision's."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, min_size: int | Sequence[int]
                 = 800, max_size: int = 1333, image_mean: Sequence[float] = IMAGENET_MEAN,
                 image_std: Sequence[float] = IMAGENET_STD,
                 anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios: Sequence[Sequence[float]] | None = None,
                 rpn_pre_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                 rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                 rpn_nms_thresh: float = 0.7, rpn_fg_iou_thresh: float = 0.7,
                 rpn_bg_iou_thresh: float = 0.3, rpn_batch_size_per_image: int = 256,
                 rpn_positive_fraction: float = 0.5, rpn_score_thresh: float = 0.0,
                 featmap_names: Sequence[str] = ("0", "1", "2", "3"), output_size: int = 7,
                 sampling_ratio: int = 2, representation_size: int = 1024,
                 box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
                 box_detections_per_img: int = 100, box_fg_iou_thresh: float = 0.5,
                 box_bg_iou_thresh: float = 0.5, box_batch_size_per_image: int = 512,
                 box_positive_fraction: float = 0.25,
                 bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
                 ) -> None:
        super().__init__()
        channels = getattr(backbone, "out_channels", None)
        if not isinstance(channels, int):
            raise ArgumentError("backbone must have an int attribute out_channels (the channels "
                                "of every feature map it returns)")
        check_int("num_classes", num_classes, minimum=2)
        if aspect_ratios is None:
            aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
        anchors = AnchorGenerator(anchor_sizes, aspect_ratios)
        self.transform = DetectionTransform(min_size, max_size, image_mean, image_std)
        self.backbone = backbone
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=rpn_positive_fraction,
            pre_nms_top_n={"training": rpn_pre_nms_top_n_train,
                           "testing": rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": rpn_post_nms_top_n_train,
                            "testing": rpn_post_nms_top_n_test},
            nms_thresh=rpn_nms_thresh, score_thresh=rpn_score_thresh)
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(list(featmap_names), output_size, sampling_ratio),
            TwoMLPHead(channels * output_size**2, representation_size),
            FastRCNNPredictor(representation_size, num_classes),
            fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction, bbox_reg_weights=bbox_reg_weights,
            score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img)

    def features(self, batch: Tensor) -> dict[str, Tensor]:
        """The backbone's feature maps as an ordered dict (a single map is named ``"0"``)."""
        out = self.backbone(batch)
        return OrderedDict([("0", out)]) if isinstance(out, Tensor) else out

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            _check_targets(images, targets)
        original = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch, sizes, targets = self.transform(images, targets if self.training else None)
        features = self.features(batch)
        proposals, rpn_losses = self.rpn(batch, sizes, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, sizes, targets)
        if self.training:
            return {**head_losses, **rpn_losses}
        return self.transform.postprocess(detections, sizes, original)


def _check_targets(images: list[Tensor], targets: list[dict[str, Tensor]] | None) -> None:
    if targets is None or len(targets) != len(images):
        got = "none" if targets is None else len(targets)
        raise ArgumentError(f"training mode needs one target per image ({len(images)}), got "
                            f"{got}")
    for i, t in enumerate(targets):
        boxes = t.get("boxes")
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ShapeError(f"targets[{i}]['boxes'] must be a (k, 4) tensor")
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(1)
        if bad.any():
            j = int(torch.where(bad)[0][0])
            raise ArgumentError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} has no "
                                f"area; boxes must be x1 < x2, y1 < y2")


class TinyBackbone(nn.Module):
    """A small CNN for the experiments: ``levels`` feature maps at strides 8, 16, ...

    Stem: 3 stride-2 conv3x3 + BatchNorm + ReLU blocks (stride 8, ``width`` channels);
    each further level one more stride-2 block. Every level is projected to ``out_channels``
    by a 1x1 conv; returns ``{"0": stride 8, "1": stride 16, ...}``."""

    def __init__(self, out_channels: int = 32, width: int = 32, levels: int = 1) -> None:
        super().__init__()
        check_int("levels", levels, minimum=1)
        self.out_channels = out_channels

        def block(i: int, o: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(block(3, width // 2), block(width // 2, width),
                                  block(width, width))
        self.downs = nn.ModuleList(block(width, width) for _ in range(levels - 1))
        self.proj = nn.ModuleList(nn.Conv2d(width, out_channels, 1) for _ in range(levels))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        out = OrderedDict()
        for i, proj in enumerate(self.proj):
            if i:
                x = self.downs[i - 1](x)
            out[str(i)] = proj(x)
        return out
