"""Data-parallel training (note I3): one process per device, gradients all-reduced.

The idea
--------
Every process holds a full copy of the model and sees a different slice of each global batch.
After backward, the gradients are averaged across processes (a ring all-reduce: each process
sends and receives 2(p-1)/p of the gradient bytes, whatever the number of processes p), so
every copy takes the same optimizer step. With the mean loss per process and equal slices,
the averaged gradient is exactly the gradient of the mean loss over the global batch: DDP on
p processes trains the same model as one process on the whole batch, up to float rounding
of the summation order.

``torch.nn.parallel.DistributedDataParallel`` does the all-reduce (bucketed, overlapped with
backward). This module is the glue around it: reading torchrun's environment, a sampler
that gives each rank its slice of a deterministic global order, rank-0-only side effects,
all-reduced metrics, and ``no_sync`` for gradient accumulation.

Launch: ``torchrun --nproc_per_node=N -m paperlab train RECIPE``; torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from paperlab.errors import ArgumentError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: its rank, the world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str | None = None, backend: str | None = None) -> DistEnv:
    """Read torchrun's variables and join the process group (gloo on CPU, nccl on CUDA).

    Without ``WORLD_SIZE`` (or with 1) this is a single process and nothing is initialised.
    ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def global_batch_indices(
    n: int, step: int, global_batch: int, *, seed: int = 0, shuffle: bool = True
) -> list[int]:
    """Dataset indices of global batch number ``step`` in a deterministic endless stream.

    The stream is epoch after epoch of ``randperm(n)`` seeded by ``(seed, epoch)``. Because the
    batch depends only on ``(seed, step)``, resuming at a step needs no sampler state.
    """
    if n <= 0 or global_batch <= 0:
        raise ArgumentError(
            f"need n > 0 and global_batch > 0, got n={n}, global_batch={global_batch}"
        )
    out: list[int] = []
    pos = step * global_batch
    cache: dict[int, list[int]] = {}
    while len(out) < global_batch:
        epoch, offset = divmod(pos, n)
        if epoch not in cache:
            if shuffle:
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                cache[epoch] = torch.randperm(n, generator=g).tolist()
            else:
                cache[epoch] = list(range(n))
        take = min(global_batch - len(out), n - offset)
        out.extend(cache[epoch][offset : offset + take])
        pos += take
    return out


def rank_slice(indices: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous, equal share of a global batch (its size must divide evenly)."""
    if len(indices) % world_size:
        raise ArgumentError(
            f"global batch of {len(indices)} does not split evenly over {world_size} processes"
        )
    share = len(indices) // world_size
    return indices[rank * share : (rank + 1) * share]


class RankSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler: for steps ``start, start+1, ...`` yield this rank's micro-batches.

    Each global batch of ``global_batch`` indices is split into ``world_size`` rank slices and
    each slice into ``accumulation`` micro-batches. ``start`` resumes mid-run.
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        env: DistEnv,
        *,
        accumulation: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        start: int = 0,
        steps: int | None = None,
    ):
        per_rank, rem = divmod(global_batch, env.world_size)
        if rem or per_rank % accumulation:
            raise ArgumentError(
                f"batch_size={global_batch} must split evenly over world_size={env.world_size} "
                f"processes x accumulation={accumulation} micro-batches"
            )
        self.n, self.global_batch, self.env = n, global_batch, env
        self.accumulation, self.seed, self.shuffle = accumulation, seed, shuffle
        self.start, self.steps = start, steps

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while self.steps is None or step < self.steps:
            mine = rank_slice(
                global_batch_indices(
                    self.n, step, self.global_batch, seed=self.seed, shuffle=self.shuffle
                ),
                self.env.rank,
                self.env.world_size,
            )
            micro = len(mine) // self.accumulation
            for j in range(self.accumulation):
                yield mine[j * micro : (j + 1) * micro]
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless RankSampler has no length")
        return (self.steps - self.start) * self.accumulation


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar metrics over processes (identity in a single process)."""
    if not env.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if env.device.type == "cuda":
        t = t.to(env.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= env.world_size
    return dict(zip(keys, t.tolist()))


def no_sync(model: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """``model.no_sync()`` when ``skip`` and the model is DDP-wrapped: accumulate without
    all-reducing (the all-reduce happens on the last micro-batch); else a null context."""
    if skip and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op in a single process)."""
    if env.distributed:
        dist.barrier()


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's (b, ...) tensor into (W b, ...); backward sums the gradients of
    this rank's slice over ranks (an all-reduce, then the slice: works on every backend)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        ctx.rank, world = dist.get_rank(group), dist.get_world_size(group)
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad.chunk(dist.get_world_size(ctx.group))[ctx.rank], None


def all_gather_with_grad(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Every rank's tensor concatenated along dim 0, differentiable (the gradient of each
    rank's slice is summed over ranks); the tensor itself outside a process group of > 1.
    Used by the distributed CLIP/SigLIP losses and Partial FC."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return tensor
    return _AllGather.apply(tensor, group)
