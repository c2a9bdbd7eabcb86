"""The paperlab command: every sub-command's help, and one clear line for every user error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paperlab import registry
from paperlab.cli import main
from paperlab.experiments.base import Claim, Context, Result

COMMANDS = ["list", "run", "report", "bench", "tour"]


def _paperlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paperlab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: paperlab" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-experiment"], "no experiment named 'no-such-experiment'"),
        (["run", "all", "--size", "huge"], "invalid choice: 'huge'"),
        (["bench", "no-such-bench"], "no benchmark named 'no-such-bench'"),
        (["list", "widgets"], "invalid choice: 'widgets'"),
        (["report", "--runs", "/nonexistent/runs"], "does not exist"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["tour", "--tag", "no-such-tag"], "no experiment is tagged 'no-such-tag'"),
        (["bench", "all", "--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_user_errors_are_one_line_and_nonzero(argv, message, capsys):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def _exit_code(argv: list[str]) -> int:
    """main()'s return value, or the code of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    name = registry.names("experiment")[0]
    code = main(["run", name, "--size", "smoke", "--out", str(blocker / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not writable" in err and len(err.strip().splitlines()) == 1


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = _paperlab("run", "knapsak")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "did you mean knapsack" in proc.stderr


def test_list_shows_kinds(capsys):
    assert main(["list", "experiment"]) == 0
    out = capsys.readouterr().out
    for name in registry.names("experiment"):
        assert name[:8] in out


@pytest.fixture
def toy_experiments(monkeypatch):
    """Two throwaway experiments: one passing, one with a failed claim, one crashing."""
    added = []

    def add(name, fn, tags):
        registry.export_experiment(name, note="test", tags=tags)(fn)
        added.append(name)

    def ok(ctx: Context) -> Result:
        """A passing toy."""
        plt = __import__("paperlab.experiments.base", fromlist=["pyplot"]).pyplot()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ctx.savefig(fig, "line")
        return Result("fine", {"x": 1.0}, [Claim.check("one is less than two", 1, "<", 2)])

    def bad(ctx: Context) -> Result:
        """A failing toy."""
        return Result("claim fails", {}, [Claim.check("two is less than one", 2, "<", 1)])

    def boom(ctx: Context) -> Result:
        """A crashing toy."""
        raise RuntimeError("kaboom")

    add("zz-toy-ok", ok, ("toy",))
    add("zz-toy-bad", bad, ("toy",))
    add("zz-toy-boom", boom, ("toy-crash",))
    yield
    for name in added:
        registry._TABLE["experiment"].pop(name, None)


def test_run_writes_result_and_figures(toy_experiments, tmp_path, capsys):
    assert main(["run", "zz-toy-ok", "zz-toy-bad", "--size", "smoke", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" in out and "pass" in out
    data = json.loads(next((tmp_path / "zz-toy-ok").glob("*/result.json")).read_text())
    assert data["passed"] is True and data["figures"] == ["line.png"]
    assert data["source"].endswith("test_cli.py")
    folder = next((tmp_path / "zz-toy-ok").glob("*"))
    assert (folder / "line.png").stat().st_size > 0
    bad = json.loads(next((tmp_path / "zz-toy-bad").glob("*/result.json")).read_text())
    assert bad["passed"] is False and bad["claims"][0]["passed"] is False


def test_strict_and_crash_exit_codes(toy_experiments, tmp_path, capsys):
    assert main(["run", "zz-toy-bad", "--strict", "--size", "smoke", "--out", str(tmp_path)]) == 1
    assert main(["run", "zz-toy-boom", "--size", "smoke", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "kaboom" in out
    data = json.loads(next((tmp_path / "zz-toy-boom").glob("*/result.json")).read_text())
    assert "RuntimeError: kaboom" in data["error"]


def test_tour_by_tag_builds_site(toy_experiments, tmp_path, capsys):
    runs, site = tmp_path / "runs", tmp_path / "site"
    code = main(
        ["tour", "--tag", "toy", "--size", "smoke", "--runs", str(runs), "--site", str(site)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "2 experiments, 2 claims: 1 passed, 1 failed" in out
    assert (site / "index.html").exists()
    assert sorted(p.name for p in runs.iterdir()) == ["zz-toy-bad", "zz-toy-ok"]


def test_bench_writes_json(tmp_path, capsys):
    names = registry.names("benchmark")
    if not names:
        pytest.skip("no benchmark registered yet")
    cheapest = "heap" if "heap" in names else names[0]
    assert main(["bench", cheapest, "--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out
    data = json.loads(next(tmp_path.glob(f"{cheapest}-*.json")).read_text())
    assert data["rows"] and all(r["ratio"] > 0 for r in data["rows"])


def test_console_script_installed():
    exe = Path(sys.executable).parent / "paperlab"
    assert exe.exists() or os.environ.get("CI") is None
