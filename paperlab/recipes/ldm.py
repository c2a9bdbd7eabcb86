"""``ldm`` (and its first stage ``ldm-autoencoder``): a small latent diffusion model, trained in
two stages through the shared Trainer, and ``paperlab sample ldm`` to draw images from it.

Stage 1 (``ldm-autoencoder``): the KL autoencoder (``generative/autoencoder.py``) on the
images in [-1, 1], loss |x - D(z)|^2 + ``kl_weight`` KL. Stage 2 (``ldm``): the autoencoder
frozen, the scaling factor fitted on the training images, the conditional UNet and condition
encoder trained with the DDPM loss on the scaled latents, the condition dropped with
``cond_drop_prob`` for classifier-free guidance (``generative/latent_diffusion.py``).
``paperlab train ldm`` runs stage 1 first into ``<out>/autoencoder`` (unless
``--set autoencoder=RUN_OR_CHECKPOINT`` names a finished one, or ``<out>/autoencoder``
already holds its final checkpoint), then stage 2 into ``<out>``; the final checkpoint holds
the whole model, ``<out>/tokenizer.json`` the prompt vocabulary.

Data: scikit-learn's 8 x 8 digits by default, captioned "the digit zero" .. "the digit nine"
(``condition=prompt``) or by class id (``condition=class``); or ``--set data=captions.csv``, a
CSV/TSV/JSONL captions file over an image folder (``data/formats/image_text.py``: one row per
image path, relative to the file, and caption), read into memory at ``image_size`` (grayscale
when ``channels`` is 1), with ``condition=prompt`` (or ``none``).

Sampling: ``paperlab sample ldm --prompt "the digit seven" --run runs/train/ldm --out DIR``
rebuilds the model from ``<run>/config.json``, loads the newest checkpoint and writes one PNG
per image (``sample_ldm``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from paperlab.errors import ArgumentError, ConfigError
from paperlab.generative.autoencoder import AutoencoderConfig, AutoencoderKL, autoencoder_loss
from paperlab.generative.latent_diffusion import ClassEmbedding, LatentDiffusion, PromptEncoder
from paperlab.generative.schedules import PREDICTION_TYPES, NoiseSchedule
from paperlab.generative.unet import UNet, UNetConfig
from paperlab.recipes.data_sources import check_fraction, report, to_grayscale
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CONDITIONS = ("prompt", "class", "none")


def digit_caption(label: int) -> str:
    """The caption of a digit class: "the digit seven"."""
    return f"the digit {DIGIT_WORDS[label]}"


@dataclass
class LDMAutoencoderConfig(TrainConfig):
    """The data and the first stage: the autoencoder's shape and loss."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    data: str = ""  # "" = scikit-learn's digits; else a CSV/TSV/JSONL captions file
    image_key: str = "image"
    caption_key: str = "caption"
    image_size: int = 8
    channels: int = 1
    eval_fraction: float = 0.2
    skip_bad: bool = False
    ae_channels: tuple[int, ...] = (8, 16)
    latent_channels: int = 2
    ae_groups: int = 4
    kl_weight: float = 1e-4

    def validate(self) -> None:
        super().validate()
        check_fraction("eval_fraction", self.eval_fraction)
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if not self.data and (self.image_size, self.channels) != (8, 1):
            raise ConfigError("the digits are 8 x 8 grayscale: image_size and channels apply "
                              "to data=FILE only (use 8 and 1, or set data)")
        f = 2 ** (len(self.ae_channels) - 1)
        if self.image_size % f:
            raise ConfigError(f"image_size must be divisible by {f} (ae_channels has "
                              f"{len(self.ae_channels)} levels), got {self.image_size}")


