"""Experiment ``deformable-conv`` (note F2): does a deformable layer help on geometrically
transformed inputs?

Task: classify the shape (5 classes, chance 0.2) in 32 x 32 images of one shape under random
rotation (+-15 degrees), scaling and shift (``data/synthetic/transformed_shapes.py``). Training
images have scales in TRAIN_SCALES; the two test sets hold *held-out transformations*, scales
no training image had: larger (HELD_OUT["larger"]) and smaller (HELD_OUT["smaller"]) objects.
A validation set with training scales (fresh images) is used to tune the learning rates.

Networks (``_Net``): conv 1->8, BN, pool, conv 8->16, BN, pool, a third 3x3 layer on the 8 x 8
map, BN, global average pool, linear. The deformable network's third layer is
``DeformConv2d(16, 16)``, whose zero-initialised offset conv (16 -> 18 channels, 3 x 3) adds
2,610 parameters; the control is the same network with a plain third conv widened to
PLAIN_WIDTH = 33 channels so that the parameter counts match (6,343 deformable vs 6,317 plain,
-0.4%; ``matching_plain_width``). Both train with Adam, batch 64, N_TRAIN images, EPOCHS epochs,
then "precise" batch norm (running statistics recomputed over the training images), each at its
own learning rate chosen on the validation split at the pilot seed 100 from {3e-3, 1e-2, 3e-2}:
deformable 1e-2 (val 0.977 / 0.997 / 0.986), plain 3e-2 (val 0.977 / 0.996 / 0.998).

Claims (thresholds fixed before the recorded runs; recorded over ``ctx.seeds(3)``):

1., 2. the note's claim, on each held-out scale range: accuracy(deformable) - accuracy(plain)
   >= GAP_MIN = 0.025 on every seed, i.e. two standard errors of the difference of two
   accuracies near 0.6 on 3,000 test images. Control: the plain network (its accuracy per seed
   is recorded). The pilot at seed 100 did NOT support the claim: gap -0.040 (larger scales:
   0.547 vs 0.587) and -0.009 (smaller: 0.660 vs 0.669), so these claims are expected to fail
   at this budget; they are kept as the note states them and reported as measured.
3. both networks are trained past the trivial floor: validation accuracy (training scales)
   >= FLOOR_MIN = 0.9 on every seed for both (pilot 0.997 and 0.998; control: chance, 0.2).

Metrics: per-seed accuracies (validation and both held-out ranges), the mean learned offset
length (in cells of the 8 x 8 map) on larger-scale images, parameter counts, wall time. Figures:
the accuracies per seed, and the deformable layer's learned sampling points on images of each
scale range (the 9 points of the output cell at the image centre, mapped to input pixels) next
to the regular grid a plain conv uses.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from paperlab.data.synthetic.shapes import SHAPES
from paperlab.data.synthetic.transformed_shapes import make_transformed_shapes
from paperlab.detection.deform_conv import DeformConv2d
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment

TRAIN_SCALES = (0.6, 1.0)
HELD_OUT = {"larger": (1.4, 2.2), "smaller": (0.35, 0.6)}  # scales no training image has
ANGLES = (-15.0, 15.0)
PLAIN_WIDTH = 33  # the plain third conv's width that matches the deformable net's parameters
LR_DEFORM = 1e-2
LR_PLAIN = 3e-2
N_TRAIN = 700
EPOCHS = 6
GAP_MIN = 0.025
FLOOR_MIN = 0.9
STRIDE = 4  # the third layer's map is the input pooled twice


WIDTHS = (8, 16, 16)  # conv1, conv2, the deformable third layer


class _Net(nn.Module):
    def __init__(self, deformable: bool, plain_width: int | None = None) -> None:
        super().__init__()
        c1, c2, c3 = WIDTHS
        self.deformable = deformable
        self.conv1, self.bn1 = nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1)
        self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2)
        width = c3 if deformable else (plain_width or PLAIN_WIDTH)
        self.conv3 = DeformConv2d(c2, c3, 3, padding=1) if deformable else nn.Conv2d(
            c2, width, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, len(SHAPES))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn3(self.conv3(self.trunk(x))))
        return self.head(x.mean((2, 3)))


def matching_plain_width() -> int:
    """The plain third conv's width whose network has the deformable one's parameter count."""
    target = _params(_Net(True))
    return min(range(WIDTHS[2], 8 * WIDTHS[2]), key=lambda w: abs(_params(_Net(False, w)) - target))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def train_network(deformable: bool, lr: float, seed: int, n_train: int, epochs: int,
                  batch: int = 64) -> nn.Module:
    """One network trained on the training transformations (data and init from ``seed``)."""
    torch.manual_seed(seed)
    model = _Net(deformable).train()
    data = make_transformed_shapes(n_train, scales=TRAIN_SCALES, angles=ANGLES, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=g).split(batch):
            loss = nn.functional.cross_entropy(model(data.images[idx]), data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # precise batch norm: the running statistics become the exact means over the training
    # images under the final weights, so evaluation uses training statistics only
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    with torch.no_grad():
        for idx in torch.arange(n_train).split(256):
            model(data.images[idx])
    return model.eval()


def evaluate(model: nn.Module, seed: int, n_test: int) -> dict[str, float]:
    """Accuracy on fresh training-range images (``val``) and on each held-out scale range."""
    out = {}
    for i, (name, scales) in enumerate({"val": TRAIN_SCALES, **HELD_OUT}.items()):
        data = make_transformed_shapes(n_test, scales=scales, angles=ANGLES,
                                       seed=seed + 5000 + 1000 * i)
        out[name] = _accuracy(model.eval(), data.images, data.labels)
    return out


def _sampling_figure(ctx: Context, model: _Net, seed: int) -> None:
    plt = pyplot()
    sets = [make_transformed_shapes(3, scales=sc, angles=ANGLES, seed=seed + 77 + i)
            for i, sc in enumerate((TRAIN_SCALES, *HELD_OUT.values()))]
    images = torch.cat([d.images for d in sets])
    labels = torch.cat([d.labels for d in sets])
    with torch.no_grad():
        offset, _ = model.eval().conv3.offsets(model.trunk(images))  # (9, 18, 8, 8)
    fig, axes = plt.subplots(3, 3, figsize=(8.4, 8.8))
    cy = cx = 4  # the output cell over the image centre (objects are centred up to a shift)
    ki, kj = torch.meshgrid(torch.arange(3) - 1, torch.arange(3) - 1, indexing="ij")
    names = ["train scales", *(f"held-out, {k}" for k in HELD_OUT)]
    for n, ax in enumerate(axes.flat):
        ax.imshow(images[n, 0], cmap="gray", vmin=0, vmax=1)
        dy = offset[n, 0::2, cy, cx].view(3, 3)
        dx = offset[n, 1::2, cy, cx].view(3, 3)
        # feature cell (r, c) covers input pixels [4r, 4r + 4): its centre is at 4r + 1.5
        gy, gx = STRIDE * (cy + ki) + 1.5, STRIDE * (cx + kj) + 1.5
        ax.scatter(gx.flatten(), gy.flatten(), s=24, c="tab:blue", label="regular 3x3 grid")
        ax.scatter((gx + STRIDE * dx).flatten(), (gy + STRIDE * dy).flatten(), s=24,
                   c="tab:red", label="learned sampling points")
        ax.set_title(f"{SHAPES[int(labels[n])]} ({names[n // 3]})", fontsize=9)
        ax.set_xlim(-0.5, 31.5)
        ax.set_ylim(31.5, -0.5)
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Deformable layer: the 9 sampling points of the centre cell, in input pixels")
    ctx.savefig(fig, "sampling-points")


@export_experiment(
    "deformable-conv",
    note="F2 Deformable Conv",
    title="A deformable layer vs a plain conv (equal parameters) on held-out scales",
    tags=("detection", "training"),
)
def deformable_conv(ctx: Context) -> Result:
    """Deformable vs plain third layer (equal parameters) on held-out scales, 3 seeds."""
    n_train = ctx.pick(160, N_TRAIN, 4 * N_TRAIN)
    n_test = ctx.pick(200, 3000, 6000)
    epochs = ctx.pick(1, EPOCHS, 3 * EPOCHS)
    started = time.perf_counter()
    rows, params = [], {}
    for seed in ctx.track(ctx.seeds(3), label="seeds"):
        deform = train_network(True, LR_DEFORM, seed, n_train, epochs)
        plain = train_network(False, LR_PLAIN, seed, n_train, epochs)
        d, p = evaluate(deform, seed, n_test), evaluate(plain, seed, n_test)
        probe = make_transformed_shapes(64, scales=HELD_OUT["larger"], angles=ANGLES,
                                        seed=seed + 99)
        with torch.no_grad():
            offsets = deform.conv3.offsets(deform.trunk(probe.images))[0]
        rows.append({"seed": seed, "deform": d, "plain": p,
                     "offset_len_cells": float(offsets.view(64, 9, 2, 8, 8).norm(dim=2).mean())})
        if seed == ctx.seed:
            _sampling_figure(ctx, deform, seed)
            params = {"deformable": _params(deform), "plain": _params(plain)}
    claims = []
    for name in HELD_OUT:
        gaps = [r["deform"][name] - r["plain"][name] for r in rows]
        claims.append(Claim.over_seeds(
            f"held-out {name} scales {HELD_OUT[name]}: accuracy of deformable - plain "
            f">= {GAP_MIN} (equal parameters)", gaps, ">=", GAP_MIN,
            control=[r["plain"][name] for r in rows]))
    floor = [min(r["deform"]["val"], r["plain"]["val"]) for r in rows]
    claims.append(Claim.over_seeds(
        f"both networks are trained past the floor: validation accuracy >= {FLOOR_MIN}",
        floor, ">=", FLOOR_MIN, control=1 / len(SHAPES)))

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    xs = torch.arange(len(rows)).float()
    for ax, split in zip(axes, ("val", *HELD_OUT)):
        for shift, net, colour in ((-0.18, "plain", "tab:gray"), (0.18, "deform", "tab:red")):
            ax.bar(xs + shift, [r[net][split] for r in rows], width=0.36, color=colour,
                   label="deformable" if net == "deform" else f"plain ({PLAIN_WIDTH} channels)")
        ax.axhline(1 / len(SHAPES), ls=":", c="k", lw=1)
        ax.set_xticks(xs, [f"seed {r['seed']}" for r in rows])
        scales = TRAIN_SCALES if split == "val" else HELD_OUT[split]
        ax.set_title(f"{'train' if split == 'val' else 'held-out'} scales {scales}", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Shape accuracy, {params['deformable']:,} (deformable) vs "
                 f"{params['plain']:,} (plain) parameters", fontsize=10)
    ctx.savefig(fig, "accuracy")

    def mean(net: str, split: str) -> float:
        return sum(r[net][split] for r in rows) / len(rows)

    return Result(
        summary="; ".join(f"{split}: deformable {mean('deform', split):.3f} vs plain "
                          f"{mean('plain', split):.3f}" for split in ("val", *HELD_OUT)),
        metrics={"per_seed": rows, "params": params,
                 "lr": {"deform": LR_DEFORM, "plain": LR_PLAIN},
                 "train_scales": TRAIN_SCALES, "held_out_scales": HELD_OUT, "angles": ANGLES,
                 "n_train": n_train, "n_test": n_test, "epochs": epochs,
                 "wall_s": time.perf_counter() - started},
        claims=claims,
    )
