"""CLIP benchmark (note D5): one training step of our ``CLIP`` against HF ``CLIPModel``.

Same configuration and the same weights (ours imported from the HF model by
``hub/clip.py``); a step is zero_grad, the symmetric InfoNCE loss (HF: ``return_loss=True``)
and its backward, on padded captions. The ratio is ours / HF (below 1: we are faster).
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.registry import export_benchmark

TEXT = dict(vocab_size=1000, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
            num_attention_heads=4, max_position_embeddings=32, eos_token_id=999,
            bos_token_id=998, pad_token_id=0)
VISION = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
              num_attention_heads=4, image_size=32, patch_size=4)


def _inputs(batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (B, 3, 32, 32) and captions of 8..32 tokens ending in EOT, right-padded."""
    g = torch.Generator().manual_seed(batch)
    images = torch.randn(batch, 3, 32, 32, generator=g)
    ids = torch.randint(1, 990, (batch, 32), generator=g)
    lengths = torch.randint(8, 33, (batch,), generator=g)
    pos = torch.arange(32)
    mask = pos < lengths[:, None]
    ids[pos == (lengths - 1)[:, None]] = 999
    ids[~mask] = 0
    return images.to(device), ids.to(device), mask.long().to(device)


@export_benchmark("clip", group="multimodal", note="D5")
def bench_clip(ctx: BenchContext) -> list[BenchRow]:
    """CLIP training step (forward + backward), ViT 32x32/4 and text 32 tokens, d 128, 4 + 4
    layers, float32; reference = HF CLIPModel (sdpa) with the same weights."""
    transformers = require("transformers", extra="hf", purpose="benchmark 'clip'")
    from paperlab.hub.clip import import_clip

    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=128)
    hf = transformers.CLIPModel(cfg).train().to(ctx.device)
    ours = import_clip(cfg.to_dict(), {k: v.detach().cpu() for k, v in hf.state_dict().items()})
    ours.train().to(ctx.device)
    sizes = [8, 32] if ctx.quick else [8, 32, 128]
    rows = []
    for batch in sizes:
        images, ids, mask = _inputs(batch, ctx.device)

        def step_ours(images=images, ids=ids, mask=mask):
            ours.zero_grad(set_to_none=True)
            ours.loss(images, ids, mask).backward()

        def step_hf(images=images, ids=ids, mask=mask):
            hf.zero_grad(set_to_none=True)
            hf(input_ids=ids, pixel_values=images, attention_mask=mask,
               return_loss=True).loss.backward()

        rows.append(compare(ctx, "CLIP training step (d=128, 4+4 layers) float32", f"B={batch}",
                            step_ours, step_hf, "transformers CLIPModel (sdpa)"))
    return rows
