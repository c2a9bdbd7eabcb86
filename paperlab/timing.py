"""Timing helpers shared by experiments (growth rates) and benchmarks (ratios).

Rules: warm up first, time many repeats, report the median (robust to a busy core), and when
two implementations are compared, interleave them so that both see the same machine state.
On CUDA, ``synchronize`` is called around each timed call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def _sync(device: str | None) -> None:
    if device and device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def median_time(
    fn: Callable[[], object], *, repeats: int = 7, warmup: int = 1, device: str | None = None
) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    return interleaved_times({"fn": fn}, repeats=repeats, warmup=warmup, device=device)["fn"]


def interleaved_times(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 7,
    warmup: int = 1,
    device: str | None = None,
    min_time: float = 0.0,
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (A B A B ...).

    ``min_time`` > 0 makes each sample loop the call until it lasts that long, so very fast
    functions are timed above the clock's resolution; the sample is divided by the loop count.
    """
    loops = dict.fromkeys(fns, 1)
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        if min_time > 0:
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            one = max(time.perf_counter() - t0, 1e-9)
            loops[name] = max(1, math.ceil(min_time / one))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = loops[name]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) for name, s in samples.items()}


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the exponent b in y ~ a * x**b."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(
            f"need at least two (x, y) pairs of equal length, got {len(xs)}, {len(ys)}"
        )
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-12)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    return sxy / sxx
