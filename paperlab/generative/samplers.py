"""Training and sampling of diffusion models (note G1): the DDPM objective, the DDPM ancestral
sampler, the DDIM sampler and classifier-free guidance.

DDPM (Ho et al. 2020). Training (``ddpm_loss``): draw t ~ U{0..T-1} and eps ~ N(0, I), form
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and regress the network's output on the target of
its prediction type (eps, x_0 or v) with a mean squared error. Sampling (``DDPMSampler``) walks
the N chosen timesteps t > t' (t' the next one, abar_{-1} = 1 after the last) with the posterior
q(x_t' | x_t, x_0) at the predicted x_0:

    mean = sqrt(abar_t') beta / (1 - abar_t) x_0 + sqrt(alpha) (1 - abar_t') / (1 - abar_t) x_t,
    alpha = abar_t / abar_t',  beta = 1 - alpha,
    variance: ``fixed_small`` = (1 - abar_t') / (1 - abar_t) beta (the true posterior's),
              ``fixed_large`` = beta;  no noise is added at t = 0.

DDIM (Song et al. 2021, eq. 12 and 16; ``DDIMSampler``): the same marginals with a
non-Markovian reverse process,

    x_t' = sqrt(abar_t') x_0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t'),

deterministic at eta = 0, DDPM-like at eta = 1. After the last timestep abar_t' is 1
(``set_alpha_to_one``) or abar_0.

The previous timestep t' is always the next entry of ``timesteps`` (-1, i.e. the end, after
the last one). diffusers' DDIMScheduler instead computes t' = t - T // N, which equals the next
entry for the ``leading`` spacing (and ``trailing`` when N divides T) but not for ``linspace``:
there its chain jumps between timesteps that are not on the list and its next-to-last step
ends at t - T // N instead of t = 0 (diffusers issues #12633 and #11347). Ours agrees with
diffusers wherever t - T // N is the next entry and lands on t = 0 under ``linspace``; the
tests show both.

Classifier-free guidance (Ho & Salimans 2022): train one network with the condition replaced
by a null condition with probability p (``drop_condition``); at sampling run it on the
condition and the null condition in one batched forward and extrapolate,
eps = eps_uncond + s (eps_cond - eps_uncond) (``guided_output``; s = 1 is the plain
conditional model, s = 0 the unconditional one).

Shapes: samples x and model outputs (B, C, H, W) (any (B, ...)); ``step(model_output, t, x)``
returns ``StepOutput(prev_sample, pred_original_sample)`` of x's shape. Coefficients are
computed from the float64 schedule and applied in x's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.generative.schedules import NoiseSchedule, check_prediction_type, to_sample_and_noise

VARIANCE_TYPES = ("fixed_small", "fixed_large")


class StepOutput(NamedTuple):
    """One reverse step: x at the previous timestep, and the x_0 predicted on the way."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def ddpm_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: str = "epsilon",
    generator: torch.Generator | None = None,
    **model_kwargs: Any,
) -> torch.Tensor:
    """The DDPM objective: mean over the batch of |model(x_t, t, **kw) - target|^2 (a scalar).

    t is uniform over the schedule's T timesteps, eps standard normal, both from ``generator``
    (on x0's device if it is a CUDA generator, else drawn on the CPU and moved).
    """
    check_prediction_type(prediction_type)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.dim() < 2:
        raise ArgumentTypeError("x0 must be a floating-point tensor (B, ...)")
    dev = generator.device if generator is not None else torch.device("cpu")
    t = torch.randint(
        0, schedule.num_train_timesteps, (x0.shape[0],), generator=generator, device=dev
    )
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev)
    t, noise = t.to(x0.device), noise.to(x0.device)
    x_t = schedule.add_noise(x0, noise, t)
    target = schedule.training_target(x0, noise, t, prediction_type)
    out = model(x_t, t, **model_kwargs)
    if out.shape != x0.shape:
        raise ShapeError(
            f"the model's output must have x0's shape {tuple(x0.shape)}, got {tuple(out.shape)}"
        )
    return torch.mean((out.float() - target.float()) ** 2)


