"""``clip`` and ``siglip``: small two-tower models trained on synthetic shape captions.

The data is ``data/synthetic/shapes.py``: 16 x 16 images of one coloured shape at a position
and size, captioned by the grammar "a SIZE COLOR SHAPE at the POSITION", with five
(colour, shape) combinations held out of training. Captions are tokenised by a word-level HF
``tokenizers`` tokenizer over the grammar's words ("[CLS] ... [SEP]", pooled at [SEP]).

Evaluation (``evaluate_contrastive``):

- ``zero_shot_heldout``: zero-shot accuracy over all 30 "COLOR SHAPE" classes on images of
  the held-out combinations, with prompts "a SIZE {} at the POSITION" ensembled over every
  size and position (``multimodal/zero_shot.py``); chance is 1/30;
- ``zero_shot_seen``: the same on fresh images of training combinations;
- ``i2t@1/5``, ``t2i@1/5``: retrieval recall on fresh images whose captions are distinct.

Under ``torchrun`` the loss is the global-batch one (``clip_loss_distributed`` /
``siglip_loss_distributed``), so N processes train as one process on the whole batch.

Your own pairs: ``--set data=pairs.csv`` (CSV/TSV/JSONL, columns ``image_key`` and
``caption_key``; ``recipes/data_sources.py``) trains on them instead, images resized to
``image_size``, captions tokenised by ``--set tokenizer=FOLDER`` or a word-level vocabulary
of the training captions, truncated to ``max_length`` tokens. A seeded ``eval_fraction`` of
the images is held out; the evaluation is then ``i2t@1/5`` and ``t2i@1/5`` on those pairs
and ``skipped_rows`` (bad rows dropped with ``--set skip_bad=true``). There is no zero-shot
accuracy on a data file: it needs class names and prompt templates, which only the synthetic
captions have.

The helpers here (tokenizer, data, the small models, a plain training loop, the evaluation)
are shared with the experiments ``clip-zero-shot`` and ``clip-vs-siglip-batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from paperlab.data.formats.collate import collate_image_text
from paperlab.data.synthetic.shapes import (
    DEFAULT_HELD_OUT,
    POSITIONS,
    SIZES,
    ShapesData,
    caption_words,
    class_names,
    make_shapes,
)
from paperlab.errors import ConfigError
from paperlab.language.tokenizer import encode_batch, token_id, word_level_tokenizer
from paperlab.multimodal.clip import CLIP, clip_text_config, clip_vision_config
from paperlab.multimodal.losses import clip_loss_distributed, siglip_loss_distributed
from paperlab.multimodal.siglip import SigLIP, siglip_text_config, siglip_vision_config
from paperlab.multimodal.zero_shot import (
    retrieval_recall_at_k,
    zero_shot_classifier,
    zero_shot_predict,
)
from paperlab.recipes.data_sources import (
    PairDataConfig,
    load_pairs,
    pair_retrieval,
    pairs_tokenizer,
)
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task

MAX_LENGTH = 12  # "[CLS] a small red circle at the top left [SEP]" is 10 tokens
TEMPLATES: tuple[str, ...] = tuple(f"a {s} {{}} at the {p}" for s in SIZES for p in POSITIONS)


def caption_tokenizer() -> Any:
    """A word-level ``tokenizers.Tokenizer`` over the caption grammar's words."""
    return word_level_tokenizer(caption_words())


