"""The static report site: a "latest updates" feed of experiment runs.

The notes paperlab implements came as a feed of posts, newest first; the report gives the
experiments back in that shape. Every experiment becomes one post, built from its latest run
in ``runs/<name>/<stamp>/result.json`` (older runs are listed in the post's history): title,
date, tags, the one-line summary, the claims table (measured value against the threshold,
pass or FAIL), the figures, the source file, and size, seed, device and seconds. A crashed
run shows its traceback.

Layout of the generated folder (every link relative, so the folder can be moved or served
from anywhere; nothing is fetched from the network)::

    index.html              the feed, tag filter (static/filter.js), browse-by-tag lists
    evidence.html           per note: implementation, parity, benchmark, experiment
                            (``paperlab.evidence``), sortable by family and status
    posts/<slug>.html       one page per experiment, with metrics and run history, and its
                            note's parity and benchmark line above the claims
    posts/<slug>/<fig>.png  the figures, copied from the run folder
    evidence/               copies of what the evidence page links to: the modules and test
                            files (as .txt), the parity report and benchmark JSON files
    static/                 style.css, filter.js, evidence.js, favicon.svg
    .paperlab-site          marks the folder as ours, so a rebuild may replace posts/

All text passes through jinja2 with autoescaping on: a title, tag or traceback containing
markup shows as text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from paperlab.errors import OutputError
from paperlab.evidence import COLUMNS, MISSING, PARTIAL, PROVEN, EvidenceRow, evidence_table
from paperlab.experiments.runner import load_runs
from paperlab.notes import note_ids

HERE = Path(__file__).resolve().parent
MARKER = ".paperlab-site"
OWNED = ("posts", "static", "evidence")  # folders a rebuild replaces wholesale
STATIC_FILES = ("style.css", "filter.js", "evidence.js", "favicon.svg")
REPO = HERE.parents[1]  # the folder holding paperlab/ (and tests/ in a source checkout)


@dataclass
class Figure:
    """A figure copied into the site: ``path`` is relative to ``posts/``."""

    source: Path
    path: str
    caption: str

    @property
    def url(self) -> str:
        return "/".join(quote(part) for part in self.path.split("/"))


@dataclass
class Post:
    """One experiment as shown on the site (its latest run, plus the older ones)."""

    name: str
    slug: str
    title: str
    note: str
    tags: list[str]
    date: str
    iso: str
    summary: str
    claims: list[dict[str, Any]]
    figures: list[Figure]
    missing_figures: list[str]
    source: str
    facts: list[tuple[str, str]]
    metrics: list[tuple[str, str]]
    error: str | None
    status: str  # "passed", "failed", "crashed" or "empty" (no claims)
    status_label: str
    history: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # per note of the post

    @property
    def url(self) -> str:
        return f"{quote(self.slug)}.html"

    @property
    def error_line(self) -> str:
        """The traceback's last line (the exception), shown while the rest stays folded."""
        lines = [line for line in (self.error or "").splitlines() if line.strip()]
        return fmt_value(lines[-1].strip(), 160) if lines else ""

    @property
    def failed_claims(self) -> int:
        return sum(not c["passed"] for c in self.claims)


# ---------------------------------------------------------------------------- formatting


def fmt_value(x: Any, limit: int = 120) -> str:
    """A measured value or threshold as short text: floats to 4 significant digits."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.4g}"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        return x if len(x) <= limit else x[: limit - 1] + "…"
    if isinstance(x, (list, tuple)) and len(x) > 6:
        head = ", ".join(fmt_value(v, 20) for v in x[:3])
        return f"[{head}, … {len(x) - 3} more]"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt_value(v, 20) for v in x) + "]"
    text = json.dumps(x, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_time(record: dict[str, Any]) -> dt.datetime | None:
    """When the run started, from ``started`` (ISO) or else the folder ``stamp``."""
    started = record.get("started")
    if isinstance(started, str):
        try:
            when = dt.datetime.fromisoformat(started)
        except ValueError:
            when = None
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    stamp = record.get("stamp")
    if isinstance(stamp, str):
        try:
            return dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S-%f").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
    return None


def show_time(when: dt.datetime | None) -> str:
    if when is None:
        return "unknown date"
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def slugify(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``.``, ``_``, ``-``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug.lower() or "post"


def _unique(base: str, taken: set[str]) -> str:
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _flatten(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Metrics as (key, text) rows; nested dicts become ``outer.inner`` keys."""
    if not isinstance(metrics, dict):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, fmt_value(value)))
    return rows


def _claims(record: dict[str, Any]) -> list[dict[str, Any]]:
    claims = []
    for c in record.get("claims") or []:
        if not isinstance(c, dict):
            continue
        claims.append({
            "statement": str(c.get("statement", "")),
            "value": fmt_value(c.get("value")),
            "threshold": f"{c.get('op', '?')} {fmt_value(c.get('threshold'))}",
            "control": _control_text(c.get("control")),
            "seeds": _seeds_text(c),
            "passed": c.get("passed") is True,
        })
    return claims


