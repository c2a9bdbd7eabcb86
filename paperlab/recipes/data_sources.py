"""The user's own data for the D-series recipes: image-text pairs and ImageFolder classes.

``clip``, ``siglip`` and ``blip`` take ``--set data=pairs.csv`` (a CSV/TSV/JSONL list of image
path + caption, read by ``data/formats/image_text.py``); ``vit`` and ``mae`` take
``--set data=ROOT`` (an ImageFolder, ``data/formats/image_folder.py``). This module holds
what those recipes share:

- ``seeded_split``: a held-out split drawn with a seeded ``torch.Generator``. Pairs are split
  by *image* (every caption of one image lands on the same side, so evaluation never sees a
  training image); folders are split per class (stratified), each class of >= 2 images
  contributing round(fraction x n_c) images, at least one;
- ``load_pairs`` / ``load_folder``: the dataset, its split, and one report line on stderr
  (main process only) with the counts and, with ``skip_bad``, how many rows were skipped and
  why (``describe_skipped``). With ``skip_bad`` every image is also decoded once at start
  (``verify_images``), so an unreadable image is dropped then rather than stopping training
  later; without it a bad row raises ``DataFormatError`` naming file and line (the CLI prints
  that one line and exits with status 2);
- ``pairs_tokenizer``: ``load_tokenizer(folder)`` when given, else a word-level vocabulary of
  the training captions' lower-cased, whitespace-split words (noted on stderr; a held-out
  word outside it becomes ``[UNK]``);
- ``pair_retrieval``: recall@1/5 image->text and text->image on the held-out pairs. A caption
  that repeats an earlier held-out caption is dropped (it would match several images at
  once), an image keeps all its distinct captions (``text_to_image_index``), and an image
  left without captions is dropped.

Zero-shot accuracy needs class names and prompt templates, which only the synthetic shapes
have; on a data file the evaluation is retrieval (and, for BLIP, ITM and captions) only.

Shapes: pair images (3, S, S) float32 in [0, 1]; folder images (C, S, S) with C = 1
(``to_grayscale``, ITU-R 601 luma, Pillow's "L" weights) or 3.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Subset

from paperlab.errors import ConfigError
from paperlab.training.trainer import TrainConfig

LUMA = (0.299, 0.587, 0.114)


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (1, H, W) luma 0.299 R + 0.587 G + 0.114 B."""
    weights = torch.tensor(LUMA, dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True)


def check_fraction(name: str, value: float) -> None:
    """``value`` must lie strictly between 0 and 1 (a ``ConfigError`` naming ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {value!r}")


def seeded_split(
    keys: Sequence[Hashable],
    fraction: float,
    *,
    seed: int,
    strata: Sequence[Hashable] | None = None,
    what: str = "items",
) -> tuple[list[int], list[int]]:
    """(train, held-out) indices of ``keys``: items sharing a key stay together.

    The distinct keys of each stratum (one stratum when ``strata`` is None) are permuted with
    a generator seeded by ``seed``; the first round(fraction x n), at least 1 and at most
    n - 1, are held out (a stratum of one key stays in training).
    """
    check_fraction("eval_fraction", fraction)
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    by_stratum: dict[Hashable, list[Hashable]] = {}
    for key, members in groups.items():
        by_stratum.setdefault(None if strata is None else strata[members[0]], []).append(key)
    g = torch.Generator().manual_seed(seed)
    held_keys: set[Hashable] = set()
    for units in by_stratum.values():
        if len(units) < 2:
            continue
        n = min(max(round(fraction * len(units)), 1), len(units) - 1)
        order = torch.randperm(len(units), generator=g).tolist()
        held_keys.update(units[j] for j in order[:n])
    held = sorted(i for key in held_keys for i in groups[key])
    train = sorted(i for key, members in groups.items() if key not in held_keys for i in members)
    if not held or not train:
        raise ConfigError(
            f"cannot hold out eval_fraction={fraction} of {len(groups)} distinct {what}: "
            f"need at least 2 (got {len(train)} for training, {len(held)} held out)"
        )
    return train, held


def is_main_process() -> bool:
    """Rank 0 (or no process group): the process that reports and evaluates."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def report(recipe: str, message: str) -> None:
    """One line on stderr from the main process: ``paperlab: <recipe>: <message>``."""
    if is_main_process():
        print(f"paperlab: {recipe}: {message}", file=sys.stderr, flush=True)


def _skipped_note(skipped: list[Any]) -> str:
    from paperlab.data.formats.common import describe_skipped

    return "; " + describe_skipped(skipped) if skipped else ""


# --- image-text pairs (clip, siglip, blip) ---------------------------------------------------


