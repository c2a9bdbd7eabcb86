"""Partial FC benchmark (note E2): memory and step time of the full margin softmax against
Partial FC at sample rate 0.1, up to 1M classes x 128 dims.

One training step of the classifier, forward + backward (gradients for the embeddings and
the class centres W), float32, batch 128, ArcFace margin (s = 64, m = 0.5): ours is
``PartialFC(sample_rate=0.1)`` (``face/partial_fc.py``, one process: the sampling, not the
sharding, is what a single machine measures), the reference the full FC, ``ArcFaceLoss``
(``face/margin.py``: every class's logit, ``F.cross_entropy``), which equals Partial FC at
sample rate 1 (``tests/face/test_partial_fc.py``). Each row's note gives the peak memory of
the step (``paperlab.memory.peak_bytes``: CUDA's ``max_memory_allocated``, or the allocation
tracker on the CPU; the centres themselves exist before and are not counted) for both, and
their ratio. What stays at full size under sampling is the centres' gradient (C x d: the
sampled rows' gradients are scattered into it); the logits and everything the softmax keeps
shrink to a tenth.

Sizes: C = 10k and 100k classes (``--quick``), and 1M in the full sweep (``paperlab bench
partial-fc``), where one full-FC step takes seconds on a CPU, so that row times at most 3
repeats.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.face.margin import ArcFaceLoss
from paperlab.face.partial_fc import PartialFC
from paperlab.memory import peak_bytes
from paperlab.registry import export_benchmark

DIM, BATCH, RATE = 128, 128, 0.1


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


@export_benchmark("partial-fc", group="face", note="E2")
def bench_partial_fc(ctx: BenchContext) -> list[BenchRow]:
    """Partial FC (sample rate 0.1) vs the full FC, one forward + backward; ratio < 1:
    Partial FC is faster."""
    sizes = [10_000, 100_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    dev = ctx.device
    g = torch.Generator().manual_seed(0)
    rows = []
    for num_classes in sizes:
        weight = torch.randn(num_classes, DIM, generator=g) * 0.01
        full = ArcFaceLoss(num_classes, DIM, s=64.0, m=0.5).to(dev)
        partial = PartialFC(num_classes, DIM, s=64.0, m2=0.5, sample_rate=RATE,
                            generator=torch.Generator(device=dev).manual_seed(1)).to(dev)
        with torch.no_grad():
            full.weight.copy_(weight)
            partial.weight.copy_(weight)
        x = torch.randn(BATCH, DIM, generator=g).to(dev).requires_grad_()
        labels = torch.randint(0, num_classes, (BATCH,), generator=g).to(dev)

        def step(head=None, x=x, labels=labels):
            return torch.autograd.grad(head(x, labels), (x, head.weight))

        def ours(partial=partial):
            return step(partial)

        def reference(full=full):
            return step(full)

        mem_ours, _ = peak_bytes(ours, dev)
        mem_ref, _ = peak_bytes(reference, dev)
        bench = ctx if num_classes < 1_000_000 else BenchContext(
            repeats=min(ctx.repeats, 3), device=dev, quick=ctx.quick)
        note = (f"peak memory partial {_mib(mem_ours)} / full {_mib(mem_ref)} = "
                f"{mem_ours / mem_ref:.3f}")
        rows.append(compare(bench, f"margin softmax fwd+bwd (d={DIM}, batch {BATCH}, "
                                   f"sample rate {RATE}) float32", f"C={num_classes:,}",
                            ours, reference, "paperlab ArcFaceLoss (full FC)", note=note))
        del full, partial, weight
    return rows
