"""Experiment ``mae-mask-ratio`` (note D4): does a masked autoencoder on 8x8 digits learn to
fill in what it cannot see, and do its features beat the same network untrained?

MAE (He et al. 2022) hides most patches (75%), encodes only the visible ones and reconstructs
the hidden pixels; the paper argues the hard task forces features that carry semantics. Here
a ``MaskedAutoencoder`` is pre-trained without labels on the 1,438 training digits, cut into
16 patches of 2x2 (r = 0.75 keeps 4 of 16), and measured on the 359 test digits, each seed
with one fixed random mask per test image that every model and baseline is scored on:

- reconstruction: the MSE on the masked pixels, against two baselines that need no training
  -- **the mean image** (each pixel's training mean) and **copying the nearest visible patch**
  (grid distance, ties averaged) -- and against the same MAE untrained (the negative control);
- a linear probe (logistic regression, L-BFGS, ``linear_probe``) on the frozen encoder's
  mean-pooled features of the whole image, against **the same encoder untrained** (the same
  initial weights: ``build`` seeds them, so the trained model starts from exactly the
  control), and raw pixels for reference (0.981: on 64-pixel digits a linear model on the
  pixels beats any of these features; the claim is only that pre-training adds information).

Claims, over seeds ``ctx.seeds(3)`` at r = 0.75 (worst seed decides; thresholds fixed before
the recorded runs: 0.8 and 0.08 are the issue's, 0.5 stated as an effect size):

1. masked MSE / mean image's MSE <= 0.8 (control: the untrained MAE's ratio);
2. masked MSE / nearest-visible copy's MSE <= 0.5 (control: the mean image's, over the
   copy's -- the copy is a far worse guess than the mean on these digits);
3. probe accuracy of the pre-trained encoder minus the untrained one's >= 0.08 (control: the
   untrained encoder's accuracy).

The old claim "0.75 gives the best probe of the sweep" (an argmax over noisy probes; the best
ratio differed by seed) is gone: the sweep over r in {0.25, 0.5, 0.75, 0.9} is reported as
mean +- sd over the 3 seeds (``probe_accuracy_by_ratio_mean_sd``), at full size only. Quick
trains r = 0.75 alone: three seeds of one model at 1,000 steps already fill the quick budget
(a step costs ~7 ms of fixed per-step overhead whatever the batch; a ratio sweep on 3 seeds
would take 4x as long).

Models. ``full`` (3000 steps of 128, lr 3e-3): encoder d = 32, 2 layers, fixed 2-D sin-cos
positions; decoder d = 16, 1 layer. ``quick`` (1,000 steps of 64, lr 1.5e-2, AdamW betas
(0.9, 0.95), weight decay 0.05, warm-up then cosine; ``smoke`` too): encoder d = 32, 1 layer,
*learned* positions; decoder d = 32, 1 layer. Why: at initialisation the patch embeddings of
[0, 1] pixels vary between images by ~0.13 (rms) against the sin-cos code's 0.71, and the
fixed-position model sits on the mean-image plateau for its first ~400 steps; learned
positions start near 0 and leave it sooner. Even so, the quick model stays near the mean
image for ~400 steps and only then starts to use the visible patches: pilot (seed 100,
test MSE / mean image's at r = 0.75) 0.94 after 450 steps, 0.82 after 700, 0.77 after 900,
0.73 after 1,000 (and on seed 101: 0.79 after 900) -- hence 1,000 steps. Tried without gain
at 450-800 steps: batch 128 or 256 with a higher lr, no weight decay, no clipping, beta2 0.999,
a 2-layer encoder or decoder, d = 64, decoder d = 48.

Pilot (seeds 100, 101, 102 at quick, before the recorded runs): MSE / mean image 0.732,
0.726, 0.766 (untrained MAE 35.5, 6.4, 17.3); MSE / nearest copy 0.192, 0.189, 0.206; probe
gain 0.245, 0.114, 0.072 (untrained encoder 0.643, 0.772, 0.747; MAE 0.889, 0.886, 0.819) --
claim 3 already failed on seed 102 in the pilot: the untrained encoder's probe varies by seed
between 0.64 and 0.77, and the pre-trained one's between 0.82 and 0.89.

Measured at quick (one thread; seeds 0-2 | seeds 1-3):

1. MSE / mean image 0.769, 0.882, 0.737 | 0.882, 0.737, 0.768 -- FAILS on seed 1 (mean
   0.796, sd 0.076): seed 1's model leaves the mean-image plateau late and is still on its
   way down at 1,000 steps (the pilot seeds and seeds 103, 104: 0.73-0.78). The quick budget
   ends inside the plateau escape, whose timing varies by seed; more steps do not fit the
   30 s. (Learned encoder positions initialised with std 0.1 instead of 0.02 helped a little
   on seeds 103, 104 -- 0.745 vs 0.754, 0.766 vs 0.784 -- not enough to adopt untested.)
   Untrained MAE (control): 21-69x the mean image's MSE.
2. MSE / nearest copy 0.205, 0.237, 0.199 | 0.237, 0.199, 0.208 (copy: 0.274 masked MSE,
   3.7x the mean image's) -- passes with a wide margin.
3. probe gain 0.134, 0.162, 0.159 | 0.162, 0.159, 0.162 (MAE 0.844, 0.822, 0.808, 0.858 on
   seeds 0-3; untrained 0.710, 0.660, 0.649, 0.696) -- passes on these seeds, but seed 102
   of the pilot gave 0.072: the claim is near its bar on some seeds (a verdict that can
   change with the seed, reported as such).

Cost: 23.7 s for the experiment (20.7 s of CPU in the training loop, ``cpu_seconds``), 26.9 s
with start-up, measured at a load of ~2 on the 2-core machine (24-28 s of CPU in the loop
under a load of ~7-15): under the 30 s limit, above the 20 s aim -- three seeds of a model
that needs 1,000 steps to leave its plateau leave no room. full (not re-run for this change:
12 models of 3000 steps, an estimated 10-15 min) keeps the fixed-position model; before, on
seed 0, it gave MSE / mean 0.70 and a probe gain of only 0.04 (0.894 vs 0.852 untrained).
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
MSE_BAR = 0.8  # masked MSE at r = 0.75 over the mean image's (the bar)
NEAREST_BAR = 0.5  # masked MSE at r = 0.75 over the nearest-visible-patch copy's
QUICK_STEPS = 1000
PROBE_BAR = 0.08  # probe accuracy, MAE(0.75) minus the untrained encoder (the bar)


# The model of the full sweep, and the faster-learning one of ``quick`` (see the docstring).
FULL_MODEL = dict(depth=2, decoder_dim=16, decoder_mlp_dim=32, position="sincos-2d")
QUICK_MODEL = dict(depth=1, decoder_dim=32, decoder_mlp_dim=64, position="learned")


def build(ratio: float, seed: int, **sizes: object) -> MaskedAutoencoder:
    """The sweep's MAE for 8x8 digits, 2x2 patches; ``sizes`` override ``FULL_MODEL``."""
    torch.manual_seed(seed)
    fields = {**FULL_MODEL, **sizes}
    base = dict(image_size=8, patch_size=2, in_channels=1, dim=32, num_heads=4, mlp_dim=64,
                decoder_depth=1, decoder_num_heads=4)
    return MaskedAutoencoder(MAEConfig(mask_ratio=ratio, **{**base, **fields}))


