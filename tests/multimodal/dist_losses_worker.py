"""Two gloo processes: the distributed CLIP/SigLIP losses against one process on the whole batch.

Run by ``test_losses_distributed.py`` as ``python dist_losses_worker.py OUT_DIR WORLD``. Every
rank builds the same global batch (N = 12 pairs, seed 0), computes the single-process loss
and gradients on all of it, then the distributed loss on its slice (b = N / WORLD), and writes
the measured differences to ``OUT_DIR/rank<r>.json``; the test asserts on them. With three
processes, ranks 1 and 2 also run the ring inside a sub-group (global ranks differ from group
ranks there). open_clip's own
distributed losses (``SigLipLoss(rank, world_size, dist_impl=...)``, ``ClipLoss(local_loss,
gather_with_grad)``) are a second reference for the ``for_ddp`` gradients.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

N, D = 12, 8
WORLD = 2  # set from the command line


@functools.cache
def open_clip_losses() -> ModuleType | None:
    """open_clip's ``loss.py`` loaded on its own (it imports only torch), or None when
    open_clip is not installed: ``import open_clip`` first builds every model module, which
    costs seconds in each process."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        return None
    loss_spec = importlib.util.spec_from_file_location(
        "open_clip_loss_alone", Path(spec.origin).with_name("loss.py")
    )
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def _summed(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def _leaves(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in ts]


def _compare(name, loss_fn, ref_fn, inputs, slices, out, opcl_fn=None):
    """loss and gradients of loss_fn on local slices vs ref_fn on the whole batch."""
    full = _leaves(*inputs)
    ref = ref_fn(*full)
    ref_grads = torch.autograd.grad(ref, full)
    local = _leaves(*[x[slices] if x.dim() == 2 else x for x in inputs])
    loss = loss_fn(*local, for_ddp=False)
    grads = torch.autograd.grad(loss, local)
    rec = {"loss": _max_err(loss, ref)}
    for i, (g, r, x) in enumerate(zip(grads, ref_grads, inputs)):
        # features: this rank's slice; scale/bias: each rank holds its share, summed = single
        rec[f"grad{i}"] = _max_err(g, r[slices]) if x.dim() == 2 else _max_err(_summed(g), r)
    local = _leaves(*[x[slices] if x.dim() == 2 else x for x in inputs])
    ddp_grads = torch.autograd.grad(loss_fn(*local, for_ddp=True), local)
    rec["ddp_grad_vs_world_times_slice"] = max(
        _max_err(g, WORLD * r[slices]) for g, r, x in zip(ddp_grads, ref_grads, inputs)
        if x.dim() == 2
    )
    if opcl_fn is not None:
        theirs = _leaves(*[x[slices] if x.dim() == 2 else x for x in inputs])
        their_grads = torch.autograd.grad(opcl_fn(*theirs), theirs)
        rec["ddp_grad_vs_open_clip"] = max(
            _max_err(g, t) for g, t, x in zip(ddp_grads, their_grads, inputs) if x.dim() == 2
        )
    out[name] = rec


def run(rank: int, world: int, store: str, out_dir: str) -> None:
    global WORLD
    WORLD = world
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    reference = open_clip_losses()
    ClipLoss, SigLipLoss = reference.ClipLoss, reference.SigLipLoss

    from paperlab.multimodal.losses import (
        clip_loss,
        clip_loss_distributed,
        siglip_loss,
        siglip_loss_distributed,
    )

    out: dict = {}
    b = N // WORLD
    sl = slice(rank * b, (rank + 1) * b)
    for dtype in (torch.float64, torch.float32):
        g = torch.Generator().manual_seed(0)
        image = F.normalize(torch.randn(N, D, generator=g, dtype=dtype), dim=1)
        text = F.normalize(torch.randn(N, D, generator=g, dtype=dtype), dim=1)
        scale, bias = torch.tensor(7.0, dtype=dtype), torch.tensor(-4.0, dtype=dtype)
        tag = str(dtype).removeprefix("torch.")
        for mode, impl in (("ring", "shift"), ("all_gather", "gather")):
            _compare(
                f"siglip-{mode}-{tag}",
                lambda i, t, s, c, mode=mode, **kw: siglip_loss_distributed(i, t, s, c, mode=mode,
                                                                            **kw),
                siglip_loss, (image, text, scale, bias), sl, out,
                lambda i, t, s, c, impl=impl: SigLipLoss(rank=rank, world_size=WORLD,
                                                         dist_impl=impl)(i, t, s, c),
            )
        _compare(
            f"clip-all_gather-{tag}", clip_loss_distributed, clip_loss,
            (image, text, scale), sl, out,
            lambda i, t, s: ClipLoss(local_loss=True, gather_with_grad=True, rank=rank,
                                     world_size=WORLD)(i, t, s),
        )
    if WORLD == 3:  # a sub-group of global ranks 1 and 2: the ring must map group ranks
        sub = dist.new_group([1, 2])
        if rank > 0:
            g = torch.Generator().manual_seed(1)
            image, text = (F.normalize(torch.randn(8, D, generator=g), dim=1) for _ in "it")
            part = slice((rank - 1) * 4, rank * 4)
            loss = siglip_loss_distributed(image[part], text[part], 5.0, -2.0, group=sub)
            out["subgroup-ring"] = _max_err(loss, siglip_loss(image, text, 5.0, -2.0))
    # uneven local batches: every rank must raise the same clear error
    n = 6 if rank == 0 else 5
    try:
        siglip_loss_distributed(torch.randn(n, D), torch.randn(n, D), 1.0, 0.0, mode="ring")
        out["uneven_error"] = None
    except ValueError as exc:
        out["uneven_error"] = f"{type(exc).__name__}: {exc}"
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out, indent=1))
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    target, world = Path(sys.argv[1]), int(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    mp.spawn(run, args=(world, str(target / "store"), str(target)), nprocs=world, join=True)
