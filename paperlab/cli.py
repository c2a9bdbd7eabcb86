"""The ``paperlab`` command: list, run, report, bench, train, sample, tour, evidence.

Every error a user can cause (unknown name, bad size, unwritable folder) prints one line on
stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paperlab import registry
from paperlab.errors import ArgumentError, PaperlabError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"paperlab: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from paperlab.experiments.base import SIZES

    p = _Parser(
        prog="paperlab",
        description="Deep-learning notes as tested implementations, experiments and benchmarks.",
    )
    from paperlab import __version__

    p.add_argument("--version", action="version", version=f"paperlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("list", help="list registered components (optionally of one KIND)")
    s.add_argument(
        "kind",
        nargs="?",
        choices=registry.KINDS,
        metavar="KIND",
        help=f"one of: {', '.join(registry.KINDS)}",
    )

    s = sub.add_parser("run", help="run experiments (NAME... or all) and write runs/")
    s.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or 'all'")
    s.add_argument("--size", default="quick", choices=SIZES, help="size preset (default quick)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="cpu", help="torch device (default cpu)")
    s.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default runs/)")
    s.add_argument("--tag", help="only experiments with this tag")
    s.add_argument("--strict", action="store_true", help="exit 1 if any claim fails")

    s = sub.add_parser("report", help="build the static report site from runs/")
    s.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default runs/)")
    s.add_argument("--out", type=Path, default=Path("site"), help="site folder (default site/)")

    s = sub.add_parser("bench", help="benchmark ours against the reference (NAME... or all)")
    s.add_argument("names", nargs="+", metavar="NAME", help="benchmark or group names, or 'all'")
    s.add_argument("--repeats", type=int, default=7, help="timed repeats, median kept (default 7)")
    s.add_argument("--device", default="cpu", help="torch device (default cpu)")
    s.add_argument("--quick", action="store_true", help="a short size sweep")
    s.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on the CPU (default 1: steady timings)",
    )
    s.add_argument(
        "--out", type=Path, default=Path("runs/bench"), help="results folder (default runs/bench/)"
    )

    s = sub.add_parser("train", help="train a recipe (also under torchrun for DDP)")
    s.add_argument("recipe", metavar="RECIPE", help="recipe name (paperlab list recipe)")
    s.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set steps=100 (repeatable)",
    )
    s.add_argument(
        "--resume",
        type=Path,
        metavar="PATH",
        help="checkpoint folder, or a run's checkpoints/ folder (newest is taken)",
    )
    s.add_argument("--out", help="output folder (default runs/train/RECIPE)")
    s.add_argument("--device", help="torch device (default cuda:LOCAL_RANK if available, else cpu)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw images from a trained recipe's run (e.g. ldm)")
    s.add_argument("recipe", metavar="RECIPE", help="a recipe with a sampler (ldm)")
    s.add_argument("--run", type=Path, help="the training run folder (default runs/train/RECIPE)")
    s.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    s.add_argument("--label", type=int, action="append", default=[], help="a class id (repeatable)")
    s.add_argument("--num-images", type=int, default=4, help="images per prompt (default 4)")
    s.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    s.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="cpu", help="torch device (default cpu)")
    s.add_argument("--out", type=Path, default=Path("samples"),
                   help="PNG folder (default samples/)")

    s = sub.add_parser("tour", help="run every experiment at quick size and build the site")
    s.add_argument("--tag", help="only experiments with this tag")
    s.add_argument("--size", default="quick", choices=SIZES, help="size preset (default quick)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="cpu", help="torch device (default cpu)")
    s.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default runs/)")
    s.add_argument("--site", type=Path, default=Path("site"), help="site folder (default site/)")
    s.add_argument("--no-parity", action="store_true",
                   help="do not run the parity tests of the notes covered (they run when the "
                        "test extras and tests/ are installed)")

    s = sub.add_parser("evidence", help="per note: implementation, parity, benchmark, experiment")
    s.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default runs/)")
    s.add_argument("--parity", type=Path, help="parity reports folder (default RUNS/parity/)")
    s.add_argument("--bench", type=Path, help="benchmark results folder (default RUNS/bench/)")
    s.add_argument("--family", help="only the notes of this family")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except PaperlabError as exc:
        print(f"paperlab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("paperlab: interrupted", file=sys.stderr)
        return 130


def _console() -> Any:
    from rich.console import Console

    # Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    table = Table(title="paperlab registry")
    for col in ("kind", "name", "module", "summary"):
        table.add_column(col)
    for e in registry.entries(args.kind):
        table.add_row(e.kind, e.name, e.module.removeprefix("paperlab."), e.summary)
    _console().print(table)
    return 0


def _run_many(names: list[str], args: argparse.Namespace, runs: Path) -> list[Any]:
    """Run experiments under a live progress bar; return their records."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from paperlab.experiments.runner import run_experiment

    records = []
    console = _console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("experiments", total=len(names))
        inner = progress.add_task("", total=None, visible=False)

        def report(label: str, done: int, total: int) -> None:
            progress.update(
                inner, description=f"  {label}", completed=done, total=total or None, visible=True
            )

        for name in names:
            progress.update(overall, description=f"[bold]{name}")
            progress.reset(inner, visible=False)
            rec = run_experiment(
                name, size=args.size, seed=args.seed, device=args.device, runs=runs, progress=report
            )
            records.append(rec)
            mark = (
                "[red]crashed"
                if rec.error
                else ("[green]ok" if rec.data["passed"] else "[yellow]claim failed")
            )
            progress.console.print(
                f"{name}: {mark}[/] ({rec.data['seconds']:.1f} s) {rec.data['summary']}"
            )
            progress.advance(overall)
        progress.update(inner, visible=False)
    return records