def encode_captions(tokenizer: Any, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (n, MAX_LENGTH)."""
    return encode_batch(tokenizer, captions, MAX_LENGTH)


def distinct_captions(data: ShapesData) -> list[int]:
    """Indices of the first image of each distinct caption (1-to-1 pairs for retrieval)."""
    seen: dict[str, int] = {}
    for i, c in enumerate(data.captions):
        seen.setdefault(c, i)
    return sorted(seen.values())


def small_model(kind: str, tokenizer: Any, *, image_size: int = 16, patch_size: int = 4,
                dim: int = 48, depth: int = 2, text_depth: int = 1, num_heads: int = 4,
                projection_dim: int = 32, max_length: int = MAX_LENGTH,
                **extra: Any) -> nn.Module:
    """A small ``CLIP`` or ``SigLIP`` for the shapes captions (MLP width 2 x dim; captions
    of ``max_length`` tokens)."""
    vision = dict(image_size=image_size, patch_size=patch_size, dim=dim, depth=depth,
                  num_heads=num_heads, mlp_dim=2 * dim)
    text = dict(vocab_size=tokenizer.get_vocab_size(), max_length=max_length, dim=dim,
                depth=text_depth, num_heads=num_heads, mlp_dim=2 * dim)
    if kind == "clip":
        return CLIP(vision=clip_vision_config(**vision),
                    text=clip_text_config(**text, eos_token_id=token_id(tokenizer, "[SEP]")),
                    projection_dim=projection_dim, **extra)
    if kind == "siglip":
        return SigLIP(vision=siglip_vision_config(**vision),
                      text=siglip_text_config(**text, head_dim=dim), **extra)
    raise ConfigError(f"kind must be 'clip' or 'siglip', got {kind!r}")


def contrastive_loss(model: nn.Module, images: torch.Tensor, ids: torch.Tensor,
                     mask: torch.Tensor, *, for_ddp: bool = False) -> torch.Tensor:
    """The model's own loss on the global batch, through ``forward`` (so DDP sees it)."""
    core = getattr(model, "module", model)
    out = model(images, ids, mask)
    if isinstance(core, SigLIP):
        return siglip_loss_distributed(out.image_embeds, out.text_embeds, core.scale(),
                                       core.logit_bias.reshape(()), for_ddp=for_ddp)
    return clip_loss_distributed(out.image_embeds, out.text_embeds, core.scale(),
                                 for_ddp=for_ddp)


def train_sampled(
    model: nn.Module, batch_loss: Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Generator],
                                           torch.Tensor],
    tensors: tuple[torch.Tensor, ...], *, steps: int, batch_size: int, lr: float = 2e-3,
    seed: int = 0, track: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> list[float]:
    """A plain AdamW loop (linear warm-up over 10%, then constant) on random batches of
    ``tensors`` drawn with a generator seeded by ``seed``; ``batch_loss(model, batch, g)``
    gives the loss (``g`` may draw more, e.g. hard negatives). Returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    losses = []
    model.train()
    for _ in track(range(steps)):
        idx = torch.randint(0, tensors[0].shape[0], (batch_size,), generator=g)
        loss = batch_loss(model, tuple(t[idx] for t in tensors), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_contrastive(
    model: nn.Module, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *,
    steps: int, batch_size: int, lr: float = 2e-3, seed: int = 0,
    track: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> list[float]:
    """``train_sampled`` with the contrastive loss (CLIP or SigLIP); for the experiments."""
    return train_sampled(model, lambda m, batch, g: contrastive_loss(m, *batch),
                         (images, ids, mask), steps=steps, batch_size=batch_size, lr=lr,
                         seed=seed, track=track)


@torch.no_grad()
def zero_shot_predictions(model: nn.Module, tokenizer: Any, data: ShapesData,
                          names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) "COLOR SHAPE" class ids in ``class_names("color_shape")`` of the
    images of ``data`` (one object each), classified zero-shot among ``names`` (default all
    30) with the prompts ``TEMPLATES``."""
    all_names = class_names("color_shape")
    names = all_names if names is None else names
    weights = zero_shot_classifier(model, names, TEMPLATES, tokenizer, MAX_LENGTH)
    pred = zero_shot_predict(model, data.images, weights)
    picked = torch.tensor([all_names.index(n) for n in names])[pred]
    return picked, data.targets("color_shape")


def zero_shot_accuracy(model: nn.Module, tokenizer: Any, data: ShapesData,
                       names: list[str] | None = None) -> float:
    """Zero-shot "COLOR SHAPE" accuracy of ``data`` among ``names`` (default all 30)."""
    picked, target = zero_shot_predictions(model, tokenizer, data, names)
    return float((picked == target).float().mean())


@torch.no_grad()
def retrieval(model: nn.Module, tokenizer: Any, data: ShapesData) -> dict[str, float]:
    """Recall@1/5 both ways over the images of ``data`` with distinct captions."""
    keep = distinct_captions(data)
    ids, mask = encode_captions(tokenizer, [data.captions[i] for i in keep])
    img = model.encode_image(data.images[keep])
    txt = model.encode_text(ids, mask)
    return retrieval_recall_at_k(img, txt, (1, 5))


HELD_OUT_NAMES = [f"{c} {s}" for c, s in sorted(DEFAULT_HELD_OUT)]


