"""BERT benchmark (note D2): our ``BertModel`` forward against HF transformers' ``BertModel``
with the same config and weights (copied through our importer), over sequence lengths."""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.registry import export_benchmark


@export_benchmark("bert", group="multimodal", note="D2")
def bench_bert(ctx: BenchContext) -> list[BenchRow]:
    """BertModel forward without grad, hidden 256, 4 layers, 4 heads, FFN 1024, batch 4,
    half of each row's tokens real in the second half of the batch (padding mask), float32;
    reference: transformers ``BertModel`` (its default SDPA attention)."""
    transformers = require("transformers", extra="hf", purpose="benchmark 'bert'")
    from paperlab.hub.bert import bert_from_state

    hc = transformers.BertConfig(
        vocab_size=8000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.BertModel(hc).eval()
    ours = bert_from_state(hc.to_dict(), hf.state_dict()).eval().to(ctx.device)
    hf.to(ctx.device)
    sizes = [64, 128] if ctx.quick else [64, 128, 256, 512]
    g = torch.Generator().manual_seed(1)
    rows = []
    for length in sizes:
        ids = torch.randint(0, hc.vocab_size, (4, length), generator=g).to(ctx.device)
        mask = torch.ones(4, length, dtype=torch.long)
        mask[2:, length // 2 :] = 0
        mask = mask.to(ctx.device)

        def run_ours(ids=ids, mask=mask):
            with torch.no_grad():
                return ours(ids, mask).last_hidden_state

        def run_hf(ids=ids, mask=mask):
            with torch.no_grad():
                return hf(input_ids=ids, attention_mask=mask).last_hidden_state

        rows.append(compare(ctx, "BERT 4x(d=256) forward float32, B=4", f"L={length}",
                            run_ours, run_hf, "transformers BertModel (sdpa)"))
    return rows