def _claims_table(records: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="claims")
    for col in ("experiment", "claim", "measured", "threshold", "control", "seeds", "result"):
        table.add_column(col, overflow="fold")
    for rec in records:
        if rec.error:
            table.add_row(rec.name, "(experiment crashed)", "-", "-", "-", "-", "[red]ERROR")
        for c in rec.data["claims"]:
            control = c.get("control")
            seeds = c.get("per_seed")
            table.add_row(
                rec.name,
                c["statement"],
                _fmt(c["value"]),
                f"{c['op']} {_fmt(c['threshold'])}",
                "-" if control is None else ", ".join(map(_fmt, _as_list(control))),
                "-" if not seeds else ", ".join(map(_fmt, seeds)),
                "[green]pass" if c["passed"] else "[red]FAIL",
            )
    return table


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _summarise(records: list[Any], console: Any) -> tuple[int, int, int]:
    console.print(_claims_table(records))
    claims = [c for r in records for c in r.data["claims"]]
    failed = sum(not c["passed"] for c in claims)
    crashed = sum(bool(r.error) for r in records)
    console.print(
        f"{len(records)} experiments, {len(claims)} claims: "
        f"{len(claims) - failed} passed, {failed} failed"
        + (f", {crashed} experiments crashed" if crashed else "")
    )
    for r in records:
        if r.error:
            console.print(f"[red]{r.name} crashed:[/]\n{r.error}")
    return len(claims), failed, crashed


