"""The report site in a real browser: headless Chromium driven by Playwright.

The site is built from fake runs (``test_report.fake_runs``: four experiments with tags,
matplotlib figures, an older run, a failed claim and a crash) and served over HTTP on
127.0.0.1 at a random port, as a user would browse it. Every page load is watched: a
console error, an uncaught exception, a failed request or an HTTP status >= 400 fails the
test. Screenshots of the index and of one post go to the test's tmp folder, and also to
``runs/screenshots/`` (or the folder named by ``PAPERLAB_SCREENSHOTS``) when that variable
is set.

Chromium is the Debian package (``/usr/bin/chromium``); missing, the tests fail in CI and
are skipped elsewhere, like every optional reference.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, require
from test_report import fake_runs

from paperlab.report import build_site

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").is_file():
        path = "/usr/bin/chromium"
    if path is None:
        msg = "headless Chromium not found (apt-get install chromium)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def plot_png(seed: int) -> bytes:
    """A small real matplotlib figure as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.linspace(0, 6, 120)
    fig, ax = plt.subplots(figsize=(5.0, 2.8))
    for k in range(2):
        ax.plot(x, np.exp(-x / (2 + seed)) * np.cos((k + 1 + seed) * x), label=f"curve {k}")
    ax.set_xlabel("distance")
    ax.set_ylabel("value")
    ax.set_title(f"figure {seed}")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    fake_runs(root / "runs", png=plot_png)
    return build_site(root / "runs", root / "site").parent


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    sync_api = require("playwright.sync_api", "the browser test needs")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page plus every problem it reported: console errors, page errors, bad requests."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _failed(self, req: Any) -> None:
        # Chromium fetches the favicon on its own and cancels that fetch (net::ERR_ABORTED)
        # when the test moves on to the next page; a missing favicon still shows as a 404.
        if req.failure == "net::ERR_ABORTED" and req.url.endswith("/favicon.svg"):
            return
        self.problems.append(f"request failed: {req.url} ({req.failure})")

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text}")

    def _response(self, resp: Any) -> None:
        if resp.status >= 400:
            self.problems.append(f"HTTP {resp.status}: {resp.url}")

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    w = Watched(context.new_page())
    yield w
    context.close()
    w.check()


def settle(page: Any) -> None:
    """Wait until the page and every request it started (the favicon too) have finished, so
    the next navigation aborts nothing."""
    page.wait_for_load_state("networkidle")


def visit(page: Any, url: str) -> None:
    page.goto(url)
    settle(page)


def visible_posts(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#feed article.post", "els => els.filter(e => !e.hidden && e.offsetParent !== null)"
        ".map(e => e.dataset.name)")


def assert_images_loaded(page: Any) -> int:
    settle(page)
    sizes = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    for src, complete, width in sizes:
        assert complete and width > 0, f"image {src} did not load"
    return len(sizes)


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get("PAPERLAB_SCREENSHOTS")
    if wanted:
        folder = REPO / "runs" / "screenshots" if wanted.lower() in ("1", "true", "yes") \
            else Path(wanted)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
    assert path.stat().st_size > 1000
    return path


def test_index_lists_every_post_and_filters_by_tag(watched: Watched, base_url: str,
                                                    tmp_path: Path) -> None:
    page = watched.page
    visit(page, base_url + "index.html")
    assert page.title() == "paperlab · latest updates"
    assert visible_posts(page) == ["delta", "gamma", "beta", "alpha"]
    assert assert_images_loaded(page) == 3  # the first figure of each post that has one
    assert not page.is_visible("#tags")  # the no-JS tag lists are hidden when JS runs
    save_screenshot(page, tmp_path, "index.png")

    page.click("nav.filter a[data-filter='attention']")
    assert visible_posts(page) == ["beta", "alpha"]
    assert not page.is_visible("#post-delta") and not page.is_visible("#post-gamma")
    assert "2 of 4 posts" in page.inner_text("#filter-status")
    assert page.url.endswith("#tag-attention")
    assert page.get_attribute("nav.filter a[data-filter='attention']", "aria-current") == "true"

    page.click("nav.filter a[data-filter='']")  # "all"
    assert visible_posts(page) == ["delta", "gamma", "beta", "alpha"]

    page.click("#post-gamma a[data-tag='sequence']")  # a tag on a post filters too
    assert visible_posts(page) == ["gamma"]
    page.click("#post-gamma a[data-tag='sequence']")  # and clicking it again clears
    assert visible_posts(page) == ["delta", "gamma", "beta", "alpha"]

    visit(page, base_url + "posts/alpha.html")
    visit(page, base_url + "index.html#tag-position")  # a filtered feed can be linked to
    assert visible_posts(page) == ["alpha"]


