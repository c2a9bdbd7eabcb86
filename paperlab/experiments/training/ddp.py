"""Note I3, DDP: two processes with all-reduced gradients train exactly like one process.

The note's claim: data-parallel training on p processes, each seeing 1/p of every global batch
and averaging gradients by all-reduce, takes the same steps as one process on the whole batch.
We train ``digits-mlp`` (dropout off, so both runs see the same function) once in this process
and once under ``torchrun --nproc_per_node=2`` (gloo on the CPU), then compare the loss at
every step and the final weights. They can differ only by float rounding: the two halves'
gradients are summed in a different order than one batch's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment


def _losses(folder: Path) -> tuple[list[float], list[float]]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows], [r["samples_per_s"] for r in rows]


@export_experiment(
    "ddp-equivalence",
    note="I3 DDP",
    title="DDP on 2 processes equals 1 process",
    tags=("training", "distributed"),
)
def ddp_equivalence(ctx: Context) -> Result:
    """Train digits-mlp on 1 process and on 2 DDP processes; compare step for step."""
    import torch
    from safetensors.torch import load_file

    from paperlab.recipes.digits import DigitsConfig
    from paperlab.training.trainer import train

    steps = ctx.pick(smoke=4, quick=30, full=200)
    settings = {
        "steps": steps,
        "batch_size": 64,
        "dropout": 0.0,
        "hidden": 64,
        "warmup": min(10, steps),
        "seed": ctx.seed,
    }
    one, two = ctx.out / "one-process", ctx.out / "two-processes"
    cfg = DigitsConfig(**settings, progress=False, out=str(one))
    train("digits-mlp", cfg)

    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "paperlab",
        "train",
        "digits-mlp",
        "--no-progress",
        "--out",
        str(two),
    ]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-2000:]}")

    loss1, speed1 = _losses(one)
    loss2, speed2 = _losses(two)
    diffs = [abs(a - b) for a, b in zip(loss1, loss2)]
    w1 = load_file(next((one / "checkpoints").glob("step-*")) / "model.safetensors")
    w2 = load_file(next((two / "checkpoints").glob("step-*")) / "model.safetensors")
    weight_diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    scale = max(w.abs().max().item() for w in w1.values())

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = range(1, len(loss1) + 1)
    a.plot(xs, loss1, label="1 process, batch 64", lw=2.5)
    a.plot(xs, loss2, "--", label="2 DDP processes, 32 each", lw=1.5)
    a.set(xlabel="step", ylabel="training loss", title="loss, step for step")
    a.legend()
    b.semilogy(xs, [max(d, 1e-12) for d in diffs], "o-", ms=3)
    b.set(xlabel="step", ylabel="|loss difference|", title="difference (floor 1e-12)")
    fig.tight_layout()
    ctx.savefig(fig, "ddp-equivalence")

    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    metrics = {
        "steps": steps,
        "max_loss_diff": max(diffs),
        "max_weight_diff": weight_diff,
        "weight_scale": scale,
        "samples_per_s_one_process": med(speed1),
        "samples_per_s_two_processes": med(speed2),
        "torch_threads": torch.get_num_threads(),
    }
    claims = [
        Claim.check(
            "every step's loss: |DDP - single| (float32 rounding only)", max(diffs), "<", 1e-5
        ),
        Claim.check("final weights: max |DDP - single|", weight_diff, "<", 1e-5),
        Claim.check("both runs logged every step", len(loss2), "==", len(loss1)),
    ]
    summary = (
        f"{steps} steps: max loss difference {max(diffs):.1e}, max weight difference "
        f"{weight_diff:.1e}; {med(speed1):.0f} samples/s on 1 process, "
        f"{med(speed2):.0f} on 2 (gloo, CPU)"
    )
    return Result(summary, metrics, claims)
