"""Experiment ``partial-fc`` (note E2): sampling the class centres keeps verification accuracy
while cutting the memory of the logits.

Set-up (open set): a world of synthetic identities (``data/synthetic/identities.py``, 12 x 12
pixels -- small, so that a thousand identities render in a second; drawn anew on each seed).
1,000 identities x 4 images train the classifier; 50 other identities x 10 images are only
ever verified. The embedding is margin-verification's stand-in for the face backbone (a fixed
PCA to 64 dimensions and an MLP 64 -> 256 -> 32; the data as ``face_pipeline.identity_data``
builds it for its unaligned pipeline), trained
with the shared loop (``margin_geometry.fit``: Adam, lr 5e-3, batch 128, 250 steps -- equal
steps for every run). The head is ``PartialFC`` (``face/partial_fc.py``, ArcFace margin,
s = 30, m = 0.5) in one process at sample rates 1.0, 0.3 and 0.1. A batch of 128 from 1,000
classes holds about 120 distinct positives: at 0.3 a step keeps 300 centres (the positives
and ~180 random negatives); at 0.1 the budget (100) is below the positives, so a step keeps
exactly the batch's positives (insightface's rule) -- no negatives outside the batch at all.

Measured on the held-out identities (``face/verification.py``): the LFW protocol's 10-fold
accuracy on 3,000 balanced pairs, and TAR@FAR = 1e-3 over all pairs (reported).

Memory per rank (counted, not timed): the bytes of the rank's centres (C / W rows of d
float32) and of its logits (global batch N = W x b rows by the sampled columns,
``max(1, int(rate x C / W))``, float32), for W = 1 and 8 ranks at this experiment's size and
at the note's scale (1M classes x 128 dims, 128 images per rank). The shards come from
``partial_fc.shard``; a positive-heavy batch can exceed the column budget (as at 0.1 here),
so the counted logits are the budget, which the paper's setting (millions of classes) meets.

Claims (over ``ctx.seeds(3)``; the threshold fixed from a pilot at seeds 100-102 before the
recorded runs): for sample rates 0.3 and 0.1, the 10-fold accuracy is at most 0.015 below the
full softmax's (rate 1.0) on the same seed. Control: the same memory of logits without
sampling -- the full softmax over only the first 10 % of the training identities (100 classes:
what a machine whose logits budget is a tenth would train on), minus rate 1.0; it must fail.
Pilot (seeds 100, 101, 102; its PCA by SVD, the same projection up to the components'
signs), accuracy: rate 1.0 0.934, 0.948, 0.947; 0.3 0.941, 0.952, 0.940 (minus rate 1.0:
+0.007, +0.004, -0.007); 0.1 0.930, 0.953, 0.949 (-0.004, +0.005, +0.002); control 0.895,
0.914, 0.906 (-0.039, -0.034, -0.041). The threshold sits between the sampled runs' worst
(-0.007) and the control's best (-0.034).

Recorded (quick, seeds 0, 1, 2), accuracy: rate 1.0 0.952, 0.957, 0.937; 0.3 0.958, 0.960,
0.941 (+0.007, +0.004, +0.004) and 0.1 0.956, 0.960, 0.942 (+0.004, +0.003, +0.005): both
claims hold; the control 0.903, 0.891, 0.885 (-0.049, -0.065, -0.052) fails them, as it must.
TAR@FAR=1e-3: rate 1.0 0.736, 0.765, 0.681; 0.1 0.730, 0.757, 0.676; control 0.400, 0.472,
0.372. Counted bytes per rank at 1M classes x 128 dims, 128 images per rank: 8 ranks 576 MB
at rate 1 -> 115 MB at 0.1 (the logits 512 -> 51 MB; the centres 64 MB either way); one rank
1,024 -> 563 MB (its 512 MB of centres stay: sampling cuts logits, sharding cuts centres).
quick: ~39 s user time on a machine at load average 11, where margin-verification
(documented ~27-30 s) took 75 s: about 15 s on an idle one.
"""

from __future__ import annotations

import torch

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.experiments.face.face_pipeline import identity_data, verify
from paperlab.experiments.face.margin_verification import EMB
from paperlab.face.partial_fc import PartialFC, shard
from paperlab.registry import export_experiment

SIZE = 12
RATES = (1.0, 0.3, 0.1)
MAX_DROP = 0.015
CONTROL_FRACTION = 0.1
FP32 = 4


def counted_bytes(num_classes: int, dim: int, world: int, local_batch: int, rate: float
                  ) -> dict[str, int]:
    """Bytes on the most loaded rank: its centres (C_r, d) and its logits (N, sampled C_r)."""
    _, local = shard(num_classes, 0, world)  # rank 0 holds the most classes
    columns = local if rate >= 1.0 else max(1, int(rate * local))
    centres = local * dim * FP32
    logits = world * local_batch * columns * FP32
    return {"centres": centres, "logits": logits, "total": centres + logits}


def train_and_verify(data: dict[str, torch.Tensor], num_classes: int, rate: float, seed: int,
                     steps: int) -> dict[str, object]:
    """Train the embedding with a Partial FC head on the identities < ``num_classes``;
    verification of the held-out identities."""
    keep = data["y"] < num_classes
    subset = {**data, "x": data["x"][keep], "y": data["y"][keep]}
    return verify(subset, "", seed, steps, lambda classes: PartialFC(
        classes, EMB, s=30.0, m2=0.5, sample_rate=rate,
        generator=torch.Generator().manual_seed(seed + 1)))


