"""The static report site (paperlab.report.build_site) built from fake runs.

The fake runs are written here the way ``experiments/runner.py`` writes them:
``runs/<name>/<stamp>/result.json`` plus PNG figures beside it. ``test_browser.py`` reuses
``fake_runs`` to drive the same site in a real browser.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from paperlab.errors import OutputError
from paperlab.report import build_site

# ---------------------------------------------------------------------------- fake runs


def tiny_png(seed: int = 0, width: int = 24, height: int = 16) -> bytes:
    """A valid RGB PNG (a colour gradient) from raw bytes, no imaging library needed."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type: none
        for x in range(width):
            row += bytes(((x * 255 // width + seed * 40) % 256, y * 255 // height, 160))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def claim(statement: str, value: Any, op: str, threshold: Any, passed: bool) -> dict[str, Any]:
    return {"statement": statement, "value": value, "op": op, "threshold": threshold,
            "passed": passed}


def write_run(runs: Path, name: str, stamp: str, *, title: str | None = None,
              tags: tuple[str, ...] = (), claims: list[dict[str, Any]] | None = None,
              figures: dict[str, bytes] | None = None, error: str | None = None,
              summary: str = "", metrics: dict[str, Any] | None = None,
              size: str = "quick", seed: int = 0, seconds: float = 1.25,
              note: str | None = None) -> Path:
    """Write one run folder as the runner does; ``figures`` maps relative path -> PNG bytes."""
    folder = runs / name / stamp
    folder.mkdir(parents=True)
    for rel, data in (figures or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    claims = claims or []
    data: dict[str, Any] = {
        "name": name, "title": title or name, "note": note or f"note for {name}",
        "tags": list(tags),
        "source": f"paperlab/experiments/{name.replace('-', '_')}.py", "size": size,
        "seed": seed, "device": "cpu", "stamp": stamp,
        "started": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
                   f"{stamp[13:15]}+00:00",
        "summary": summary or f"summary of {name}", "metrics": metrics or {},
        "claims": claims, "figures": list(figures or {}),
        "passed": error is None and all(c["passed"] for c in claims), "seconds": seconds,
    }
    if error is not None:
        data["error"] = error
    (folder / "result.json").write_text(json.dumps(data, indent=2))
    return folder


CRASH = ('Traceback (most recent call last):\n  File "x.py", line 3, in <module>\n'
         '    boom()\nRuntimeError: tensor <b>exploded</b> & died\n')


def fake_runs(runs: Path, png: Any = tiny_png) -> dict[str, Any]:
    """Four experiments (newest first: delta, gamma, beta, alpha) with tags, figures, an older
    run, a failed claim and a crash. ``png(seed)`` makes figure bytes. Returns what to expect."""
    write_run(runs, "alpha", "20240101-090000-000000", tags=("position",),
              claims=[claim("old claim", 1.0, "<", 2.0, True)], summary="the OLD alpha run")
    write_run(runs, "alpha", "20240301-090000-000000", title="Alpha: rotary positions",
              tags=("position", "attention"),
              claims=[claim("relative property holds", 3.2e-7, "<", 1e-5, True),
                      claim("decay with distance", 0.91, ">", 0.5, True)],
              figures={"decay.png": png(0), "sub/heatmap.png": png(1)},
              metrics={"max_err": 3.2e-7, "curve": list(range(40)), "nested": {"a": 1}})
    write_run(runs, "beta", "20240302-090000-000000", title="Beta: linear attention",
              tags=("attention",),
              claims=[claim("crossover below 4096", 8192, "<", 4096, False),
                      claim("recurrent == parallel", 1e-9, "<", 1e-6, True)],
              figures={"crossover.png": png(2)})
    write_run(runs, "gamma", "20240303-090000-000000", title="Gamma: selective scan",
              tags=("sequence",), error=CRASH, summary="crashed: RuntimeError: tensor exploded")
    write_run(runs, "delta", "20240304-090000-000000", title="Delta: no claims yet",
              tags=("algorithms",), figures={"plot.png": png(3)})
    return {
        "order": ["delta", "gamma", "beta", "alpha"],
        "tags": {"delta": {"algorithms"}, "gamma": {"sequence"}, "beta": {"attention"},
                 "alpha": {"position", "attention"}},
    }


# ---------------------------------------------------------------------------- HTML helpers


class Links(HTMLParser):
    """Collects every src/href and the data-name of every post article."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.posts: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) is not None:
                self.urls.append(a[key] or "")
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "article" and "data-name" in a:
            self.posts.append(a["data-name"] or "")


def parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    fake_runs(tmp_path / "runs")
    index = build_site(tmp_path / "runs", tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    return index.parent


# ---------------------------------------------------------------------------- tests


def test_posts_newest_first_one_per_experiment(site: Path) -> None:
    assert parse(site / "index.html").posts == ["delta", "gamma", "beta", "alpha"]
    assert sorted(p.name for p in (site / "posts").glob("*.html")) == [
        "alpha.html", "beta.html", "delta.html", "gamma.html"]


def test_post_shows_latest_run_and_counts_older(site: Path) -> None:
    index = (site / "index.html").read_text()
    assert "Alpha: rotary positions" in index and "the OLD alpha run" not in index
    assert "1 earlier run" in index
    page = (site / "posts" / "alpha.html").read_text()
    assert page.count('class="older"') == 1 and page.count('class="current"') == 1
    assert "2024-03-01 09:00 UTC" in page and "2024-01-01 09:00 UTC" in page


def test_claims_table(site: Path) -> None:
    page = (site / "posts" / "alpha.html").read_text()
    assert "relative property holds" in page
    assert "3.2e-07" in page and "&lt; 1e-05" in page  # measured, and op + threshold
    assert "0.91" in page and "&gt; 0.5" in page
    assert page.count('<tr class="pass">') == 2 and 'class="fail"' not in page
    assert "all claims hold" in page


def test_claims_show_control_and_seeds(tmp_path: Path) -> None:
    from paperlab.experiments.base import Claim

    over = Claim.over_seeds("probe beats the untrained encoder", [0.12, 0.10, 0.14], ">=", 0.08,
                            control=[0.0, 0.01, -0.01]).to_dict()
    single = Claim.check("error below the mean's", 0.25, "<=", 0.8, control=1.0).to_dict()
    write_run(tmp_path / "runs", "eps", "20240101-000000-000000", claims=[over, single])
    site = build_site(tmp_path / "runs", tmp_path / "site").parent
    page = (site / "posts" / "eps.html").read_text()
    row = page.split("probe beats the untrained encoder", 1)[1].split("</tr>", 1)[0]
    assert "0.1" in row  # the worst seed is the measured value
    assert "0.12, 0.1, 0.14 (mean 0.12 ± 0.02)" in row
    assert "0, 0.01, -0.01" in row
    row = page.split("error below the mean", 1)[1].split("</tr>", 1)[0]
    assert "&lt;= 0.8" in row and ">1<" in row.replace(".0<", "<")


def test_failed_claim_marked_failed(site: Path) -> None:
    page = (site / "posts" / "beta.html").read_text()
    row = page.split('<tr class="fail">', 1)[1].split("</tr>", 1)[0]
    assert "crossover below 4096" in row and "8192" in row and "FAIL" in row
    assert "verdict-fail" in row
    assert page.count('<tr class="pass">') == 1
    assert "1 of 2 claims failed" in page and "status-failed" in page
    index = (site / "index.html").read_text()
    assert "1 failed" in index and "1 crashed" in index


def test_crashed_run_shows_error_escaped(site: Path) -> None:
    for page in (site / "posts" / "gamma.html", site / "index.html"):
        text = page.read_text()
        assert "status-crashed" in text and "RuntimeError" in text
        assert "tensor &lt;b&gt;exploded&lt;/b&gt; &amp; died" in text
        assert "<b>exploded</b>" not in text


def test_everything_is_escaped(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    write_run(tmp_path / "runs", "evil", "20240101-000000-000000", title=evil,
              tags=('"><img src=x>',), summary=evil,
              claims=[claim(evil, evil, "<", "<b>", False)], metrics={evil: evil})
    site = build_site(tmp_path / "runs", tmp_path / "site").parent
    for page in html_files(site):
        text = page.read_text()
        assert "<script>alert" not in text and "<img src=x>" not in text
        if page.name != "evidence.html":  # the evidence page shows no run text
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
        assert all(u != "x" for u in parse(page).urls)


def test_tag_list_and_filter_links(site: Path) -> None:
    index = (site / "index.html").read_text()
    nav = index.split('<nav class="filter"', 1)[1].split("</nav>", 1)[0]
    for tag, count in {"algorithms": 1, "attention": 2, "position": 1, "sequence": 1}.items():
        assert f'data-filter="{tag}"' in nav and f'href="#tag-{tag}"' in nav
        assert f'{tag} <span class="count">{count}</span>' in nav
        assert f'id="tag-{tag}"' in index  # the no-JS "browse by tag" target
    assert 'data-filter=""' in nav  # "all"
    assert nav.index("algorithms") < nav.index("attention") < nav.index("sequence")
    # each post carries its own tags; a post page links back to the filtered index
    alpha = (site / "posts" / "alpha.html").read_text()
    assert 'href="../index.html#tag-attention" data-tag="attention"' in alpha
    assert '<script src="static/filter.js" defer></script>' in index


def test_figures_copied_and_shown(site: Path) -> None:
    assert (site / "posts" / "alpha" / "decay.png").read_bytes() == tiny_png(seed=0)
    assert (site / "posts" / "alpha" / "sub" / "heatmap.png").is_file()
    page = parse(site / "posts" / "alpha.html")
    assert page.imgs == ["../posts/alpha/decay.png", "../posts/alpha/sub/heatmap.png"]
    index = parse(site / "index.html")
    assert "posts/alpha/decay.png" in index.imgs  # the feed shows the first figure
    assert "posts/alpha/sub/heatmap.png" not in index.imgs
    assert "1 more figure" in (site / "index.html").read_text()


def test_source_size_seed_seconds_and_metrics(site: Path) -> None:
    page = (site / "posts" / "alpha.html").read_text()
    assert "<code>paperlab/experiments/alpha.py</code>" in page
    assert "<dt>size</dt><dd>quick</dd>" in page and "<dt>seed</dt><dd>0</dd>" in page
    assert "<dt>time</dt><dd>1.25 s</dd>" in page
    assert "<code>max_err</code>" in page and "<code>nested.a</code>" in page
    assert "37 more]" in page  # a long list is shortened


def test_relative_links_resolve(site: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(site, moved)  # relocatable: a moved copy works as well
    for root in (site, moved):
        checked = 0
        for page in html_files(root):
            for url in parse(page).urls:
                parts = urlsplit(url)
                assert not parts.scheme and not parts.netloc, f"{page.name}: {url}"
                assert not url.startswith("/"), f"{page.name}: absolute {url}"
                if not parts.path:
                    continue  # a fragment within the page
                target = (page.parent / unquote(parts.path)).resolve()
                assert target.is_file(), f"{page.name}: {url} -> {target}"
                assert root.resolve() in target.parents
                checked += 1
        assert checked > 20


def test_no_external_urls(site: Path) -> None:
    for page in html_files(site):
        text = page.read_text()
        for url in parse(page).urls:
            assert not url.lower().startswith(("http:", "https:", "//")), f"{page}: {url}"
        assert "http://" not in text and "https://" not in text
    css = (site / "static" / "style.css").read_text() + (site / "static" / "filter.js").read_text()
    assert "http" not in css and "@import" not in css


def test_empty_runs_folder(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    index = build_site(tmp_path / "runs", tmp_path / "site")
    text = index.read_text()
    assert "No runs yet" in text and "<article" not in text
    assert (tmp_path / "site" / "static" / "style.css").is_file()
    assert build_site(tmp_path / "missing", tmp_path / "site2").read_text().count("No runs yet")


def test_rebuild_replaces_stale_posts(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_runs(runs)
    build_site(runs, tmp_path / "site")
    shutil.rmtree(runs / "beta")
    shutil.rmtree(runs / "alpha")
    build_site(runs, tmp_path / "site")
    posts = tmp_path / "site" / "posts"
    assert not (posts / "beta.html").exists() and not (posts / "alpha").exists()
    assert parse(tmp_path / "site" / "index.html").posts == ["delta", "gamma"]


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "site" / "posts").mkdir(parents=True)
    (tmp_path / "site" / "posts" / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="did not write"):
        build_site(tmp_path / "runs", tmp_path / "site")
    assert (tmp_path / "site" / "posts" / "mine.txt").read_text() == "keep me"


def test_bad_figure_paths_are_not_copied(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "runs", "odd", "20240101-000000-000000",
                       figures={"ok.png": tiny_png()})
    (tmp_path / "secret.png").write_bytes(tiny_png())
    data = json.loads((folder / "result.json").read_text())
    data["figures"] += ["../../../secret.png", "gone.png"]
    (folder / "result.json").write_text(json.dumps(data))
    site = build_site(tmp_path / "runs", tmp_path / "site").parent
    assert [p.name for p in (site / "posts" / "odd").rglob("*.png")] == ["ok.png"]
    page = (site / "posts" / "odd.html").read_text()
    assert parse(site / "posts" / "odd.html").imgs == ["../posts/odd/ok.png"]
    assert "not found: ../../../secret.png, gone.png" in page


def test_odd_names_get_safe_unique_files(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "My Exp", "20240102-000000-000000", figures={"a.png": tiny_png()})
    write_run(tmp_path / "runs", "my-exp", "20240101-000000-000000")
    site = build_site(tmp_path / "runs", tmp_path / "site").parent
    assert sorted(p.name for p in (site / "posts").glob("*.html")) == [
        "my-exp-2.html", "my-exp.html"]
    assert (site / "posts" / "my-exp" / "a.png").is_file()
