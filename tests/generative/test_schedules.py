"""NoiseSchedule (note G1): betas and alphas_cumprod against diffusers' DDPMScheduler, the
timesteps of every spacing against DDIMScheduler/DDPMScheduler exactly, add_noise, the
prediction-type conversions, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import require

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.generative.schedules import NoiseSchedule, inference_timesteps

pytestmark = pytest.mark.note("G1", reference="diffusers DDPMScheduler / DDIMScheduler")

SCHEDULES = [
    ("linear", {}),
    ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("squaredcos_cap_v2", {}),
]


@pytest.mark.parametrize("name,kw", SCHEDULES)
def test_betas_and_alphas_cumprod_match_diffusers(name, kw):
    diffusers = require("diffusers")
    for T in (1000, 37):
        ours = NoiseSchedule(T, name, **kw)
        ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name, **kw)
        assert ours.alphas_cumprod.dtype == torch.float64
        # diffusers holds the schedule in float32: ours (float64) equals it to float32 rounding
        torch.testing.assert_close(ours.betas, ref.betas.double(), rtol=3e-7, atol=0)
        # the cumulative product of 1000 float32 factors drifts: at most 1e-6 relative for the
        # linear schedules; 1.5e-5 at the cosine schedule's tail, where abar ~ 1e-9 and the
        # float32 factors 1 - beta (beta -> 0.999) carry a relative rounding of ~1e-4
        rtol = 1.5e-5 if name == "squaredcos_cap_v2" else 1e-6
        torch.testing.assert_close(
            ours.alphas_cumprod, ref.alphas_cumprod.double(), rtol=rtol, atol=0
        )
        # and is the float64 product of ours, computed step by step
        prod, ref64 = 1.0, []
        for b in ours.betas.tolist():
            prod *= 1.0 - b
            ref64.append(prod)
        torch.testing.assert_close(
            ours.alphas_cumprod, torch.tensor(ref64, dtype=torch.float64), rtol=1e-13, atol=0
        )


def test_cosine_schedule_formula():
    s = NoiseSchedule(1000, "squaredcos_cap_v2")

    def abar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 10, 500, 998):  # uncapped steps: abar_t = f((t + 1) / T) / f(0)
        assert abs(float(s.alphas_cumprod[t]) - abar((t + 1) / 1000) / abar(0)) < 1e-12
    assert float(s.betas.max()) == 0.999


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_equal_diffusers_exactly(spacing):
    diffusers = require("diffusers")
    for T in (1000, 100):
        for N in (1, 3, 7, 10, 25, 50, 64, 99, 100):
            offsets = (0, 1) if spacing == "leading" else (0,)
            for offset in offsets:
                if N > T or (spacing == "leading" and (N - 1) * (T // N) + offset >= T):
                    continue
                for cls in (diffusers.DDIMScheduler, diffusers.DDPMScheduler):
                    ref = cls(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
                    ref.set_timesteps(N)
                    ours = inference_timesteps(T, N, spacing, offset)
                    assert ours.dtype == torch.int64
                    assert torch.equal(ours, ref.timesteps), (spacing, T, N, offset)


def test_timesteps_shapes_of_the_spacings():
    assert inference_timesteps(1000, 4, "leading").tolist() == [750, 500, 250, 0]
    assert inference_timesteps(1000, 4, "leading", 1).tolist() == [751, 501, 251, 1]
    assert inference_timesteps(1000, 4, "trailing").tolist() == [999, 749, 499, 249]
    assert inference_timesteps(1000, 4, "linspace").tolist() == [999, 666, 333, 0]


def test_add_noise_and_velocity():
    s = NoiseSchedule(1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    t = torch.tensor([0, 500, 999])
    xt = s.add_noise(x0, eps, t)
    for i in range(3):
        a = float(s.alphas_cumprod[t[i]])
        torch.testing.assert_close(xt[i], a**0.5 * x0[i] + (1 - a) ** 0.5 * eps[i])
    # near-pure noise at the end of the linear schedule
    assert float(s.alphas_cumprod[-1]) < 1e-4
    v = s.velocity(x0, eps, t)
    for i in range(3):
        a = float(s.alphas_cumprod[t[i]])
        torch.testing.assert_close(v[i], a**0.5 * eps[i] - (1 - a) ** 0.5 * x0[i])
    assert torch.equal(s.add_noise(x0, eps, 7), s.add_noise(x0, eps, torch.full((3,), 7)))


def test_add_noise_matches_diffusers():
    diffusers = require("diffusers")
    ref = diffusers.DDPMScheduler()
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    t = torch.tensor([1, 250, 600, 999])
    # float32 inputs: diffusers forms sqrt(1 - abar) from a float32 abar, which near t = 0
    # (abar = 0.9998) keeps ~3 digits of 1 - abar: a few 1e-6 apart from ours
    torch.testing.assert_close(
        s.add_noise(x0, eps, t), ref.add_noise(x0, eps, t), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        s.velocity(x0, eps, t), ref.get_velocity(x0, eps, t), rtol=0, atol=1e-5
    )
    # the same formula exactly, once diffusers is given our float64 alphas_cumprod
    ref.alphas_cumprod = s.alphas_cumprod.clone()
    x0, eps = x0.double(), eps.double()
    torch.testing.assert_close(
        s.add_noise(x0, eps, t), ref.add_noise(x0, eps, t), rtol=0, atol=1e-14
    )
    torch.testing.assert_close(
        s.velocity(x0, eps, t), ref.get_velocity(x0, eps, t), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_prediction_type_conversions_round_trip(kind):
    s = NoiseSchedule(1000, "scaled_linear", 0.00085, 0.012)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([3, 100, 640, 980])
    xt = s.add_noise(x0, eps, t)
    target = s.training_target(x0, eps, t, kind)
    rx0, reps = s.to_sample_and_noise(target, xt, t, kind)
    torch.testing.assert_close(rx0, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(reps, eps, rtol=1e-9, atol=1e-9)


def test_bad_input_names_the_argument():
    with pytest.raises(ConfigError, match="beta_schedule must be one of"):
        NoiseSchedule(beta_schedule="cosine")
    with pytest.raises(ArgumentError, match="num_train_timesteps must be >= 2"):
        NoiseSchedule(1)
    with pytest.raises(ArgumentError, match="beta_end must be a number in"):
        NoiseSchedule(beta_end=1.5)
    with pytest.raises(ArgumentError, match="beta_start must be <= beta_end"):
        NoiseSchedule(beta_start=0.1, beta_end=0.01)
    s = NoiseSchedule(100)
    with pytest.raises(ArgumentError, match="num_inference_steps must be <= num_train_timesteps"):
        s.timesteps(101)
    with pytest.raises(ConfigError, match="timestep_spacing must be one of"):
        s.timesteps(10, "uniform")
    with pytest.raises(ArgumentError, match="steps_offset = 1 puts the first timestep at 100"):
        s.timesteps(100, "leading", 1)
    x = torch.zeros(2, 3)
    with pytest.raises(ArgumentError, match=r"t must be in \[0, 99\]"):
        s.add_noise(x, x, torch.tensor([0, 100]))
    with pytest.raises(ShapeError, match=r"t must have shape \(B,\)"):
        s.add_noise(x, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ArgumentTypeError, match="t must be an int or an integer tensor"):
        s.add_noise(x, x, torch.tensor([0.5, 1.0]))
    with pytest.raises(ShapeError, match="noise must have the shape of x0"):
        s.add_noise(x, torch.zeros(2, 4), 3)
    with pytest.raises(ConfigError, match="prediction_type must be one of"):
        s.training_target(x, x, 3, "score")