@dataclass
class LDMConfig(LDMAutoencoderConfig):
    """Both stages: the autoencoder's fields, then the diffusion model's."""

    steps: int = 1500
    lr: float = 3e-3
    autoencoder: str = ""  # a finished ldm-autoencoder run or checkpoint; "" = train it first
    autoencoder_steps: int = 300
    autoencoder_lr: float = 1e-2
    condition: str = "prompt"  # prompt | class (digits only) | none
    cond_drop_prob: float = 0.2
    train_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"  # epsilon | v_prediction | sample: what the UNet predicts
    unet_channels: tuple[int, ...] = (32,)
    unet_levels: tuple[str, ...] = ("cross",)
    unet_groups: int = 8
    context_dim: int = 16
    heads: int = 2
    text_depth: int = 1
    max_length: int = 8
    tokenizer: str = ""  # a tokenizer folder for data=FILE; "" = word-level from the captions

    def validate(self) -> None:
        super().validate()
        if self.condition not in CONDITIONS:
            raise ConfigError(f"condition must be one of {', '.join(CONDITIONS)}, "
                              f"got {self.condition!r}")
        if self.data and self.condition == "class":
            raise ConfigError("condition=class is for the digits; a captions file gives "
                              "condition=prompt (or none)")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ConfigError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, "
                              f"got {self.prediction_type!r}")
        if self.autoencoder_steps < 1:
            raise ConfigError(f"autoencoder_steps must be >= 1, got {self.autoencoder_steps}")


# --- data --------------------------------------------------------------------------------


@dataclass
class ImageData:
    """Images in [-1, 1] (n, C, S, S), with their labels (digits) or captions, split."""

    train_images: torch.Tensor
    test_images: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    train_captions: list[str]
    test_captions: list[str]


def load_images(recipe: str, cfg: LDMAutoencoderConfig) -> ImageData:
    """The digits (seeded split of ``data/digits.py``) or the captions file, in memory."""
    if not cfg.data:
        from paperlab.data.digits import digits_split

        train, test = digits_split(cfg.eval_fraction, seed=0)
        (xtr, ytr), (xte, yte) = train.tensors, test.tensors
        return ImageData(xtr * 2 - 1, xte * 2 - 1, ytr, yte,
                         [digit_caption(int(y)) for y in ytr],
                         [digit_caption(int(y)) for y in yte])
    from paperlab.data.formats.image_text import ImageTextDataset
    from paperlab.recipes.data_sources import seeded_split

    dataset = ImageTextDataset(
        cfg.data, image_key=cfg.image_key, caption_key=cfg.caption_key,
        image_size=cfg.image_size, skip_bad=cfg.skip_bad, verify_images=cfg.skip_bad,
        transform=to_grayscale if cfg.channels == 1 else None,
    )  # fmt: skip
    keys = [str(p.image) for p in dataset.pairs]
    train, held = seeded_split(keys, cfg.eval_fraction, seed=cfg.seed, what="images")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]) * 2 - 1
    caps = dataset.captions
    report(recipe, f"{cfg.data}: {len(dataset)} image-caption pairs ({len(train)} train, "
                   f"{len(held)} held out)")
    return ImageData(images[train], images[held], None, None,
                     [caps[i] for i in train], [caps[i] for i in held])


def prompt_tokenizer(recipe: str, cfg: LDMConfig, captions: Sequence[str]) -> Any:
    """The digits' fixed word-level vocabulary, or ``pairs_tokenizer`` over the captions."""
    from paperlab.recipes.data_sources import pairs_tokenizer

    if not cfg.data:
        from paperlab.language.tokenizer import word_level_tokenizer

        return word_level_tokenizer(["the", "digit", *DIGIT_WORDS])
    return pairs_tokenizer(recipe, cfg, captions)


# --- models ------------------------------------------------------------------------------


def build_autoencoder(cfg: LDMAutoencoderConfig) -> AutoencoderKL:
    return AutoencoderKL(AutoencoderConfig(
        in_channels=cfg.channels, out_channels=cfg.channels, block_out_channels=cfg.ae_channels,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.ae_groups))  # fmt: skip


