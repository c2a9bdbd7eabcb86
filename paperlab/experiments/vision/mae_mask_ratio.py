"""Experiment ``mae-mask-ratio`` (note D4): how much of a digit should an MAE hide?

MAE's paper finds that hiding 75% of the patches gives the best ImageNet features (linear
probe and fine-tuning) and argues a high ratio makes the task hard enough to need semantics.
Does it hold for 8x8 digits cut into 16 patches of 2x2? We pre-train one
``MaskedAutoencoder`` per mask ratio r in {0.25, 0.5, 0.75, 0.9} (r = 0.9 keeps 1 patch of 16)
on the training images without labels -- same seed, steps, model and optimiser for every
ratio (AdamW with warm-up and cosine decay) -- and measure on the test images:

- reconstruction: the MSE on masked pixels, each model at its own ratio, and all of them at
  one common ratio (0.75, the same fixed masks) so the numbers compare;
- a linear probe (logistic regression, L-BFGS) on the frozen encoder's mean-pooled features
  of the whole image, against the same probe on the untrained encoder and on raw pixels.

Claims: (1) at r = 0.75 the masked-patch MSE is below the mean-image baseline (predict each
pixel's training mean) -- the model reconstructs; (2) "r = 0.75 gives the best probe accuracy
of the sweep": the measured margin of 0.75 over the best other ratio, >= 0 to pass. What is
measured is reported whichever way it comes out.

Models. ``full`` (3000 steps of 128, lr 3e-3): encoder d = 32, 2 layers, fixed 2-D sin-cos
positions; decoder d = 16, 1 layer. ``quick`` (450 steps of 64, lr 1.5e-2; ``smoke`` too):
encoder d = 32, 1 layer, *learned* positions; decoder d = 32, 1 layer. Why: the pixels are in
[0, 1], so at initialisation the patch embeddings vary between images by ~0.13 (rms) against
the sin-cos position code's 0.71, and the fixed-position model spends its first ~400 steps
(of 128) predicting about the mean image (at 300 steps of 64: masked MSE 0.076 at r = 0.75 vs
the mean image's 0.073, probes below the untrained encoder's). Learned positions start near
0 (N(0, 0.02^2)), so the content dominates and the model leaves that plateau within the quick
budget; the shallower encoder and wider decoder (a tuning sweep) help less. What is measured
is unchanged.

Measured (seed 0). quick (21 s; 24 s wall with start-up, one thread): r = 0.75 beats the mean
image (masked MSE 0.0655 vs 0.0732; at the common ratio 0.75: 0.25: 0.085, 0.5: 0.071,
0.75: 0.066, 0.9: 0.076) -- claim 1 passes (seeds 1, 2: 0.0706 vs 0.0736, 0.0699 vs
0.0741); every probe beats the untrained encoder (0.710) but the best is r = 0.9 (0.855;
0.25: 0.797, 0.5: 0.844, 0.75: 0.833; raw pixels 0.981): claim 2 fails by 0.022 (seeds 1, 2:
best 0.9, 0.25). full (3 min, the fixed-position model): r = 0.75 reconstructs well below the
baseline (0.0512 vs 0.0732), but the best probe is r = 0.5 (0.953; 0.25: 0.928, 0.75: 0.894,
0.9: 0.850; untrained 0.852, raw pixels 0.981): on 16-patch digits 0.75 does not win. With
only 16 patches, 0.75 leaves 4 visible, and 2x2 patches carry little redundancy compared with
ImageNet's 196 patches of 16x16, so a lower ratio being better here is no contradiction of
the paper.
"""

from __future__ import annotations

import time

import torch

from paperlab.data.digits import digits_split
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.recipes.vision import linear_probe
from paperlab.registry import export_experiment
from paperlab.training.schedules import warmup_cosine_factor
from paperlab.vision.mae import MAEConfig, MaskedAutoencoder, paste_reconstruction
from paperlab.vision.vit import patchify

RATIOS = (0.25, 0.5, 0.75, 0.9)
COMMON = 0.75


