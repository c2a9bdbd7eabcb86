"""D6 SigLIP, chunked: the same loss and gradients with O(B C) instead of O(B^2) memory.

The sigmoid loss is a sum of independent pair terms, so it can be computed over text chunks
of C columns (``siglip_loss_chunked``): the forward adds up the chunks, the backward
recomputes each chunk's (B, C) logits instead of keeping them. The full loss
(``siglip_loss``) builds, keeps and differentiates the whole (B, B) matrix.

Measured for B in a sweep (d = 64, C fixed, float32, forward + backward with gradients for
both embeddings, the scale and the bias):

- equality: relative difference of the losses and norm-wise relative difference of the
  gradients, chunked vs full;
- peak memory of one forward + backward. On CUDA: ``torch.cuda.max_memory_allocated`` above
  the memory allocated before. On the CPU, which keeps no allocator statistics, ``peak_bytes``
  tracks allocations itself: a ``TorchDispatchMode`` sees every aten operation of the forward
  and the backward (autograd runs CPU backward ops on the calling thread, inside the mode),
  records each output whose storage is new (not a view of, or written into, an input) and
  drops it when a weak-reference finaliser reports that the storage was freed. The peak of
  the live sum is what ``max_memory_allocated`` reports on a GPU (live tensor bytes, before
  the caching allocator's rounding); inputs created before the block are not counted. The
  tests check it against an independent measure, the running sum of torch.profiler's CPU
  allocator events (``profile_memory=True``): the peaks agree to within a few bytes;
- time of one forward + backward (median, interleaved), for information: the chunked loss
  pays one extra matmul per chunk for the recomputation.

Claims (thresholds fixed before the runs): (1) chunked loss equals full within 1e-5
relative at every B, (2) and so do the gradients (norm-wise); (3) the fitted exponent of the
chunked peak memory against B is below 1.2 (linear: O(B C + B d)); (4) the full loss's is
above 1.8 (quadratic); each memory claim records the other loss's exponent as its control.
Memory is counted (bytes), not timed, and depends on shapes only, so no seed or machine load
can move it; wall time is information only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.memory import peak_bytes
from paperlab.multimodal.losses import siglip_loss, siglip_loss_chunked
from paperlab.registry import export_experiment
from paperlab.timing import fit_power_law, interleaved_times


def _step(loss_fn: Callable[..., torch.Tensor], image: torch.Tensor, text: torch.Tensor,
          scale: torch.Tensor, bias: torch.Tensor) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Forward + backward on fresh leaves; returns (loss, grad image, text, scale, bias)."""

    def step() -> tuple[torch.Tensor, ...]:
        leaves = [x.detach().requires_grad_() for x in (image, text, scale, bias)]
        loss = loss_fn(*leaves)
        grads = torch.autograd.grad(loss, leaves)
        return (loss.detach(), *grads)

    return step


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@export_experiment(
    "siglip-chunked-memory",
    note="D6 SigLIP",
    title="Chunked SigLIP loss: equal to the full loss, with linear instead of quadratic memory",
    tags=("multimodal", "memory", "loss"),
)
def siglip_chunked_memory(ctx: Context) -> Result:
    """Peak memory and time of the full and chunked SigLIP loss against the batch size."""
    sizes = ctx.pick(smoke=[128, 256, 512], quick=[256, 512, 1024, 2048, 4096],
                     full=[512, 1024, 2048, 4096, 8192, 16384])
    chunk = ctx.pick(smoke=32, quick=128, full=256)
    d = 64
    repeats = ctx.pick(smoke=1, quick=3, full=5)
    gen = ctx.generator()
    dev = ctx.device
    scale = torch.tensor(10.0, device=dev)
    bias = torch.tensor(-10.0, device=dev)

    def chunked(i, t, s, b):
        return siglip_loss_chunked(i, t, s, b, chunk)

    mem: dict[str, list[float]] = {"full": [], "chunked": []}
    secs: dict[str, list[float]] = {"full": [], "chunked": []}
    loss_err, grad_err = [], []
    for n in ctx.track(sizes, label="batch size"):
        image = F.normalize(torch.randn(n, d, generator=gen), dim=1)
        text = F.normalize(torch.randn(n, d, generator=gen) + image, dim=1)
        image, text = image.to(dev), text.to(dev)
        steps = {"full": _step(siglip_loss, image, text, scale, bias),
                 "chunked": _step(chunked, image, text, scale, bias)}
        out = {}
        for name, fn in steps.items():
            peak, out[name] = peak_bytes(fn, dev)
            mem[name].append(peak)
        loss_err.append(abs(out["chunked"][0].item() - out["full"][0].item())
                        / abs(out["full"][0].item()))
        grad_err.append(max(_rel(a, b) for a, b in zip(out["chunked"][1:], out["full"][1:])))
        t = interleaved_times(steps, repeats=repeats, warmup=1, device=dev)
        for name in steps:
            secs[name].append(t[name])

    exp_full = fit_power_law(sizes, mem["full"])
    exp_chunked = fit_power_law(sizes, mem["chunked"])
    mem_ratio = mem["chunked"][-1] / mem["full"][-1]
    time_ratio = secs["chunked"][-1] / secs["full"][-1]

    mib = 2**20
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, exponent, color in (("full", exp_full, "tab:red"),
                                  ("chunked", exp_chunked, "tab:blue")):
        label = f"{name} (B^{exponent:.2f})" + (f", C = {chunk}" if name == "chunked" else "")
        ax1.loglog(sizes, [m / mib for m in mem[name]], "o-", color=color, label=label)
        ax2.loglog(sizes, [s * 1e3 for s in secs[name]], "o-", color=color, label=name)
    ax1.set_xlabel("batch size B")
    ax1.set_ylabel("peak MiB, forward + backward")
    ax1.set_title("memory" + (" (allocation tracker, CPU)" if dev == "cpu" else f" ({dev})"))
    ax1.legend(fontsize=8)
    ax2.set_xlabel("batch size B")
    ax2.set_ylabel("ms per forward + backward")
    ax2.set_title(f"time (chunked / full at B = {sizes[-1]}: {time_ratio:.2f})")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
    ctx.savefig(fig, "memory_and_time")

    claims = [
        Claim.check("chunked SigLIP loss vs full, max relative difference over B",
                    max(loss_err), "<=", 1e-5),
        Claim.check("chunked SigLIP gradients vs full, max norm-wise relative difference",
                    max(grad_err), "<=", 1e-5),
        Claim.check("fitted exponent of chunked peak memory vs B (linear; control: the full "
                    "loss)", exp_chunked, "<", 1.2, control=exp_full),
        Claim.check("fitted exponent of full-loss peak memory vs B (quadratic; control: the "
                    "chunked loss)", exp_full, ">", 1.8, control=exp_chunked),
    ]
    metrics = {
        "batch_sizes": sizes,
        "chunk_size": chunk,
        "dim": d,
        "peak_bytes_full": mem["full"],
        "peak_bytes_chunked": mem["chunked"],
        "memory_exponent_full": exp_full,
        "memory_exponent_chunked": exp_chunked,
        "memory_ratio_chunked_over_full_at_max_B": mem_ratio,
        "seconds_full": secs["full"],
        "seconds_chunked": secs["chunked"],
        "time_ratio_chunked_over_full_at_max_B": time_ratio,
        "loss_rel_diff": loss_err,
        "grad_rel_diff": grad_err,
        "memory_measure": "cuda max_memory_allocated" if dev.startswith("cuda")
        else "dispatch-mode allocation tracker",
    }
    summary = (
        f"chunked (C = {chunk}) equals full (loss rel diff {max(loss_err):.1e}, grads "
        f"{max(grad_err):.1e}); peak memory ~ B^{exp_chunked:.2f} vs B^{exp_full:.2f}, "
        f"{mem_ratio:.3f}x the full loss's at B = {sizes[-1]}, {time_ratio:.2f}x its time"
    )
    if any(math.isnan(x) for x in loss_err + grad_err):
        summary += " (NaN measured)"
    return Result(summary=summary, metrics=metrics, claims=claims)