def build_ldm(cfg: LDMConfig, autoencoder: AutoencoderKL, tokenizer: Any = None,
              num_classes: int = 10) -> LatentDiffusion:
    """The stage-2 model around ``autoencoder`` (its weights as they are)."""
    unet = UNet(UNetConfig(
        in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels, levels=cfg.unet_levels,
        cross_attention_dim=cfg.context_dim, num_heads=cfg.heads, norm_num_groups=cfg.unet_groups,
    ))  # fmt: skip
    condition: ClassEmbedding | PromptEncoder | None = None
    if cfg.condition == "class":
        condition = ClassEmbedding(num_classes, cfg.context_dim)
    elif cfg.condition == "prompt":
        from paperlab.language.tokenizer import encode_batch

        pad = tokenizer.token_to_id("[PAD]")
        condition = PromptEncoder(
            tokenizer.get_vocab_size(), cfg.context_dim, cfg.max_length, depth=cfg.text_depth,
            num_heads=cfg.heads, pad_id=0 if pad is None else pad,
            null_ids=encode_batch(tokenizer, [""], cfg.max_length)[0][0].tolist(),
        )  # fmt: skip
    schedule = NoiseSchedule(cfg.train_timesteps, cfg.beta_schedule)
    return LatentDiffusion(autoencoder, unet, schedule, condition, image_size=cfg.image_size,
                           cond_drop_prob=cfg.cond_drop_prob,
                           prediction_type=cfg.prediction_type, tokenizer=tokenizer)


# --- stage 1 -------------------------------------------------------------------------------


