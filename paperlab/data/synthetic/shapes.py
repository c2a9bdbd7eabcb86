"""Synthetic image-caption pairs: coloured shapes at positions and sizes, captioned by a grammar.

The idea
--------
CLIP, SigLIP and BLIP (notes D5-D7) learn from images paired with captions and are judged by
zero-shot classification: name classes in text the model was never trained to predict. Real
web pairs cannot ship with the library, so this module makes a small world where the answer is
known exactly. Each image holds one or more objects; each object has four attributes:

    shape in SHAPES, colour in COLORS, size in SIZES, position in POSITIONS

and its caption comes from a one-rule grammar,

    caption := object (" and " object)*
    object  := "a" SIZE COLOR SHAPE "at the" POSITION

e.g. ``"a small red circle at the top left"``. ``parse_caption`` inverts it.

Compositional generalisation is tested by holding out (colour, shape) combinations: with
``split="train"`` no object has a combination in ``held_out``; with ``split="heldout"`` every
object has one (each held-out colour and shape is still seen in training, only not together).
``split="all"`` draws from every combination. The default held-out set is a diagonal: one
combination per shape, so every colour and every shape keeps training examples.

Drawing is numpy on a grid of pixel centres (``antialias=True`` averages a 4x4 super-sampled
grid). Objects in one image never overlap and keep at least one pixel apart, so each object's
box is tight around exactly its own drawn pixels. Boxes follow DESIGN.md: ``(x1, y1, x2, y2)``
in absolute pixels, pixel ``i`` spanning ``[i, i + 1)``, so a box is
``(min col, min row, max col + 1, max row + 1)`` of the pixels the object covers.

Determinism: sample ``i`` depends only on ``(seed, split, i)``, ``held_out`` and the drawing
options, so ``make_shapes(10, seed=s)`` starts with ``make_shapes(5, seed=s)``.

Shapes: ``images`` (n, 3, S, S) float32 in [0, 1]; per image ``boxes`` (k, 4) float32 and
``labels`` (k,) int64 shape-class ids (index into ``SHAPES``), k = ``objects``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from paperlab.errors import ArgumentError, ArgumentTypeError, check_int
from paperlab.registry import export_dataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "cyan": (0.10, 0.85, 0.90),
}
SIZES: dict[str, float] = {"small": 0.12, "large": 0.20}  # half-extent / image size
POSITIONS: dict[str, tuple[float, float]] = {  # centre (x, y) / image size
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "center": (0.50, 0.50),
}
DEFAULT_HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "circle"),
        ("green", "square"),
        ("blue", "triangle"),
        ("yellow", "diamond"),
        ("purple", "cross"),
    }
)
SPLITS: tuple[str, ...] = ("train", "heldout", "all")
KINDS: tuple[str, ...] = ("shape", "color", "color_shape", "size", "position")
JITTER = 0.04  # the centre moves up to this fraction of the image size each way
MIN_IMAGE_SIZE = 16
_TRIES = 200


def class_names(kind: str = "shape") -> list[str]:
    """Class names of one attribute: ``"shape"``, ``"color"``, ``"size"``, ``"position"``, or
    ``"color_shape"`` (``"red circle"``, ..., colour-major, matching ``ShapesData.targets``)."""
    if kind == "color_shape":
        return [f"{c} {s}" for c in COLORS for s in SHAPES]
    table = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}
    if kind in table:
        return list(table[kind])
    raise ArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def caption_words() -> list[str]:
    """Every word the caption grammar can produce, sorted (the vocabulary of a word tokenizer)."""
    words = {"a", "and", "at", "the", *SHAPES, *COLORS, *SIZES}
    for position in POSITIONS:
        words.update(position.split())
    return sorted(words)


def caption_of(attributes: Iterable[dict[str, str]]) -> str:
    """The caption of a list of objects, each a dict with shape, color, size and position."""
    return " and ".join(
        f"a {o['size']} {o['color']} {o['shape']} at the {o['position']}" for o in attributes
    )


def parse_caption(caption: str) -> list[dict[str, str]]:
    """Invert ``caption_of``: the objects of a caption; an unknown phrase raises naming it."""
    objects = []
    for phrase in caption.split(" and "):
        words = phrase.split()
        ok = len(words) >= 7 and words[0] == "a" and words[4:6] == ["at", "the"]
        position = " ".join(words[6:])
        if (
            not ok
            or words[1] not in SIZES
            or words[2] not in COLORS
            or words[3] not in SHAPES
            or position not in POSITIONS
        ):
            raise ArgumentError(
                f"caption phrase {phrase!r} does not follow 'a SIZE COLOR SHAPE at the POSITION'"
            )
        objects.append(
            {"shape": words[3], "color": words[2], "size": words[1], "position": position}
        )
    return objects


def combinations(
    split: str = "all",
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a split draws from, colour-major order."""
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    held = _check_held_out(held_out)
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    if split == "train":
        pairs = [p for p in pairs if p not in held]
    elif split == "heldout":
        pairs = [p for p in pairs if p in held]
    if not pairs:
        raise ArgumentError(
            f"split {split!r} has no (color, shape) combination left with held_out={sorted(held)}"
        )
    return pairs