def _control_text(control: Any) -> str:
    """The control's value (one, or one per seed) as text; empty when the claim has none."""
    if control is None:
        return ""
    if isinstance(control, list):
        return ", ".join(fmt_value(v) for v in control)
    return fmt_value(control)


def _seeds_text(claim: dict[str, Any]) -> str:
    """``v1, v2, v3 (mean m ± sd s)`` for a claim made over seeds; empty otherwise."""
    values = claim.get("per_seed")
    if not isinstance(values, list) or not values:
        return ""
    text = ", ".join(fmt_value(v) for v in values)
    if isinstance(claim.get("mean"), (int, float)) and isinstance(claim.get("sd"), (int, float)):
        text += f" (mean {fmt_value(claim['mean'])} ± {fmt_value(claim['sd'])})"
    return text


def _status(record: dict[str, Any], claims: list[dict[str, Any]]) -> tuple[str, str]:
    if record.get("error"):
        return "crashed", "crashed"
    failed = sum(not c["passed"] for c in claims)
    if failed:
        return "failed", f"{failed} of {len(claims)} claims failed"
    if not claims:
        return ("failed", "failed") if record.get("passed") is False else ("empty", "no claims")
    if record.get("passed") is False:
        return "failed", "failed"
    return "passed", "all claims hold" if len(claims) > 1 else "claim holds"


def _figures(record: dict[str, Any], slug: str) -> tuple[list[Figure], list[str]]:
    """The run's figures that exist inside its folder, and the names of those that do not."""
    folder = Path(record["folder"]).resolve()
    found, missing = [], []
    for rel in record.get("figures") or []:
        src = (folder / str(rel)).resolve()
        try:
            inside = src.relative_to(folder)
        except ValueError:  # a path leaving the run folder is never copied
            missing.append(str(rel))
            continue
        if not src.is_file():
            missing.append(str(rel))
            continue
        path = "/".join((slug, *inside.parts))
        found.append(Figure(source=src, path=path, caption=src.stem.replace("_", " ")))
    return found, missing


def _history_row(record: dict[str, Any]) -> dict[str, Any]:
    claims = _claims(record)
    status, label = _status(record, claims)
    held = sum(c["passed"] for c in claims)
    return {
        "date": show_time(parse_time(record)),
        "stamp": str(record.get("stamp", "")),
        "size": str(record.get("size", "")),
        "seed": str(record.get("seed", "")),
        "device": str(record.get("device", "")),
        "claims": f"{held}/{len(claims)}" if claims else "—",
        "seconds": fmt_value(record.get("seconds")),
        "status": status,
        "status_label": label,
    }


def make_post(runs_of_one: list[dict[str, Any]], slug: str) -> Post:
    """The post for one experiment from its runs, newest first."""
    latest = runs_of_one[0]
    when = parse_time(latest)
    claims = _claims(latest)
    status, label = _status(latest, claims)
    figures, missing = _figures(latest, slug)
    seconds = latest.get("seconds")
    facts = [
        ("size", str(latest.get("size", "?"))),
        ("seed", str(latest.get("seed", "?"))),
        ("device", str(latest.get("device", "?"))),
        ("time", f"{fmt_value(seconds)} s" if isinstance(seconds, (int, float)) else "?"),
    ]
    raw_tags = latest.get("tags") or []
    if isinstance(raw_tags, str):
        raw_tags = [raw_tags]
    tags = [str(t) for t in raw_tags if str(t)]
    return Post(
        name=str(latest.get("name", slug)),
        slug=slug,
        title=str(latest.get("title") or latest.get("name") or slug),
        note=str(latest.get("note") or ""),
        tags=list(dict.fromkeys(tags)),
        date=show_time(when),
        iso=when.isoformat() if when else "",
        summary=str(latest.get("summary") or ""),
        claims=claims,
        figures=figures,
        missing_figures=missing,
        source=str(latest.get("source") or ""),
        facts=facts,
        metrics=_flatten(latest.get("metrics")),
        error=str(latest["error"]) if latest.get("error") else None,
        status=status,
        status_label=label,
        history=[_history_row(r) for r in runs_of_one],
    )


def collect_posts(records: list[dict[str, Any]]) -> list[Post]:
    """Group runs (newest first) by experiment: one post each, newest latest run first."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_name.setdefault(str(record.get("name") or Path(record["folder"]).parent.name),
                           []).append(record)
    taken: set[str] = set()
    return [make_post(runs_of_one, _unique(slugify(name), taken))
            for name, runs_of_one in by_name.items()]


def tag_anchors(posts: list[Post]) -> dict[str, str]:
    """Each tag's HTML id (``tag-<slug>``), unique even when two tags slugify alike."""
    taken: set[str] = set()
    return {tag: _unique(f"tag-{slugify(tag)}", taken)
            for tag in sorted({t for p in posts for t in p.tags}, key=str.lower)}