def autoencoder_task(recipe: str, cfg: LDMAutoencoderConfig) -> Task:
    data = load_images(recipe, cfg)
    model = build_autoencoder(cfg)

    def loss(model: nn.Module, batch: tuple[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        (images,) = batch
        rec, posterior = model(images)
        return autoencoder_loss(images, rec, posterior, cfg.kl_weight)

    def evaluate(model: nn.Module) -> dict[str, float]:
        x = data.test_images.to(next(model.parameters()).device)
        rec, _ = model(x, sample=False)
        return {"reconstruction_mse": float(((rec - x) ** 2).mean())}

    return Task(model=model, train_set=TensorDataset(data.train_images), loss=loss,
                evaluate=evaluate)


@export_recipe("ldm-autoencoder", config=LDMAutoencoderConfig)
def ldm_autoencoder(cfg: LDMAutoencoderConfig) -> Task:
    """Stage 1 of ``ldm``: the KL autoencoder; evaluation: held-out reconstruction MSE."""
    return autoencoder_task("ldm-autoencoder", cfg)


def stage_one(cfg: LDMConfig, out: Path) -> AutoencoderKL:
    """The trained autoencoder: ``cfg.autoencoder``, a finished ``<out>/autoencoder``, or a
    fresh stage-1 run through the Trainer."""
    from paperlab.training.checkpoint import list_checkpoints, load_checkpoint
    from paperlab.training.trainer import train

    model = build_autoencoder(cfg)
    source = Path(cfg.autoencoder) if cfg.autoencoder else out / "autoencoder"
    ckpts = source / "checkpoints" if (source / "checkpoints").is_dir() else source
    done = [c for c in list_checkpoints(ckpts) if json.loads(
        (c / "meta.json").read_text())["step"] >= cfg.autoencoder_steps] if ckpts.is_dir() else []
    if cfg.autoencoder or done:
        load_checkpoint(done[-1] if done else source, model, restore_rng=False)
        return model
    names = {f.name for f in dataclasses.fields(LDMAutoencoderConfig)}
    stage = LDMAutoencoderConfig(**{k: v for k, v in cfg.to_dict().items() if k in names})
    stage.steps, stage.lr = cfg.autoencoder_steps, cfg.autoencoder_lr
    stage.warmup, stage.out = min(cfg.warmup, stage.steps), str(out / "autoencoder")
    train("ldm-autoencoder", stage)  # every process: under torchrun stage 1 is DDP too
    load_checkpoint(out / "autoencoder" / "checkpoints", model, restore_rng=False)
    return model


# --- stage 2 -------------------------------------------------------------------------------


def condition_tensor(model: LatentDiffusion, labels: torch.Tensor | None,
                     captions: list[str]) -> torch.Tensor | None:
    """What ``model.loss`` takes as the condition: labels, token ids, or None."""
    if model.condition is None:
        return None
    if model.condition.kind == "class":
        return labels
    return model.encode_prompts(captions)


def ldm_task(cfg: LDMConfig) -> Task:
    """Stage 2 of ``ldm`` (after ``stage_one``): the latent diffusion model's Task."""
    cfg.validate()
    out = Path(cfg.out or "runs/train/ldm")
    autoencoder = stage_one(cfg, out)
    data = load_images("ldm", cfg)
    tokenizer = prompt_tokenizer("ldm", cfg, data.train_captions) if cfg.condition == "prompt" \
        else None
    if tokenizer is not None:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(out / "tokenizer.json"))
    model = build_ldm(cfg, autoencoder, tokenizer)
    model.fit_scaling_factor(data.train_images)
    train_cond = condition_tensor(model, data.train_labels, data.train_captions)
    test_cond = condition_tensor(model, data.test_labels, data.test_captions)
    tensors = (data.train_images,) + (() if train_cond is None else (train_cond,))

    def loss(model: LatentDiffusion, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        return model.loss(batch[0], batch[1] if len(batch) > 1 else None), {}

    def evaluate(model: LatentDiffusion) -> dict[str, float]:
        dev = model.scaling_factor.device
        g = torch.Generator(dev).manual_seed(0)
        cond = None if test_cond is None else test_cond.to(dev)
        was = model.cond_drop_prob
        model.cond_drop_prob = 0.0
        try:
            value = model.loss(data.test_images.to(dev), cond, g)
        finally:
            model.cond_drop_prob = was
        return {"heldout_loss": float(value)}

    return Task(model=model, train_set=TensorDataset(*tensors), loss=loss, evaluate=evaluate)


# --- sampling ----------------------------------------------------------------------------


def load_ldm(run: str | Path, device: str = "cpu") -> LatentDiffusion:
    """The model of a finished ``paperlab train ldm`` run folder (its newest checkpoint)."""
    from paperlab.training.checkpoint import load_checkpoint

    run = Path(run)
    cfg_file = run / "config.json"
    if not cfg_file.is_file():
        raise ArgumentError(f"{str(run)!r} has no config.json: not a `paperlab train ldm` run")
    raw = json.loads(cfg_file.read_text())
    if raw.pop("recipe", "ldm") != "ldm":
        raise ArgumentError(f"{str(run)!r} is not an ldm run")
    cfg = LDMConfig.from_dict(raw)
    tokenizer = None
    if cfg.condition == "prompt":
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(run / "tokenizer.json"))
    model = build_ldm(cfg, build_autoencoder(cfg), tokenizer)
    load_checkpoint(run / "checkpoints", model, restore_rng=False)
    return model.to(device).eval()


def sample_ldm(run: str | Path, out: str | Path, *, prompts: Sequence[str] = (),
               labels: Sequence[int] = (), num_images: int = 4, steps: int = 50,
               guidance_scale: float | None = None, eta: float = 0.0, seed: int = 0,
               device: str = "cpu", scale: int = 8) -> list[Path]:
    """Draw ``num_images`` per prompt (or label; unconditional: in all) and write PNGs
    ``<out>/sample_<k>_<i>.png`` (upscaled ``scale`` x, nearest); returns their paths."""
    from PIL import Image

    model = load_ldm(run, device)
    g = torch.Generator(device).manual_seed(seed)
    if guidance_scale is None:  # guided where the model can be
        guidance_scale = 1.0 if model.condition is None or not model.cond_drop_prob else 3.0
    conds: list[dict[str, Any]] = (
        [{"prompt": [p] * num_images} for p in prompts] if prompts
        else [{"labels": [int(y)] * num_images} for y in labels] if labels
        else [{"num_images": num_images}]
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, cond in enumerate(conds):
        images = model.generate(**cond, steps=steps, guidance_scale=guidance_scale, eta=eta,
                                generator=g)
        pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()
        for i, img in enumerate(pixels):
            arr = img.permute(1, 2, 0).numpy()
            pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
            pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
            path = folder / f"sample_{k}_{i}.png"
            pil.save(path)
            paths.append(path)
    return paths


@export_recipe("ldm", config=LDMConfig, sample=sample_ldm)
def ldm(cfg: LDMConfig) -> Task:
    """Latent diffusion (autoencoder stage, then diffusion stage); evaluation: held-out
    latent DDPM loss at fixed noise. ``paperlab sample ldm`` draws from a finished run."""
    return ldm_task(cfg)
