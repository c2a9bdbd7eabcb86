"""Noise schedules of diffusion models (note G1): betas, alphas_cumprod, the forward process,
inference timesteps and the three things a network may predict.

The forward (noising) process of DDPM (Ho et al. 2020) adds Gaussian noise in T small steps,
q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), which in closed form is

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),
    abar_t = prod_{s<=t} (1 - beta_s)

(``add_noise``; t counts from 0 as in diffusers, so abar_0 = 1 - beta_0). Beta schedules:

- ``linear``: beta_t evenly spaced from ``beta_start`` to ``beta_end`` (DDPM: 1e-4 .. 0.02);
- ``scaled_linear``: sqrt(beta_t) evenly spaced (latent diffusion / Stable Diffusion:
  0.00085 .. 0.012);
- ``squaredcos_cap_v2``: the cosine schedule of Nichol & Dhariwal 2021,
  abar(s) = cos^2((s + 0.008) / 1.008 * pi / 2), beta_t = min(1 - abar((t+1)/T) / abar(t/T), 0.999).

Everything here is float64 (``betas``, ``alphas_cumprod``); diffusers keeps them in float32,
so its cumulative product drifts from ours by float32 rounding (a relative ~1e-6 at t = 999;
the tests measure it).

Prediction types: a network trained at timestep t may output

- ``epsilon``: the noise eps;
- ``sample``: x_0 itself;
- ``v_prediction``: v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022).

Given x_t, any one gives the other two (``to_sample_and_noise``):
x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar),
x_0 = sqrt(abar) x_t - sqrt(1 - abar) v, eps = sqrt(abar) v + sqrt(1 - abar) x_t.
``training_target`` gives what the network should output for a training pair (x_0, eps).

Inference timesteps (``inference_timesteps``, Table 2 of Lin et al. 2023, "Common diffusion
noise schedules and sample steps are flawed"), for N of the T steps, in decreasing order:

- ``leading``: 0, r, 2r, ... (N - 1) r with r = T // N, plus ``steps_offset``;
- ``trailing``: round(T - k T / N) - 1 for k = 0 .. N - 1 (starts at T - 1);
- ``linspace``: round(linspace(0, T - 1, N)) (starts at T - 1, ends at 0).

Shapes: ``add_noise(x0, noise, t)`` takes x0 and noise of one shape (B, ...) and t (B,) of
integer timesteps (or one int for all); the per-sample coefficients broadcast over the rest.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def make_betas(
    num_train_timesteps: int, beta_schedule: str, beta_start: float, beta_end: float
) -> torch.Tensor:
    """The (T,) float64 betas of a named schedule."""
    T = num_train_timesteps
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    if beta_schedule == "squaredcos_cap_v2":

        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ConfigError(
        f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, got {beta_schedule!r}"
    )


def inference_timesteps(
    num_train_timesteps: int,
    num_inference_steps: int,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> torch.Tensor:
    """N timesteps out of T, decreasing, int64 (N,): the spacings in the module docstring."""
    T = check_int("num_train_timesteps", num_train_timesteps, minimum=1)
    N = check_int("num_inference_steps", num_inference_steps, minimum=1)
    check_int("steps_offset", steps_offset, minimum=0)
    if N > T:
        raise ArgumentError(
            f"num_inference_steps must be <= num_train_timesteps = {T}, got {N}: a model "
            f"trained on {T} timesteps has no others to visit"
        )
    if timestep_spacing == "leading":
        ts = np.arange(N)[::-1] * (T // N) + steps_offset
    elif timestep_spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / N)).astype(np.int64) - 1
    elif timestep_spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1]
    else:
        raise ConfigError(
            f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, "
            f"got {timestep_spacing!r}"
        )
    out = torch.from_numpy(np.ascontiguousarray(ts).astype(np.int64))
    if int(out.max()) >= T:
        raise ArgumentError(
            f"steps_offset = {steps_offset} puts the first timestep at {int(out.max())}, past "
            f"the last training timestep {T - 1}"
        )
    return out


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}"
        )
    return prediction_type


def to_sample_and_noise(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    alpha_bar: float | torch.Tensor,
    prediction_type: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) from a network's output at noise level abar (a number, or a tensor that
    broadcasts against x_t)."""
    check_prediction_type(prediction_type)
    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if prediction_type == "epsilon":
        return (x_t - s * model_output) / a, model_output
    if prediction_type == "sample":
        return model_output, (x_t - a * model_output) / s
    return a * x_t - s * model_output, a * model_output + s * x_t


