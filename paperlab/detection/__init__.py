"""Detection (notes F1-F4): boxes and NMS (``boxes.py``), RoI pooling and align (``roi.py``),
deformable convolution (``deform_conv.py``), mAP (``map.py``, ``coco_matching.py``,
``coco.py``); the detectors: Faster R-CNN (``anchors.py``, ``rpn.py``, ``roi_heads.py``,
``faster_rcnn.py``, ``fpn.py``) and DETR (``detr.py``, ``matcher.py``, ``set_criterion.py``).
"""

from paperlab.detection.anchors import AnchorGenerator
from paperlab.detection.boxes import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    nms,
    remove_small_boxes,
)
from paperlab.detection.coco import (
    COCODetections,
    COCOGroundTruth,
    load_detections,
    load_ground_truth,
)
from paperlab.detection.deform_conv import DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from paperlab.detection.detr import DETR, DETRConfig
from paperlab.detection.faster_rcnn import FasterRCNN
from paperlab.detection.fpn import (
    BackboneWithFPN,
    ExtraFPNBlock,
    FeaturePyramidNetwork,
    LastLevelMaxPool,
)
from paperlab.detection.map import (
    COCOResult,
    VOCResult,
    coco_ap,
    coco_box_iou,
    coco_evaluate,
    voc_ap,
    voc_evaluate,
)
from paperlab.detection.matcher import HungarianMatcher
from paperlab.detection.roi import (
    MultiScaleRoIAlign,
    RoIAlign,
    RoIPool,
    boxes_to_rois,
    fpn_levels,
    roi_align,
    roi_pool,
)
from paperlab.detection.roi_heads import RoIHeads
from paperlab.detection.rpn import RegionProposalNetwork
from paperlab.detection.set_criterion import SetCriterion

__all__ = [
    "AnchorGenerator",
    "BackboneWithFPN",
    "DETR",
    "DETRConfig",
    "ExtraFPNBlock",
    "FasterRCNN",
    "FeaturePyramidNetwork",
    "HungarianMatcher",
    "LastLevelMaxPool",
    "RegionProposalNetwork",
    "RoIHeads",
    "SetCriterion",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "COCODetections",
    "COCOGroundTruth",
    "COCOResult",
    "DeformConv2d",
    "Matcher",
    "ModulatedDeformConv2d",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "VOCResult",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "boxes_to_rois",
    "clip_boxes_to_image",
    "coco_ap",
    "coco_box_iou",
    "coco_evaluate",
    "complete_box_iou",
    "deform_conv2d",
    "distance_box_iou",
    "fpn_levels",
    "generalized_box_iou",
    "load_detections",
    "load_ground_truth",
    "nms",
    "remove_small_boxes",
    "roi_align",
    "roi_pool",
    "voc_ap",
    "voc_evaluate",
]
