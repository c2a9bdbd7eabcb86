"""Experiment ``nade-vs-fvsbn`` (note G2): exact test NLL of FVSBN, NADE and MADE on binarised
digits; at equal parameter count NADE's shared hidden layer beats FVSBN's logistic regressions.

Data: scikit-learn's 8x8 digits thresholded at half intensity (D = 64), one seeded shuffle per
seed into train / validation / test (60 / 20 / 20 %, ``data.binary_images.binarised_digits``).
Measured: the test negative log-likelihood in nats per image, -mean log p(x), exact for every
model (``generative.autoregressive``). Not binarised MNIST: D = 64 instead of 784, so the
numbers are on a different scale from the literature's (FVSBN ~97, NADE ~88 nats on MNIST).

Models, each trained by mini-batch Adam on the training split, the parameters of the best
validation NLL (checked every epoch) kept, the learning rate chosen per model by that
validation NLL (the test split is touched once, at the end):

- FVSBN(64): 64 * 63 / 2 + 64 = 2,080 free parameters;
- NADE(64, H) with H = 15, the largest H with 2 D H + H + D <= 2,080: 1,999 parameters (equal
  parameter count, rounded down so NADE never has more);
- MADE(64, 15, 1): the same nominal count (2,059 weights and biases), half of the weights
  masked to zero (1,039 free parameters); natural order, one mask (beyond the note, for
  comparison);
- control: independent Bernoulli pixels at the training marginals (Laplace-smoothed), 64
  parameters: the trivial floor every model must beat.

Claims, over ``ctx.seeds(3)``; thresholds fixed from a pilot at seed 100 (which runs seeds
100-102) before the recorded runs. Pilot, quick plan: test NLL FVSBN 18.64 / 18.36 / 18.63,
NADE 18.55 / 18.14 / 18.41, MADE 21.65 / 20.94 / 21.45, independent 25.27 / 24.96 / 25.16;
gap FVSBN - NADE 0.089 / 0.225 / 0.217 nats (paired standard error over the 359 test images
0.12 / 0.11 / 0.10), control gap -0.021 / 0.012 / -0.002.

1. NADE beats FVSBN at equal parameter count: NLL(FVSBN) - NLL(NADE) >= 0.05 nats on every
   seed. Control: the same gap between FVSBN and a second FVSBN trained from a random start
   (weights N(0, 0.1^2)) with another batch order, ~0 (the measurement with the mechanism
   removed). The effect at D = 64 is small: about 1-2 paired standard errors per seed, 0.5-1 %
   of the NLL, so the threshold is a stated effect size (half the smallest pilot gap), not a
   2-SE margin; the per-seed standard errors are in the metrics.
2. FVSBN is trained past the trivial floor: NLL(independent) - NLL(FVSBN) >= 3 nats (pilot
   6.5-6.6; control: the independent model against itself, 0).

Quick: 100 epochs, batch 128, one learning rate per model (chosen on seed 100's validation
split, see ``LRS_QUICK``; that search ran 150 epochs, more than quick's 100, a mismatch noticed
after the recorded runs and left as it was); full: 300 epochs, batch 64, the grid searched on
every seed.

Recorded (quick, seeds 0-2; 22 s user): test NLL FVSBN 18.31 / 18.75 / 18.44, NADE 18.12 /
18.78 / 18.33, MADE 21.35 / 20.98 / 20.97, independent 24.95 / 25.44 / 25.42. Claim 1 FAILS on
seed 1: gaps 0.191 / -0.027 / 0.108 nats (paired SE 0.11 / 0.10 / 0.11; control 0.006 /
-0.020 / 0.004). At this size and parameter count NADE's advantage is within the noise of
one 359-image test split on some seeds. Claim 2 holds (6.64 / 6.69 / 6.98 nats). MADE with
one mask at the same nominal count (half its weights masked) is far behind both.
Full size (seeds 0-2, lr searched per seed, 300 epochs, batch 64): FVSBN 18.25 / 18.77 /
18.39, NADE 18.07 / 18.77 / 18.38, MADE 20.59 / 20.77 / 20.79; gaps 0.179 / -0.005 / 0.008
(control -0.001 / 0.038 / -0.011): claim 1 fails there too. On 64-dimensional digits with
~1,000 training images, a 2,000-parameter NADE is not reliably better than FVSBN; the note's
gap (~9 nats) is for 784-dimensional MNIST, 60,000 images and a far larger NADE.

The figure shows samples from each model beside training images, and the NLL per seed.
"""

