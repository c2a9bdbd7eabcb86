"""Detection (notes F1-F4): boxes and NMS (``boxes.py``), RoI pooling and align (``roi.py``),
deformable convolution (``deform_conv.py``), mAP (``map.py``, ``coco.py``).
"""

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
from paperlab.detection.deform_conv import DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from paperlab.detection.roi import (
    MultiScaleRoIAlign,
    RoIAlign,
    RoIPool,
    boxes_to_rois,
    fpn_levels,
    roi_align,
    roi_pool,
)

__all__ = [
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "DeformConv2d",
    "Matcher",
    "ModulatedDeformConv2d",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "boxes_to_rois",
    "clip_boxes_to_image",
    "complete_box_iou",
    "deform_conv2d",
    "distance_box_iou",
    "fpn_levels",
    "generalized_box_iou",
    "nms",
    "remove_small_boxes",
    "roi_align",
    "roi_pool",
]
