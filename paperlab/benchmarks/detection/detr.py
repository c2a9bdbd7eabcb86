"""DETR benchmark (note F3): our ``DETR`` against HF ``DetrForObjectDetection``, eval forward,
the same tiny config and the same weights (copied by ``hub/detr.py``).

Config (the parity test's, ``TINY_DETR`` and ``TINY_RESNET``): a ResNet backbone of basic
blocks (embedding 16, stages 16 / 32 / 64, depths 1 / 1 / 1), d_model 32, 2 encoder and 2
decoder layers of 4 heads and FFN 64, 10 queries, 5 classes; images (B, 3, S, S) with a full
pixel mask, float32, without grad. The goal is ours / HF <= 1.1.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.registry import export_benchmark

TINY_RESNET = dict(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1],
                   layer_type="basic", out_features=["stage3"])
TINY_DETR = dict(use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
                 encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                 num_queries=10, num_labels=5)


def hf_tiny_detr(transformers: Any, **overrides: Any) -> Any:
    """HF ``DetrForObjectDetection`` of the tiny config (``overrides`` on ``TINY_DETR``), with
    random batch-norm statistics so the frozen norms are not the identity; eval mode."""
    cfg = transformers.DetrConfig(backbone_config=transformers.ResNetConfig(**TINY_RESNET),
                                  **{**TINY_DETR, **overrides})
    model = transformers.DetrForObjectDetection(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif "normalization" in name and t.is_floating_point():
                base = 1.0 if name.endswith("weight") else 0.0
                t.copy_(base + 0.1 * torch.randn(t.shape, generator=g))
    return model


@export_benchmark("detr", group="detectors", note="F3")
def bench_detr(ctx: BenchContext) -> list[BenchRow]:
    """Eval forward of our DETR vs HF DetrForObjectDetection, batch B of S x S images."""
    transformers = require("transformers", extra="test", purpose="benchmark 'detr'")
    from paperlab.hub.detr import import_detr

    torch.manual_seed(0)
    ref = hf_tiny_detr(transformers)
    ours = import_detr(ref.config.to_dict(), ref.state_dict()).to(ctx.device)
    ref = ref.to(ctx.device)
    sizes = [(2, 64), (4, 128)] if ctx.quick else [(2, 64), (4, 128), (8, 128), (2, 320)]
    g = torch.Generator().manual_seed(2)
    rows = []
    for b, s in sizes:
        x = torch.randn(b, 3, s, s, generator=g).to(ctx.device)
        mask = torch.ones(b, s, s, dtype=torch.long, device=ctx.device)

        def run_ours(x=x):
            with torch.no_grad():
                return ours(x).logits

        def run_ref(x=x, mask=mask):
            with torch.no_grad():
                return ref(pixel_values=x, pixel_mask=mask).logits

        rows.append(compare(ctx, "DETR eval forward (tiny ResNet, d_model 32, 10 queries)",
                            f"B={b}, {s}x{s}", run_ours, run_ref,
                            "transformers DetrForObjectDetection"))
    return rows
