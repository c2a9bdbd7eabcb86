"""Distributed CLIP/SigLIP losses (gloo processes) == one process on the concatenated batch.

``dist_losses_worker.py`` spawns the processes; each writes the max abs differences of its
loss (the returned value: the global loss on every rank) and of its gradients (its local
features' gradients vs the slice of the single-process gradients; scale and bias gradients
summed over ranks vs the single-process ones) to a JSON file. With ``for_ddp=True`` the
feature gradients must be W times the slice, which is also open_clip's distributed gradient
(``SigLipLoss(rank, world_size, dist_impl="shift"/"gather")``, ``ClipLoss(local_loss=True,
gather_with_grad=True)``). Uneven local batches raise a ShapeError on every rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from dist_losses_worker import open_clip_losses

pytestmark = pytest.mark.note("D6")

WORKER = Path(__file__).with_name("dist_losses_worker.py")
TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("world", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_distributed_losses_equal_single_process(world, tmp_path):
    if open_clip_losses() is None:
        require("open_clip")  # fails in CI, skips elsewhere
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path), str(world)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(world):
        data = json.loads((tmp_path / f"rank{rank}.json").read_text())
        cases = {k: v for k, v in data.items() if isinstance(v, dict)}
        assert sorted(cases) == sorted(
            f"{loss}-{dtype}" for loss in ("siglip-ring", "siglip-all_gather", "clip-all_gather")
            for dtype in TOL
        )
        for name, errors in cases.items():
            tol = TOL[name.rsplit("-", 1)[1]]
            assert {"loss", "grad0", "grad1", "grad2", "ddp_grad_vs_world_times_slice",
                    "ddp_grad_vs_open_clip"} <= set(errors), name
            for what, err in errors.items():
                assert err <= tol, f"rank {rank} {name} {what}: max abs err {err:.3e} > {tol}"
        assert data["uneven_error"] is not None
        assert data["uneven_error"].startswith("ShapeError") and "[(6, 8), (5, 8)" in (
            data["uneven_error"])
        if world == 3 and rank > 0:
            assert data["subgroup-ring"] <= 1e-5
