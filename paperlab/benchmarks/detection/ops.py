"""Detection operators (note F1, F2): our plain-torch NMS, RoI align, RoI pool and deformable
convolution against torchvision's C++ (or CUDA) kernels, same inputs, same process.

NMS is timed on detector-like boxes (clusters of jittered copies around a few objects, so most
boxes are suppressed) and on scattered boxes (few suppressed); the RoI operators and the
deformable convolution are timed forward + backward (gradient w.r.t. the input, and for the
deformable convolution also offset, mask and weight), on FPN-like feature maps.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.detection.boxes import nms
from paperlab.detection.deform_conv import deform_conv2d
from paperlab.detection.roi import roi_align, roi_pool
from paperlab.errors import require
from paperlab.registry import export_benchmark


def clustered_boxes(n: int, g: torch.Generator, objects: int = 20) -> torch.Tensor:
    """Jittered copies of a few boxes, as a detector outputs them: most are suppressed."""
    centre = torch.rand(objects, 2, generator=g) * 600
    size = torch.rand(objects, 2, generator=g) * 150 + 20
    which = torch.randint(0, objects, (n,), generator=g)
    c = centre[which] + torch.randn(n, 2, generator=g) * size[which] * 0.1
    s = size[which] * torch.exp(torch.randn(n, 2, generator=g) * 0.1)
    return torch.cat((c - s / 2, c + s / 2), 1)


def _scattered_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 800
    return torch.cat((xy, xy + torch.rand(n, 2, generator=g) * 60 + 4), 1)


def _rois(k: int, g: torch.Generator, batch: int, size: float) -> torch.Tensor:
    xy = torch.rand(k, 2, generator=g) * size * 0.8
    wh = torch.rand(k, 2, generator=g) * size * 0.3 + 2
    idx = torch.randint(0, batch, (k, 1), generator=g).float()
    return torch.cat((idx, xy, xy + wh), 1)


def _fwd_bwd(fn, inputs):
    def run():
        for t in inputs:
            t.grad = None
        out = fn()
        out.backward(torch.ones_like(out))
        return out
    return run


@export_benchmark("detection", group="detection", note="F1")
def bench_detection(ctx: BenchContext) -> list[BenchRow]:
    """nms, roi_align, roi_pool, deform_conv2d (forward + backward) vs torchvision.ops."""
    tv = require("torchvision", extra="test", purpose="benchmark 'detection'").ops
    dev = ctx.device
    g = torch.Generator().manual_seed(0)
    rows = []
    ref = "torchvision.ops (C++/CUDA kernel)"

    for kind, make in (("clustered", clustered_boxes), ("scattered", _scattered_boxes)):
        for n in ([1000, 4000] if ctx.quick else [100, 300, 1000, 4000, 12000]):
            boxes, scores = make(n, g).to(dev), torch.rand(n, generator=g).to(dev)
            kept = len(tv.nms(boxes, scores, 0.5))
            rows.append(compare(ctx, f"nms IoU 0.5, {kind} boxes", f"N={n}",
                                lambda b=boxes, s=scores: nms(b, s, 0.5),
                                lambda b=boxes, s=scores: tv.nms(b, s, 0.5), ref,
                                note=f"{kept} kept"))

    feature_sizes = [(2, 256, 50, 64, 512)] if ctx.quick else [(2, 256, 50, 64, 128),
                                                               (2, 256, 50, 64, 512),
                                                               (2, 256, 100, 128, 1024)]
    for batch, c, h, w, k in feature_sizes:
        x = torch.randn(batch, c, h, w, generator=g).to(dev).requires_grad_()
        rois = _rois(k, g, batch, min(h, w)).to(dev)
        size = f"{batch}x{c}x{h}x{w}, K={k}"
        rows.append(compare(
            ctx, "roi_align 7x7, sampling_ratio 2, aligned, fwd+bwd", size,
            _fwd_bwd(lambda x=x, r=rois: roi_align(x, r, 7, 1.0, 2, True), [x]),
            _fwd_bwd(lambda x=x, r=rois: tv.roi_align(x, r, 7, 1.0, 2, True), [x]), ref))
        rows.append(compare(
            ctx, "roi_align 7x7, adaptive sampling, fwd+bwd", size,
            _fwd_bwd(lambda x=x, r=rois: roi_align(x, r, 7, 1.0, -1), [x]),
            _fwd_bwd(lambda x=x, r=rois: tv.roi_align(x, r, 7, 1.0, -1), [x]), ref))
        rows.append(compare(
            ctx, "roi_pool 7x7, fwd+bwd", size,
            _fwd_bwd(lambda x=x, r=rois: roi_pool(x, r, 7, 1.0), [x]),
            _fwd_bwd(lambda x=x, r=rois: tv.roi_pool(x, r, 7, 1.0), [x]), ref))

    conv_sizes = [(4, 64, 32)] if ctx.quick else [(4, 64, 32), (8, 64, 64), (2, 256, 32)]
    for batch, c, side in conv_sizes:
        x = torch.randn(batch, c, side, side, generator=g).to(dev).requires_grad_()
        wt = (torch.randn(c, c, 3, 3, generator=g) * 0.05).to(dev).requires_grad_()
        off = torch.randn(batch, 18, side, side, generator=g).to(dev).requires_grad_()
        mask = torch.rand(batch, 9, side, side, generator=g).to(dev).requires_grad_()
        leaves = [x, off, wt, mask]
        rows.append(compare(
            ctx, "deform_conv2d v2 3x3, pad 1, fwd+bwd", f"{batch}x{c}x{side}x{side}",
            _fwd_bwd(lambda t=leaves: deform_conv2d(t[0], t[1], t[2], None, 1, 1, 1, t[3]),
                     leaves),
            _fwd_bwd(lambda t=leaves: tv.deform_conv2d(t[0], t[1], t[2], None, 1, 1, 1, t[3]),
                     leaves), ref))
    return rows