from __future__ import annotations

import copy

import torch

from paperlab.data.binary_images import binarised_digits
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.generative.autoregressive import FVSBN, MADE, NADE
from paperlab.registry import export_experiment

D = 64
NADE_HIDDEN = 15  # largest H with 2 D H + H + D <= D (D - 1) / 2 + D
# quick: the learning rate of each model chosen on seed 100's validation split (150 epochs,
# grid 1e-2, 3e-2, 1e-1; validation NLL FVSBN 18.84 / 18.88 / 18.99, NADE 18.56 / 18.49 /
# 18.85, MADE 21.80 / 21.96 / 21.98); full: the grid searched on every seed
LRS_QUICK = {"fvsbn": (1e-2,), "nade": (3e-2,), "made": (1e-2,)}
LRS_FULL = {name: (3e-3, 1e-2, 3e-2, 1e-1) for name in ("fvsbn", "nade", "made")}
GAP_THRESHOLD = 0.05  # nats; fixed from the pilot (module docstring) before the recorded runs
FLOOR_THRESHOLD = 3.0


def independent_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL (nats) of independent Bernoulli pixels at the smoothed training marginals."""
    p = (train.sum(0) + 1.0) / (len(train) + 2.0)
    ll = test * p.log() + (1 - test) * (1 - p).log()
    return float(-ll.sum(1).mean())


def nll(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(-model.log_prob(x).mean())


def fit(
    model: torch.nn.Module,
    train: torch.Tensor,
    val: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    batch: int,
    seed: int,
) -> tuple[torch.nn.Module, float]:
    """Mini-batch Adam on ``train`` (seeded order); returns the model at its best validation
    NLL (checked after every epoch), and that NLL."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    best, best_state = nll(model, val), copy.deepcopy(model.state_dict())
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), batch):
            opt.zero_grad(set_to_none=True)
            loss = -model.log_prob(train[order[i : i + batch]]).mean()
            loss.backward()
            opt.step()
        v = nll(model, val)
        if v < best:
            best, best_state = v, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, best


def build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if name == "fvsbn":
        return FVSBN(D)
    if name == "fvsbn-random-init":  # the control: FVSBN from a random start
        model = FVSBN(D)
        with torch.no_grad():
            model.weight.normal_(0.0, 0.1)
        return model
    if name == "nade":
        return NADE(D, NADE_HIDDEN)
    if name == "made":
        return MADE(D, NADE_HIDDEN, 1, seed=seed)
    raise KeyError(name)


def tuned(
    name: str, seed: int, train: torch.Tensor, val: torch.Tensor, plan: dict
) -> tuple[torch.nn.Module, float, float]:
    """The model of the best validation NLL over the learning-rate grid: (model, lr, val NLL)."""
    best = None
    for lr in plan["lrs"][name]:
        model, v = fit(
            build(name, seed),
            train,
            val,
            lr=lr,
            epochs=plan["epochs"],
            batch=plan["batch"],
            seed=seed,
        )
        if best is None or v < best[2]:
            best = (model, lr, v)
    assert best is not None
    return best


