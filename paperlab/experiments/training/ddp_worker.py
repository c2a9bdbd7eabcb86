"""The ``torchrun`` side of the ``ddp-equivalence`` experiment (not an experiment itself).

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m
paperlab.experiments.training.ddp_worker OUT SETTINGS_JSON SEED [SEED ...]`` trains
``digits-mlp`` with the shared trainer, for each seed, twice in one launch (one process
start-up for all runs):

- ``OUT/seed-S/ddp``: the trainer as shipped, DDP all-reducing the gradients;
- ``OUT/seed-S/no-allreduce``: the negative control, the same run with
  ``DistributedDataParallel`` swapped for a wrapper that does nothing, so each rank steps on
  its own half of every batch (rank 0's weights are the ones saved).

Every rank writes the dataset indices its sampler gave it at each step to
``indices-rank{R}.json`` in the run's folder (``record_indices``), so the experiment can check
that the ranks' slices are disjoint and together make the single-process batch.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn


class LocalOnly(nn.Module):
    """Stands in for ``DistributedDataParallel`` and does no all-reduce: the control."""

    def __init__(self, module: nn.Module, **_: object) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: object, **kwargs: object) -> object:
        return self.module(*args, **kwargs)

    def no_sync(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@contextlib.contextmanager
def record_indices(log: list[list[int]]) -> Iterator[None]:
    """Within the block, the trainer's ``RankSampler`` appends every batch it yields to ``log``."""
    from paperlab.training import trainer

    base = trainer.RankSampler

    class Recording(base):  # type: ignore[misc, valid-type]
        def __iter__(self) -> Iterator[list[int]]:
            for batch in super().__iter__():
                log.append(list(batch))
                yield batch

    trainer.RankSampler = Recording
    try:
        yield
    finally:
        trainer.RankSampler = base


@contextlib.contextmanager
def without_allreduce() -> Iterator[None]:
    """Within the block, ``DistributedDataParallel`` is ``LocalOnly``."""
    real = nn.parallel.DistributedDataParallel
    nn.parallel.DistributedDataParallel = LocalOnly  # type: ignore[misc]
    try:
        yield
    finally:
        nn.parallel.DistributedDataParallel = real  # type: ignore[misc]


def train_recorded(settings: dict, out: Path, rank: int) -> None:
    """Train ``digits-mlp`` into ``out`` and write this rank's sampled indices there."""
    from paperlab.recipes.digits import DigitsConfig
    from paperlab.training.trainer import train

    log: list[list[int]] = []
    with record_indices(log):
        train("digits-mlp", DigitsConfig(**settings, progress=False, out=str(out)))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"indices-rank{rank}.json").write_text(json.dumps(log))


def main(argv: list[str]) -> None:
    from paperlab.training.distributed import init_from_env, shutdown

    out, settings, seeds = Path(argv[0]), json.loads(argv[1]), [int(s) for s in argv[2:]]
    torch.set_num_threads(1)
    env = init_from_env()
    try:
        for seed in seeds:
            run = {**settings, "seed": seed}
            train_recorded(run, out / f"seed-{seed}" / "ddp", env.rank)
            with without_allreduce():
                train_recorded(run, out / f"seed-{seed}" / "no-allreduce", env.rank)
    finally:
        shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
