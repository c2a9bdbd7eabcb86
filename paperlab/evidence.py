"""The evidence table: for every note, what has been proven about its implementation.

paperlab's promise is four kinds of evidence per note (``paperlab/notes.py`` lists the
notes). This module reads what the runs left on disk and gives one row per note:

- **implementation**: the note's modules that exist (proven: all, partial: some);
- **parity**: the latest parity report (``runs/parity/parity-<stamp>.json``, written by
  ``pytest --parity-report``): the tests of the note, passed / run, the references with their
  versions, and per dtype the largest error reached against its tolerance (proven: every test
  that ran passed; partial: some failed);
- **benchmark**: the latest ``runs/bench/<name>-<stamp>.json`` of every benchmark registered
  for the note: the range of its rows' ratios (ours / reference time, below 1: ours is
  faster) over its sizes (proven: every benchmark has a result; partial: some have none yet);
- **experiment**: the latest run of every experiment registered for the note: claims held
  / total and the first claim's control (proven: every claim held; partial: a claim failed,
  a run crashed or an experiment has not run).

A column with nothing behind it says ``missing``, never a blank. The numbers shown are the
files' numbers; nothing here measures anything.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paperlab import registry
from paperlab.experiments.runner import load_runs
from paperlab.notes import NOTES, Note, note_ids

PROVEN, PARTIAL, MISSING = "proven", "partial", "missing"
COLUMNS = ("implementation", "parity", "benchmark", "experiment")


@dataclass
class Cell:
    """One column of one note: a status, a short text, and the files it was read from
    (``links``: (label, path) pairs, paths as found on disk)."""

    status: str
    text: str
    links: list[tuple[str, str]] = field(default_factory=list)
    when: str = ""


@dataclass
class EvidenceRow:
    note: Note
    implementation: Cell
    parity: Cell
    benchmark: Cell
    experiment: Cell

    def cells(self) -> list[tuple[str, Cell]]:
        return [(c, getattr(self, c)) for c in COLUMNS]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"note": self.note.id, "title": self.note.title,
                               "family": self.note.family}
        for name, cell in self.cells():
            out[name] = asdict(cell)
        return out


# ---------------------------------------------------------------------------- reading files


def _newest(folder: Path, pattern: str) -> Path | None:
    files = sorted(Path(folder).glob(pattern))
    return files[-1] if files else None


def latest_parity(folder: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest parity report in ``folder`` and its path (None, None when there is none)."""
    path = _newest(folder, "parity-*.json")
    if path is None:
        return None, None
    try:
        return json.loads(path.read_text()), path
    except (OSError, json.JSONDecodeError):
        return None, path