def pretrain(model: MaskedAutoencoder, images: torch.Tensor, steps: int, batch: int,
             g: torch.Generator, lr: float = 3e-3, weight_decay: float = 0.05) -> list[float]:
    """AdamW (betas 0.9, 0.95) with warm-up and cosine decay on the MAE loss; batches and
    masks from ``g``; returns the losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                            betas=(0.9, 0.95), foreach=True)
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


def nearest_visible(images: torch.Tensor, mask: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """The copy baseline: every masked patch takes the pixels of the nearest visible patch on
    the grid (Euclidean distance between patch positions; ties averaged). (B, N, p*p)."""
    p = patchify(images, patch)
    grid = images.shape[-1] // patch
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    where = torch.stack((rows, cols), -1).reshape(-1, 2).float()
    dist = torch.cdist(where, where).expand(len(p), -1, -1).clone()  # (B, target, source)
    dist[mask.bool().unsqueeze(1).expand_as(dist)] = float("inf")  # only visible sources
    w = (dist == dist.min(-1, keepdim=True).values).float()
    return (w / w.sum(-1, keepdim=True)) @ p


def masked_mse(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean squared error over the pixels of the masked patches (as ``mae_loss``)."""
    err = (pred - patchify(images, 2)).pow(2).mean(-1)
    return float((err * mask).sum() / mask.sum())