@export_experiment(
    "partial-fc",
    note="E2 Softmax for many classes (DeepFace, DeepID)",
    title="Partial FC: sampled class centres keep verification accuracy, logits memory drops",
    tags=("face", "partial-fc", "arcface"),
)
def partial_fc(ctx: Context) -> Result:
    """Sample rates 1.0 / 0.3 / 0.1 at equal steps on synthetic identities, against the full
    softmax over 10 % of the identities; memory per rank counted."""
    n_ids = ctx.pick(smoke=200, quick=1000, full=4000)
    per_train = ctx.pick(smoke=3, quick=4, full=5)
    n_test = ctx.pick(smoke=10, quick=50, full=100)
    steps = ctx.pick(smoke=20, quick=250, full=1000)
    seeds = ctx.seeds(ctx.pick(smoke=1, quick=3, full=3))
    n_control = max(2, int(CONTROL_FRACTION * n_ids))
    acc: dict[str, list[float]] = {str(r): [] for r in RATES}
    tar: dict[str, list[float]] = {str(r): [] for r in RATES}
    acc["control"], tar["control"] = [], []
    for seed in ctx.track(seeds, label="seeds"):
        data = identity_data(seed, n_ids, per_train, n_test, 10, size=SIZE, aligned=False)
        for rate in RATES:
            r = train_and_verify(data, n_ids, rate, seed, steps)
            acc[str(rate)].append(float(r["accuracy"]))
            tar[str(rate)].append(float(r["tar@1e-3"]))
        r = train_and_verify(data, n_control, 1.0, seed, steps)
        acc["control"].append(float(r["accuracy"]))
        tar["control"].append(float(r["tar@1e-3"]))

    drop = {k: [a - b for a, b in zip(v, acc["1.0"])] for k, v in acc.items() if k != "1.0"}
    memory = {
        f"{label} W={w} rate {rate}": counted_bytes(c, d, w, b, rate)
        for label, c, d, b in (("here", n_ids, EMB, 128), ("1M x 128", 1_000_000, 128, 128))
        for w in (1, 8) for rate in RATES
    }

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("1.0", "o-"), ("0.3", "s-"), ("0.1", "^-"), ("control", "x--")):
        label = (f"sample rate {key}" if key != "control" else
                 f"full softmax on {n_control} identities (control)")
        ax.plot(seeds, acc[key], style, label=label)
    ax.set_xticks(seeds)
    ax.set_xlabel("seed")
    ax.set_ylabel("10-fold verification accuracy (held-out identities)")
    ax.set_title(f"{n_ids} training identities, {steps} steps each")
    ax.legend(fontsize=8)
    width = 0.12
    for k, w in enumerate((1, 8)):
        for j, rate in enumerate(RATES):
            m = memory[f"1M x 128 W={w} rate {rate}"]
            x = k + (j - 1) * width * 1.2
            ax2.bar(x, m["centres"] / 2**20, width, color="tab:blue",
                    label="centres" if (k, j) == (0, 0) else None)
            ax2.bar(x, m["logits"] / 2**20, width, bottom=m["centres"] / 2**20,
                    color="tab:orange", label="logits" if (k, j) == (0, 0) else None)
            ax2.text(x, m["total"] / 2**20, f"{rate:g}", ha="center", va="bottom", fontsize=7)
    ax2.set_xticks([0, 1], ["1 rank", "8 ranks"])
    ax2.set_ylabel("MiB per rank (float32, counted)")
    ax2.set_title("1M classes x 128 dims, 128 images per rank; bars: sample rate")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "partial_fc")

    claims = [
        Claim.over_seeds(
            f"sample rate {rate}: 10-fold verification accuracy on held-out identities is at "
            f"most {MAX_DROP:g} below the full softmax's (rate 1.0) at equal steps, i.e. "
            f"accuracy(rate) - accuracy(1.0) >= -{MAX_DROP:g} (control: the full softmax over "
            f"only {CONTROL_FRACTION:.0%} of the identities, the same logits memory without "
            f"sampling, minus rate 1.0)", drop[str(rate)], ">=", -MAX_DROP,
            control=drop["control"])
        for rate in RATES[1:]
    ]
    summary = "10-fold accuracy (per seed): " + "; ".join(
        f"{'rate ' + k if k != 'control' else 'control'} {', '.join(f'{v:.3f}' for v in vs)}"
        for k, vs in acc.items())
    metrics = {
        "seeds": seeds, "steps": steps, "train_identities": n_ids,
        "images_per_identity": per_train, "heldout_identities": n_test,
        "control_identities": n_control,
        **{f"accuracy rate {k}" if k != "control" else "accuracy control": v
           for k, v in acc.items()},
        **{f"tar@1e-3 rate {k}" if k != "control" else "tar@1e-3 control": v
           for k, v in tar.items()},
        **{f"accuracy_minus_full {k}": v for k, v in drop.items()},
        **{f"bytes per rank {k}": v for k, v in memory.items()},
    }
    return Result(summary=summary, metrics=metrics, claims=claims)
