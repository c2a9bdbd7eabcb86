"""I1 AdamW vs Adam: L2 decay inside Adam is divided by the gradient scale; AdamW's is not.

Set-up: one parameter tensor of ``S x K`` coordinates, all starting at 1. Row ``s`` receives
pure-noise gradients of scale ``sigma_s`` (``sigma`` log-spaced from 1e-4 to 10), so nothing
but weight decay pulls the weights anywhere systematic. Half of each row gets the noise
``xi`` and half ``-xi`` (antithetic pairs), so the noise cancels in each row's mean. Our
``Adam(weight_decay=wd)`` (L2: ``g + wd * w``) and our ``AdamW(weight_decay=wd)`` (decoupled)
run ``T`` steps with the same ``lr``, ``wd`` and noise.

The effective decay rate of a row is ``r = -ln(mean w_T) / T``. With AdamW it is
``-ln(1 - lr * wd) ~ lr * wd`` for every row, whatever its gradient scale (with antithetic
pairs it is exactly that: the pair's Adam updates cancel). With Adam + L2 the decay term
``wd * w`` is divided by ``sqrt(v) ~ sqrt(sigma^2 + (wd w)^2)``: rows with large gradients
(``sigma >> wd w``) decay at about ``lr * wd / sigma``, barely at all, while rows with tiny
gradients see a step of about ``lr`` straight toward zero and collapse. The claim compares
the decay rate of the highest-gradient row with that of the lowest-gradient row under each
optimizer: about 1 for AdamW, far below 1 for Adam + L2 (Loshchilov & Hutter 2019, sec. 2).

Both ratio claims hold on 3 seeds (``ctx.seeds(3)``: the noise stream changes), each against
the other optimizer as its control (the thresholds 0.1 and 0.05 were fixed before any run;
AdamW's ratio is 1 to rounding by the antithetic construction, Adam + L2's is ~0.004).

The effect on a small task: the same MLP is trained on scikit-learn's digits with Adam + L2
and with AdamW over a sweep of weight-decay values, and the test accuracy and the final weight
norm are recorded for each (the paper's Figure 2, in miniature). This part is reported as
measured, with no claim: on 1,400 training images the accuracy differences are small and the
note's claim is about the mechanism above.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.registry import export_experiment
from paperlab.training.adamw import Adam, AdamW


def decay_run(
    cls: type[Adam],
    scales: torch.Tensor,
    coords: int,
    steps: int,
    lr: float,
    weight_decay: float,
    generator_seed: int,
    record_every: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cls`` on noise gradients; return the final row means and the recorded history
    (``steps // record_every + 1`` x ``S``) of row means."""
    w = nn.Parameter(torch.ones(len(scales), coords, dtype=torch.float64))
    opt = cls([w], lr=lr, weight_decay=weight_decay, foreach=False)
    gen = torch.Generator().manual_seed(generator_seed)
    history = [w.detach().mean(1).clone()]
    for step in range(steps):
        xi = torch.randn(len(scales), coords // 2, generator=gen, dtype=torch.float64)
        w.grad = torch.cat([xi, -xi], dim=1) * scales[:, None]
        opt.step()
        if (step + 1) % record_every == 0:
            history.append(w.detach().mean(1).clone())
    return history[-1], torch.stack(history)


def decay_rate(mean_w: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-step effective decay ``-ln(mean w_T / w_0) / T`` (``w_0 = 1``), floored away from 0."""
    return -torch.log(mean_w.clamp_min(1e-300)) / steps


def digits_sweep(
    ctx: Context, decays: list[float], steps: int, lr: float = 3e-3
) -> dict[str, dict[str, list[float]]]:
    """Train the digits MLP with Adam + L2 and with AdamW at each weight decay.

    Returns, per optimizer, the test accuracy and the final weight norm at each decay.
    """
    from paperlab.data.digits import digits_split
    from paperlab.recipes.digits import DigitsMLP

    train_set, test_set = digits_split(seed=0)
    x, y = train_set.tensors
    tx, ty = test_set.tensors
    out: dict[str, dict[str, list[float]]] = {}
    for label, cls in (("Adam + L2", Adam), ("AdamW", AdamW)):
        acc, norm = [], []
        for wd in ctx.track(decays, label=f"digits, {label}"):
            torch.manual_seed(ctx.seed)
            model = DigitsMLP(hidden=128, depth=2, dropout=0.0)
            opt = cls(model.parameters(), lr=lr, weight_decay=wd)
            g = ctx.generator(offset=7)
            for _ in range(steps):
                idx = torch.randint(0, len(y), (64,), generator=g)
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc.append((model(tx).argmax(-1) == ty).float().mean().item())
                norm.append(torch.sqrt(sum(p.pow(2).sum() for p in model.parameters())).item())
        out[label] = {"test_accuracy": acc, "weight_norm": norm}
    return out


@export_experiment(
    "adamw-vs-adam",
    note="I1 AdamW vs Adam",
    title="AdamW decays every weight alike; Adam + L2 barely decays weights with large gradients",
    tags=("training", "optimizer"),
)
def adamw_vs_adam(ctx: Context) -> Result:
    """Effective weight decay per gradient scale under Adam + L2 and under AdamW."""
    lr, wd = 1e-3, 0.1
    steps = ctx.pick(smoke=300, quick=3000, full=20000)
    coords = ctx.pick(smoke=32, quick=256, full=1024)
    scales = torch.logspace(-4, 1, 11, dtype=torch.float64)
    record_every = max(1, steps // 100)
    seed = ctx.seed * 1_000_003 + 11

    runs = {}
    for label, cls in ctx.track([("Adam + L2", Adam), ("AdamW", AdamW)], label="optimizer"):
        runs[label] = decay_run(cls, scales, coords, steps, lr, wd, seed, record_every)
    rate = {label: decay_rate(final, steps) for label, (final, _) in runs.items()}
    expected = -math.log(1 - lr * wd)
    hi, lo = -1, 0  # sigma = 10 and sigma = 1e-4
    ratio = {label: (r[hi] / r[lo]).item() for label, r in rate.items()}
    adamw_spread = (rate["AdamW"] / expected).sub(1).abs().max().item()
    l2_spread = (rate["Adam + L2"] / expected).sub(1).abs().max().item()
    # the two ratio claims on 3 seeds (the noise stream changes; worst seed decides)
    ratio_by_seed = {label: [ratio[label]] for label in ratio}
    for other in ctx.seeds(3)[1:]:
        for label, cls in (("Adam + L2", Adam), ("AdamW", AdamW)):
            final, _ = decay_run(cls, scales, coords, steps, lr, wd, other * 1_000_003 + 11,
                                 steps)  # fmt: skip
            r = decay_rate(final, steps)
            ratio_by_seed[label].append((r[hi] / r[lo]).item())
    l2_vs_theory = (rate["Adam + L2"][hi] / (lr * wd / scales[hi])).item()

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, marker in (("Adam + L2", "s-"), ("AdamW", "o-")):
        ax1.loglog(scales, rate[label], marker, label=label)
    ax1.loglog(scales, [expected] * len(scales), "k:", label="lr * wd (decoupled)")
    ax1.loglog(scales, lr * wd / scales, "--", color="grey", label="lr * wd / sigma")
    ax1.set_ylim(rate["Adam + L2"].min().item() / 3, rate["Adam + L2"].max().item() * 3)
    ax1.set_xlabel("gradient scale sigma")
    ax1.set_ylabel("effective decay per step  -ln(mean w_T) / T")
    ax1.set_title(f"lr = {lr:g}, wd = {wd:g}, T = {steps}")
    ax1.legend(fontsize=8)
    t = torch.arange(runs["AdamW"][1].shape[0]) * record_every
    for label, style in (("Adam + L2", "-"), ("AdamW", "--")):
        hist = runs[label][1]
        for idx, color in ((lo, "tab:red"), (hi, "tab:blue")):
            ax2.plot(t, hist[:, idx], style, color=color,
                     label=f"{label}, sigma = {scales[idx].item():g}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("mean weight (starts at 1)")
    ax2.set_title("small vs large gradients (AdamW's two lines coincide)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "adamw_vs_adam_decay")

    decays = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    task = digits_sweep(ctx, decays, steps=ctx.pick(smoke=20, quick=200, full=1500))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, marker in (("Adam + L2", "s-"), ("AdamW", "o-")):
        ax1.semilogx(decays, task[label]["test_accuracy"], marker, label=label)
        ax2.loglog(decays, task[label]["weight_norm"], marker, label=label)
    ax1.set(xlabel="weight decay", ylabel="test accuracy", title="digits MLP: test accuracy")
    ax2.set(xlabel="weight decay", ylabel="final weight norm", title="digits MLP: weight norm")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "adamw_vs_adam_digits")

    claims = [
        Claim.over_seeds(
            "Adam + L2 decays weights unevenly: decay rate at sigma=10 / at sigma=1e-4 < 0.1 "
            "(control: AdamW)",
            [round(v, 5) for v in ratio_by_seed["Adam + L2"]], "<", 0.1,
            control=[round(v, 5) for v in ratio_by_seed["AdamW"]],
        ),
        Claim.over_seeds(
            "AdamW decays every weight alike: |decay rate at sigma=10 / at sigma=1e-4 - 1| < 0.05"
            " (control: Adam + L2)",
            [round(abs(v - 1), 5) for v in ratio_by_seed["AdamW"]], "<", 0.05,
            control=[round(abs(v - 1), 5) for v in ratio_by_seed["Adam + L2"]],
        ),
        Claim.check(
            "AdamW's decay rate is -ln(1 - lr*wd) at every gradient scale (max rel. dev. < 1e-6;"
            " control: Adam + L2)",
            adamw_spread, "<", 1e-6, control=l2_spread,
        ),
    ]
    metrics = {
        "lr": lr,
        "weight_decay": wd,
        "steps": steps,
        "scales": scales.tolist(),
        "decay_rate_adam_l2": rate["Adam + L2"].tolist(),
        "decay_rate_adamw": rate["AdamW"].tolist(),
        "ratio_hi_lo_adam_l2": ratio["Adam + L2"],
        "ratio_hi_lo_adamw": ratio["AdamW"],
        "seeds": ctx.seeds(3),
        "ratio_hi_lo_adam_l2_by_seed": ratio_by_seed["Adam + L2"],
        "ratio_hi_lo_adamw_by_seed": ratio_by_seed["AdamW"],
        "adam_l2_max_rel_dev_from_decoupled_rate": l2_spread,
        "adam_l2_high_sigma_rate_over_lr_wd_over_sigma": l2_vs_theory,
        "final_mean_w_adam_l2": runs["Adam + L2"][0].tolist(),
        "final_mean_w_adamw": runs["AdamW"][0].tolist(),
        "digits_weight_decays": decays,
        "digits_test_accuracy_adam_l2": task["Adam + L2"]["test_accuracy"],
        "digits_test_accuracy_adamw": task["AdamW"]["test_accuracy"],
        "digits_weight_norm_adam_l2": task["Adam + L2"]["weight_norm"],
        "digits_weight_norm_adamw": task["AdamW"]["weight_norm"],
    }
    summary = (
        f"decay rate (sigma=10)/(sigma=1e-4): Adam+L2 {ratio['Adam + L2']:.2g}, "
        f"AdamW {ratio['AdamW']:.4f}; after {steps} steps mean w at sigma=1e-4/10: "
        f"Adam+L2 {runs['Adam + L2'][0][lo].item():.3g}/{runs['Adam + L2'][0][hi].item():.3g}, "
        f"AdamW {runs['AdamW'][0][lo].item():.3g}/{runs['AdamW'][0][hi].item():.3g}; "
        f"digits best test accuracy: Adam+L2 {max(task['Adam + L2']['test_accuracy']):.3f}, "
        f"AdamW {max(task['AdamW']['test_accuracy']):.3f}"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