def drop_condition(
    condition: torch.Tensor, null: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each row of ``condition`` (B, ...) by ``null`` (broadcastable to a row) with
    probability p: classifier-free guidance's training step."""
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"p must be in [0, 1], got {p}")
    dev = generator.device if generator is not None else torch.device("cpu")
    drop = (torch.rand(condition.shape[0], generator=generator, device=dev) < p).to(
        condition.device
    )
    drop = drop.reshape(-1, *([1] * (condition.dim() - 1)))
    return torch.where(drop, null.to(condition.dtype).expand_as(condition), condition)


def guided_output(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor | int,
    condition: torch.Tensor,
    null_condition: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """out_uncond + s (out_cond - out_uncond) from one forward of ``model(x, t, condition)``
    on the batch [x; x] with conditions [null; condition].

    ``null_condition`` broadcasts to ``condition``'s shape (a class id for "no class", the
    encoding of the empty prompt). With ``guidance_scale`` 1 the model runs once, unguided.
    """
    if not isinstance(guidance_scale, (int, float)) or isinstance(guidance_scale, bool):
        raise ArgumentTypeError(f"guidance_scale must be a number, got {guidance_scale!r}")
    if condition is None:
        raise ArgumentError("condition is None: guidance needs a condition to steer towards")
    if condition.shape[0] != x.shape[0]:
        raise ShapeError(
            f"condition must have x's batch size {x.shape[0]}, got {condition.shape[0]}"
        )
    if guidance_scale == 1.0:
        return model(x, t, condition)
    if null_condition is None:
        raise ArgumentError(
            "null_condition is None: guidance_scale != 1 needs the condition-free model (a "
            "null condition the model was trained on by drop_condition)"
        )
    null = null_condition.to(condition.dtype).expand_as(condition)
    tt = t if isinstance(t, int) else (t.expand(x.shape[0]) if t.dim() == 0 else t)
    tt = tt if isinstance(tt, int) else torch.cat([tt, tt])
    out = model(torch.cat([x, x]), tt, torch.cat([null, condition]))
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _timestep(t: object) -> int:
    if isinstance(t, torch.Tensor):
        if t.numel() != 1 or t.is_floating_point():
            raise ArgumentTypeError(f"t must be one integer timestep, got {tuple(t.shape)}")
        return int(t)
    return check_int("t", t, minimum=0)


class _Sampler:
    """What DDPM and DDIM share: the schedule, the timesteps and their successors."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int,
        clip_sample: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
    ) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise ArgumentTypeError(
                f"schedule must be a NoiseSchedule, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.num_inference_steps = num_inference_steps
        self.clip_sample = bool(clip_sample)
        self.prediction_type = check_prediction_type(prediction_type)
        self.timesteps = schedule.timesteps(num_inference_steps, timestep_spacing, steps_offset)
        steps = self.timesteps.tolist()
        self._prev = {t: (steps[i + 1] if i + 1 < len(steps) else -1) for i, t in enumerate(steps)}

    def previous_timestep(self, t: int) -> int:
        """The timestep after ``t`` in ``timesteps`` (-1 after the last)."""
        t = _timestep(t)
        if t not in self._prev:
            raise ArgumentError(
                f"t = {t} is not one of this sampler's timesteps "
                f"({self.timesteps[:4].tolist()} ... {self.timesteps[-2:].tolist()})"
            )
        return self._prev[t]

    def _check(self, model_output: torch.Tensor, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ArgumentTypeError("x must be a floating-point tensor")
        if not isinstance(model_output, torch.Tensor) or model_output.shape != x.shape:
            got = getattr(model_output, "shape", model_output)
            raise ShapeError(f"model_output must have x's shape {tuple(x.shape)}, got {got}")

    def _noise(
        self,
        x: torch.Tensor,
        variance_noise: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        if variance_noise is not None and generator is not None:
            raise ArgumentError("pass variance_noise or generator, not both")
        if variance_noise is not None:
            if variance_noise.shape != x.shape:
                raise ShapeError(
                    f"variance_noise must have x's shape {tuple(x.shape)}, "
                    f"got {tuple(variance_noise.shape)}"
                )
            return variance_noise
        dev = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)

    def _x0_eps(
        self, model_output: torch.Tensor, x: torch.Tensor, abar_t: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x0, eps = to_sample_and_noise(model_output, x, abar_t, self.prediction_type)
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        return x0, eps

    def sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x_T: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run the whole chain from noise ``x_T`` (B, ...): ``model(x, t)`` -> output at each t,
        t a (B,) int64 tensor."""
        x = x_T
        for t in self.timesteps.tolist():
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x = self.step(model(x, tt), t, x, generator=generator).prev_sample
        return x


class DDPMSampler(_Sampler):
    """DDPM's ancestral sampler over ``num_inference_steps`` timesteps (all T by default)."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        *,
        variance_type: str = "fixed_small",
        clip_sample: bool = False,
        steps_offset: int = 0,
        timestep_spacing: str = "leading",
        prediction_type: str = "epsilon",
    ) -> None:
        if variance_type not in VARIANCE_TYPES:
            raise ConfigError(
                f"variance_type must be one of {', '.join(VARIANCE_TYPES)}, got {variance_type!r}"
            )
        self.variance_type = variance_type
        n = schedule.num_train_timesteps if num_inference_steps is None else num_inference_steps
        super().__init__(schedule, n, clip_sample, steps_offset, timestep_spacing, prediction_type)

    def step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x: torch.Tensor,
        *,
        variance_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_t' by the posterior mean at the predicted x_0 plus the chosen variance."""
        self._check(model_output, x)
        t = _timestep(t)
        prev = self.previous_timestep(t)
        abar = self.schedule.alphas_cumprod
        abar_t = float(abar[t])
        abar_prev = float(abar[prev]) if prev >= 0 else 1.0
        alpha = abar_t / abar_prev
        beta = 1.0 - alpha
        x0, _ = self._x0_eps(model_output, x, abar_t)
        c0 = abar_prev**0.5 * beta / (1.0 - abar_t)
        ct = alpha**0.5 * (1.0 - abar_prev) / (1.0 - abar_t)
        prev_sample = c0 * x0 + ct * x
        if t > 0:
            if self.variance_type == "fixed_small":
                var = max((1.0 - abar_prev) / (1.0 - abar_t) * beta, 1e-20)
            else:
                var = beta
            prev_sample = prev_sample + var**0.5 * self._noise(x, variance_noise, generator)
        return StepOutput(prev_sample, x0)


class DDIMSampler(_Sampler):
    """DDIM over ``num_inference_steps`` timesteps; eta = 0 deterministic, 1 DDPM-like."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int,
        *,
        eta: float = 0.0,
        clip_sample: bool = False,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        timestep_spacing: str = "leading",
        prediction_type: str = "epsilon",
    ) -> None:
        if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not eta >= 0.0:
            raise ArgumentError(f"eta must be a number >= 0, got {eta!r}")
        self.eta = float(eta)
        self.set_alpha_to_one = bool(set_alpha_to_one)
        super().__init__(
            schedule,
            num_inference_steps,
            clip_sample,
            steps_offset,
            timestep_spacing,
            prediction_type,
        )
        self.final_alpha_cumprod = 1.0 if set_alpha_to_one else float(schedule.alphas_cumprod[0])

    def step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x: torch.Tensor,
        *,
        variance_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_t' = sqrt(abar_t') x_0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z."""
        self._check(model_output, x)
        t = _timestep(t)
        prev = self.previous_timestep(t)
        abar = self.schedule.alphas_cumprod
        abar_t = float(abar[t])
        abar_prev = float(abar[prev]) if prev >= 0 else self.final_alpha_cumprod
        x0, eps = self._x0_eps(model_output, x, abar_t)
        variance = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
        sigma = self.eta * variance**0.5
        prev_sample = abar_prev**0.5 * x0 + (1.0 - abar_prev - sigma**2) ** 0.5 * eps
        if self.eta > 0:
            prev_sample = prev_sample + sigma * self._noise(x, variance_noise, generator)
        return StepOutput(prev_sample, x0)