@dataclass
class PairDataConfig(TrainConfig):
    """The data fields of ``clip``, ``siglip`` and ``blip``: ``data`` ("" = synthetic shapes)
    is a CSV/TSV/JSONL list of pairs; ``max_length`` is the caption length in tokens on it
    (the synthetic captions always use 12)."""

    data: str = ""
    image_key: str = "image"
    caption_key: str = "caption"
    tokenizer: str = ""  # folder with vocab.txt / tokenizer.json; "" = word-level from data
    eval_fraction: float = 0.2
    skip_bad: bool = False
    max_length: int = 32

    def validate(self) -> None:
        super().validate()
        check_fraction("eval_fraction", self.eval_fraction)
        if self.max_length < 3:
            raise ConfigError(f"max_length must be >= 3 ([CLS] word [SEP]), got {self.max_length}")
        if not self.data and self.tokenizer:
            raise ConfigError("tokenizer applies to data=FILE; the synthetic captions use their "
                              "own word-level vocabulary")


@dataclass
class HeldPairs:
    """Held-out pairs in memory, shaped like ``ShapesData`` for the BLIP evaluation helpers:
    ``images`` (n, 3, S, S), ``captions`` (n strings)."""

    images: torch.Tensor
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class PairSource:
    """A pairs file, split: ``train_set`` for the Trainer, ``held`` indices for evaluation."""

    dataset: Any  # ImageTextDataset
    train: list[int]
    held: list[int]
    _images: torch.Tensor | None = field(default=None, repr=False)

    @property
    def train_set(self) -> Subset:
        return Subset(self.dataset, self.train)

    @property
    def train_captions(self) -> list[str]:
        return [self.dataset.pairs[i].caption for i in self.train]

    @property
    def held_captions(self) -> list[str]:
        return [self.dataset.pairs[i].caption for i in self.held]

    @property
    def held_image_keys(self) -> list[str]:
        return [str(self.dataset.pairs[i].image) for i in self.held]

    @property
    def skipped(self) -> int:
        return len(self.dataset.skipped)

    def held_pairs(self, device: torch.device | str = "cpu") -> HeldPairs:
        """The held-out pairs as ``HeldPairs`` (images on ``device``)."""
        return HeldPairs(self.held_images().to(device), self.held_captions)

    def held_images(self) -> torch.Tensor:
        """The held-out images (n, 3, S, S), read once and kept."""
        if self._images is None:
            self._images = torch.stack([self.dataset[i][0] for i in self.held])
        return self._images


def load_pairs(recipe: str, cfg: PairDataConfig) -> PairSource:
    """``cfg.data`` read with ``cfg.image_key``/``caption_key`` at ``cfg.image_size``, split
    by image with ``cfg.eval_fraction`` and ``cfg.seed``; reports the counts on stderr."""
    from paperlab.data.formats.image_text import ImageTextDataset

    cfg.validate()
    dataset = ImageTextDataset(
        cfg.data, image_key=cfg.image_key, caption_key=cfg.caption_key,
        image_size=cfg.image_size, skip_bad=cfg.skip_bad, verify_images=cfg.skip_bad,
    )  # fmt: skip
    keys = [str(p.image) for p in dataset.pairs]
    train, held = seeded_split(keys, cfg.eval_fraction, seed=cfg.seed, what="images")
    source = PairSource(dataset, train, held)
    report(recipe, f"{cfg.data}: {len(dataset)} image-caption pairs ({len(train)} train, "
                   f"{len(held)} held out for evaluation, split by image)"
                   f"{_skipped_note(dataset.skipped)}")
    return source


def pairs_tokenizer(recipe: str, cfg: Any, captions: Sequence[str],
                    extra_specials: Sequence[str] = ()) -> Any:
    """``load_tokenizer(cfg.tokenizer)``, or a word-level one over ``captions``' words; the
    ``extra_specials`` (BLIP's ``[DEC]``, ``[ENC]``) are added when missing."""
    from paperlab.language.tokenizer import SPECIALS, load_tokenizer, word_level_tokenizer

    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
        missing = [t for t in extra_specials if tok.token_to_id(t) is None]
        if missing:
            tok.add_special_tokens(missing)
        return tok
    counts = Counter(w for c in captions for w in c.lower().split())
    words = [w for w, _ in counts.most_common()]
    report(recipe, f"no tokenizer given: built a word-level vocabulary of {len(words)} words "
                   f"from the {len(captions)} training captions (lower-cased, split on "
                   f"whitespace; other words become [UNK]); --set tokenizer=FOLDER loads a "
                   f"vocab.txt or tokenizer.json")
    return word_level_tokenizer(words, specials=(*SPECIALS, *extra_specials))


