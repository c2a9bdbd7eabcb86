"""``blip``: a small BLIP (ITC + ITM + LM) trained on synthetic shape captions (note D7).

The data is ``data/synthetic/shapes.py`` (16 x 16 images, one coloured shape, captions "a SIZE
COLOR SHAPE at the POSITION", five (colour, shape) combinations held out of training), the
tokenizer a word-level HF ``tokenizers`` one over the grammar's words plus BLIP's mode tokens
``[DEC]`` (the decoder's first token) and ``[ENC]`` (the ITM encoder's first token).

Evaluation (``evaluate_blip``): the contrastive numbers of the ``clip`` recipe (zero-shot
accuracy on held-out and seen combinations, ITC retrieval recall@1/5 both ways on fresh
images with distinct captions) plus

- ``itm_accuracy``: the ITM head's accuracy on fresh pairs, half matching and half with
  the caption of another image (chance 0.5);
- ``caption_exact``: the fraction of greedy captions equal to the image's true caption.

Under ``torchrun`` each process computes ITC and the hard negatives over its own part of
the batch (no all-gather: BLIP's momentum queues, which stand in for a large batch, are not
implemented either).

Your own pairs: ``--set data=pairs.csv`` as for ``clip`` (``recipes/data_sources.py``); a
loaded tokenizer gets ``[DEC]`` and ``[ENC]`` added when it lacks them. The evaluation is
then, on the held-out pairs: ITC ``i2t@1/5`` and ``t2i@1/5``, ``itm_accuracy``,
``caption_exact`` (greedy captions equal to the true one, lower-cased and
whitespace-normalised) and ``skipped_rows``; no zero-shot accuracy (it needs the synthetic
class names and prompts).

The helpers (tokenizer, model, a plain training loop, the evaluation) are shared with the
experiment ``blip-capfilt``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from paperlab.data.formats.collate import collate_image_text
from paperlab.data.synthetic.shapes import ShapesData, caption_words, make_shapes
from paperlab.language.tokenizer import SPECIALS, encode_batch, token_id, word_level_tokenizer
from paperlab.multimodal.blip import BLIP, BLIPConfig, BLIPTextConfig, blip_vision_config
from paperlab.multimodal.capfilt import decode_captions, generate_captions, itm_scores
from paperlab.recipes.clip import (
    MAX_LENGTH,
    ContrastiveConfig,
    evaluate_contrastive,
    train_sampled,
)
from paperlab.recipes.data_sources import (
    HeldPairs,
    PairSource,
    load_pairs,
    pair_retrieval,
    pairs_tokenizer,
)
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task

MODE_TOKENS = ("[DEC]", "[ENC]")


def blip_tokenizer() -> Any:
    """Word-level tokenizer over the caption grammar, with ``[DEC]`` and ``[ENC]`` added."""
    return word_level_tokenizer(caption_words(), specials=(*SPECIALS, *MODE_TOKENS))


def small_blip(tokenizer: Any, *, image_size: int = 16, patch_size: int = 4, dim: int = 48,
               depth: int = 2, text_depth: int = 1, num_heads: int = 4, embed_dim: int = 32,
               max_length: int = MAX_LENGTH, **extra: Any) -> BLIP:
    """A small ``BLIP`` for the shapes captions (MLP width 2 x dim, both text parts;
    captions of ``max_length`` tokens)."""
    text = BLIPTextConfig(
        vocab_size=tokenizer.get_vocab_size(), max_length=max_length, dim=dim, depth=text_depth,
        num_heads=num_heads, mlp_dim=2 * dim, pad_token_id=token_id(tokenizer, "[PAD]"),
        eos_token_id=token_id(tokenizer, "[SEP]"), bos_token_id=token_id(tokenizer, "[DEC]"),
        enc_token_id=token_id(tokenizer, "[ENC]"),
    )
    vision = blip_vision_config(image_size=image_size, patch_size=patch_size, dim=dim,
                                depth=depth, num_heads=num_heads, mlp_dim=2 * dim)
    return BLIP(BLIPConfig(vision=vision, text=text, embed_dim=embed_dim, **extra))


def step_generator() -> torch.Generator:
    """A generator for the hard negatives, seeded from the global RNG (which the Trainer
    re-seeds from (seed, rank, step), so a resumed run draws the same negatives)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))


