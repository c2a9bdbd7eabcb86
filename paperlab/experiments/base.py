"""The experiment protocol: ``Context`` in, ``Result`` out, claims checked against thresholds.

``Context`` carries the size preset, seed, device and output folder:

- ``smoke``: seconds; what the tests run.
- ``quick``: the tour; at most 30 s on two CPU cores.
- ``full``: the real figure; minutes.

``Result`` carries a one-line summary, metrics, ``Claim``s and figure paths. A claim records
the statement, the measured value, the comparison, the threshold, and whether it held. A claim
that fails is reported as failed: experiments never loosen a threshold to pass.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from paperlab.errors import ArgumentError

SIZES = ("smoke", "quick", "full")
T = TypeVar("T")

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Claim:
    """A statement checked by a measurement: ``value op threshold``."""

    statement: str
    value: Any
    op: str
    threshold: Any
    passed: bool

    @classmethod
    def check(cls, statement: str, value: Any, op: str, threshold: Any) -> Claim:
        """Compare ``value`` with ``threshold`` using ``op`` (one of < <= > >= ==).

        A NaN value never passes.
        """
        if op not in _OPS:
            raise ArgumentError(f"op must be one of {', '.join(_OPS)}, got {op!r}")
        value = _plain(value)
        threshold = _plain(threshold)
        nan = isinstance(value, float) and math.isnan(value)
        return cls(statement, value, op, threshold, (not nan) and bool(_OPS[op](value, threshold)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "passed": self.passed,
        }


def _plain(x: Any) -> Any:
    """Turn numpy/torch scalars into Python numbers so results serialise as JSON."""
    if hasattr(x, "item") and callable(x.item):
        try:
            return x.item()
        except (ValueError, RuntimeError):
            return x
    return x


@dataclass
class Result:
    """What an experiment returns: a summary line, metrics, claims and figures."""

    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims)


@dataclass
class Context:
    """Everything an experiment may depend on: size preset, seed, device, output folder."""

    size: str = "quick"
    seed: int = 0
    device: str = "cpu"
    out: Path = field(default_factory=lambda: Path("runs/scratch"))
    progress: Callable[[str, int, int], None] | None = None
    figures: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ArgumentError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        self.out = Path(self.out)

    def pick(self, smoke: T, quick: T, full: T) -> T:
        """The value for this context's size preset."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.size]

    def rng(self, offset: int = 0) -> random.Random:
        """A Python RNG seeded from the context's seed (plus ``offset`` for independent streams)."""
        return random.Random(self.seed * 1_000_003 + offset)

    def generator(self, offset: int = 0) -> Any:
        """A ``torch.Generator`` on the CPU seeded like ``rng``."""
        import torch

        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def track(self, items: Iterable[T], total: int | None = None, label: str = "") -> Iterator[T]:
        """Iterate ``items`` while reporting progress to the runner's progress bar."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        for i, item in enumerate(items):
            yield item
            if self.progress is not None:
                self.progress(label, i + 1, total or 0)

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<out>/<name>.png``, close it, and record the path."""
        import matplotlib.pyplot as plt

        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(path)
        return path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
