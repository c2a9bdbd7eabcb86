"""The benchmark protocol: rows of (case, size, ours, reference, ratio) from one run."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paperlab import registry
from paperlab.errors import ArgumentError
from paperlab.timing import interleaved_times


@dataclass(frozen=True)
class BenchRow:
    """One measured size: seconds per call for ours and the reference, and their ratio."""

    case: str
    size: str
    ours_s: float
    reference_s: float
    reference: str
    note: str = ""  # what else was measured for this size (peak memory, ...)

    @property
    def ratio(self) -> float:
        """ours / reference: below 1 means we are faster."""
        return self.ours_s / self.reference_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class BenchContext:
    """Settings every benchmark receives: repeats, device, and whether to run a short sweep."""

    repeats: int = 7
    device: str = "cpu"
    quick: bool = False


def compare(
    ctx: BenchContext,
    case: str,
    size: str,
    ours: Callable[[], object],
    reference: Callable[[], object],
    reference_name: str,
    *,
    min_time: float = 0.005,
    note: str = "",
) -> BenchRow:
    """Time ``ours`` and ``reference`` interleaved (warm, median of ``ctx.repeats``)."""
    t = interleaved_times(
        {"ours": ours, "reference": reference},
        repeats=ctx.repeats,
        device=ctx.device,
        min_time=min_time,
    )
    return BenchRow(case, size, t["ours"], t["reference"], reference_name, note)


def benchmark_names(names: list[str]) -> list[str]:
    """Expand ``all`` and group names (``bench algorithms``) into benchmark names."""
    entries = registry.entries("benchmark")
    chosen: list[str] = []
    for name in names:
        matches = [e.name for e in entries if name in ("all", e.name, e.meta.get("group"))]
        if not matches:
            registry.get("benchmark", name)  # raises with close matches
        chosen.extend(m for m in matches if m not in chosen)
    if not chosen:
        raise ArgumentError("no benchmark matched")
    return chosen


def run_benchmark(name: str, ctx: BenchContext, out: Path) -> tuple[list[BenchRow], Path]:
    """Run one benchmark and write ``<out>/<name>-<stamp>.json``."""
    entry = registry.get("benchmark", name)
    rows = entry.obj(ctx)
    now = dt.datetime.now(dt.timezone.utc)
    path = Path(out) / f"{name}-{now.strftime('%Y%m%d-%H%M%S-%f')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "group": entry.meta.get("group"),
        "device": ctx.device,
        "repeats": ctx.repeats,
        "started": now.isoformat(timespec="seconds"),
        "rows": [r.to_dict() for r in rows],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return rows, path
