"""Checkpoint files: round trip, keep-last-k, corruption refused, a kill mid-write is harmless."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from paperlab.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

pytestmark = pytest.mark.note("I3")


def _trained(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained()
    torch.manual_seed(123)
    save_checkpoint(tmp_path, 3, model, opt, sched, extra={"note": "hi"})
    expected_draw = torch.rand(3)

    fresh, fopt, fsched = _trained(seed=1)
    meta = load_checkpoint(tmp_path, fresh, fopt, fsched)
    assert meta["step"] == 3 and meta["extra"] == {"note": "hi"}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict(), fopt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for k in sa["state"][i]:
            assert torch.equal(sa["state"][i][k], sb["state"][i][k])
    assert sched.state_dict() == fsched.state_dict()
    assert torch.equal(torch.rand(3), expected_draw)  # RNG state restored


def test_keeps_last_k(tmp_path):
    model, opt, _ = _trained()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "meta"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    model, opt, _ = _trained()
    folder = save_checkpoint(tmp_path, 1, model, opt)
    target = folder / ("meta.json" if damage == "meta" else "model.safetensors")
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage in ("truncate", "meta"):
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match=r"corrupt|truncated|missing|unreadable"):
        load_checkpoint(folder, model, opt)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_shape_mismatch_and_missing_folder(tmp_path):
    model, opt, _ = _trained()
    save_checkpoint(tmp_path, 1, model, opt)
    other = torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.ReLU(), torch.nn.Linear(9, 2))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(tmp_path, other)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "nothing", model)


def test_sigkill_during_write_leaves_previous_checkpoint_loadable(tmp_path):
    """A writer killed after writing files but before publishing them: step 1 still loads."""
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time, torch
        import paperlab.training.checkpoint as ck
        torch.manual_seed(0)
        model = torch.nn.Linear(256, 256)
        ck.save_checkpoint({str(tmp_path)!r}, 1, model)
        real = ck._fsync_dir
        def stall(path):
            if ".tmp-" in str(path):
                open({str(ready)!r}, "w").close()
                time.sleep(60)
            real(path)
        ck._fsync_dir = stall
        with torch.no_grad():
            model.weight.add_(1.0)
        ck.save_checkpoint({str(tmp_path)!r}, 2, model)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert proc.poll() is None, "writer exited early"
            assert time.time() < deadline, "writer never reached the write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001"]
    torch.manual_seed(0)
    expected = torch.nn.Linear(256, 256)
    model = torch.nn.Linear(256, 256)
    assert load_checkpoint(tmp_path, model)["step"] == 1
    assert torch.equal(model.weight, expected.weight)