def evaluate_contrastive(model: nn.Module, tokenizer: Any, heldout: ShapesData,
                         seen: ShapesData) -> dict[str, float]:
    """Zero-shot accuracy (held-out and seen combinations, 30-way; held-out 5-way) and
    retrieval recall@1/5 on ``seen``."""
    return {
        "zero_shot_heldout": zero_shot_accuracy(model, tokenizer, heldout),
        "zero_shot_heldout_5way": zero_shot_accuracy(model, tokenizer, heldout, HELD_OUT_NAMES),
        "zero_shot_seen": zero_shot_accuracy(model, tokenizer, seen),
        **retrieval(model, tokenizer, seen),
    }


# --- the recipes -----------------------------------------------------------------------------


@dataclass
class ContrastiveConfig(PairDataConfig):
    """``clip`` / ``siglip`` settings: training fields, the data (``PairDataConfig``: ``data``,
    ``image_key``, ``caption_key``, ``tokenizer``, ``eval_fraction``, ``skip_bad``,
    ``max_length``) and model sizes; ``n_train`` / ``n_eval`` size the synthetic data."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 30
    n_train: int = 2000
    n_eval: int = 300
    image_size: int = 16
    patch_size: int = 4
    dim: int = 48
    depth: int = 2
    text_depth: int = 1
    projection_dim: int = 32


def contrastive_task(kind: str, cfg: ContrastiveConfig) -> Task:
    """The ``Task`` of ``kind`` ("clip" or "siglip") on the shapes captions or ``cfg.data``."""
    extra = {} if kind == "siglip" else {"projection_dim": cfg.projection_dim}
    sizes = dict(image_size=cfg.image_size, patch_size=cfg.patch_size, dim=cfg.dim,
                 depth=cfg.depth, text_depth=cfg.text_depth, **extra)

    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]):
        value = contrastive_loss(model, *batch, for_ddp=True)
        return value, {}

    if cfg.data:
        source = load_pairs(kind, cfg)
        tok = pairs_tokenizer(kind, cfg, source.train_captions)
        model = small_model(kind, tok, max_length=cfg.max_length, **sizes)

        def evaluate_pairs(model: nn.Module) -> dict[str, float]:
            return {**pair_retrieval(model, tok, source, cfg.max_length),
                    "skipped_rows": float(source.skipped)}

        return Task(model=model, train_set=source.train_set, loss=loss, evaluate=evaluate_pairs,
                    collate=partial(collate_image_text, tokenizer=tok, max_length=cfg.max_length))

    tok = caption_tokenizer()
    train_data = make_shapes(cfg.n_train, seed=cfg.seed, image_size=cfg.image_size)
    heldout = make_shapes(cfg.n_eval, seed=cfg.seed + 1, image_size=cfg.image_size,
                          split="heldout")
    seen = make_shapes(cfg.n_eval, seed=cfg.seed + 2, image_size=cfg.image_size)
    ids, mask = encode_captions(tok, train_data.captions)
    model = small_model(kind, tok, **sizes)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return evaluate_contrastive(model, tok, heldout, seen)

    return Task(model=model, train_set=TensorDataset(train_data.images, ids, mask), loss=loss,
                evaluate=evaluate)


@export_recipe("clip", config=ContrastiveConfig)
def clip_recipe(cfg: ContrastiveConfig) -> Task:
    """CLIP on synthetic shape captions (zero-shot accuracy and recall@1/5) or on
    ``data=pairs.csv`` (held-out recall@1/5)."""
    return contrastive_task("clip", cfg)


@export_recipe("siglip", config=ContrastiveConfig)
def siglip_recipe(cfg: ContrastiveConfig) -> Task:
    """SigLIP on synthetic shape captions (zero-shot accuracy and recall@1/5) or on
    ``data=pairs.csv`` (held-out recall@1/5)."""
    return contrastive_task("siglip", cfg)


__all__ = [
    "MAX_LENGTH",
    "TEMPLATES",
    "ContrastiveConfig",
    "caption_tokenizer",
    "contrastive_loss",
    "distinct_captions",
    "encode_captions",
    "evaluate_contrastive",
    "retrieval",
    "small_model",
    "train_contrastive",
    "train_sampled",
    "zero_shot_accuracy",
    "zero_shot_predictions",
]