# The model of the full sweep, and the faster-learning one of ``quick`` (see the docstring).
FULL_MODEL = dict(depth=2, decoder_dim=16, decoder_mlp_dim=32, position="sincos-2d")
QUICK_MODEL = dict(depth=1, decoder_dim=32, decoder_mlp_dim=64, position="learned")


def build(ratio: float, seed: int, **sizes: object) -> MaskedAutoencoder:
    """The sweep's MAE for 8x8 digits, 2x2 patches; ``sizes`` override ``FULL_MODEL``."""
    torch.manual_seed(seed)
    fields = {**FULL_MODEL, **sizes}
    return MaskedAutoencoder(MAEConfig(
        image_size=8, patch_size=2, in_channels=1, dim=32, num_heads=4, mlp_dim=64,
        decoder_depth=1, decoder_num_heads=4, mask_ratio=ratio, **fields,
    ))


def pretrain(model: MaskedAutoencoder, images: torch.Tensor, steps: int, batch: int,
             g: torch.Generator, lr: float = 3e-3) -> list[float]:
    """AdamW (betas 0.9, 0.95) with warm-up and cosine decay on the MAE loss; batches and
    masks from ``g``; returns the losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.95))
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(s, steps, warm))
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        loss = model(images[idx], generator=g).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@export_experiment(
    "mae-mask-ratio",
    note="D4 MAE",
    title="MAE on digits: reconstruction and linear probe across mask ratios",
    tags=("vision", "self-supervised"),
)
def mae_mask_ratio(ctx: Context) -> Result:
    """Sweep the mask ratio; masked-patch MSE and linear-probe accuracy per ratio."""
    steps = ctx.pick(smoke=3, quick=450, full=3000)
    batch = ctx.pick(smoke=32, quick=64, full=128)
    lr = ctx.pick(smoke=3e-3, quick=1.5e-2, full=3e-3)
    sizes = ctx.pick(smoke=QUICK_MODEL, quick=QUICK_MODEL, full=FULL_MODEL)
    n_probe = ctx.pick(smoke=200, quick=1437, full=1437)
    iters = ctx.pick(smoke=10, quick=100, full=200)
    train_set, test_set = digits_split(seed=0)
    x, y = train_set.tensors
    xt, yt = test_set.tensors
    xp, yp = x[:n_probe], y[:n_probe]
    n = 16
    noise = torch.rand(len(xt), n, generator=ctx.generator(7))  # one fixed mask per image
    mean_img = patchify(x.mean(0, keepdim=True), 2)

    def baseline_mse(mask: torch.Tensor) -> float:
        err = (patchify(xt, 2) - mean_img).pow(2).mean(-1)
        return float((err * mask).sum() / mask.sum())

    t0 = time.perf_counter()
    untrained = build(0.75, ctx.seed, **sizes)
    with torch.no_grad():
        probe_untrained = linear_probe(untrained.features(xp), yp, untrained.features(xt), yt,
                                       iterations=iters)
    probe_pixels = linear_probe(xp.flatten(1), yp, xt.flatten(1), yt, iterations=iters)
    rows, curves, examples = {}, {}, {}
    for ratio in ctx.track(RATIOS, label="ratios"):
        model = build(ratio, ctx.seed, **sizes)
        curves[ratio] = pretrain(model, x, steps, batch, ctx.generator(int(ratio * 100)), lr)
        with torch.no_grad():
            own = model(xt, noise=noise)
            common = model(xt, noise=noise, mask_ratio=COMMON)
            probe = linear_probe(model.features(xp), yp, model.features(xt), yt,
                                 iterations=iters)
        rows[ratio] = {
            "mse_own_ratio": own.loss.item(),
            "mse_at_0.75": common.loss.item(),
            "baseline_mse_at_0.75": baseline_mse(common.mask),
            "probe_accuracy": probe,
        }
        examples[ratio] = (own.mask[:4], paste_reconstruction(xt[:4], own.pred[:4], own.mask[:4],
                                                              2))
    seconds = time.perf_counter() - t0

    probes = {r: rows[r]["probe_accuracy"] for r in RATIOS}
    best = max(probes, key=probes.get)
    margin = probes[0.75] - max(v for r, v in probes.items() if r != 0.75)
    _figure(ctx, rows, curves, examples, xt[:4], probe_untrained, probe_pixels)
    claims = [
        Claim.check("masked-patch MSE at r=0.75 minus the mean-image baseline's (test)",
                    rows[0.75]["mse_own_ratio"] - rows[0.75]["baseline_mse_at_0.75"], "<", 0.0),
        Claim.check("probe accuracy at r=0.75 minus the best other ratio's (0.75 wins if >= 0)",
                    margin, ">=", 0.0),
    ]
    metrics = {
        "by_ratio": {str(r): v for r, v in rows.items()},
        "best_probe_ratio": best,
        "probe_untrained_encoder": probe_untrained,
        "probe_raw_pixels": probe_pixels,
        "steps_per_ratio": steps,
        "seconds": seconds,
    }
    summary = (
        "probe accuracy by mask ratio: "
        + ", ".join(f"{r}: {probes[r]:.3f}" for r in RATIOS)
        + f" (best {best}; untrained encoder {probe_untrained:.3f}, raw pixels "
        f"{probe_pixels:.3f}); masked MSE at 0.75: "
        + ", ".join(f"{r}: {rows[r]['mse_at_0.75']:.4f}" for r in RATIOS)
        + f" vs mean-image {rows[0.75]['baseline_mse_at_0.75']:.4f}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)


def _figure(ctx, rows, curves, examples, originals, probe_untrained, probe_pixels) -> None:
    plt = pyplot()
    fig = plt.figure(figsize=(13, 6.5))
    top = fig.subplots(1, 3, gridspec_kw={"bottom": 0.55})
    ratios = list(rows)
    for r in ratios:
        top[0].semilogy(curves[r], lw=0.8, label=f"r={r}")
    top[0].set(xlabel="step", ylabel="masked-patch MSE (train)", title="pre-training loss")
    top[0].legend(fontsize=8)
    top[1].plot(ratios, [rows[r]["mse_at_0.75"] for r in ratios], "o-", label="at r=0.75")
    top[1].plot(ratios, [rows[r]["mse_own_ratio"] for r in ratios], "s--", label="at own r")
    top[1].axhline(rows[0.75]["baseline_mse_at_0.75"], color="grey", ls=":",
                   label="mean image")
    top[1].set(xlabel="training mask ratio", ylabel="test MSE on masked pixels",
               title="reconstruction")
    top[1].legend(fontsize=8)
    top[2].plot(ratios, [rows[r]["probe_accuracy"] for r in ratios], "o-", label="MAE encoder")
    top[2].axhline(probe_untrained, color="tab:red", ls="--", label="untrained encoder")
    top[2].axhline(probe_pixels, color="grey", ls=":", label="raw pixels")
    top[2].set(xlabel="training mask ratio", ylabel="linear-probe test accuracy",
               title="linear probe")
    top[2].legend(fontsize=8)
    cols = 1 + len(ratios)
    bottom = fig.subplots(2, cols, gridspec_kw={"top": 0.42})
    for i in range(2):
        bottom[i, 0].imshow(originals[i, 0], cmap="gray_r", vmin=0, vmax=1)
        bottom[i, 0].set_title("original" if i == 0 else "", fontsize=8)
        for j, r in enumerate(ratios):
            mask, rec = examples[r]
            bottom[i, j + 1].imshow(rec[i, 0].clamp(0, 1), cmap="gray_r", vmin=0, vmax=1)
            if i == 0:
                bottom[i, j + 1].set_title(f"r={r}: {int(mask[i].sum())}/16 hidden", fontsize=8)
    for ax in bottom.flat:
        ax.axis("off")
    ctx.savefig(fig, "mask_ratio_sweep")
