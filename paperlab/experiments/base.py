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
    """A statement checked by a measurement: ``value op threshold``.

    ``control`` is the value the same measurement gives for something that must fail the
    claim (chance, the mean, the mechanism switched off); recording it shows the margin.
    ``per_seed`` holds the value on each seed when the claim is made over seeds
    (``Claim.over_seeds``); ``value`` is then the worst seed's.
    """

    statement: str
    value: Any
    op: str
    threshold: Any
    passed: bool
    control: Any = None
    per_seed: tuple[Any, ...] | None = None

    @classmethod
    def check(
        cls, statement: str, value: Any, op: str, threshold: Any, *, control: Any = None
    ) -> Claim:
        """Compare ``value`` with ``threshold`` using ``op`` (one of < <= > >= ==).

        A NaN value never passes.
        """
        if op not in _OPS:
            raise ArgumentError(f"op must be one of {', '.join(_OPS)}, got {op!r}")
        value = _plain(value)
        threshold = _plain(threshold)
        return cls(statement, value, op, threshold, _holds(value, op, threshold), _plain(control))

    @classmethod
    def over_seeds(
        cls,
        statement: str,
        values: Iterable[Any],
        op: str,
        threshold: Any,
        *,
        control: Any = None,
    ) -> Claim:
        """A claim that must hold on every seed: ``values[i] op threshold`` for each i.

        ``value`` is the worst seed's value (the smallest for ``>``/``>=``, the largest for
        ``<``/``<=``); ``per_seed`` keeps them all, and ``to_dict`` adds their mean and
        standard deviation. ``control`` may be one value or one per seed.
        """
        if op not in _OPS or op == "==":
            raise ArgumentError(f"op must be one of < <= > >=, got {op!r}")
        vals = tuple(_plain(v) for v in values)
        if not vals:
            raise ArgumentError("values must hold at least one seed's value")
        threshold = _plain(threshold)
        passed = all(_holds(v, op, threshold) for v in vals)
        finite = [v for v in vals if not _is_nan(v)]
        if len(finite) < len(vals):
            worst: Any = float("nan")
        else:
            worst = min(vals) if op in (">", ">=") else max(vals)
        if isinstance(control, (list, tuple)):
            control = tuple(_plain(c) for c in control)
        else:
            control = _plain(control)
        return cls(statement, worst, op, threshold, passed, control, vals)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "statement": self.statement,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "passed": self.passed,
        }
        if self.control is not None:
            out["control"] = list(self.control) if isinstance(self.control, tuple) else self.control
        if self.per_seed is not None:
            vals = [float(v) for v in self.per_seed]
            mean = sum(vals) / len(vals)
            var = sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1)
            out.update(per_seed=list(self.per_seed), mean=mean, sd=var**0.5)
        return out


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _holds(value: Any, op: str, threshold: Any) -> bool:
    """``value op threshold``; a NaN value never holds."""
    return (not _is_nan(value)) and bool(_OPS[op](value, threshold))


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

    def seeds(self, n: int = 3) -> list[int]:
        """``n`` seeds for a claim made over seeds: this context's seed and the next ``n - 1``.

        Experiments fix their thresholds from a pilot on a seed outside the ones a tour uses
        (e.g. seed 100), then report each of these seeds' values (``Claim.over_seeds``).
        """
        return [self.seed + i for i in range(n)]

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