def _check_held_out(held_out: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    if isinstance(held_out, (str, bytes)):
        raise ArgumentTypeError(f"held_out must be a set of (color, shape) pairs, got {held_out!r}")
    held = set()
    for pair in held_out:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or pair[0] not in COLORS
            or pair[1] not in SHAPES
        ):
            raise ArgumentError(
                f"held_out entries must be (color, shape) with color in {list(COLORS)} and "
                f"shape in {list(SHAPES)}; got {pair!r}"
            )
        held.add(pair)
    return frozenset(held)


def shape_coverage(
    shape: str, cx: float, cy: float, r: float, image_size: int, antialias: bool = False
) -> np.ndarray:
    """Fraction of each pixel of an (S, S) grid covered by ``shape`` centred at (cx, cy) with
    half-extent ``r`` (pixels). Without antialiasing a pixel is in or out by its centre."""
    f = 4 if antialias else 1
    t = (np.arange(image_size * f, dtype=np.float64) + 0.5) / f
    x, y = np.abs(t[None, :] - cx), t[:, None] - cy
    if shape == "circle":
        inside = x**2 + y**2 <= r**2
    elif shape == "square":
        inside = (x <= r) & (np.abs(y) <= r)
    elif shape == "triangle":  # apex up: half-width grows from 0 at cy - r to r at cy + r
        inside = (y <= r) & (x <= (y + r) / 2)
    elif shape == "diamond":
        inside = x + np.abs(y) <= r
    elif shape == "cross":
        arm = r / 3
        inside = ((x <= r) & (np.abs(y) <= arm)) | ((x <= arm) & (np.abs(y) <= r))
    else:
        raise ArgumentError(f"shape must be one of {', '.join(SHAPES)}; got {shape!r}")
    cover = inside.astype(np.float32)
    if f > 1:
        cover = cover.reshape(image_size, f, image_size, f).mean(axis=(1, 3))
    return cover


def _sample_objects(
    rng: np.random.Generator, objects: int, pairs: list[tuple[str, str]], image_size: int
) -> list[tuple[dict[str, str], float, float, float]]:
    """Objects as (attributes, cx, cy, r), at distinct positions, boxes >= 1 pixel apart."""
    positions, sizes = list(POSITIONS), list(SIZES)
    for _ in range(_TRIES):
        chosen = rng.choice(len(positions), size=objects, replace=False)
        out, extents = [], []
        for p in chosen:
            color, shape = pairs[rng.integers(len(pairs))]
            size = sizes[rng.integers(len(sizes))]
            fx, fy = POSITIONS[positions[p]]
            cx, cy = (np.array([fx, fy]) + rng.uniform(-JITTER, JITTER, size=2)) * image_size
            r = SIZES[size] * image_size
            attrs = {"shape": shape, "color": color, "size": size, "position": positions[p]}
            out.append((attrs, float(cx), float(cy), float(r)))
            extents.append((np.floor(cx - r), np.floor(cy - r), np.ceil(cx + r), np.ceil(cy + r)))
        if all(_apart(a, b) for i, a in enumerate(extents) for b in extents[i + 1 :]):
            return out
    raise ArgumentError(
        f"could not place {objects} non-overlapping objects in {_TRIES} tries; use fewer objects"
    )


def _apart(a: tuple, b: tuple) -> bool:
    return a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def _check_options(
    seed: int,
    image_size: int,
    objects: int,
    split: str,
    held_out: Iterable[tuple[str, str]],
    background: float,
    noise: float,
) -> frozenset[tuple[str, str]]:
    """Validate the drawing options (naming the bad one); return the held-out set."""
    check_int("seed", seed, minimum=0)
    check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE)
    check_int("objects", objects, minimum=1)
    if objects > len(POSITIONS) - 1:
        raise ArgumentError(f"objects must be <= {len(POSITIONS) - 1}, got {objects}")
    if not 0.0 <= background <= 1.0:
        raise ArgumentError(f"background must be in [0, 1], got {background}")
    if noise < 0:
        raise ArgumentError(f"noise must be >= 0, got {noise}")
    held = _check_held_out(held_out)
    combinations(split, held)  # validates split and that it has combinations
    return held


