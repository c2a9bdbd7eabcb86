"""Faster R-CNN eval forward (note F1): ours vs torchvision's ``FasterRCNN``, same weights.

Both models are built around the same ``TinyBackbone`` with the same anchors, RoI align and
box head; torchvision's ``state_dict`` is loaded into ours (as in the parity test), so both
do the same work on the same images: transform, backbone, RPN (1000 proposals per image at
torchvision's defaults), RoI heads and post-processing. Goal: ratio <= 1.1.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.detection.faster_rcnn import FasterRCNN, TinyBackbone
from paperlab.errors import require
from paperlab.registry import export_benchmark


def pair(levels: int, width: int, min_size: int, num_classes: int = 6,
         device: str = "cpu") -> tuple[FasterRCNN, torch.nn.Module]:
    """Ours and torchvision's Faster R-CNN with the same backbone and weights, in eval mode."""
    tvd = require("torchvision.models.detection", extra="test",
                  purpose="benchmark 'faster-rcnn'")
    ops = require("torchvision.ops", extra="test", purpose="benchmark 'faster-rcnn'")
    sizes = tuple((32 * 2**i,) for i in range(levels)) if levels > 1 else ((32, 64, 128),)
    ratios = ((0.5, 1.0, 2.0),) * len(sizes)
    names = [str(i) for i in range(levels)]
    common = dict(min_size=min_size, max_size=min_size * 2)
    torch.manual_seed(0)
    ref = tvd.FasterRCNN(
        TinyBackbone(width, width, levels), None,
        rpn_anchor_generator=tvd.anchor_utils.AnchorGenerator(sizes, ratios),
        box_roi_pool=ops.MultiScaleRoIAlign(names, 7, 2),
        box_head=tvd.faster_rcnn.TwoMLPHead(width * 49, 256),
        box_predictor=tvd.faster_rcnn.FastRCNNPredictor(256, num_classes), **common)
    with torch.no_grad():  # spread the scores, so there are detections to post-process
        for name, p in ref.named_parameters():  # (the backbone keeps its own init)
            if not name.startswith("backbone."):
                p.normal_(0, 0.2 if p.dim() > 1 else 0.05)
    ours = FasterRCNN(TinyBackbone(width, width, levels), num_classes, anchor_sizes=sizes,
                      aspect_ratios=ratios, featmap_names=names, representation_size=256,
                      **common)
    ours.load_state_dict(OrderedDict(ref.state_dict()))
    return ours.to(device).eval(), ref.to(device).eval()


@export_benchmark("faster-rcnn", group="detectors", note="F1")
def bench_faster_rcnn(ctx: BenchContext) -> list[BenchRow]:
    """Eval forward, ours vs torchvision.models.detection.FasterRCNN (same weights)."""
    dev = ctx.device
    g = torch.Generator().manual_seed(0)
    cases = [(1, 32, 128, 2), (2, 64, 320, 2)] if ctx.quick else [
        (1, 32, 128, 2), (2, 64, 320, 2), (2, 64, 512, 4)]
    rows = []
    for levels, width, size, n in cases:
        ours, ref = pair(levels, width, size, device=dev)
        images = [torch.rand(3, size, size * 5 // 4, generator=g).to(dev) for _ in range(n)]

        def run(model, images=images):
            with torch.no_grad():
                return model(images)

        found = sum(len(d["boxes"]) for d in run(ref))
        rows.append(compare(ctx, f"Faster R-CNN eval forward, {levels} level(s), width {width}",
                            f"{n} x {size}x{size * 5 // 4}", lambda m=ours: run(m),
                            lambda m=ref: run(m), "torchvision FasterRCNN (C++ ops)",
                            min_time=0.05, note=f"{found} detections"))
    return rows
