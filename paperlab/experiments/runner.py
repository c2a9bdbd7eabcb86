"""Run registered experiments and write ``runs/<name>/<stamp>/result.json`` plus figures."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperlab import registry
from paperlab.errors import ArgumentError, OutputError
from paperlab.experiments.base import SIZES, Context, Result
from paperlab.timing import torch_threads

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunRecord:
    """A finished (or crashed) run: what ``result.json`` holds, plus where it lies."""

    data: dict[str, Any]
    folder: Path

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def error(self) -> str | None:
        return self.data.get("error")


def ensure_writable(folder: Path, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it is writable, else raise ``OutputError``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".paperlab-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{what} {str(folder)!r} is not writable: {exc.strerror or exc}"
        ) from None
    return folder


def experiment_names(names: list[str], tag: str | None = None) -> list[str]:
    """Expand ``all`` and check every name; keep only those tagged ``tag`` when given."""
    known = registry.names("experiment")
    chosen: list[str] = []
    for name in names:
        if name == "all":
            chosen.extend(n for n in known if n not in chosen)
        else:
            registry.get("experiment", name)  # raises with close matches
            if name not in chosen:
                chosen.append(name)
    if tag is not None:
        tags = {t for n in known for t in registry.get("experiment", n).meta.get("tags", ())}
        if tag not in tags:
            raise ArgumentError(
                f"no experiment is tagged {tag!r} (tags: {', '.join(sorted(tags))})"
            )
        chosen = [n for n in chosen if tag in registry.get("experiment", n).meta.get("tags", ())]
    return chosen


def source_path(obj: Any) -> str:
    """The file defining ``obj``, relative to the repository root when inside it."""
    path = Path(inspect.getsourcefile(obj) or "?").resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def run_experiment(
    name: str,
    *,
    size: str = "quick",
    seed: int = 0,
    device: str = "cpu",
    runs: Path = Path("runs"),
    progress: Callable[[str, int, int], None] | None = None,
    catch: bool = True,
) -> RunRecord:
    """Run one experiment and write its folder. Crashes are recorded (``error``) when ``catch``."""
    if size not in SIZES:
        raise ArgumentError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    entry = registry.get("experiment", name)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S-%f")
    folder = ensure_writable(Path(runs) / name / stamp)
    ctx = Context(size=size, seed=seed, device=device, out=folder, progress=progress)
    meta = entry.meta
    data: dict[str, Any] = {
        "name": name,
        "title": meta.get("title", name),
        "note": meta.get("note", ""),
        "tags": list(meta.get("tags", ())),
        "source": source_path(entry.obj),
        "size": size,
        "seed": seed,
        "device": device,
        "stamp": stamp,
        "started": now.isoformat(timespec="seconds"),
    }
    t0 = time.perf_counter()
    try:
        # One intra-op thread on the CPU: small tensors run faster and time more steadily.
        with torch_threads(1) if device == "cpu" else contextlib.nullcontext():
            result = entry.obj(ctx)
        if not isinstance(result, Result):
            raise TypeError(f"experiment {name!r} returned {type(result).__name__}, not Result")
    except Exception as exc:
        if not catch:
            raise
        data.update(
            summary=f"crashed: {type(exc).__name__}: {exc}",
            metrics={},
            claims=[],
            figures=[],
            passed=False,
            error="".join(traceback.format_exception(exc)),
        )
    else:
        figures = result.figures or ctx.figures
        data.update(
            summary=result.summary,
            metrics={k: _jsonable(v) for k, v in result.metrics.items()},
            claims=[c.to_dict() for c in result.claims],
            figures=[str(Path(f).resolve().relative_to(folder.resolve())) for f in figures],
            passed=result.passed,
        )
    data["seconds"] = round(time.perf_counter() - t0, 3)
    (folder / "result.json").write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return RunRecord(data, folder)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return x


def load_runs(runs: Path) -> list[dict[str, Any]]:
    """Every ``result.json`` under ``runs`` (each with its ``folder``), newest first."""
    records = []
    for path in Path(runs).glob("*/*/result.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        data["folder"] = str(path.parent)
        records.append(data)
    records.sort(key=lambda d: d.get("stamp", ""), reverse=True)
    return records
