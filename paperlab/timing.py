"""Timing helpers shared by experiments (growth rates) and benchmarks (ratios).

Rules: warm up first, time many repeats, report the median (robust to a busy core), and when
two implementations are compared, interleave them so that both see the same machine state.
On CUDA, ``synchronize`` is called around each timed call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager


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


def time_sweep(
    sizes: Iterable[int],
    make: Callable[[int], dict[str, Callable[[], object]]],
    *,
    repeats: int = 5,
    min_time: float = 0.02,
) -> dict[str, list[float]]:
    """Median seconds per call of each method at each size (methods interleaved per size).

    ``make(n)`` returns the methods to time at size n; a method may be left out at sizes where
    it does not fit, and its list then holds NaN there. ``sizes`` may be a progress iterator
    (``ctx.track(sizes)``).
    """
    measured = [interleaved_times(make(n), repeats=repeats, min_time=min_time) for n in sizes]
    names = list(dict.fromkeys(name for m in measured for name in m))
    return {name: [m.get(name, math.nan) for m in measured] for name in names}


def growth_exponent(sizes: Sequence[float], times: Sequence[float], last: int = 3) -> float:
    """Fitted b in time ~ n^b over the ``last`` largest sizes that were measured (not NaN)."""
    pairs = [(n, t) for n, t in zip(sizes, times) if not math.isnan(t)][-last:]
    return fit_power_law([n for n, _ in pairs], [t for _, t in pairs])


def crossover(sizes: Sequence[int], fast: Sequence[float], slow: Sequence[float]) -> float:
    """Length from which ``fast`` stays below ``slow`` (log-interpolated); NaN if it never does.

    Only sizes where both were measured count. Returns the smallest such size when ``fast`` is
    below everywhere (the crossover is then at or below it).
    """
    pts = [(n, f, s) for n, f, s in zip(sizes, fast, slow) if not (math.isnan(f) or math.isnan(s))]
    if not pts or pts[-1][1] >= pts[-1][2]:
        return math.nan
    i = len(pts) - 1
    while i > 0 and pts[i - 1][1] < pts[i - 1][2]:
        i -= 1
    if i == 0:
        return float(pts[0][0])
    (n0, f0, s0), (n1, f1, s1) = pts[i - 1], pts[i]
    a0, a1 = math.log(f0 / s0), math.log(f1 / s1)  # changes sign between n0 and n1
    x0, x1 = math.log(n0), math.log(n1)
    return math.exp(x0 + (x1 - x0) * a0 / (a0 - a1))


def describe_crossover(value: float, sizes: Sequence[int]) -> str:
    """'~1043', '<=256' (faster everywhere measured) or 'none' (never faster)."""
    if math.isnan(value):
        return "none"
    return f"<={value:.0f}" if value == sizes[0] else f"~{value:.0f}"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the previous count after.

    Experiments run on one thread on the CPU: their tensors are small, and a second thread on
    a two-core machine mostly adds contention and noise to timings.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
