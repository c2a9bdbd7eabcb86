"""Learning-rate schedules: linear warmup, then cosine or linear decay (note I1's companions).

Adam's early steps use moment estimates built from a handful of gradients; a short linear
warmup keeps those steps small. After it, the rate decays to ``min_ratio`` of its peak at
``total_steps``, either along half a cosine (Loshchilov & Hutter, "SGDR", ICLR 2017) or a
straight line. Each schedule is a multiplier of the optimizer's base ``lr``, step ``s``::

    warmup  (s < W):  s / W
    cosine  (s >= W): r + (1 - r) * 0.5 * (1 + cos(pi * p)),   p = min(1, (s - W) / (T - W))
    linear  (s >= W): r + (1 - r) * (1 - p)

with ``W = warmup_steps``, ``T = total_steps`` and ``r = min_ratio``; after ``T`` the rate stays
at ``r``. With ``r = 0`` these are the schedules of Hugging Face's
``get_cosine_schedule_with_warmup`` and ``get_linear_schedule_with_warmup``.

The multipliers are small callable classes (picklable, so ``LambdaLR.state_dict`` keeps them);
``warmup_cosine(optimizer, ...)`` and ``warmup_linear(optimizer, ...)`` wrap them in
``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math

import torch

from paperlab.errors import ArgumentError, check_int


class _Warmup:
    """Shared warmup and argument checks; subclasses give the decay after warmup."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        if warmup_steps > total_steps:
            raise ArgumentError(
                f"warmup_steps must be <= total_steps ({total_steps}), got {warmup_steps}"
            )
        if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float)) or not (
            0.0 <= min_ratio <= 1.0
        ):
            raise ArgumentError(f"min_ratio must be a number in [0, 1], got {min_ratio!r}")
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * self.decay(progress)

    def decay(self, progress: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}, min_ratio={self.min_ratio})")


class WarmupCosine(_Warmup):
    """LR multiplier: linear warmup to 1, then half a cosine down to ``min_ratio``."""

    def decay(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupLinear(_Warmup):
    """LR multiplier: linear warmup to 1, then a straight line down to ``min_ratio``."""

    def decay(self, progress: float) -> float:
        return 1.0 - progress


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The experiments' short-run variant of ``WarmupCosine`` as a plain function: warm-up
    (step + 1) / W, so the first step already trains, then cosine decay to 0 at T."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.0,
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``WarmupCosine``; call ``scheduler.step()`` after each step."""
    schedule = WarmupCosine(warmup_steps, total_steps, min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=last_epoch)


def warmup_linear(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.0,
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``WarmupLinear``; call ``scheduler.step()`` after each step."""
    schedule = WarmupLinear(warmup_steps, total_steps, min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=last_epoch)