class NoiseSchedule:
    """A beta schedule with its float64 ``betas``, ``alphas`` and ``alphas_cumprod`` (T,)."""

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        self.num_train_timesteps = check_int("num_train_timesteps", num_train_timesteps, minimum=2)
        for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ArgumentError(f"{name} must be a number in (0, 1), got {value!r}")
        if beta_start > beta_end:
            raise ArgumentError(f"beta_start must be <= beta_end, got {beta_start} > {beta_end}")
        self.beta_schedule = beta_schedule
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.betas = make_betas(num_train_timesteps, beta_schedule, beta_start, beta_end)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule({self.num_train_timesteps}, {self.beta_schedule!r}, "
            f"beta_start={self.beta_start}, beta_end={self.beta_end})"
        )

    def _coeffs(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """abar_t as a tensor shaped (B, 1, ..., 1) to broadcast over ``like`` (B, ...)."""
        if isinstance(t, bool):
            raise ArgumentTypeError("t must be an int or an integer tensor, got a bool")
        if isinstance(t, int):
            t = torch.full((like.shape[0],), t, dtype=torch.long)
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
            raise ArgumentTypeError(f"t must be an int or an integer tensor, got {t!r}")
        if t.dim() == 0:
            t = t.expand(like.shape[0])
        if t.shape != (like.shape[0],):
            raise ShapeError(f"t must have shape (B,) = ({like.shape[0]},), got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps):
            raise ArgumentError(
                f"t must be in [0, {self.num_train_timesteps - 1}], got values "
                f"{int(t.min())}..{int(t.max())}"
            )
        abar = self.alphas_cumprod[t.cpu()].to(device=like.device, dtype=like.dtype)
        return abar.reshape(-1, *([1] * (like.dim() - 1)))

    def _check_pair(self, x0: torch.Tensor, noise: torch.Tensor) -> None:
        for name, v in (("x0", x0), ("noise", noise)):
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise ArgumentTypeError(f"{name} must be a floating-point tensor")
        if x0.shape != noise.shape:
            raise ShapeError(
                f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}"
            )
        if x0.dim() < 1:
            raise ShapeError("x0 must have a batch dimension (B, ...)")

    def add_noise(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise: x0, noise (B, ...), t (B,) -> (B, ...)"""
        self._check_pair(x0, noise)
        abar = self._coeffs(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def velocity(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (the v_prediction target)."""
        self._check_pair(x0, noise)
        abar = self._coeffs(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def training_target(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int, prediction_type: str
    ) -> torch.Tensor:
        """What a network of ``prediction_type`` should output for x_t = add_noise(x0, noise, t)."""
        check_prediction_type(prediction_type)
        if prediction_type == "epsilon":
            self._check_pair(x0, noise)
            return noise
        if prediction_type == "sample":
            self._check_pair(x0, noise)
            return x0
        return self.velocity(x0, noise, t)

    def to_sample_and_noise(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        prediction_type: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) from a network output at timesteps t (B,) (see the module docstring)."""
        if model_output.shape != x_t.shape:
            raise ShapeError(
                f"model_output must have the shape of x_t {tuple(x_t.shape)}, "
                f"got {tuple(model_output.shape)}"
            )
        return to_sample_and_noise(model_output, x_t, self._coeffs(t, x_t), prediction_type)

    def timesteps(
        self, num_inference_steps: int, timestep_spacing: str = "leading", steps_offset: int = 0
    ) -> torch.Tensor:
        """``inference_timesteps`` for this schedule's T."""
        return inference_timesteps(
            self.num_train_timesteps, num_inference_steps, timestep_spacing, steps_offset
        )