def test_every_post_page_loads(watched: Watched, base_url: str, tmp_path: Path) -> None:
    page = watched.page
    visit(page, base_url + "index.html")
    links = page.eval_on_selector_all(
        "#feed article.post h2 a", "as => as.map(a => [a.textContent, a.getAttribute('href')])")
    assert [href for _, href in links] == [
        "posts/delta.html", "posts/gamma.html", "posts/beta.html", "posts/alpha.html"]
    for title, href in links:
        with page.expect_navigation():
            page.click(f"#feed h2 a[href='{href}']")
        settle(page)
        assert page.url == base_url + href
        assert page.inner_text("h1.post-title") == title
        assert_images_loaded(page)
        with page.expect_navigation():
            page.click("text=← All updates")
        settle(page)
        assert page.url == base_url + "index.html"

    visit(page, base_url + "posts/alpha.html")
    assert assert_images_loaded(page) == 2
    assert page.inner_text("#history").count("UTC") == 2  # this run and the older one
    save_screenshot(page, tmp_path, "post.png")

    visit(page, base_url + "posts/beta.html")
    fail_row = page.locator("table.claims tr.fail")
    assert fail_row.count() == 1 and "FAIL" in fail_row.inner_text()
    colour = fail_row.locator(".verdict").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(198, 40, 40)"  # red, as the stylesheet says

    visit(page, base_url + "posts/gamma.html")
    assert page.is_visible("details.error pre")
    assert "RuntimeError: tensor <b>exploded</b> & died" in page.inner_text("details.error pre")

    with page.expect_navigation():  # a post's tag leads to the filtered index
        page.click("a[data-tag='sequence']")
    settle(page)
    assert page.url.endswith("index.html#tag-sequence")
    assert visible_posts(page) == ["gamma"]


def test_without_javascript_everything_is_shown(browser: Any, base_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    w = Watched(context.new_page())
    page = w.page
    visit(page, base_url + "index.html")
    assert visible_posts(page) == ["delta", "gamma", "beta", "alpha"]
    assert assert_images_loaded(page) == 3
    assert page.is_visible("#tags")  # the browse-by-tag lists
    page.click("nav.filter a[data-filter='attention']")
    assert page.url.endswith("#tag-attention")
    group = page.inner_text("#tag-attention")
    assert "Beta: linear attention" in group and "Alpha: rotary positions" in group
    assert "Gamma" not in group
    context.close()
    w.check()


# ---------------------------------------------------------------------------- the evidence page


@pytest.fixture(scope="module")
def evidence_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from test_evidence import write_evidence_files

    root = tmp_path_factory.mktemp("evidence")
    write_evidence_files(root / "runs")
    with serve(build_site(root / "runs", root / "site").parent) as url:
        yield url


def test_evidence_page_sorts_and_every_link_resolves(watched: Watched, evidence_url: str,
                                                     tmp_path: Path) -> None:
    from paperlab.notes import NOTES

    page = watched.page
    visit(page, evidence_url + "evidence.html")
    assert page.title() == "paperlab · evidence"

    def column(attr: str) -> list[str]:
        return page.eval_on_selector_all(
            "#evidence tbody tr", f"rs => rs.map(r => r.getAttribute('{attr}'))")

    ids = [n.id for n in NOTES]
    assert [r.removeprefix("note-") for r in column("id")] == ids
    heap = page.inner_text("#note-J6")
    assert "2/2 passed vs heapq" in heap and "heap: 2.00-3.00x of heapq (2 sizes)" in heap
    save_screenshot(page, tmp_path, "evidence.png")

    page.click("#sort-bar button[data-sort='family']")
    families = column("data-family")
    assert families == sorted(families) and page.url.endswith("#sort-family")
    page.click("#sort-bar button[data-sort='rank']")
    ranks = [int(r) for r in column("data-rank")]
    assert ranks == sorted(ranks) and ranks[-1] > ranks[0]
    page.click("#sort-bar button[data-sort='order']")
    assert [r.removeprefix("note-") for r in column("id")] == ids
    visit(page, evidence_url + "evidence.html#sort-family")  # a sorted table can be linked to
    assert column("data-family") == families

    hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))")
    targets = sorted({h.split("#")[0] for h in hrefs if not h.startswith("#")})
    assert "posts/heap.html" in targets and "evidence/tests/algorithms/test_heap.py.txt" in targets
    for href in targets:
        if href.endswith(".html"):
            response = page.goto(evidence_url + href)
            settle(page)
        else:  # a text or JSON file: fetched, not opened (Chromium would ask for favicon.ico)
            response = page.request.get(evidence_url + href)
        assert response is not None and response.ok, href

    visit(page, evidence_url + "posts/heap.html")
    assert "2/2 passed vs heapq" in page.inner_text(".post-evidence")
    with page.expect_navigation():
        page.click(".post-evidence a[href='../evidence.html#note-J6']")
    settle(page)
    assert page.url.endswith("evidence.html#note-J6")
    with page.expect_navigation():
        page.click("nav.site-nav a[href='index.html']")
    settle(page)
    assert page.url == evidence_url + "index.html"
