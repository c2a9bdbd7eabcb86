"""Experiment ``clip-vs-siglip-batch`` (notes D5, D6): zero-shot accuracy against batch size.

The note's claim (Zhai et al. 2023, sec. 4 and Fig. 2): the sigmoid loss beats the softmax
loss at small batch sizes, and the gap closes as the batch grows. CLIP's softmax needs many
negatives in the batch to make each row's classification informative; SigLIP scores every
pair on its own, so a small batch still gives B^2 binary examples. The paper compares the
losses at an equal number of examples seen, not at equal steps.

Setup: the note's two models at equal size (ViT 16x16 / patch 8 and a text tower, d = 48,
the same depths): CLIP (softmax loss, t_0 = 1/0.07, causal text tower) and SigLIP (sigmoid
loss, t_0 = 10, MAP pooling head, bidirectional text tower), on synthetic shape captions of
all 30 (colour, shape) combinations. The heads differ, so this compares the two recipes,
not the loss alone (a pilot of the sigmoid loss on CLIP's towers, seed 100, B = 8, learnt
nothing at lr 1e-3 / 2e-3: 0.050 / 0.035, not followed further). SigLIP's bias starts at the
prior log-odds of a pair matching, b_0 = -log(B - 1) (``prior_logit_bias``; the paper's
b_0 = -10 is that prior for B ~ 32k): with b_0 = -10 the bias is a single Adam parameter
moving about lr per step and stays near -10 for the few hundred steps here (pilot, seed
100, B = 8: zero-shot 0.037 at lr 2e-3 and 0.038 at 4e-3, chance; with the prior 0.161 and
0.035 at the same lrs, 0.182 at 1e-3). Every batch size sees the
same number of training examples (``steps = examples / B``), with a 10% linear warm-up and
the same data-order seed for both losses. Each point is repeated over 5 seeds (initialisation
and data order; ``ctx.seeds(5)``; the training and test images are fixed by the context's
seed); the seeds are paired, so the SigLIP - CLIP gap is measured per seed. Zero-shot
accuracy: the 30 "COLOR SHAPE" class names in prompts ensembled over sizes and positions, on
fresh images (chance 1/30).

Learning rates (baselines get the same care): a sweep per model and batch size on a pilot
seed (100; 2048 examples, its own validation images), before the recorded runs, zero-shot
accuracy at lr 1.25e-4 / 2.5e-4 / 5e-4 / 1e-3 / 2e-3 (/ 4e-3):

- B = 8: CLIP 0.143 / 0.176 / 0.163 / 0.157 / 0.104 / 0.033 -> 2.5e-4; SigLIP 0.241 /
  0.289 / 0.208 / 0.182 / 0.161 / 0.035 -> 2.5e-4;
- B = 16: CLIP 0.123 / 0.179 / 0.178 / 0.128 / 0.123 -> 2.5e-4; SigLIP 0.078 / 0.174 /
  0.177 / 0.093 / 0.082 -> 5e-4;
- B = 32 (64 steps; 2e-3 / 4e-3 / 8e-3 only): CLIP 0.121 / 0.053 / 0.061 (1e-3: 0.132),
  SigLIP 0.023 / 0.036 / 0.027; B >= 32 (full only) use 1e-3, not swept further.

The first version of this sweep stopped at 1e-3 (its best value, on the edge of the sweep);
the recorded runs at 1e-3 (seed 0) had CLIP ahead at B = 8 by 0.07 (-1.9 SE) with SigLIP
stuck near chance on 2 of 5 seeds. The sweep was then extended down before the runs below.

Claims (thresholds fixed before the recorded runs):

1. at B = 8, the paired SigLIP - CLIP gap in zero-shot accuracy over the 5 seeds is at least
   2 standard errors above 0: mean / (sd / sqrt(5)) >= 2 (control: 0, two models that do
   not differ; a sign alone is not the claim);
2. validity, both models learn at B = 8: the lower of the two mean accuracies >= 0.10
   (3 x chance; control: chance 1/30; pilot: CLIP 0.176, SigLIP 0.289);
3. the gap shrinks with the batch, counted only where both models trained: B_max is the
   largest batch at which both mean accuracies are >= 0.10; the paired per-seed
   (gap at B = 8) - (gap at B_max) is >= 2 standard errors above 0 (control: 0). With no
   such batch beyond B = 8 the value is 0 (no evidence) and the claim fails: the sweep then
   says nothing about the trend.

Any of them may fail: they are what the note asserts, measured here.

Measured (quick, seeds 0-4 and 1-5, i.e. ``--seed 0`` and ``--seed 1``; about 28 s of CPU in
the experiment, 31 s for ``paperlab run``, on one thread; 4 min wall on the shared machine).
Zero-shot accuracy mean +- sd, CLIP / SigLIP:

- ``--seed 0``: B=8 0.21+-0.05 / 0.17+-0.08 (per seed CLIP 0.268 0.156 0.268 0.206 0.176,
  SigLIP 0.062 0.136 0.250 0.224 0.202), gap -0.040 = -0.94 SE; B=16 0.21+-0.04 /
  0.14+-0.10, gap -0.076; trend (gap at 8 minus gap at 16) +0.036 = 1.72 SE. Claims: 1
  fails (-0.94), 2 passes (0.175), 3 fails (1.72).
- ``--seed 1``: B=8 0.20+-0.04 / 0.16+-0.05 (CLIP 0.172 0.228 0.136 0.192 0.248, SigLIP
  0.136 0.226 0.178 0.150 0.088), gap -0.040 = -1.18 SE; B=16 0.20+-0.02 / 0.14+-0.08,
  gap -0.060; trend +0.020 = 0.89 SE. Claims: 1 fails, 2 passes (0.156), 3 fails.

Reading: at this toy scale, with each loss's learning rate tuned, the sigmoid loss is *not*
ahead at B = 8: CLIP is ahead by about 0.04 (1-2 SE). Both models mostly learn the colours
(a colour-only model scores 1/5 here); SigLIP sometimes stays near chance for the whole
budget (0.06 on one seed), which CLIP never does. The gap does narrow in SigLIP's favour
from B = 16 to B = 8 (the note's direction), but by less than 2 SE. Claim 1 failed before the
lr sweep was extended too (-1.9 SE at lr 1e-3), so the verdict does not hang on the lr.
The pilot seed showed SigLIP ahead at B = 8 (0.289 against 0.176): one seed is not evidence.

Sizes: smoke, B in (8, 16), 2 seeds, a few steps; quick, B in (8, 16), 1792 examples seen
(224 and 112 steps; 2048 took about 33 s of CPU for the 20 runs, over quick's 30 s), 5
seeds, 500 test images; full, B in (8, ..., 128), 8192 examples, 5 seeds, 2000 test images.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from paperlab.data.synthetic.shapes import ShapesData, make_shapes
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.multimodal.siglip import prior_logit_bias
from paperlab.recipes.clip import (
    caption_tokenizer,
    encode_captions,
    small_model,
    train_contrastive,
    zero_shot_accuracy,
)
from paperlab.registry import export_experiment

KINDS = ("clip", "siglip")
CHANCE = 1 / 30
TRAINED = 0.10  # 3 x chance: a model below this has not learnt the task
SE_THRESHOLD = 2.0
PATCH = 8
# (kind, batch) -> lr, from the pilot sweep on seed 100 (see the docstring)
LR = {("clip", 8): 2.5e-4, ("siglip", 8): 2.5e-4, ("clip", 16): 2.5e-4, ("siglip", 16): 5e-4}
DEFAULT_LR = 1e-3


def _train_and_score(kind: str, tok: Any, train: ShapesData, ids: torch.Tensor,
                     mask: torch.Tensor, test: ShapesData, *, batch_size: int, steps: int,
                     seed: int) -> dict[str, float]:
    """One run: zero-shot accuracy on ``test``, mean loss of the last 10% of steps, and the
    final temperature (logit scale) and, for SigLIP, logit bias."""
    torch.manual_seed(seed)
    extra = {"logit_bias_init": prior_logit_bias(batch_size)} if kind == "siglip" else {}
    model = small_model(kind, tok, patch_size=PATCH, **extra)
    lr = LR.get((kind, batch_size), DEFAULT_LR)
    losses = train_contrastive(model, train.images, ids, mask, steps=steps,
                               batch_size=batch_size, lr=lr, seed=seed + 7)
    tail = losses[-max(1, steps // 10):]
    bias = getattr(model, "logit_bias", None)
    with torch.no_grad():
        return {"acc": zero_shot_accuracy(model, tok, test), "loss": sum(tail) / len(tail),
                "scale": float(model.scale()), "lr": lr,
                "bias": float("nan") if bias is None else float(bias.detach().reshape(()))}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def _in_se(xs: list[float]) -> float:
    """mean / standard error of the mean (paired differences): 0 without two values or with
    a zero mean (no evidence either way), +-inf for a non-zero mean with no spread."""
    if len(xs) < 2:
        return 0.0
    m, se = _mean(xs), _std(xs) / math.sqrt(len(xs))
    if se == 0:
        return 0.0 if m == 0 else math.copysign(math.inf, m)
    return m / se


@export_experiment(
    "clip-vs-siglip-batch",
    note="D6 SigLIP",
    title="Sigmoid (SigLIP) vs softmax (CLIP) loss: zero-shot accuracy against batch size",
    tags=("multimodal", "clip", "siglip"),
)
def clip_vs_siglip_batch(ctx: Context) -> Result:
    """Train CLIP and SigLIP at each batch size for an equal number of examples seen, over
    5 paired seeds; the gap at the smallest batch and its trend, in standard errors."""
    batches = ctx.pick(smoke=(8, 16), quick=(8, 16), full=(8, 16, 32, 64, 128))
    examples = ctx.pick(smoke=64, quick=1792, full=8192)
    n_seeds = ctx.pick(smoke=2, quick=5, full=5)
    n_train = ctx.pick(smoke=120, quick=2000, full=5000)
    n_eval = ctx.pick(smoke=60, quick=500, full=2000)
    seeds = ctx.seeds(n_seeds)
    tok = caption_tokenizer()
    train = make_shapes(n_train, seed=ctx.seed, image_size=16, split="all")
    test = make_shapes(n_eval, seed=ctx.seed + 1, image_size=16, split="all")
    ids, mask = encode_captions(tok, train.captions)
    run = dict(tok=tok, train=train, ids=ids, mask=mask, test=test)

    # acc[kind][i][j]: batch batches[i], seed seeds[j]
    acc: dict[str, list[list[float]]] = {k: [] for k in KINDS}
    loss: dict[str, list[list[float]]] = {k: [] for k in KINDS}
    scale: dict[str, list[list[float]]] = {k: [] for k in KINDS}
    lrs: dict[str, list[float]] = {k: [] for k in KINDS}
    bias: list[list[float]] = []
    t0 = time.perf_counter()
    for b in ctx.track(batches, label="batch sizes"):
        for kind in KINDS:
            scores = [_train_and_score(kind, **run, batch_size=b, steps=max(1, examples // b),
                                       seed=s) for s in seeds]
            acc[kind].append([r["acc"] for r in scores])
            loss[kind].append([r["loss"] for r in scores])
            scale[kind].append([r["scale"] for r in scores])
            lrs[kind].append(scores[0]["lr"])
            if kind == "siglip":
                bias.append([r["bias"] for r in scores])
    seconds = time.perf_counter() - t0

    mean = {k: [_mean(a) for a in acc[k]] for k in KINDS}
    std = {k: [_std(a) for a in acc[k]] for k in KINDS}
    gaps = [[s - c for s, c in zip(acc["siglip"][i], acc["clip"][i])] for i in range(len(batches))]
    gap_mean = [_mean(g) for g in gaps]
    gap_se = [_std(g) / math.sqrt(len(g)) for g in gaps]
    gap_in_se = _in_se(gaps[0])
    trained = [min(mean["clip"][i], mean["siglip"][i]) >= TRAINED for i in range(len(batches))]
    later = [i for i in range(1, len(batches)) if trained[i]]
    b_small = batches[0]
    if later:
        i_max = later[-1]
        b_max: int | None = batches[i_max]
        shrink = [g0 - g1 for g0, g1 in zip(gaps[0], gaps[i_max])]
        shrink_in_se = _in_se(shrink)
    else:
        b_max, shrink, shrink_in_se = None, [], 0.0  # no trained batch beyond B_0: no evidence

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.0))
    for kind, marker, shift in zip(KINDS, ("o", "s"), (0.96, 1.04)):
        xs = [b * shift for b in batches]
        label = "CLIP (softmax)" if kind == "clip" else "SigLIP (sigmoid, $b_0=-\\log(B-1)$)"
        line = ax.errorbar(xs, mean[kind], yerr=std[kind], fmt=marker + "-", capsize=3,
                           label=f"{label}, mean $\\pm$ sd")
        for x, a in zip(xs, acc[kind]):
            ax.plot([x] * len(a), a, marker, color=line[0].get_color(), alpha=0.3, ms=3)
    ax.axhline(CHANCE, color="k", ls="--", lw=1, label="chance (1/30)")
    ax.axhline(TRAINED, color="grey", ls=":", lw=1, label=f"trained ({TRAINED})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batches), [str(b) for b in batches])
    ax.set_xlabel(f"batch size ({examples} examples seen at each, {n_seeds} seeds)")
    ax.set_ylabel("zero-shot accuracy, 30 classes")
    top = max(a for k in KINDS for row in acc[k] for a in row)
    ax.set_ylim(0, min(1.0, max(0.3, 1.15 * top)))
    ax.legend(fontsize=8)
    ax.set_title("sigmoid vs softmax contrastive loss at equal examples seen")
    for i, b in enumerate(batches):
        ax2.plot([b] * len(gaps[i]), gaps[i], "o", color="tab:purple", alpha=0.35, ms=3)
    ax2.errorbar(batches, gap_mean, yerr=[2 * s for s in gap_se], fmt="D-", color="tab:purple",
                 capsize=3, label="paired gap, mean $\\pm$ 2 SE")
    ax2.axhline(0, color="k", ls="--", lw=1, label="control: no difference")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(list(batches), [str(b) for b in batches])
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("SigLIP - CLIP zero-shot accuracy")
    ax2.legend(fontsize=8)
    ax2.set_title("per-seed gap (dots)")
    ctx.savefig(fig, "accuracy_vs_batch")

    claims = [
        Claim.check(f"SigLIP - CLIP zero-shot accuracy at B={b_small}, paired over {n_seeds} "
                    f"seeds, in standard errors (mean / SE) >= {SE_THRESHOLD} (control: 0, no "
                    f"difference; mean gap {gap_mean[0]:+.3f})", gap_in_se, ">=", SE_THRESHOLD,
                    control=0.0),
        Claim.check(f"lower of CLIP's and SigLIP's mean zero-shot accuracy at B={b_small} >= "
                    f"{TRAINED} (both learn; control: chance 1/30; pilot seed 100: 0.176)",
                    min(mean["clip"][0], mean["siglip"][0]), ">=", TRAINED, control=CHANCE),
        Claim.check(f"SigLIP's advantage at B={b_small} minus at B_max={b_max} (the largest "
                    "batch where both mean accuracies are >= 0.10; 0 if none), paired over "
                    f"seeds, in standard errors >= {SE_THRESHOLD} (control: 0)",
                    shrink_in_se, ">=", SE_THRESHOLD, control=0.0),
    ]
    metrics = {
        "batch_sizes": list(batches),
        "examples_seen": examples,
        "steps": [max(1, examples // b) for b in batches],
        "seeds": seeds,
        "lr_clip": lrs["clip"],
        "lr_siglip": lrs["siglip"],
        "zero_shot_clip": acc["clip"],
        "zero_shot_siglip": acc["siglip"],
        "zero_shot_clip_mean": mean["clip"],
        "zero_shot_siglip_mean": mean["siglip"],
        "zero_shot_clip_std": std["clip"],
        "zero_shot_siglip_std": std["siglip"],
        "gap_siglip_minus_clip": gaps,
        "gap_siglip_minus_clip_mean": gap_mean,
        "gap_siglip_minus_clip_se": gap_se,
        "gap_smallest_batch_in_se": gap_in_se,
        "both_trained": trained,
        "trend_batch": b_max,
        "gap_shrink_per_seed": shrink,
        "gap_shrink_in_se": shrink_in_se,
        "final_loss_clip": loss["clip"],
        "final_loss_siglip": loss["siglip"],
        "final_logit_scale_clip": scale["clip"],
        "final_logit_scale_siglip": scale["siglip"],
        "final_logit_bias_siglip": bias,
        "n_train": n_train,
        "n_eval": n_eval,
        "seconds": seconds,
    }
    pairs = ", ".join(
        f"B={b}: {mean['clip'][i]:.2f}±{std['clip'][i]:.2f}/"
        f"{mean['siglip'][i]:.2f}±{std['siglip'][i]:.2f}" for i, b in enumerate(batches))
    summary = (f"zero-shot accuracy CLIP/SigLIP (mean±sd over {n_seeds} seeds) at {examples} "
               f"examples seen: {pairs}; gap at B={b_small} {gap_mean[0]:+.3f} "
               f"({gap_in_se:.1f} SE); trend to B={b_max}: {shrink_in_se:.1f} SE")
    return Result(summary=summary, metrics=metrics, claims=claims)
