"""Experiment ``vit-digits`` (note D3): a small Vision Transformer classifies 8x8 digits, and it
does so from where the patches are, not only from which patches there are.

Data: scikit-learn's digits (1,797 images, 10 classes; ``paperlab/data/digits.py``), the
fixed seeded 80/20 split (1,438 train, 359 test). Model: ``VisionTransformer`` with a class
token, learned positions, pre-LN encoder, d = 48, 4 heads, 1 layer, MLP 96, patches of 2 x 2
pixels (16 tokens + class token); AdamW (lr 6e-3, weight decay 0.05, linear warm-up then
cosine decay), batch 96, 500 steps at quick (1,500 at full), cross-entropy.

The control: **the same ViT on shuffled patches** -- every image's 16 patches put in a fresh
random order (``patchify``, permute, ``unpatchify``): a new order for every training example
and one fixed order per test image. Same model, parameters, steps, batch and schedule (equal
compute); its learning rate is tuned like the ViT's. At quick it is trained on the first seed
only (its gap to the ViT is ~20 standard errors, so one seed settles it and the budget goes to
the ViT's seeds); at full on all three. It can still count which patches occur (a bag of 2x2
patches), but not where they are, so what the ViT gains over it is what the position
embeddings and attention make of the layout -- the note's point that an image is a sequence
of *placed* patches. Trivial floors are recorded too: the untrained ViT (chance, ~0.1) and,
as an honest reference, logistic regression on the 64 raw pixels (L-BFGS, ``linear_probe``):
a linear model is better on this tiny data set than a ViT with no convolutional prior, and the
claims do not pretend otherwise.

Tuning (pilot, before the recorded runs): seed 100, trained on the first 1,150 training
images, validated on the other 287, 300 steps, lr in {2e-3, 4e-3, 6e-3, 8e-3}: ViT 0.948,
0.955, 0.962, 0.948; shuffled patches 0.639, 0.622, 0.653, 0.628 -- 6e-3 for both. A 1-layer
model because it matched the 2-layer one (0.955 at 350 steps, 4e-3) at less than half the
cost. Patches of 4x4 (4 tokens) were rejected: the ViT reached 0.98 but so did the shuffled
control (0.97) -- four quadrants in any order still show the digit, so that control could
not fail; with 2x2 patches the layout carries the information. Random +-1 pixel shifts
(augmentation) hurt at this budget (0.65-0.72 on validation at 250 steps).

Steps: a first version trained 300 steps (both models on every seed) and measured, at quick,
ViT 0.955, 0.961, 0.944 on the pilot seeds 100-102 but 0.953, 0.922, 0.947, 0.958 on seeds
0-3: claim 1 failed on seed 1 -- 300 steps leave the ViT short of its plateau (full: 0.97),
with a seed-to-seed sd of ~0.015. 500 steps (the control on one seed to pay for it) fixed
that; the threshold was not touched.

Claims, over seeds ``ctx.seeds(3)`` (worst seed decides; thresholds fixed before the
recorded runs):

1. ViT test accuracy >= 0.93 on every seed (the issue's bar; pilot at quick, seeds
   100-102: 0.950, 0.964, 0.961). Control: the untrained ViT's accuracy (chance, 0.08-0.14).
2. ViT accuracy minus the shuffled-patch ViT's >= 0.15 on every seed (pilot gap 0.31 on
   validation, 0.23-0.24 at quick on seeds 100-102; 0.15 is about ten standard errors of a
   359-image accuracy). Control: the shuffled-patch ViT's accuracy (pilot 0.724).

Sanity checks (true by construction, so metrics, not claims): ``unpatchify(patchify(x)) == x``
exactly, and the stride-p convolution equals patchify + Linear up to float32 rounding. The
same ViT with 2-D RoPE instead of learned positions is trained at smoke and full size (one
seed, a metric); quick leaves it out for time.

Measured (quick, one thread, 500 steps): seeds 0-2: ViT 0.969, 0.950, 0.955 (mean 0.958,
sd 0.010), shuffled patches 0.677 (seed 0), gaps 0.29, 0.27, 0.28; seeds 1-3: 0.950, 0.955,
0.964 (mean 0.956, sd 0.007), shuffled 0.685 (seed 1), gaps 0.26, 0.27, 0.28. Logistic
regression on raw pixels: 0.981 -- the ViT stays below a linear model on 64 pixels. Run time
19.2 s for the experiment, 20.1 s of CPU with start-up (load ~2-5 on the 2-core machine;
~25 s of CPU under a load of ~15).
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F

from paperlab.data.digits import digits_split
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.recipes.vision import linear_probe
from paperlab.registry import export_experiment
from paperlab.training.schedules import warmup_cosine_factor
from paperlab.vision.vit import VisionTransformer, ViTConfig, patchify, unpatchify

LR = 6e-3
ACCURACY_BAR = 0.93
GAP_BAR = 0.15


def accuracy(model: VisionTransformer, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (eval mode, no grad) on images (B, 1, 8, 8)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(images).logits.argmax(-1) == labels).float().mean())
    model.train(was)
    return acc


def shuffle_patches(images: torch.Tensor, patch: int, g: torch.Generator) -> torch.Tensor:
    """Each image's p x p patches in a random order of its own (the layout destroyed)."""
    p = patchify(images, patch)
    order = torch.rand(p.shape[0], p.shape[1], generator=g).argsort(dim=1)
    p = p.gather(1, order.unsqueeze(-1).expand_as(p))
    return unpatchify(p, patch, tuple(images.shape[-2:]), images.shape[1])