def train_blip(
    model: BLIP, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *,
    steps: int, batch_size: int, lr: float = 2e-3, seed: int = 0,
    track: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> list[float]:
    """``train_sampled`` with BLIP's ITC + ITM + LM loss; the seeded generator that draws
    the batches also draws the hard negatives. Returns the loss per step."""
    return train_sampled(model, lambda m, batch, g: m(*batch, generator=g).loss,
                         (images, ids, mask), steps=steps, batch_size=batch_size, lr=lr,
                         seed=seed, track=track)


@torch.no_grad()
def itm_accuracy(model: BLIP, tokenizer: Any, data: ShapesData | HeldPairs, *,
                 seed: int = 0) -> float:
    """ITM accuracy on ``data``'s true pairs and as many mismatched ones (another image's
    different caption, drawn with ``seed``): p(match) > 0.5 counts as "match"."""
    n = len(data)
    g = torch.Generator().manual_seed(seed)
    other = (torch.arange(n) + torch.randint(1, max(n, 2), (n,), generator=g)) % n
    wrong = [data.captions[int(j)] for j in other]
    keep = [i for i in range(n) if wrong[i] != data.captions[i]]
    pos = itm_scores(model, data.images, data.captions, tokenizer=tokenizer)
    neg = itm_scores(model, data.images[keep], [wrong[i] for i in keep], tokenizer=tokenizer)
    hits = int((pos > 0).sum()) + int((neg <= 0).sum())
    return hits / (n + len(keep))


@torch.no_grad()
def caption_accuracy(model: BLIP, tokenizer: Any, data: ShapesData | HeldPairs) -> float:
    """Fraction of greedy captions that equal the image's true caption."""
    ids = generate_captions(model, data.images, greedy=True)
    return exact_fraction(decode_captions(tokenizer, ids), data.captions)


def exact_fraction(produced: Sequence[str], truth: Sequence[str]) -> float:
    """Fraction of ``produced`` strings equal to ``truth`` (0 for empty input)."""
    if not produced:
        return 0.0
    return sum(a == b for a, b in zip(produced, truth)) / len(produced)


def evaluate_blip(model: BLIP, tokenizer: Any, heldout: ShapesData, seen: ShapesData,
                  *, seed: int = 0) -> dict[str, float]:
    """Zero-shot and ITC retrieval (``evaluate_contrastive``), ITM accuracy and greedy
    caption exactness on ``seen``."""
    return {
        **evaluate_contrastive(model, tokenizer, heldout, seen),
        "itm_accuracy": itm_accuracy(model, tokenizer, seen, seed=seed),
        "caption_exact": caption_accuracy(model, tokenizer, seen),
    }


@torch.no_grad()
def evaluate_blip_pairs(model: BLIP, tokenizer: Any, source: PairSource, max_length: int,
                        *, seed: int = 0) -> dict[str, float]:
    """On the held-out pairs of a data file: ITC recall@1/5 both ways, ITM accuracy, greedy
    caption exactness (lower-cased, whitespace-normalised) and the number of skipped rows."""
    held = source.held_pairs(next(model.parameters()).device)
    plain = HeldPairs(held.images, [" ".join(c.lower().split()) for c in held.captions])
    return {
        **pair_retrieval(model, tokenizer, source, max_length),
        "itm_accuracy": itm_accuracy(model, tokenizer, held, seed=seed),
        "caption_exact": caption_accuracy(model, tokenizer, plain),
        "skipped_rows": float(source.skipped),
    }


# --- the recipe ------------------------------------------------------------------------------


@dataclass
class BLIPRecipeConfig(ContrastiveConfig):
    """``blip`` settings: those of the contrastive recipes (``projection_dim`` is the width of
    BLIP's ITC embeddings)."""


@export_recipe("blip", config=BLIPRecipeConfig)
def blip_recipe(cfg: BLIPRecipeConfig) -> Task:
    """BLIP (ITC + ITM with hard negatives + captioning LM) on synthetic shape captions or on
    ``data=pairs.csv``."""
    sizes = dict(image_size=cfg.image_size, patch_size=cfg.patch_size, dim=cfg.dim,
                 depth=cfg.depth, text_depth=cfg.text_depth, embed_dim=cfg.projection_dim)

    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]):
        out = model(*batch, generator=step_generator())
        return out.loss, {"itc": out.itc.item(), "itm": out.itm.item(), "lm": out.lm.item()}

    if cfg.data:
        source = load_pairs("blip", cfg)
        tok = pairs_tokenizer("blip", cfg, source.train_captions, MODE_TOKENS)
        model = small_blip(tok, max_length=cfg.max_length, **sizes)

        def evaluate_pairs(model: nn.Module) -> dict[str, float]:
            return evaluate_blip_pairs(model, tok, source, cfg.max_length, seed=cfg.seed)

        return Task(model=model, train_set=source.train_set, loss=loss, evaluate=evaluate_pairs,
                    collate=partial(collate_image_text, tokenizer=tok, max_length=cfg.max_length))

    tok = blip_tokenizer()
    train_data = make_shapes(cfg.n_train, seed=cfg.seed, image_size=cfg.image_size)
    heldout = make_shapes(cfg.n_eval, seed=cfg.seed + 1, image_size=cfg.image_size,
                          split="heldout")
    seen = make_shapes(cfg.n_eval, seed=cfg.seed + 2, image_size=cfg.image_size)
    ids, mask = encode_batch(tok, train_data.captions, MAX_LENGTH)
    model = small_blip(tok, **sizes)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return evaluate_blip(model, tok, heldout, seen, seed=cfg.seed)

    return Task(model=model, train_set=TensorDataset(train_data.images, ids, mask), loss=loss,
                evaluate=evaluate)


__all__ = [
    "BLIPRecipeConfig",
    "blip_recipe",
    "blip_tokenizer",
    "caption_accuracy",
    "evaluate_blip",
    "evaluate_blip_pairs",
    "exact_fraction",
    "itm_accuracy",
    "small_blip",
    "step_generator",
    "train_blip",
]