def retrieval_groups(image_keys: Sequence[str],
                     captions: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """(image rows, caption rows, text_to_image_index) for recall@K on held-out pairs:
    the first pair of each distinct caption, one row per distinct image among those."""
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        first.setdefault(c, i)
    text_rows = sorted(first.values())
    image_of: dict[str, int] = {}
    image_rows: list[int] = []
    index: list[int] = []
    for i in text_rows:
        if image_keys[i] not in image_of:
            image_of[image_keys[i]] = len(image_rows)
            image_rows.append(i)
        index.append(image_of[image_keys[i]])
    return image_rows, text_rows, index


@torch.no_grad()
def pair_retrieval(model: Any, tokenizer: Any, source: PairSource, max_length: int,
                   *, batch_size: int = 256) -> dict[str, float]:
    """Recall@1/5 both ways (``retrieval_recall_at_k``) of ``model`` on the held-out pairs."""
    from paperlab.language.tokenizer import encode_batch
    from paperlab.multimodal.zero_shot import retrieval_recall_at_k

    device = next(model.parameters()).device
    images, captions = source.held_images(), source.held_captions
    image_rows, text_rows, index = retrieval_groups(source.held_image_keys, captions)
    img = torch.cat([model.encode_image(images[image_rows[s:s + batch_size]].to(device))
                     for s in range(0, len(image_rows), batch_size)])
    ids, mask = encode_batch(tokenizer, [captions[i] for i in text_rows], max_length)
    txt = torch.cat([model.encode_text(ids[s:s + batch_size].to(device),
                                       mask[s:s + batch_size].to(device))
                     for s in range(0, len(text_rows), batch_size)])
    return retrieval_recall_at_k(img, txt, (1, 5), text_to_image_index=index)


# --- ImageFolder classes (vit, mae) ----------------------------------------------------------


@dataclass
class FolderDataConfig(TrainConfig):
    """The data fields of ``vit`` and ``mae``: ``data`` ("" = scikit-learn's 8 x 8 grayscale
    digits) is an ImageFolder root; images are resized to ``image_size``, ``in_channels`` 1
    converts them to grayscale."""

    data: str = ""
    image_size: int = 8
    in_channels: int = 1
    eval_fraction: float = 0.2
    skip_bad: bool = False

    def validate(self) -> None:
        super().validate()
        check_fraction("eval_fraction", self.eval_fraction)
        if self.in_channels not in (1, 3):
            raise ConfigError(f"in_channels must be 1 (grayscale) or 3 (RGB), got "
                              f"{self.in_channels}")
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        if not self.data and (self.image_size, self.in_channels) != (8, 1):
            raise ConfigError(
                f"the digits are 8 x 8 grayscale: image_size={self.image_size} and in_channels="
                f"{self.in_channels} apply to data=FOLDER only (use 8 and 1, or set data)"
            )


@dataclass
class FolderSource:
    """An ImageFolder, split per class: ``train_set`` for the Trainer, ``held`` for evaluation."""

    dataset: Any  # ImageFolderDataset
    train: list[int]
    held: list[int]
    _held: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def train_set(self) -> Subset:
        return Subset(self.dataset, self.train)

    def tensors(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, C, S, S), labels (n,)) of the "train" or "held" part, read now
        (the held-out part is read once and kept)."""
        if which == "held" and self._held is not None:
            return self._held
        rows = self.train if which == "train" else self.held
        items = [self.dataset[i] for i in rows]
        out = torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
        if which == "held":
            self._held = out
        return out


def load_folder(recipe: str, cfg: FolderDataConfig) -> FolderSource:
    """The ImageFolder ``cfg.data`` at ``cfg.image_size`` with ``cfg.in_channels`` (1: luma),
    split per class with ``cfg.eval_fraction`` and ``cfg.seed``; reports counts on stderr."""
    from paperlab.data.formats.image_folder import ImageFolderDataset

    cfg.validate()
    dataset = ImageFolderDataset(
        cfg.data, image_size=cfg.image_size, skip_bad=cfg.skip_bad, verify_images=cfg.skip_bad,
        transform=to_grayscale if cfg.in_channels == 1 else None,
    )  # fmt: skip
    if not dataset.samples:
        raise ConfigError(f"{cfg.data}: no readable images ({len(dataset.skipped)} skipped)")
    labels = dataset.targets
    train, held = seeded_split(range(len(labels)), cfg.eval_fraction, seed=cfg.seed,
                               strata=labels, what="images")
    report(recipe, f"{cfg.data}: {len(labels)} images in {len(dataset.classes)} classes "
                   f"({len(train)} train, {len(held)} held out for evaluation, per class)"
                   f"{_skipped_note(dataset.skipped)}")
    return FolderSource(dataset, train, held)


__all__ = [
    "FolderDataConfig",
    "FolderSource",
    "HeldPairs",
    "PairDataConfig",
    "PairSource",
    "check_fraction",
    "load_folder",
    "load_pairs",
    "pair_retrieval",
    "pairs_tokenizer",
    "report",
    "retrieval_groups",
    "seeded_split",
    "to_grayscale",
]