# ---------------------------------------------------------------------------- writing


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _prepare(out: Path) -> None:
    """Make ``out`` ready: remove what an earlier build wrote, refuse to touch foreign folders."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or exc
        raise OutputError(f"site folder {str(out)!r} cannot be created: {why}") from None
    ours = (out / MARKER).is_file()
    for name in OWNED:
        target = out / name
        if not target.exists():
            continue
        if not ours:
            raise OutputError(
                f"site folder {str(out)!r} already holds {name}/ that paperlab did not write; "
                "choose an empty or earlier site folder"
            )
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    (out / "index.html").unlink(missing_ok=True)
    (out / "evidence.html").unlink(missing_ok=True)


# ---------------------------------------------------------------------------- evidence


def _copy_into(out: Path, source: Path, dest: str) -> str | None:
    """Copy ``source`` to ``out/evidence/<dest>``; its link from the site root, or None."""
    if not source.is_file():
        return None
    target = out / "evidence" / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return "/".join(quote(part) for part in ("evidence", *Path(dest).parts))


def _cell_links(out: Path, column: str, links: list[tuple[str, str]],
                slugs: dict[str, str]) -> list[tuple[str, str]]:
    """The cell's files as site links: experiments go to their post, everything else to a
    copy under evidence/ (sources as .txt so a browser shows them); a file that cannot be
    found is left out rather than linked dead."""
    shown = []
    for label, path in links:
        if column == "experiment":
            href = f"posts/{quote(slugs[label])}.html" if label in slugs else None
        elif path.endswith(".py"):
            href = _copy_into(out, REPO / path, path + ".txt")
        else:
            href = _copy_into(out, Path(path), f"{column}/{Path(path).name}")
        if href:
            shown.append((label, href))
    return shown


def evidence_rows(rows: list[EvidenceRow], out: Path, slugs: dict[str, str]) -> list[dict]:
    """The evidence table as the template shows it, copying the files it links to."""
    rank = {MISSING: 0, PARTIAL: 1, PROVEN: 2}
    shown = []
    for row in rows:
        cells = []
        for column, cell in row.cells():
            cells.append({"status": cell.status, "text": cell.text, "when": cell.when,
                          "links": _cell_links(out, column, cell.links, slugs)})
        shown.append({"id": row.note.id, "title": row.note.title, "family": row.note.family,
                      "rank": sum(rank[c["status"]] for c in cells), "cells": cells})
    return shown


def build_site(runs: Path, out: Path) -> Path:
    """Build the static site for every run under ``runs`` into ``out``; return ``index.html``.

    Rebuilding over an earlier site replaces its posts (stale ones disappear). An empty or
    missing runs folder gives a site that says there are no runs yet.
    """
    runs, out = Path(runs), Path(out)
    records = load_runs(runs)
    posts = collect_posts(records)
    anchors = tag_anchors(posts)
    counts = Counter(t for p in posts for t in p.tags)
    built = show_time(dt.datetime.now(dt.timezone.utc))

    _prepare(out)
    (out / MARKER).write_text("built by paperlab.report; rebuilt wholesale by `paperlab report`\n")
    static = out / "static"
    static.mkdir()
    for name in STATIC_FILES:
        shutil.copyfile(HERE / "static" / name, static / name)
    (out / "posts").mkdir()

    env = environment()
    common = {"built": built, "runs_count": len(records), "tag_ids": anchors}
    rows = evidence_table(runs)
    by_id = {r.note.id: r for r in rows}
    for post in posts:
        post.evidence = [{"id": i, "parity": by_id[i].parity, "benchmark": by_id[i].benchmark}
                         for i in note_ids(post.note) if i in by_id]
    shown = evidence_rows(rows, out, {p.name: p.slug for p in posts})
    html = env.get_template("evidence.html").render(rows=shown, columns=COLUMNS, root="",
                                                    **common)
    (out / "evidence.html").write_text(html, encoding="utf-8")
    post_page = env.get_template("post.html")
    for post in posts:
        for fig in post.figures:
            dest = out / "posts" / fig.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fig.source, dest)
        html = post_page.render(post=post, root="../", **common)
        (out / "posts" / f"{post.slug}.html").write_text(html, encoding="utf-8")

    totals = {
        "posts": len(posts),
        "claims": sum(len(p.claims) for p in posts),
        "failed": sum(p.failed_claims for p in posts),
        "crashed": sum(p.status == "crashed" for p in posts),
    }
    tags = [(tag, anchors[tag], counts[tag]) for tag in anchors]
    index = out / "index.html"
    html = env.get_template("index.html").render(posts=posts, tags=tags, totals=totals,
                                                 root="", **common)
    index.write_text(html, encoding="utf-8")
    return index