def render_sample(
    index: int,
    *,
    seed: int,
    image_size: int = 32,
    objects: int = 1,
    split: str = "train",
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
    background: float = 0.0,
    noise: float = 0.0,
    antialias: bool = False,
) -> tuple[np.ndarray, list[dict[str, str]], np.ndarray]:
    """Sample ``index`` of a split: image (S, S, 3) float32, objects' attributes, boxes (k, 4)."""
    check_int("index", index, minimum=0)
    held = _check_options(seed, image_size, objects, split, held_out, background, noise)
    pairs = combinations(split, held)
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    placed = _sample_objects(rng, objects, pairs, image_size)
    image = background + noise * rng.standard_normal((image_size, image_size, 3))
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    boxes = np.zeros((objects, 4), dtype=np.float32)
    for k, (attrs, cx, cy, r) in enumerate(placed):
        cover = shape_coverage(attrs["shape"], cx, cy, r, image_size, antialias)
        rows, cols = np.nonzero(cover)
        boxes[k] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        color = np.asarray(COLORS[attrs["color"]], dtype=np.float32)
        image = image * (1.0 - cover[..., None]) + color * cover[..., None]
    return image, [p[0] for p in placed], boxes


@dataclass
class ShapesData:
    """Images, captions, per-object attributes, boxes and shape labels of one split."""

    images: torch.Tensor  # (n, 3, S, S) float32 in [0, 1]
    captions: list[str]
    attributes: list[list[dict[str, str]]]
    boxes: list[torch.Tensor]  # each (k, 4) float32, x1 y1 x2 y2 in pixels
    labels: list[torch.Tensor]  # each (k,) int64 index into SHAPES
    split: str = "train"
    seed: int = 0

    def __len__(self) -> int:
        return len(self.captions)

    def targets(self, kind: str = "shape") -> torch.Tensor:
        """(n,) int64 class ids of each image's object in ``class_names(kind)`` (one object)."""
        names = class_names(kind)
        if any(len(objs) != 1 for objs in self.attributes):
            raise ArgumentError(
                "targets() needs images with exactly one object; these were made with objects > 1"
            )
        keys = [
            f"{o['color']} {o['shape']}" if kind == "color_shape" else o[kind]
            for (o,) in self.attributes
        ]
        return torch.tensor([names.index(k) for k in keys], dtype=torch.int64)


def make_shapes(
    n: int,
    *,
    seed: int,
    image_size: int = 32,
    objects: int = 1,
    split: str = "train",
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
    background: float = 0.0,
    noise: float = 0.0,
    antialias: bool = False,
) -> ShapesData:
    """``n`` images of coloured shapes with captions, deterministic in ``seed``.

    ``objects`` per image (1..4), at distinct positions; ``split`` is ``"train"`` (no held-out
    (colour, shape) pair), ``"heldout"`` (only held-out pairs) or ``"all"``; ``background``
    is the grey level behind the shapes and ``noise`` the standard deviation of Gaussian noise
    added to it (clipped to [0, 1]).
    """
    check_int("n", n, minimum=0)
    held = _check_options(seed, image_size, objects, split, held_out, background, noise)
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.float32)
    captions, attributes, boxes, labels = [], [], [], []
    for i in range(n):
        image, attrs, box = render_sample(
            i,
            seed=seed,
            image_size=image_size,
            objects=objects,
            split=split,
            held_out=held,
            background=background,
            noise=noise,
            antialias=antialias,
        )
        images[i] = torch.from_numpy(image).permute(2, 0, 1)
        captions.append(caption_of(attrs))
        attributes.append(attrs)
        boxes.append(torch.from_numpy(box))
        labels.append(torch.tensor([SHAPES.index(o["shape"]) for o in attrs], dtype=torch.int64))
    return ShapesData(images, captions, attributes, boxes, labels, split=split, seed=seed)


class ShapesDataset(Dataset):
    """A torch ``Dataset`` over ``ShapesData``: ``(image (3, S, S), target)``.

    ``target`` is ``"caption"`` (the caption string), an attribute kind of ``class_names``
    (an int class id; one object per image), or ``"detection"`` (a dict with ``boxes`` (k, 4)
    and ``labels`` (k,)). ``transform`` is applied to the image tensor.
    """

    def __init__(
        self,
        data: ShapesData,
        *,
        target: str = "caption",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(data, ShapesData):
            raise ArgumentTypeError(f"data must be ShapesData, got {type(data).__name__}")
        if target not in ("caption", "detection", *KINDS):
            raise ArgumentError(
                f"target must be 'caption', 'detection' or one of "
                f"{', '.join(KINDS)}; got {target!r}"
            )
        self.data, self.target, self.transform = data, target, transform
        self._classes = data.targets(target) if target in KINDS else None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image = self.data.images[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target == "caption":
            return image, self.data.captions[index]
        if self.target == "detection":
            return image, {"boxes": self.data.boxes[index], "labels": self.data.labels[index]}
        return image, int(self._classes[index])


@export_dataset("shapes", note="D5-D7", tags=("multimodal", "synthetic"))
def shapes_dataset(
    n: int = 1000, *, seed: int = 0, target: str = "caption", **options: Any
) -> ShapesDataset:
    """Synthetic coloured shapes with captions (``make_shapes`` options), as a Dataset."""
    return ShapesDataset(make_shapes(n, seed=seed, **options), target=target)