def latest_benchmarks(folder: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """Benchmark name -> (its newest result, the file), from ``<name>-<stamp>.json`` files."""
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        name = data.get("name")
        if isinstance(name, str) and isinstance(data.get("rows"), list):
            old = found.get(name)
            if old is None or str(data.get("started", "")) >= str(old[0].get("started", "")):
                found[name] = (data, path)
    return found


def registered_for(kind: str) -> dict[str, list[str]]:
    """Note id -> names of the registered ``kind`` entries whose ``note=`` names it."""
    registry.load_all()
    by_note: dict[str, list[str]] = {}
    for entry in registry.entries(kind):
        for nid in note_ids(entry.meta.get("note")):
            by_note.setdefault(nid, []).append(entry.name)
    return by_note


# ---------------------------------------------------------------------------- the cells


def _fmt(x: Any) -> str:
    return f"{x:.2g}" if isinstance(x, float) else str(x)


def implementation_cell(note: Note) -> Cell:
    have = note.existing_modules()
    status = PROVEN if len(have) == len(note.modules) else PARTIAL if have else MISSING
    text = ", ".join(Path(m).stem for m in have) or "not implemented"
    if have and len(have) < len(note.modules):
        todo = [Path(m).stem for m in note.modules if m not in have]
        text += f" (not yet: {', '.join(todo)})"
    return Cell(status, text, [(Path(m).name, m) for m in have])


def parity_cell(note: Note, report: dict[str, Any] | None, path: Path | None) -> Cell:
    entries = [e for e in (report or {}).get("entries", []) if note.id in e.get("notes", [])]
    ran = [e for e in entries if e.get("outcome") in ("passed", "failed")]
    if not ran:
        why = ("no parity report (run pytest --parity-report)" if report is None
               else "no parity test in the latest report")
        return Cell(MISSING, why)
    failed = [e for e in ran if e["outcome"] == "failed"]
    refs = list(dict.fromkeys(r for e in ran for r in e.get("references", [])))
    worst: dict[str, dict[str, Any]] = {}
    for e in ran:
        w = e.get("worst")
        if w and w.get("used") is not None and (
                w["dtype"] not in worst or w["used"] > worst[w["dtype"]]["used"]):
            worst[w["dtype"]] = w
    errs = "; ".join(f"{d} err {_fmt(w['max_abs'])} (atol {_fmt(w['atol'])}, "
                     f"{w['used']:.0%} of tol)" for d, w in sorted(worst.items()))
    text = f"{len(ran) - len(failed)}/{len(ran)} passed"
    if refs:
        text += " vs " + ", ".join(refs[:3]) + (" …" if len(refs) > 3 else "")
    if errs:
        text += "; " + errs
    if failed:
        text += f"; FAILED: {failed[0]['test']}: {failed[0].get('error', '')[:160]}"
    files = list(dict.fromkeys(e["file"] for e in ran))
    links = [(Path(f).name, f) for f in files] + ([("report", str(path))] if path else [])
    return Cell(PARTIAL if failed else PROVEN, text, links, str(report.get("started", "")))


def benchmark_cell(names: list[str], results: dict[str, tuple[dict[str, Any], Path]]) -> Cell:
    if not names:
        return Cell(MISSING, "no benchmark registered")
    parts, links, when = [], [], ""
    for name in names:
        if name not in results:
            parts.append(f"{name}: not run")
            continue
        data, path = results[name]
        ratios = [r["ratio"] for r in data["rows"] if isinstance(r.get("ratio"), (int, float))]
        if ratios:
            refs = list(dict.fromkeys(str(r.get("reference")) for r in data["rows"]))
            span = f"{min(ratios):.2f}" + (f"-{max(ratios):.2f}" if len(ratios) > 1 else "")
            parts.append(f"{name}: {span}x of {', '.join(refs[:2])}"
                         f"{' …' if len(refs) > 2 else ''} ({len(ratios)} sizes)")
        else:
            parts.append(f"{name}: no rows")
        links.append((path.name, str(path)))
        when = max(when, str(data.get("started", "")))
    run = sum(n in results for n in names)
    status = PROVEN if run == len(names) else PARTIAL if run else MISSING
    return Cell(status, "; ".join(parts), links, when)


def experiment_cell(names: list[str], latest: dict[str, dict[str, Any]]) -> Cell:
    if not names:
        return Cell(MISSING, "no experiment registered")
    parts, links, when, good = [], [], "", 0
    for name in names:
        rec = latest.get(name)
        if rec is None:
            parts.append(f"{name}: not run")
            continue
        claims = [c for c in rec.get("claims") or [] if isinstance(c, dict)]
        held = sum(c.get("passed") is True for c in claims)
        if rec.get("error"):
            parts.append(f"{name}: crashed")
        else:
            text = f"{name}: {held}/{len(claims)} claims held"
            control = next((c.get("control") for c in claims if c.get("control") is not None),
                           None)
            if control is not None:
                values = control if isinstance(control, list) else [control]
                text += f" (control {', '.join(_fmt(v) for v in values)})"
            parts.append(text)
            good += bool(claims) and held == len(claims)
        links.append((name, rec["folder"]))
        when = max(when, str(rec.get("started", "")))
    status = PROVEN if good == len(names) else PARTIAL if links else MISSING
    return Cell(status, "; ".join(parts), links, when)


# ---------------------------------------------------------------------------- the table


def evidence_table(runs: Path = Path("runs"), *, parity: Path | None = None,
                   bench: Path | None = None) -> list[EvidenceRow]:
    """One row per note of the catalogue, from the files under ``runs`` (experiment runs),
    ``parity`` (default ``runs/parity``) and ``bench`` (default ``runs/bench``)."""
    runs = Path(runs)
    report, report_path = latest_parity(parity or runs / "parity")
    results = latest_benchmarks(bench or runs / "bench")
    latest: dict[str, dict[str, Any]] = {}
    for rec in load_runs(runs):  # newest first
        latest.setdefault(str(rec.get("name")), rec)
    experiments, benchmarks = registered_for("experiment"), registered_for("benchmark")
    return [EvidenceRow(
        note=note,
        implementation=implementation_cell(note),
        parity=parity_cell(note, report, report_path),
        benchmark=benchmark_cell(benchmarks.get(note.id, []), results),
        experiment=experiment_cell(experiments.get(note.id, []), latest),
    ) for note in NOTES]


def family_summary(rows: list[EvidenceRow]) -> list[dict[str, Any]]:
    """Per family: how many notes, and per column how many are proven / partial / missing."""
    families: dict[str, dict[str, Any]] = {}
    for row in rows:
        fam = families.setdefault(row.note.family, {"family": row.note.family, "notes": 0,
                                                    **{c: {PROVEN: 0, PARTIAL: 0, MISSING: 0}
                                                       for c in COLUMNS}})
        fam["notes"] += 1
        for name, cell in row.cells():
            fam[name][cell.status] += 1
    return list(families.values())


def to_json(rows: list[EvidenceRow]) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"built": stamp, "notes": [r.to_dict() for r in rows],
                       "families": family_summary(rows)}, indent=2)


# ---------------------------------------------------------------------------- parity runs


def tests_folder() -> Path | None:
    """The source checkout's ``tests/`` (beside ``paperlab/``), or None in an installed copy."""
    folder = Path(__file__).resolve().parents[1] / "tests"
    return folder if (folder / "conftest.py").is_file() else None


def run_parity_tests(notes: list[str], out: Path) -> tuple[Path | None, str]:
    """Run the parity tests of ``notes`` (``pytest --parity-report OUT --notes ...``, the
    default selection, so not the ``slow`` ones) and return (the report written, "") or
    (None, why not). Needs the test extras and a source checkout's ``tests/``; failing tests
    are recorded as failed in the report, they do not stop the tour."""
    folder = tests_folder()
    if folder is None:
        return None, "no tests/ folder beside the package (not a source checkout)"
    if importlib.util.find_spec("pytest") is None:
        return None, "pytest is not installed (pip install -e '.[test]')"
    out = Path(out).resolve()
    before = set(out.glob("parity-*.json"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--parity-report",
           str(out), "--notes", ",".join(notes), str(folder)]
    proc = subprocess.run(cmd, cwd=folder.parent, capture_output=True, text=True)
    new = sorted(set(out.glob("parity-*.json")) - before)
    if not new:
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        return None, f"pytest exited with status {proc.returncode} and wrote no report: {last}"
    return new[-1], ""