def cmd_run(args: argparse.Namespace) -> int:
    from paperlab.experiments.runner import ensure_writable, experiment_names

    names = experiment_names(args.names, args.tag)
    runs = ensure_writable(args.out, "runs folder")
    records = _run_many(names, args, runs)
    _, failed, crashed = _summarise(records, _console())
    if crashed:
        return 1
    return 1 if (args.strict and failed) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from paperlab.experiments.runner import ensure_writable
    from paperlab.report import build_site

    if not args.runs.is_dir():
        raise PaperlabError(
            f"runs folder {str(args.runs)!r} does not exist (run experiments first)"
        )
    ensure_writable(args.out, "site folder")
    index = build_site(args.runs, args.out)
    _console().print(f"report written to {index}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.table import Table

    from paperlab.benchmarks.base import BenchContext, benchmark_names, run_benchmark
    from paperlab.experiments.runner import ensure_writable

    if args.repeats < 1:
        raise ArgumentError(f"--repeats must be >= 1, got {args.repeats}")
    names = benchmark_names(args.names)
    out = ensure_writable(args.out, "benchmark folder")
    if args.threads < 1:
        raise ArgumentError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    ctx = BenchContext(repeats=args.repeats, device=args.device, quick=args.quick)
    console = _console()
    for name in names:
        with console.status(f"benchmark {name} ..."):
            rows, path = run_benchmark(name, ctx, out)
        table = Table(title=f"bench {name} ({args.device}, median of {args.repeats})")
        notes = any(r.note for r in rows)
        for col in ("case", "size", "ours", "reference", "ratio ours/ref") + (
            ("note",) if notes else ()
        ):
            table.add_column(col, justify="right" if col not in ("case", "note") else "left")
        for r in rows:
            table.add_row(
                r.case,
                r.size,
                _fmt_time(r.ours_s),
                f"{_fmt_time(r.reference_s)} ({r.reference})",
                f"{r.ratio:.2f}",
                *((r.note,) if notes else ()),
            )
        console.print(table)
        console.print(f"written to {path}")
    return 0


def _fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def cmd_train(args: argparse.Namespace) -> int:
    from paperlab.training.distributed import init_from_env, shutdown
    from paperlab.training.trainer import train

    entry = registry.get("recipe", args.recipe)
    cfg = entry.meta["config"]().replace_from_strings(args.overrides)
    if args.out:
        cfg = cfg.replace_from_strings([f"out={args.out}"])
    if args.no_progress:
        cfg.progress = False
    cfg.validate()
    if entry.meta.get("own_loop"):  # a recipe that is not trained by the Trainer (word2vec)
        return entry.obj(cfg, device=args.device)
    env = init_from_env(args.device)
    try:
        summary = train(args.recipe, cfg, resume=args.resume, env=env)
    finally:
        shutdown()
    if env.is_main:
        evals = "  ".join(f"{k} {v:.4f}" for k, v in summary.eval.items())
        state = "interrupted" if summary.interrupted else "done"
        _console().print(
            f"{state} at step {summary.step}: loss {summary.loss:.4f}  {evals}  "
            f"({summary.seconds:.1f} s, {env.world_size} process(es))"
        )
        if summary.checkpoint:
            _console().print(f"checkpoint: {summary.checkpoint}")
        _console().print(f"metrics: {summary.out / 'metrics.jsonl'}")
    return 130 if summary.interrupted else 0


def cmd_sample(args: argparse.Namespace) -> int:
    entry = registry.get("recipe", args.recipe)
    if "sample" not in entry.meta:
        raise ArgumentError(f"recipe {args.recipe!r} has no sampler")
    paths = entry.meta["sample"](
        args.run or Path("runs/train") / args.recipe, args.out, prompts=args.prompt,
        labels=args.label, num_images=args.num_images, steps=args.steps,
        guidance_scale=args.guidance_scale, eta=args.eta, seed=args.seed, device=args.device)
    _console().print(f"{len(paths)} images written to {args.out}")
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from paperlab.experiments.runner import ensure_writable, experiment_names
    from paperlab.report import build_site

    names = experiment_names(["all"], args.tag)
    runs = ensure_writable(args.runs, "runs folder")
    ensure_writable(args.site, "site folder")
    console = _console()
    console.print(f"[bold]paperlab tour[/]: {len(names)} experiments at size {args.size}")
    t0 = time.perf_counter()
    records = _run_many(names, args, runs)
    _, _, crashed = _summarise(records, console)
    if not args.no_parity:
        _tour_parity(names, runs, console)
    from paperlab.evidence import evidence_table, family_summary

    console.print(_family_table(family_summary(evidence_table(runs))))
    index = build_site(runs, args.site)
    console.print(f"report site: {index}  ({time.perf_counter() - t0:.0f} s in all)")
    return 1 if crashed else 0


def _tour_parity(names: list[str], runs: Path, console: Any) -> None:
    """Run the parity tests of the notes the tour covered, when pytest and tests/ are here."""
    from paperlab.evidence import run_parity_tests
    from paperlab.notes import note_ids

    notes = sorted({n for name in names
                    for n in note_ids(registry.get("experiment", name).meta.get("note"))})
    if not notes:
        return
    with console.status(f"parity tests of notes {', '.join(notes)} ..."):
        path, why = run_parity_tests(notes, runs / "parity")
    from rich.markup import escape

    console.print(escape(f"parity report: {path}" if path else f"parity tests not run: {why}"))


def _family_table(families: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from paperlab.evidence import COLUMNS

    table = Table(title="evidence per family (proven / partial / missing notes)")
    table.add_column("family")
    table.add_column("notes", justify="right")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for fam in families:
        table.add_row(fam["family"], str(fam["notes"]), *(
            f"[green]{fam[c]['proven']}[/] / [yellow]{fam[c]['partial']}[/] / "
            f"[red]{fam[c]['missing']}[/]" for c in COLUMNS))
    return table


def cmd_evidence(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from paperlab.evidence import COLUMNS, evidence_table, to_json

    rows = evidence_table(args.runs, parity=args.parity, bench=args.bench)
    if args.family:
        families = sorted({r.note.family for r in rows})
        if args.family not in families:
            raise ArgumentError(
                f"unknown family {args.family!r}; families: {', '.join(families)}")
        rows = [r for r in rows if r.note.family == args.family]
    if args.json:
        print(to_json(rows))
        return 0
    colour = {"proven": "green", "partial": "yellow", "missing": "red"}
    table = Table(title=f"evidence per note (from {args.runs}/)", show_lines=True)
    table.add_column("note")
    for col in COLUMNS:
        table.add_column(col, ratio=1)
    for r in rows:
        table.add_row(escape(f"{r.note.id} {r.note.title}"), *(
            f"[{colour[c.status]}]{c.status}[/] {escape(c.text)}" for _, c in r.cells()))
    _console().print(table)
    return 0


COMMANDS = {
    "list": cmd_list,
    "run": cmd_run,
    "report": cmd_report,
    "bench": cmd_bench,
    "train": cmd_train,
    "sample": cmd_sample,
    "tour": cmd_tour,
    "evidence": cmd_evidence,
}