def per_image_nll(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return -model.log_prob(x)


def run_seed(seed: int, plan: dict) -> dict:
    """Every model on one seed's split: test NLLs, chosen lrs, the paired standard error of the
    FVSBN - NADE gap, and the trained models."""
    train, val, test = binarised_digits(seed=seed)
    out: dict = {"independent": independent_nll(train, test), "models": {}, "lr": {}}
    for name in ("fvsbn", "nade", "made"):
        model, lr, _ = tuned(name, seed, train, val, plan)
        out[name] = nll(model, test)
        out["lr"][name] = lr
        out["models"][name] = model
    diff = per_image_nll(out["models"]["fvsbn"], test) - per_image_nll(out["models"]["nade"], test)
    out["gap_se"] = float(diff.std() / len(diff) ** 0.5)
    # control for the gap: a second FVSBN from a random start, at FVSBN's chosen lr
    second, _ = fit(
        build("fvsbn-random-init", seed),
        train,
        val,
        lr=out["lr"]["fvsbn"],
        epochs=plan["epochs"],
        batch=plan["batch"],
        seed=seed + 1,
    )
    out["fvsbn_second"] = nll(second, test)
    out["train"] = train
    return out


def _grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows * rows, 64) -> one (rows * 9, rows * 9) image with 1-pixel gaps."""
    canvas = torch.full((rows * 9 - 1, rows * 9 - 1), 0.5)
    for k in range(rows * rows):
        r, c = divmod(k, rows)
        canvas[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = images[k].reshape(8, 8)
    return canvas


@export_experiment(
    "nade-vs-fvsbn",
    note="G2 Autoregressive models",
    title="At equal parameter count NADE's shared hidden layer beats FVSBN on binarised digits",
    tags=("generative", "autoregressive", "nade"),
)
def nade_vs_fvsbn(ctx: Context) -> Result:
    """Test NLL (nats) of FVSBN, NADE (equal parameters) and MADE on binarised digits over
    3 seeds, lr tuned on validation; independent-pixel floor; samples."""
    plan = ctx.pick(
        smoke={"epochs": 2, "batch": 128, "lrs": LRS_QUICK},
        quick={"epochs": 100, "batch": 128, "lrs": LRS_QUICK},
        full={"epochs": 300, "batch": 64, "lrs": LRS_FULL},
    )
    seeds = ctx.seeds(3) if ctx.size != "smoke" else [ctx.seed]
    runs = [run_seed(s, plan) for s in ctx.track(seeds, label="seeds")]
    table = {
        name: [r[name] for r in runs]
        for name in ("independent", "fvsbn", "nade", "made", "fvsbn_second")
    }
    gaps = [r["fvsbn"] - r["nade"] for r in runs]
    null_gaps = [r["fvsbn"] - r["fvsbn_second"] for r in runs]
    floors = [r["independent"] - r["fvsbn"] for r in runs]
    claims = [
        Claim.over_seeds(
            f"NADE (H = {NADE_HIDDEN}, {NADE(D, NADE_HIDDEN).num_parameters()} parameters) has a "
            f"lower test NLL than FVSBN ({FVSBN(D).num_parameters()}): NLL(FVSBN) - NLL(NADE), "
            "nats (control: FVSBN vs a second FVSBN)",
            gaps,
            ">=",
            GAP_THRESHOLD,
            control=null_gaps,
        ),
        Claim.over_seeds(
            "FVSBN is trained past the trivial floor: NLL(independent pixels) - NLL(FVSBN), "
            "nats (control: independent vs itself, 0)",
            floors,
            ">=",
            FLOOR_THRESHOLD,
            control=0.0,
        ),
    ]

    plt = pyplot()
    g = ctx.generator(1)
    last = runs[0]
    panels = [("training images", last["train"][:16])]
    for name in ("fvsbn", "nade", "made"):
        panels.append((name.upper(), last["models"][name].sample(16, g)))
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.4), gridspec_kw={"wspace": 0.4})
    for ax, (title, imgs) in zip(axes[:4], panels):
        ax.imshow(_grid(imgs, 4), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    names = ["independent", "fvsbn", "nade", "made"]
    for i, name in enumerate(names):
        axes[4].scatter([i] * len(seeds), table[name], color="C0")
    axes[4].set_xticks(range(len(names)), ["indep.", "FVSBN", "NADE", "MADE"])
    axes[4].set_ylabel("test NLL (nats / image)")
    axes[4].set_title("test NLL per seed")
    fig.suptitle(f"binarised digits (D = 64), samples on seed {seeds[0]}")
    ctx.savefig(fig, "nade_vs_fvsbn")

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    summary = (
        f"test NLL (nats, mean of {len(seeds)} seeds): "
        f"independent {mean(table['independent']):.2f}, "
        f"FVSBN {mean(table['fvsbn']):.2f}, NADE {mean(table['nade']):.2f}, "
        f"MADE {mean(table['made']):.2f}; FVSBN - NADE gap {min(gaps):.3f} worst seed"
    )
    metrics = {
        "seeds": seeds,
        "test_nll": table,
        "gap_fvsbn_minus_nade": gaps,
        "gap_paired_se": [r["gap_se"] for r in runs],
        "chosen_lr": [r["lr"] for r in runs],
        "parameters": {
            "fvsbn": FVSBN(D).num_parameters(),
            "nade": NADE(D, NADE_HIDDEN).num_parameters(),
            "made_nominal": sum(p.numel() for p in MADE(D, NADE_HIDDEN, 1).parameters()),
            "independent": D,
        },
        "plan": {
            "epochs": plan["epochs"],
            "batch": plan["batch"],
            "lr_grid": {k: list(v) for k, v in plan["lrs"].items()},
        },
    }
    return Result(summary, metrics, claims, list(ctx.figures))
