"""Latent diffusion (note G1): encode -> diffuse in the latent space -> decode.

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models") train the
diffusion model not on pixels but on the latents of an autoencoder trained first and then
frozen (``generative/autoencoder.py``): the UNet (``generative/unet.py``) sees
z_0 = s E(x), s the scaling factor that gives the latents unit variance, so every denoising
step costs a UNet forward on a map f times smaller per side (f = 2^(levels - 1) of the
autoencoder); the decoder D runs once per sample at the end:

    training:  z_0 = s mean(E(x)) + s std(E(x)) eps',   c' = c or null with probability p,
               L = |eps_theta(sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps, t, tau(c')) - eps|^2
    sampling:  z_T ~ N(0, I) -> DDIM / DDPM steps with
               eps = eps(z_t, t, tau(null)) + w (eps(z_t, t, tau(c)) - eps(z_t, t, tau(null)))
               -> x = D(z_0 / s)

``samplers.ddpm_loss``, ``samplers.drop_condition``, ``samplers.guided_output`` (the two
branches of classifier-free guidance in one batched forward) and ``DDIMSampler`` /
``DDPMSampler`` do the steps; this module holds the model that ties them together.

The condition encoder tau maps a condition to the UNet's cross-attention context
(B, M, cross_attention_dim):

- ``ClassEmbedding(num_classes, dim)``: a class id (B,) -> its learned vector as one token
  (B, 1, dim); the id ``num_classes`` is the null class ("no class") that classifier-free
  guidance trains with;
- ``PromptEncoder(vocab_size, dim, max_length, ...)``: token ids (B, L) -> token embeddings
  plus learned positions through pre-LN Transformer encoder layers
  (``sequence/transformer_layers.EncoderLayer``) and a final LayerNorm -> (B, L, dim), every
  token kept as context (as Stable Diffusion keeps all 77 CLIP states). The null condition is
  the encoding of the empty prompt ("[CLS] [SEP]" and padding); padding tokens are masked in
  the encoder's self-attention and, as in Stable Diffusion, attended by the UNet (their
  states are part of the learned context);
- none: an unconditional model cross-attends to one learned null token.

``LatentDiffusion.generate(prompt | labels, steps, guidance_scale, eta, generator)`` is the
sampling loop. Bad input raises errors that name the argument: a prompt for a class or an
unconditional model (and labels for a prompt model), ``guidance_scale != 1`` for a model
trained without dropping the condition (``cond_drop_prob == 0``: it has no condition-free
branch to extrapolate from), ``steps`` above the schedule's training timesteps, ``latents``
of the wrong shape.

Shapes: images (B, C, H, W) in [-1, 1]; latents (B, c, H / f, W / f) (``latent_shape``);
labels (B,) int64; token ids (B, L) int64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.generative.autoencoder import AutoencoderKL, estimate_scaling_factor
from paperlab.generative.samplers import (
    DDIMSampler,
    DDPMSampler,
    ddpm_loss,
    drop_condition,
    guided_output,
)
from paperlab.generative.schedules import NoiseSchedule, check_prediction_type
from paperlab.generative.unet import UNet
from paperlab.sequence.transformer_layers import EncoderLayer

SAMPLERS = ("ddim", "ddpm")


class ClassEmbedding(nn.Module):
    """Class ids (B,) in [0, num_classes] -> (B, 1, dim); id ``num_classes`` is the null class."""

    kind = "class"

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.embedding = nn.Embedding(num_classes + 1, dim)

    def null(self) -> torch.Tensor:
        """The null condition: the id ``num_classes`` (a 0-d int64 tensor)."""
        return torch.tensor(self.num_classes, device=self.embedding.weight.device)

    def check(self, labels: torch.Tensor, name: str = "labels") -> None:
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ShapeError(f"{name} must be a (B,) tensor of class ids, got {got}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must hold integer class ids, got {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ArgumentError(
                f"{name} must be class ids in [0, {self.num_classes - 1}] (or the null class "
                f"{self.num_classes}), got {int(labels.min())}..{int(labels.max())}"
            )

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(labels)[:, None, :]


class PromptEncoder(nn.Module):
    """Token ids (B, L) -> context (B, L, dim): embeddings + positions, pre-LN encoder layers,
    final LayerNorm. ``pad_id`` marks padding (masked in self-attention)."""

    kind = "prompt"

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        max_length: int,
        *,
        depth: int = 1,
        num_heads: int = 2,
        pad_id: int = 0,
        null_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.pad_id = int(pad_id)
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.position_embedding, std=0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, 4 * dim, activation="gelu", norm_first=True)
            for _ in range(check_int("depth", depth, minimum=0))
        )
        self.norm = nn.LayerNorm(dim)
        ids = list(null_ids) if null_ids is not None else [self.pad_id] * max_length
        if len(ids) != max_length:
            raise ArgumentError(f"null_ids must have max_length = {max_length} ids, got {len(ids)}")
        self.register_buffer("null_ids", torch.tensor(ids, dtype=torch.long), persistent=False)

    def null(self) -> torch.Tensor:
        """The null condition: the ids of the empty prompt (L,)."""
        return self.null_ids

    def check(self, ids: torch.Tensor, name: str = "input_ids") -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] != self.max_length:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ShapeError(f"{name} must have shape (B, {self.max_length}), got {got}")
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must hold integer token ids, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ArgumentError(
                f"{name} must be token ids in [0, {self.vocab_size - 1}], "
                f"got {int(ids.min())}..{int(ids.max())}"
            )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        padding = ids == self.pad_id
        padding[:, 0] = False  # never a fully masked row
        for layer in self.layers:
            h = layer(h, key_padding_mask=padding)
        return self.norm(h)


class LatentDiffusion(nn.Module):
    """A frozen autoencoder, a conditional UNet over its latents, a noise schedule and a
    condition encoder (``ClassEmbedding``, ``PromptEncoder`` or None: unconditional).

    ``cond_drop_prob`` is the probability p of replacing the condition by the null one in
    training (classifier-free guidance needs p > 0). ``tokenizer`` (a ``tokenizers``
    tokenizer) turns prompts into ids for a ``PromptEncoder``; ``scaling_factor`` is a
    buffer, set by ``fit_scaling_factor`` before training the diffusion stage.
    """

    def __init__(
        self,
        autoencoder: AutoencoderKL,
        unet: UNet,
        schedule: NoiseSchedule,
        condition: ClassEmbedding | PromptEncoder | None = None,
        *,
        image_size: int | tuple[int, int] = 8,
        cond_drop_prob: float = 0.1,
        prediction_type: str = "epsilon",
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % autoencoder.factor or w % autoencoder.factor:
            raise ConfigError(
                f"image_size {(h, w)} must be divisible by the autoencoder's factor "
                f"{autoencoder.factor}"
            )
        c = autoencoder.config.latent_channels
        if unet.config.in_channels != c or unet.config.out_channels != c:
            raise ConfigError(
                f"the UNet must map the autoencoder's {c} latent channels to {c}, got "
                f"in_channels {unet.config.in_channels}, out_channels {unet.config.out_channels}"
            )
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ConfigError(f"cond_drop_prob must be in [0, 1), got {cond_drop_prob}")
        if condition is None and cond_drop_prob:
            cond_drop_prob = 0.0  # nothing to drop
        self.autoencoder = autoencoder.requires_grad_(False)
        self.unet = unet
        self.schedule = schedule
        self.condition = condition
        self.cond_drop_prob = float(cond_drop_prob)
        self.prediction_type = check_prediction_type(prediction_type)
        self.tokenizer = tokenizer
        self.image_shape = (autoencoder.config.in_channels, h, w)
        self.latent_shape = (c, h // autoencoder.factor, w // autoencoder.factor)
        self.register_buffer("scaling_factor", torch.tensor(1.0))
        d = unet.config.cross_attention_dim
        self.null_context = nn.Parameter(torch.zeros(1, 1, d)) if condition is None else None

    # --- the latent space -----------------------------------------------------------------

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or tuple(images.shape[1:]) != self.image_shape:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ShapeError(f"images must have shape (B, {', '.join(map(str, self.image_shape))})"
                             f", got {got}")

    @torch.no_grad()
    def encode(
        self,
        images: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scaled latents s z: z the mean of q(z | x), or a sample of it (``sample``)."""
        self._check_images(images)
        posterior = self.autoencoder.encode(images)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images D(latents / s) (B, C, H, W), clamped to [-1, 1]."""
        self.check_latents(latents)
        return self.autoencoder.decode(latents / self.scaling_factor).clamp(-1.0, 1.0)

    def check_latents(self, latents: torch.Tensor, name: str = "latents") -> None:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 4 or tuple(
            latents.shape[1:]
        ) != self.latent_shape:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents)
            raise ShapeError(
                f"{name} must have shape (B, {', '.join(map(str, self.latent_shape))}) "
                f"(latent_channels, H / f, W / f), got {got}"
            )

    @torch.no_grad()
    def fit_scaling_factor(self, images: torch.Tensor) -> float:
        """Set s = 1 / std of the unscaled latent means of ``images``; returns it."""
        self._check_images(images)
        s = estimate_scaling_factor(self.autoencoder.encode(images).mode())
        self.scaling_factor.fill_(s)
        return s

    # --- the denoiser ----------------------------------------------------------------------

    def context(self, condition: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The UNet's cross-attention context (B, M, d) of a condition (ids or labels)."""
        if self.condition is None:
            return self.null_context.expand(batch, -1, -1)
        return self.condition(condition)

    def denoise(
        self, latents: torch.Tensor, t: torch.Tensor | int, condition: torch.Tensor | None
    ) -> torch.Tensor:
        """The UNet's output (eps, x_0 or v) at noisy latents (B, c, h, w) and timesteps t."""
        return self.unet(latents, t, self.context(condition, latents.shape[0]))

    def loss(
        self,
        images: torch.Tensor,
        condition: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The DDPM loss in latent space, the condition dropped with ``cond_drop_prob``."""
        latents = self.encode(images, sample=True, generator=generator)
        if self.condition is not None:
            if condition is None:
                raise ArgumentError(
                    f"condition is None: this model is {self.condition.kind}-conditioned"
                )
            self.condition.check(condition, "condition")
            if self.cond_drop_prob > 0:
                condition = drop_condition(
                    condition, self.condition.null(), self.cond_drop_prob, generator
                )
        elif condition is not None:
            raise ArgumentError("condition given, but this model is unconditional")
        return ddpm_loss(
            lambda x, t: self.denoise(x, t, condition),
            latents,
            self.schedule,
            prediction_type=self.prediction_type,
            generator=generator,
        )

    # --- sampling ----------------------------------------------------------------------------

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids (B, L) of ``prompts`` through the model's tokenizer."""
        from paperlab.language.tokenizer import encode_batch

        if not isinstance(self.condition, PromptEncoder):
            raise ArgumentError("prompts given, but this model is not prompt-conditioned")
        if self.tokenizer is None:
            raise ConfigError("this prompt model has no tokenizer to encode prompts with")
        ids, _ = encode_batch(self.tokenizer, list(prompts), self.condition.max_length)
        return ids.to(self.condition.null().device)

    def _condition(
        self,
        prompt: str | Sequence[str] | None,
        labels: int | Sequence[int] | torch.Tensor | None,
        num_images: int | None,
    ) -> tuple[torch.Tensor | None, int]:
        kind = None if self.condition is None else self.condition.kind
        if prompt is not None and labels is not None:
            raise ArgumentError("pass prompt or labels, not both")
        if prompt is not None and kind != "prompt":
            what = "unconditional" if kind is None else "class-conditioned (pass labels)"
            raise ArgumentError(f"prompt given, but this model is {what}")
        if labels is not None and kind != "class":
            what = "unconditional" if kind is None else "prompt-conditioned (pass prompt)"
            raise ArgumentError(f"labels given, but this model is {what}")
        if kind is not None and prompt is None and labels is None:
            need = "prompt" if kind == "prompt" else "labels"
            raise ArgumentError(f"this model is {kind}-conditioned: pass {need}")
        if num_images is not None:
            check_int("num_images", num_images, minimum=1)
        if kind is None:
            return None, num_images or 1
        if kind == "prompt":
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            if not prompts or not all(isinstance(p, str) for p in prompts):
                raise ArgumentTypeError("prompt must be a str or a non-empty list of str")
            if num_images is not None and len(prompts) == 1:
                prompts = prompts * num_images
            cond = self.encode_prompts(prompts)
        else:
            if isinstance(labels, int) and not isinstance(labels, bool):
                labels = [labels] * (num_images or 1)
            cond = torch.as_tensor(labels, dtype=torch.long, device=self.condition.null().device)
            if cond.dim() == 1 and len(cond) == 1 and num_images is not None:
                cond = cond.expand(num_images)
            self.condition.check(cond, "labels")
            if int(cond.max()) == self.condition.num_classes:
                raise ArgumentError(f"labels must be in [0, {self.condition.num_classes - 1}]")
        if num_images is not None and cond.shape[0] != num_images:
            raise ArgumentError(
                f"num_images = {num_images} does not match the {cond.shape[0]} conditions given"
            )
        return cond, cond.shape[0]

    def sampler(
        self, steps: int, *, eta: float = 0.0, sampler: str = "ddim", clip_sample: bool = False
    ) -> Any:
        """A DDIM (``eta``) or DDPM sampler over ``steps`` of the training timesteps, matching
        the model's ``prediction_type``; ``clip_sample`` clamps each x_0 estimate."""
        T = self.schedule.num_train_timesteps
        check_int("steps", steps, minimum=1)
        if steps > T:
            raise ArgumentError(
                f"steps must be <= the {T} timesteps the model was trained on, got {steps}"
            )
        if sampler == "ddim":
            return DDIMSampler(self.schedule, steps, eta=eta, clip_sample=clip_sample,
                               prediction_type=self.prediction_type)
        if sampler == "ddpm":
            if eta not in (0, 0.0, 1, 1.0):
                raise ArgumentError(f"eta applies to the DDIM sampler, got eta = {eta} for ddpm")
            return DDPMSampler(self.schedule, steps, clip_sample=clip_sample,
                               prediction_type=self.prediction_type)
        raise ArgumentError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")

    @torch.no_grad()
    def generate(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        labels: int | Sequence[int] | torch.Tensor | None = None,
        num_images: int | None = None,
        steps: int = 50,
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        sampler: str = "ddim",
        clip_sample: bool = False,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        return_latents: bool = False,
    ) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] for a prompt (or list), class ``labels`` or, for an
        unconditional model, ``num_images``; ``latents`` (B, c, h, w) is z_T (else drawn
        from ``generator``). ``guidance_scale`` w: 1 is the plain conditional model."""
        cond, batch = self._condition(prompt, labels, num_images)
        if not isinstance(guidance_scale, (int, float)) or isinstance(guidance_scale, bool):
            raise ArgumentTypeError(f"guidance_scale must be a number, got {guidance_scale!r}")
        if guidance_scale != 1.0:
            if self.condition is None:
                raise ArgumentError(
                    f"guidance_scale = {guidance_scale} needs a condition; this model is "
                    "unconditional"
                )
            if self.cond_drop_prob == 0.0:
                raise ArgumentError(
                    f"guidance_scale = {guidance_scale} needs a condition-free model, but this "
                    "one was trained without dropping the condition (cond_drop_prob = 0)"
                )
        chain = self.sampler(steps, eta=eta, sampler=sampler, clip_sample=clip_sample)
        device = self.scaling_factor.device
        if latents is None:
            dev = generator.device if generator is not None else device
            latents = torch.randn((batch, *self.latent_shape), generator=generator, device=dev)
            latents = latents.to(device)
        else:
            self.check_latents(latents)
            if latents.shape[0] != batch:
                raise ShapeError(
                    f"latents must have the batch size of the conditions ({batch}), "
                    f"got {latents.shape[0]}"
                )
        if cond is None:
            def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.denoise(x, t, None)
        else:
            null = self.condition.null()

            def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return guided_output(self.denoise, x, t, cond, null, float(guidance_scale))

        z0 = chain.sample(model, latents, generator=generator)
        return z0 if return_latents else self.decode(z0)
