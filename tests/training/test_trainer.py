"""The Trainer: exact resume, NaN detection, accumulation, DDP == one process, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paperlab import registry
from paperlab.recipes.digits import DigitsConfig
from paperlab.training.trainer import NonFiniteLossError, Task, train

pytestmark = pytest.mark.note("I3", reference="torch DistributedDataParallel")

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _cfg(tmp: Path, **kw) -> DigitsConfig:
    base = DigitsConfig(
        steps=24,
        batch_size=32,
        warmup=4,
        checkpoint_every=8,
        progress=False,
        hidden=32,
        out=str(tmp),
    )
    return replace(base, **kw)


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    last = sorted((out / "checkpoints").glob("step-*"))[-1]
    return load_file(last / "model.safetensors")


def test_training_learns_digits(tmp_path):
    summary = train("digits-mlp", _cfg(tmp_path, steps=150, checkpoint_every=0, hidden=64))
    assert summary.step == 150 and summary.checkpoint is not None
    assert summary.eval["accuracy"] > 0.85  # chance is 0.10
    losses = _losses(tmp_path)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_resume_after_interrupt_is_bitwise_identical(tmp_path):
    """Stop at step 10 with SIGTERM (checkpoint there), resume, compare with a straight run."""
    straight = tmp_path / "straight"
    train("digits-mlp", _cfg(straight))

    interrupted = tmp_path / "interrupted"
    entry = registry.get("recipe", "digits-mlp")
    calls = {"n": 0}

    def stopping(cfg):
        task = entry.obj(cfg)
        inner = task.loss

        def loss(model, batch):
            calls["n"] += 1
            if calls["n"] == 10:
                signal.raise_signal(signal.SIGTERM)
            return inner(model, batch)

        return Task(task.model, task.train_set, loss, task.evaluate)

    registry.export_recipe("zz-stopping", config=DigitsConfig)(stopping)
    try:
        first = train("zz-stopping", _cfg(interrupted))
    finally:
        registry._TABLE["recipe"].pop("zz-stopping")
    assert first.interrupted and first.step == 10
    assert (interrupted / "checkpoints" / "step-00000010").is_dir()
    second = train("digits-mlp", _cfg(interrupted), resume=interrupted / "checkpoints")
    assert second.step == 24 and not second.interrupted
    assert _losses(interrupted) == _losses(straight)  # bitwise, step for step
    a, b = _weights(straight), _weights(interrupted)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_the_step(tmp_path):
    entry = registry.get("recipe", "digits-mlp")
    calls = {"n": 0}

    def poisoned(cfg):
        task = entry.obj(cfg)
        inner = task.loss

        def loss(model, batch):
            calls["n"] += 1
            value, metrics = inner(model, batch)
            return (value * float("nan") if calls["n"] == 5 else value), metrics

        return Task(task.model, task.train_set, loss, task.evaluate)

    registry.export_recipe("zz-poisoned", config=DigitsConfig)(poisoned)
    try:
        with pytest.raises(NonFiniteLossError, match="loss became nan at step 5"):
            train("zz-poisoned", _cfg(tmp_path))
    finally:
        registry._TABLE["recipe"].pop("zz-poisoned")


def test_gradient_accumulation_equals_big_batch(tmp_path):
    one = train("digits-mlp", _cfg(tmp_path / "a", dropout=0.0, steps=6, checkpoint_every=0))
    two = train(
        "digits-mlp", _cfg(tmp_path / "b", dropout=0.0, steps=6, checkpoint_every=0, accumulation=4)
    )
    assert one.step == two.step == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def test_ddp_two_processes_equal_one_process(tmp_path):
    """torchrun, 2 gloo processes, global batch 32 (16 each) == 1 process with batch 32.

    The DDP run also checkpoints its activations (our checkpoint_sequential inside DDP), the
    single run does not: both must still take the same steps.
    """
    common = [
        "train",
        "digits-mlp",
        "--no-progress",
        "--set",
        "steps=12",
        "--set",
        "dropout=0",
        "--set",
        "hidden=32",
        "--set",
        "depth=4",
        "--set",
        "batch_size=32",
    ]
    single = _run([sys.executable, "-m", "paperlab", *common, "--out", "one"], tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "paperlab",
            *common,
            "--set",
            "activation_checkpointing=true",
            "--out",
            "two",
        ],
        tmp_path,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 process(es)" in ddp.stdout
    la, lb = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(la) == len(lb) == 12
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(x)), (la, lb)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


def test_sigterm_from_outside_then_resume(tmp_path):
    """A real signal to a real process: it checkpoints and exits 130; --resume finishes the run."""
    args = [
        sys.executable,
        "-m",
        "paperlab",
        "train",
        "digits-mlp",
        "--no-progress",
        "--set",
        "steps=400",
        "--set",
        "hidden=32",
        "--out",
        "run",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in out
    stopped = len(metrics.read_text().splitlines())
    assert stopped < 400
    assert (tmp_path / "run" / "checkpoints" / f"step-{stopped:08d}").is_dir()
    resumed = _run([*args, "--resume", "run/checkpoints"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, 401))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "nope=1"], "unknown key 'nope'"),
        (["--set", "steps=ten"], "steps expects a value of type int"),
        (["--set", "steps=0"], "steps must be >= 1"),
        (["--set", "batch_size=30", "--set", "accumulation=4"], "must split evenly"),
    ],
)
def test_bad_train_arguments(extra, message, tmp_path, capsys):
    from paperlab.cli import main

    code = main(["train", "digits-mlp", "--no-progress", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_unknown_recipe(capsys):
    from paperlab.cli import main

    assert main(["train", "digits-mpl"]) == 2
    assert "did you mean digits-mlp" in capsys.readouterr().err