@export_experiment(
    "mae-mask-ratio",
    note="D4 MAE",
    title="MAE on digits: reconstruction and linear probe across mask ratios",
    tags=("vision", "self-supervised"),
)
def mae_mask_ratio(ctx: Context) -> Result:
    """MAE at r = 0.75 on 3 seeds against the mean image, a copy baseline and the untrained
    encoder; at full size the sweep over mask ratios, mean +- sd over the seeds."""
    steps = ctx.pick(smoke=5, quick=QUICK_STEPS, full=3000)
    batch = ctx.pick(smoke=32, quick=64, full=128)
    lr = ctx.pick(smoke=1.5e-2, quick=1.5e-2, full=3e-3)
    sizes = ctx.pick(smoke=QUICK_MODEL, quick=QUICK_MODEL, full=FULL_MODEL)
    ratios = ctx.pick(smoke=(0.5, COMMON), quick=(COMMON,), full=RATIOS)
    n_probe = ctx.pick(smoke=200, quick=1437, full=1437)
    iters = ctx.pick(smoke=10, quick=100, full=200)
    seeds = ctx.seeds(3)
    train_set, test_set = digits_split(seed=0)
    x, y = train_set.tensors
    xt, yt = test_set.tensors
    xp, yp = x[:n_probe], y[:n_probe]
    mean_img = patchify(x.mean(0, keepdim=True), 2).expand(len(xt), -1, -1)
    probe_pixels = linear_probe(xp.flatten(1), yp, xt.flatten(1), yt, iterations=iters)

    t0, c0 = time.perf_counter(), time.process_time()
    rows: dict[int, dict[float, dict]] = {}
    base: dict[int, dict] = {}
    curves, examples = {}, {}
    for s in ctx.track(seeds, label="seeds"):
        # One fixed mask per test image at r = 0.75 for this seed: every model and baseline
        # is scored on the same hidden patches.
        noise = torch.rand(len(xt), 16, generator=torch.Generator().manual_seed(s * 1_000_003 + 7))
        untrained = build(COMMON, s, **sizes)
        with torch.no_grad():
            u = untrained(xt, noise=noise)
            base[s] = {
                "mean_image_mse": masked_mse(mean_img, xt, u.mask),
                "nearest_visible_mse": masked_mse(nearest_visible(xt, u.mask), xt, u.mask),
                "untrained_mse": u.loss.item(),
                "untrained_probe": linear_probe(untrained.features(xp), yp,
                                                untrained.features(xt), yt, iterations=iters),
            }
        rows[s] = {}
        for ratio in ratios:
            model = build(ratio, s, **sizes)  # the same initial weights as ``untrained``
            g = torch.Generator().manual_seed(s * 1_000_003 + int(ratio * 100))
            curves[s, ratio] = pretrain(model, x, steps, batch, g, lr)
            with torch.no_grad():
                own = model(xt, noise=noise)
                common = model(xt, noise=noise, mask_ratio=COMMON)
                probe = linear_probe(model.features(xp), yp, model.features(xt), yt,
                                     iterations=iters)
            rows[s][ratio] = {"mse_own_ratio": own.loss.item(),
                              "mse_at_0.75": common.loss.item(), "probe_accuracy": probe}
            if s == seeds[0]:
                examples[ratio] = (own.mask[:4], paste_reconstruction(
                    xt[:4], own.pred[:4], own.mask[:4], 2))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0

    mse = [rows[s][COMMON]["mse_at_0.75"] for s in seeds]
    vs_mean = [m / base[s]["mean_image_mse"] for m, s in zip(mse, seeds)]
    vs_nearest = [m / base[s]["nearest_visible_mse"] for m, s in zip(mse, seeds)]
    untrained_vs_mean = [base[s]["untrained_mse"] / base[s]["mean_image_mse"] for s in seeds]
    probe = [rows[s][COMMON]["probe_accuracy"] for s in seeds]
    probe_untrained = [base[s]["untrained_probe"] for s in seeds]
    probe_gain = [a - b for a, b in zip(probe, probe_untrained)]
    ranking = {str(r): _mean_sd([rows[s][r]["probe_accuracy"] for s in seeds]) for r in ratios}
    recon = {str(r): _mean_sd([rows[s][r]["mse_at_0.75"] for s in seeds]) for r in ratios}
    _figure(ctx, seeds, ratios, rows, base, curves, examples, xt[:4], probe_pixels)
    claims = [
        Claim.over_seeds(
            f"masked-patch test MSE at r=0.75 over the mean image's (same masks; the mean "
            f"image is 1), every seed of {seeds} (control: the same MAE untrained)",
            vs_mean, "<=", MSE_BAR, control=untrained_vs_mean),
        Claim.over_seeds(
            "masked-patch test MSE at r=0.75 over copying the nearest visible patch (the copy "
            f"is 1), every seed of {seeds} (control: the mean image's, over the copy's)",
            vs_nearest, "<=", NEAREST_BAR,
            control=[base[s]["mean_image_mse"] / base[s]["nearest_visible_mse"] for s in seeds]),
        Claim.over_seeds(
            "linear-probe test accuracy, MAE(0.75) encoder minus the same encoder untrained, "
            f"every seed of {seeds} (control: the untrained encoder's accuracy)",
            probe_gain, ">=", PROBE_BAR, control=probe_untrained),
    ]
    metrics = {
        "seeds": seeds,
        "by_seed": {str(s): {"baselines": base[s], **{str(r): v for r, v in rows[s].items()}}
                    for s in seeds},
        "probe_accuracy_by_ratio_mean_sd": ranking,
        "mse_at_0.75_by_ratio_mean_sd": recon,
        "probe_ranking": sorted(ranking, key=lambda r: -ranking[r][0]),
        "probe_raw_pixels": probe_pixels,
        "steps_per_model": steps,
        "seconds": seconds,
        "cpu_seconds": cpu,
    }
    summary = (
        f"MAE r=0.75 on seeds {seeds}: masked MSE " + ", ".join(f"{m:.4f}" for m in mse)
        + " vs mean image " + ", ".join(f"{base[s]['mean_image_mse']:.4f}" for s in seeds)
        + " (ratio " + ", ".join(f"{v:.3f}" for v in vs_mean) + "), nearest-visible copy "
        + ", ".join(f"{base[s]['nearest_visible_mse']:.4f}" for s in seeds)
        + "; probe " + ", ".join(f"{p:.3f}" for p in probe) + " vs untrained encoder "
        + ", ".join(f"{p:.3f}" for p in probe_untrained) + f" (raw pixels {probe_pixels:.3f})"
        + ("; probe by ratio (mean +- sd): " + ", ".join(
            f"{r}: {m:.3f} +- {sd:.3f}" for r, (m, sd) in ranking.items())
           if len(ratios) > 1 else "")
    )
    return Result(summary=summary, metrics=metrics, claims=claims)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def _figure(ctx, seeds, ratios, rows, base, curves, examples, originals, probe_pixels) -> None:
    plt = pyplot()
    fig = plt.figure(figsize=(14, 6.5))
    top = fig.subplots(1, 3, gridspec_kw={"bottom": 0.55})
    for (s, r), curve in curves.items():
        top[0].semilogy(curve, lw=0.7, alpha=0.8, label=f"r={r}, seed {s}")
    top[0].axhline(sum(base[s]["mean_image_mse"] for s in seeds) / len(seeds), color="grey",
                   ls=":", label="mean image (r=0.75)")
    top[0].set(xlabel="step", ylabel="masked-patch MSE (train)", title="pre-training loss")
    top[0].legend(fontsize=6, ncol=2)
    xs = list(ratios)
    for i, s in enumerate(seeds):
        top[1].plot(xs, [rows[s][r]["mse_at_0.75"] for r in xs], "o-", color="tab:blue",
                    alpha=0.7, label="MAE, each seed" if i == 0 else None)
        top[1].scatter([COMMON], [base[s]["mean_image_mse"]], marker="_", s=300, color="grey",
                       label="mean image" if i == 0 else None)
        top[1].scatter([COMMON], [MSE_BAR * base[s]["mean_image_mse"]], marker="_", s=300,
                       color="tab:red", label=f"claim: {MSE_BAR} x mean image" if i == 0 else None)
    top[1].set(xlabel="training mask ratio", ylabel="test MSE, masked pixels (r=0.75)",
               title="reconstruction (nearest-visible copy: "
               f"{sum(base[s]['nearest_visible_mse'] for s in seeds) / len(seeds):.3f})")
    top[1].legend(fontsize=7)
    for i, s in enumerate(seeds):
        top[2].plot(xs, [rows[s][r]["probe_accuracy"] for r in xs], "o-", color="tab:blue",
                    alpha=0.7, label="MAE encoder, each seed" if i == 0 else None)
        top[2].scatter([COMMON], [base[s]["untrained_probe"]], marker="x", color="tab:red",
                       label="same encoder untrained" if i == 0 else None)
    top[2].axhline(probe_pixels, color="grey", ls=":", label="raw pixels")
    top[2].set(xlabel="training mask ratio", ylabel="linear-probe test accuracy",
               title="linear probe")
    top[2].legend(fontsize=7)
    if len(xs) == 1:
        for ax in top[1:]:
            ax.set_xlim(COMMON - 0.2, COMMON + 0.2)
    cols = 1 + len(xs)
    bottom = fig.subplots(2, cols, gridspec_kw={"top": 0.42}, squeeze=False)
    for i in range(2):
        bottom[i, 0].imshow(originals[i, 0], cmap="gray_r", vmin=0, vmax=1)
        bottom[i, 0].set_title("original" if i == 0 else "", fontsize=8)
        for j, r in enumerate(xs):
            mask, rec = examples[r]
            bottom[i, j + 1].imshow(rec[i, 0].clamp(0, 1), cmap="gray_r", vmin=0, vmax=1)
            if i == 0:
                bottom[i, j + 1].set_title(f"r={r}: {int(mask[i].sum())}/16 hidden", fontsize=8)
    for ax in bottom.flat:
        ax.axis("off")
    ctx.savefig(fig, "mask_ratio_sweep")
