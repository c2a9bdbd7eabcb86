"""The ``latent-diffusion-digits`` experiment's measures: the Frechet distance on the judge's
features (FID's formula, checked against scipy's matrix square root), the judge's quality
summary, and the same-class diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlab.experiments.generative.latent_diffusion_digits import (
    diversity,
    frechet_distance,
    quality,
)

pytestmark = pytest.mark.note("G1")


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 5, generator=g, dtype=torch.float64)
    b = torch.randn(150, 5, generator=g, dtype=torch.float64) @ torch.randn(
        5, 5, generator=g, dtype=torch.float64) + 0.5
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    root = linalg.sqrtm(ca @ cb).real
    want = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + np.trace(ca + cb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-8, abs=1e-8)


def test_frechet_distance_zero_for_same_set_and_mean_shift_adds_its_square():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(100, 4, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), abs=1e-5)


def test_quality_of_a_judge_that_reads_the_class_off_the_image():
    class Reader(torch.nn.Module):  # logits = 10 x the one-hot class stored in pixel [c]
        def forward(self, x):
            return 10 * x.flatten(1)[:, :10]

    labels = torch.arange(10).repeat(3)
    images = torch.zeros(30, 1, 8, 8)
    images.view(30, -1)[torch.arange(30), labels] = 1.0
    q = quality(Reader(), images, labels, Reader()(images))
    assert q["accuracy"] == 1.0
    assert q["logp"] > -1e-3
    assert abs(q["fd"]) < 1e-6
    wrong = quality(Reader(), images, (labels + 1) % 10, Reader()(images))
    assert wrong["accuracy"] == 0.0 and wrong["logp"] < -9


def test_diversity_is_the_mean_pairwise_distance_within_each_class():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]]).reshape(4, 1, 1, 2)
    labels = torch.tensor([0, 0, 1, 1])
    assert diversity(x, labels) == pytest.approx((5.0 + 0.0) / 2)


def test_why_v_prediction_the_x0_estimate_at_the_cosine_schedules_last_step():
    """At t = T - 1 of the capped cosine schedule (T = 100) abar ~ 2.4e-7: an error d in an
    eps output becomes d sqrt(1 - abar) / sqrt(abar) (~2000 d) in the x_0 estimate, in a v
    output only d sqrt(1 - abar) (the docstring's reason for ``PREDICTION``)."""
    from paperlab.experiments.generative.latent_diffusion_digits import PREDICTION
    from paperlab.generative.schedules import NoiseSchedule, to_sample_and_noise

    abar = float(NoiseSchedule(100, "squaredcos_cap_v2").alphas_cumprod[-1])
    assert abar == pytest.approx(2.4e-7, rel=0.05)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(64, generator=g), torch.randn(64, generator=g)
    x_t = abar**0.5 * x0 + (1 - abar) ** 0.5 * noise
    err = 0.01 * torch.randn(64, generator=g)
    targets = {"epsilon": noise, "v_prediction": abar**0.5 * noise - (1 - abar) ** 0.5 * x0}
    x0_err = {}
    for kind, target in targets.items():
        est, _ = to_sample_and_noise(target + err, x_t, abar, kind)
        x0_err[kind] = float((est - x0).abs().max() / err.abs().max())
    assert x0_err["epsilon"] > 1000
    assert x0_err["v_prediction"] <= 1.0 + 1e-3
    assert PREDICTION == "v_prediction"
