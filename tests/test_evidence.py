"""The evidence report: the notes catalogue, the parity report plugin, ``paperlab evidence``
and the site's Evidence page, built from files these tests write themselves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI
from test_report import Links, claim, write_run

from paperlab import registry
from paperlab.cli import main
from paperlab.errors import ArgumentError
from paperlab.evidence import MISSING, PARTIAL, PROVEN, evidence_table, family_summary
from paperlab.notes import NOTES, get_note, note_ids
from paperlab.report import build_site

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ROOT.parent / "shared" / "NOTES.md"
TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- the catalogue


def test_catalogue_covers_every_note_of_the_scope_table():
    if not SCOPE.is_file():
        if IN_CI:
            pytest.fail(f"{SCOPE} is missing: CI runs with shared/ beside the clone")
        pytest.skip(f"{SCOPE} is not here (shared/ beside the clone)")
    scope = re.findall(r"^\| ([A-J][1-9]) ", SCOPE.read_text(), flags=re.M)
    assert scope, "no note rows found in NOTES.md"
    assert [n.id for n in NOTES] == scope


def test_catalogue_entries_are_well_formed():
    ids = [n.id for n in NOTES]
    assert len(ids) == len(set(ids))
    for note in NOTES:
        assert note.title and note.modules
        assert (ROOT / "paperlab" / note.family / "__init__.py").is_file(), note
        for module in note.modules:
            assert module.startswith("paperlab/") and module.endswith(".py"), module
    # the families that have landed have every module in place
    for note in NOTES:
        if note.id[0] in "ABCIJ" or note.id in ("D2", "D3", "D4", "D5", "D6", "D7", "D8"):
            assert note.existing_modules() == list(note.modules), note.id
    assert get_note("B3").title == "Performer (FAVOR+)"
    with pytest.raises(ArgumentError, match="unknown note 'Z9'"):
        get_note("Z9")
    assert note_ids("C1 RNN; C2 LSTM, GRU") == ["C1", "C2"]
    assert note_ids("note for alpha") == []


@pytest.mark.parametrize("kind", ["experiment", "benchmark"])
def test_every_experiment_and_benchmark_names_a_note_that_exists(kind):
    registry.load_all()
    known = {n.id for n in NOTES}
    bad = []
    for entry in registry.entries(kind):
        ids = note_ids(entry.meta.get("note"))
        if not ids or not set(ids) <= known:
            bad.append(f"{entry.name}: note={entry.meta.get('note')!r}")
    assert not bad, f"{kind}s without a catalogued note:\n" + "\n".join(bad)


def test_every_parity_test_file_declares_its_note():
    """A test file that compares with a reference (assert_close / assert_parity / require)
    in a family folder names its note, so its results reach the evidence table."""
    bad = []
    for path in sorted(TESTS.glob("*/test_*.py")):
        if path.parent.name in ("data", "recipes"):
            continue
        text = path.read_text()
        compares = re.search(r"\b(assert_close|assert_parity|require)\(", text)
        if compares and "mark.note(" not in text:
            bad.append(str(path.relative_to(TESTS)))
    assert not bad, "parity tests without @pytest.mark.note(...):\n" + "\n".join(bad)


# ---------------------------------------------------------------------------- the plugin

FAKE_TESTS = '''
import pytest
import torch
from parity import assert_close, assert_parity

pytestmark = pytest.mark.note("B1", reference="a written-out reference")


def test_close_enough():
    assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 2e-6]))


def test_too_far():
    assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), what="logits")


@pytest.mark.note("C3")
def test_named_in_the_call():
    f = lambda x: x * 2
    assert_parity(f, f, [torch.ones(3, dtype=torch.float64, requires_grad=True)],
                  note="D1", reference="itself")


def test_unmarked_is_not_dropped_but_has_no_comparison():
    assert 1 + 1 == 2
'''


def run_fake_suite(tmp_path: Path, *extra: str) -> dict:
    (tmp_path / "test_fake.py").write_text(FAKE_TESTS)
    out = tmp_path / "parity"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    env.pop("PAPERLAB_PARITY_REPORT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "parity_report", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, "--parity-report", str(out), *extra,
         str(tmp_path / "test_fake.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    reports = sorted(out.glob("parity-*.json"))
    assert len(reports) == 1, proc.stdout + proc.stderr
    return json.loads(reports[0].read_text())


def test_parity_report_records_passes_and_failures_with_their_errors(tmp_path):
    report = run_fake_suite(tmp_path)
    by_name = {e["test"].split("::")[1]: e for e in report["entries"]}
    assert set(by_name) == {"test_close_enough", "test_too_far", "test_named_in_the_call",
                            "test_unmarked_is_not_dropped_but_has_no_comparison"}
    ok = by_name["test_close_enough"]
    assert ok["outcome"] == "passed" and ok["notes"] == ["B1"]
    assert ok["references"] == ["a written-out reference"]
    assert ok["dtypes"] == ["float32"] and ok["comparisons"] == 1
    assert ok["worst"]["max_abs"] == pytest.approx(2e-6, rel=0.1)
    assert ok["worst"]["atol"] == 1e-5 and ok["worst"]["used"] < 1
    bad = by_name["test_too_far"]
    assert bad["outcome"] == "failed" and not bad["worst"]["passed"]
    assert bad["worst"]["what"] == "logits[0]" and bad["worst"]["max_abs"] == pytest.approx(0.5)
    assert bad["worst"]["used"] > 1
    assert "logits[0] differs: max abs err 5.000e-01" in bad["error"]
    named = by_name["test_named_in_the_call"]
    assert named["notes"] == ["C3", "B1", "D1"] and "itself" in named["references"]
    assert named["dtypes"] == ["float64"] and named["comparisons"] == 2  # forward and grad
    assert by_name["test_unmarked_is_not_dropped_but_has_no_comparison"]["worst"] is None


def test_parity_report_notes_option_selects_tests(tmp_path):
    report = run_fake_suite(tmp_path, "--notes", "C3")
    assert [e["test"].split("::")[1] for e in report["entries"]] == ["test_named_in_the_call"]


# ---------------------------------------------------------------------------- the table


def write_evidence_files(runs: Path) -> None:
    """A parity report, two benchmark results and experiment runs, as the tools write them."""
    (runs / "parity").mkdir(parents=True)
    entry = {"file": "tests/algorithms/test_heap.py", "notes": ["J6"], "references": ["heapq"],
             "comparisons": 0, "dtypes": [], "worst": None, "error": ""}
    worst = {"what": "forward[0]", "dtype": "float32", "max_abs": 3.5e-07, "max_rel": 1e-7,
             "atol": 1e-05, "rtol": 1e-05, "used": 0.035, "passed": True}
    report = {"started": "2026-12-01T10:00:00+00:00", "entries": [
        {**entry, "test": "tests/algorithms/test_heap.py::test_a", "outcome": "passed"},
        {**entry, "test": "tests/algorithms/test_heap.py::test_b", "outcome": "passed"},
        {**entry, "test": "tests/attention/test_softmax.py::test_c", "notes": ["B1"],
         "file": "tests/attention/test_softmax.py", "references": ["torch SDPA"],
         "comparisons": 2, "dtypes": ["float32"], "worst": worst, "outcome": "passed"},
        {**entry, "test": "tests/attention/test_softmax.py::test_d", "notes": ["B1"],
         "file": "tests/attention/test_softmax.py", "outcome": "failed", "references": [],
         "error": "AssertionError: forward[0] differs"},
    ]}
    (runs / "parity" / "parity-20261201-100000-000000.json").write_text(json.dumps(report))
    (runs / "parity" / "parity-20261130-100000-000000.json").write_text("{}")  # older
    (runs / "bench").mkdir()
    rows = [{"case": "heappush", "size": "n=1000", "ours_s": 2e-3, "reference_s": 1e-3,
             "reference": "heapq", "note": "", "ratio": 2.0},
            {"case": "heappush", "size": "n=10000", "ours_s": 3e-2, "reference_s": 1e-2,
             "reference": "heapq", "note": "", "ratio": 3.0}]
    (runs / "bench" / "heap-20261201-100000-000000.json").write_text(json.dumps(
        {"name": "heap", "group": "algorithms", "started": "2026-12-01T10:00:00+00:00",
         "rows": rows}))
    write_run(runs, "heap", "20261201-100000-000000", note="J6 heapq", claims=[
        {**claim("heapify linear", 1.9, "<", 2.0, True), "control": 9.0},
        claim("same as heapq", 0, "==", 0, True)])
    write_run(runs, "knapsack", "20261201-100000-000000", claims=[
        claim("1-D == 2-D", 0, "==", 0, True), claim("O(nW)", 3.0, "<", 2.0, False)])
    write_run(runs, "max-gap", "20261201-100000-000000", error="Traceback\nRuntimeError: x\n")


def test_evidence_table_shows_exactly_the_files_numbers(tmp_path):
    runs = tmp_path / "runs"
    write_evidence_files(runs)
    rows = {r.note.id: r for r in evidence_table(runs)}
    assert len(rows) == len(NOTES)
    heap = rows["J6"]
    assert heap.implementation.status == PROVEN and heap.implementation.text == "heap"
    assert heap.parity.status == PROVEN and heap.parity.text == "2/2 passed vs heapq"
    assert heap.parity.when == "2026-12-01T10:00:00+00:00"
    assert heap.benchmark.status == PROVEN
    assert heap.benchmark.text == "heap: 2.00-3.00x of heapq (2 sizes)"
    assert heap.experiment.status == PROVEN
    assert heap.experiment.text == "heap: 2/2 claims held (control 9)"
    b1 = rows["B1"]
    assert b1.parity.status == PARTIAL
    assert b1.parity.text.startswith("1/2 passed vs torch SDPA; float32 err 3.5e-07 (atol 1e-05,"
                                     " 4% of tol); FAILED: tests/attention/test_softmax.py::test_d")
    assert rows["J5"].experiment.status == PARTIAL
    assert rows["J5"].experiment.text == "knapsack: 1/2 claims held"
    assert rows["J5"].benchmark.status == MISSING
    assert rows["J5"].benchmark.text == "knapsack: not run"
    assert rows["J3"].experiment.status == PARTIAL
    assert rows["J3"].experiment.text == "max-gap: crashed"
    assert rows["J4"].parity.status == MISSING
    assert rows["J4"].parity.text == "no parity test in the latest report"
    assert rows["J1"].experiment.text == "no experiment registered"
    algorithms = next(f for f in family_summary(list(rows.values())) if f["family"] == "algorithms")
    assert algorithms["notes"] == 6 and algorithms["parity"][PROVEN] == 1


def test_evidence_without_any_file_says_missing(tmp_path):
    rows = evidence_table(tmp_path)
    for row in rows:
        for _, cell in row.cells()[1:]:
            assert cell.status == MISSING and cell.text
    assert rows[0].parity.text == "no parity report (run pytest --parity-report)"


def test_evidence_command_json_and_table(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_evidence_files(runs)
    assert main(["evidence", "--runs", str(runs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    heap = next(n for n in data["notes"] if n["note"] == "J6")
    assert heap["parity"]["status"] == PROVEN and heap["benchmark"]["text"].startswith("heap: 2.00")
    assert main(["evidence", "--runs", str(runs), "--family", "algorithms"]) == 0
    out = capsys.readouterr().out
    assert "J6 heapq" in out and "B1" not in out
    assert main(["evidence", "--runs", str(runs), "--family", "nope"]) == 2
    assert "unknown family 'nope'" in capsys.readouterr().err


def test_site_evidence_page_links_resolve(tmp_path):
    runs = tmp_path / "runs"
    write_evidence_files(runs)
    index = build_site(runs, tmp_path / "site")
    site = index.parent
    page = (site / "evidence.html").read_text()
    assert page.count('<tr id="note-') == len(NOTES)
    assert "2/2 passed vs heapq" in page and "heap: 2.00-3.00x of heapq (2 sizes)" in page
    links = Links()
    links.feed(page)
    hrefs = [u for u in links.urls if not u.startswith("#")]
    assert "posts/heap.html" in hrefs
    assert "evidence/tests/algorithms/test_heap.py.txt" in hrefs
    assert "evidence/benchmark/heap-20261201-100000-000000.json" in hrefs
    assert "evidence/paperlab/algorithms/heap.py.txt" in hrefs
    for href in hrefs:
        assert (site / href.split("#")[0]).is_file(), href
    post = (site / "posts" / "heap.html").read_text()
    assert 'href="../evidence.html#note-J6"' in post and "2/2 passed vs heapq" in post
