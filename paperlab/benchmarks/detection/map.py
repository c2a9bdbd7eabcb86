"""COCO mAP benchmark (note F4): ``coco_evaluate`` against pycocotools and faster-coco-eval.

Each call goes from the in-memory COCO structures (a ground-truth dict and a detection list,
as a user holds them after ``json.load``) to the 12 summary numbers: for the references that is
``COCO`` + ``loadRes`` + ``COCOeval`` ``evaluate/accumulate/summarize``; for ours validation
(``coco.py``) + evaluation. Synthetic data from ``data/synthetic/detections.py`` (about 5.5
objects and 20 detections per image, 10 + 2 unused categories, crowd regions, empty images,
ties in score). Before timing, the three results are asserted equal (12 numbers and the
precision array to 1e-12). The 5,000-image size runs at most 3 repeats (pycocotools takes
tens of seconds per call there).

Measured on the shared 2-core machine under load (median of 7 / 3): 500 images, ours 0.18 s
vs faster-coco-eval 0.53 s (0.35x) and 0.09 s vs pycocotools 5.1 s (0.02x); 5,000 images,
ours 1.15 s vs faster-coco-eval 5.2 s (0.22x) and 1.3 s vs pycocotools 53 s (0.03x).
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.data.synthetic.detections import synthetic_detections
from paperlab.detection.map import coco_evaluate
from paperlab.errors import require
from paperlab.registry import export_benchmark


def pycocotools_eval(gt: dict[str, Any], dt: list[dict[str, Any]]) -> Any:
    """pycocotools' COCOeval on in-memory structures, its prints swallowed."""
    coco = require("pycocotools.coco", extra="test", purpose="benchmark 'map'")
    cocoeval = require("pycocotools.cocoeval", extra="test", purpose="benchmark 'map'")
    with contextlib.redirect_stdout(io.StringIO()):
        g = coco.COCO()
        g.dataset = gt
        g.createIndex()
        e = cocoeval.COCOeval(g, g.loadRes(dt), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def faster_coco_eval(gt: dict[str, Any], dt: list[dict[str, Any]]) -> Any:
    """faster-coco-eval's COCOeval_faster (C++ matching and accumulation), quiet."""
    fce = require("faster_coco_eval", extra="test", purpose="benchmark 'map'")
    quiet = lambda *a, **k: None  # noqa: E731
    g = fce.COCO(gt, print_function=quiet)
    e = fce.COCOeval_faster(g, g.loadRes(dt), "bbox", print_function=quiet)
    e.evaluate()
    e.accumulate()
    e.summarize()
    return e


@export_benchmark("map", group="detection", note="F4")
def bench_map(ctx: BenchContext) -> list[BenchRow]:
    """COCO box mAP on 500 and 5,000 synthetic images (20 detections each): ours vs
    pycocotools and vs faster-coco-eval, in-memory JSON to the 12 numbers."""
    sizes = [500] if ctx.quick else [500, 5000]
    rows = []
    for n in sizes:
        gt, dt = synthetic_detections(n, seed=0)
        # each tool gets its own copy: the references add keys to the dicts they are given
        gt_p, dt_p, gt_f, dt_f = (copy.deepcopy(x) for x in (gt, dt, gt, dt))
        ours = coco_evaluate(gt, dt)
        for name, ref in (("pycocotools", pycocotools_eval(gt_p, dt_p)),
                          ("faster-coco-eval", faster_coco_eval(gt_f, dt_f))):
            np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=1e-12,
                                       err_msg=f"stats differ from {name}")
            np.testing.assert_allclose(ours.precision, ref.eval["precision"], rtol=0, atol=1e-12,
                                       err_msg=f"precision differs from {name}")
        sub = BenchContext(repeats=min(ctx.repeats, 3) if n > 1000 else ctx.repeats,
                           device=ctx.device, quick=ctx.quick)
        size = f"{n} images, {len(dt)} detections"
        case = "COCO bbox mAP, JSON in memory -> 12 numbers"
        rows.append(compare(sub, case, size, lambda gt=gt, dt=dt: coco_evaluate(gt, dt),
                            lambda g=gt_f, d=dt_f: faster_coco_eval(g, d),
                            "faster-coco-eval COCOeval_faster"))
        rows.append(compare(sub, case, size, lambda gt=gt, dt=dt: coco_evaluate(gt, dt),
                            lambda g=gt_p, d=dt_p: pycocotools_eval(g, d),
                            "pycocotools COCOeval"))
    return rows