def train_vit(
    cfg: ViTConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    batch: int,
    every: int,
    seed: int,
    shuffled: bool = False,
    lr: float = LR,
    track=None,
) -> tuple[VisionTransformer, list[float], list[tuple[int, float]]]:
    """AdamW with warm-up and cosine decay; returns the model, the losses, the test curve.

    ``shuffled``: train and test on images whose patches are in a random order (the control);
    the test images' orders are fixed by ``seed``.
    """
    (x, y), (xt, yt) = train, test
    torch.manual_seed(seed)
    model = VisionTransformer(cfg)
    if shuffled:
        xt = shuffle_patches(xt, cfg.patch_size, torch.Generator().manual_seed(seed * 7919 + 3))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 12)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(s, steps, warm))
    g = torch.Generator().manual_seed(seed * 1_000_003 + 1)
    losses: list[float] = []
    curve: list[tuple[int, float]] = [(0, accuracy(model, xt, yt))]
    for step in (track or (lambda it, **_: it))(range(steps), label=f"train ({cfg.position})"):
        idx = torch.randint(0, len(y), (batch,), generator=g)
        xb = shuffle_patches(x[idx], cfg.patch_size, g) if shuffled else x[idx]
        loss = F.cross_entropy(model(xb).logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append((step + 1, accuracy(model, xt, yt)))
    return model, losses, curve


@export_experiment(
    "vit-digits",
    note="D3 ViT",
    title="A small Vision Transformer classifies scikit-learn's digits",
    tags=("vision", "transformer"),
)
def vit_digits(ctx: Context) -> Result:
    """Train a ViT on the digits split on 3 seeds, against the same ViT on shuffled patches."""
    steps = ctx.pick(smoke=20, quick=500, full=1500)
    batch, every = 96, ctx.pick(smoke=10, quick=50, full=100)
    with_rope = ctx.size != "quick"
    control_seeds = ctx.pick(smoke=1, quick=1, full=3)
    train_set, test_set = digits_split(seed=0)
    x, y = train_set.tensors
    xt, yt = test_set.tensors
    cfg = ViTConfig(image_size=8, patch_size=2, in_channels=1, dim=48, depth=1,
                    num_heads=4, mlp_dim=96, num_classes=10)
    seeds = ctx.seeds(3)
    t0 = time.perf_counter()
    runs, controls = {}, {}
    for s in seeds:
        runs[s] = train_vit(cfg, (x, y), (xt, yt), steps, batch, every, s, track=ctx.track)
    for s in seeds[:control_seeds]:
        controls[s] = train_vit(cfg, (x, y), (xt, yt), steps, batch, every, s, shuffled=True,
                                track=ctx.track)
    train_s = time.perf_counter() - t0
    acc = [runs[s][2][-1][1] for s in seeds]
    untrained = [runs[s][2][0][1] for s in seeds]
    shuffled = [controls[s][2][-1][1] for s in controls]
    gaps = [a - shuffled[min(i, len(shuffled) - 1)] for i, a in enumerate(acc)]
    model = runs[seeds[0]][0]
    train_acc = accuracy(model, x, y)
    pixels = linear_probe(x.flatten(1), y, xt.flatten(1), yt, iterations=100)
    rope_acc = None
    if with_rope:
        rope_cfg = dataclasses.replace(cfg, position="rope-2d")
        _, _, rope_curve = train_vit(rope_cfg, (x, y), (xt, yt), steps, batch, every, ctx.seed,
                                     track=ctx.track)
        rope_acc = rope_curve[-1][1]

    patches = patchify(xt, cfg.patch_size)
    round_trip = float((unpatchify(patches, cfg.patch_size, 8, 1) - xt).abs().max())
    proj = model.patch_embed.proj
    as_linear = patches @ proj.weight.permute(0, 2, 3, 1).reshape(cfg.dim, -1).T + proj.bias
    with torch.no_grad():
        conv_vs_linear = float((model.patch_embed(xt) - as_linear).abs().max())

    _figure(ctx, cfg, seeds, runs, controls, pixels, xt[:1])

    claims = [
        Claim.over_seeds(
            f"ViT test accuracy on held-out digits, every seed of {seeds} (control: the "
            "untrained ViT, chance)", acc, ">=", ACCURACY_BAR, control=untrained),
        Claim.over_seeds(
            "ViT test accuracy minus the same ViT's on shuffled patches (patch layout "
            f"destroyed), every seed of {seeds} (control: the shuffled-patch accuracy)",
            gaps, ">=", GAP_BAR, control=shuffled if len(shuffled) > 1 else shuffled[0]),
    ]
    metrics = {
        "seeds": seeds,
        "test_accuracy": dict(zip(map(str, seeds), acc)),
        "shuffled_patches_test_accuracy": dict(zip(map(str, controls), shuffled)),
        "untrained_test_accuracy": dict(zip(map(str, seeds), untrained)),
        "logistic_regression_raw_pixels": pixels,
        "train_accuracy_first_seed": train_acc,
        "accuracy_curves": {str(s): runs[s][2] for s in seeds},
        "shuffled_accuracy_curves": {str(s): c[2] for s, c in controls.items()},
        "rope_2d_test_accuracy": rope_acc,
        "final_loss": {str(s): sum(runs[s][1][-10:]) / 10 for s in seeds},
        "patch_size": cfg.patch_size,
        "tokens": cfg.num_patches + 1,
        "steps": steps,
        "lr": LR,
        "parameters": sum(p.numel() for p in model.parameters()),
        "round_trip_max_error": round_trip,
        "conv_vs_linear_max_error": conv_vs_linear,
        "train_seconds": train_s,
    }
    mean = sum(acc) / len(acc)
    summary = (
        f"ViT ({cfg.num_patches} patches of 2x2): test accuracy "
        + ", ".join(f"{a:.3f}" for a in acc)
        + f" on seeds {seeds} (mean {mean:.3f}); same ViT on shuffled patches (seeds "
        + f"{list(controls)}) "
        + ", ".join(f"{a:.3f}" for a in shuffled)
        + f"; logistic regression on raw pixels {pixels:.3f}"
        + (f"; 2-D RoPE {rope_acc:.3f}" if rope_acc is not None else "")
        + f"; patching round trip max error {round_trip:g}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)


def _figure(ctx, cfg, seeds, runs, controls, pixels, image) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8),
                             gridspec_kw={"width_ratios": [3, 3, 1.6, 1.6]})
    for i, s in enumerate(seeds):
        axes[0].plot(*zip(*runs[s][2]), "o-", ms=3, color="tab:blue", alpha=0.8,
                     label="ViT" if i == 0 else None)
    for i, s in enumerate(controls):
        axes[0].plot(*zip(*controls[s][2]), "s--", ms=3, color="tab:orange", alpha=0.8,
                     label="same ViT, shuffled patches" if i == 0 else None)
    axes[0].axhline(ACCURACY_BAR, color="grey", ls="--", lw=1, label=f"claim: {ACCURACY_BAR}")
    axes[0].axhline(pixels, color="tab:green", ls=":", lw=1, label="logistic reg., raw pixels")
    axes[0].axhline(0.1, color="grey", ls=":", lw=1, label="chance")
    axes[0].set(xlabel="step", ylabel="test accuracy", ylim=(0, 1.02),
                title=f"test accuracy, seeds {seeds}")
    axes[0].legend(fontsize=7, loc="lower right")
    for i, s in enumerate(seeds):
        axes[1].semilogy(runs[s][1], lw=0.6, color="tab:blue", alpha=0.7,
                         label="ViT" if i == 0 else None)
    for i, s in enumerate(controls):
        axes[1].semilogy(controls[s][1], lw=0.6, color="tab:orange", alpha=0.7,
                         label="shuffled patches" if i == 0 else None)
    axes[1].legend(fontsize=8)
    axes[1].set(xlabel="step", ylabel="cross-entropy", title="training loss")
    patch = cfg.patch_size
    shuffled = shuffle_patches(image, patch, torch.Generator().manual_seed(0))
    for ax, img, title in ((axes[2], image, "a test digit"),
                           (axes[3], shuffled, "its patches shuffled")):
        grid, gap = 8 // patch, 1
        canvas = torch.full((grid * (patch + gap) - gap,) * 2, float("nan"))  # gaps: blank
        cells = patchify(img, patch)[0]
        for n in range(grid * grid):
            r, c = divmod(n, grid)
            canvas[r * (patch + gap): r * (patch + gap) + patch,
                   c * (patch + gap): c * (patch + gap) + patch] = cells[n].reshape(patch, patch)
        ax.set_facecolor("#b8c4d6")  # the gaps between patches (NaN) show this colour
        ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{title}\n({grid * grid} patches of {patch}x{patch})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.savefig(fig, "accuracy_and_patches")
