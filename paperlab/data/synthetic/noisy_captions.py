"""Noisy captions for the shapes world: the web-alt-text noise that BLIP's CapFilt removes (D7).

Web image-text pairs are noisy: many captions do not describe their image. To measure what
filtering buys, ``corrupt_captions`` replaces a chosen ``fraction`` of the captions of a
``ShapesData`` set, deterministically by ``seed``, in one of two ways:

- ``"swap"``: the caption of another image (a caption that describes *some* image, just not
  this one: the common kind of web noise);
- ``"attribute"``: one attribute (shape, colour, size or position) of one object changed to
  another value (a near miss: the hard case for a filter).

A corrupted caption always differs from the original, and (for ``"attribute"``) still
follows the grammar, so ``shapes.parse_caption`` reads it. Returns the new captions and a
(n,) bool tensor, True where the caption was corrupted.
"""

from __future__ import annotations

import numpy as np
import torch

from paperlab.data.synthetic.shapes import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapesData,
    caption_of,
)
from paperlab.errors import ArgumentError, ArgumentTypeError, check_int

MODES = ("swap", "attribute")
_VALUES = {"shape": SHAPES, "color": tuple(COLORS), "size": tuple(SIZES)}


def _changed_attribute(objs: list[dict[str, str]], rng: np.random.Generator) -> str:
    """The caption of ``objs`` with one attribute of one object set to another value."""
    new = [dict(o) for o in objs]
    k = int(rng.integers(len(new)))
    attribute = ("shape", "color", "size", "position")[int(rng.integers(4))]
    if attribute == "position":  # move to a position no object of the image occupies
        taken = {o["position"] for o in new}
        choices = [p for p in POSITIONS if p not in taken]
    else:
        choices = [v for v in _VALUES[attribute] if v != new[k][attribute]]
    new[k][attribute] = choices[int(rng.integers(len(choices)))]
    return caption_of(new)


def corrupt_captions(
    data: ShapesData, fraction: float, *, seed: int, mode: str = "swap"
) -> tuple[list[str], torch.Tensor]:
    """Replace ``fraction`` of ``data``'s captions (``mode`` "swap" or "attribute").

    Exactly ``round(fraction * n)`` captions are corrupted, chosen by a seeded permutation.
    Returns (captions, noisy (n,) bool).
    """
    if not isinstance(data, ShapesData):
        raise ArgumentTypeError(f"data must be ShapesData, got {type(data).__name__}")
    if not 0.0 <= fraction <= 1.0:
        raise ArgumentError(f"fraction must be in [0, 1], got {fraction}")
    if mode not in MODES:
        raise ArgumentError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    check_int("seed", seed, minimum=0)
    n = len(data)
    rng = np.random.default_rng([seed, MODES.index(mode)])
    chosen = rng.permutation(n)[: int(round(fraction * n))]
    captions = list(data.captions)
    noisy = torch.zeros(n, dtype=torch.bool)
    if mode == "swap" and len(chosen) and len(set(captions)) < 2:
        raise ArgumentError("swap needs at least two different captions to exchange")
    for i in chosen.tolist():
        if mode == "swap":
            j = int(rng.integers(n))
            while data.captions[j] == data.captions[i]:
                j = int(rng.integers(n))
            captions[i] = data.captions[j]
        else:
            captions[i] = _changed_attribute(data.attributes[i], rng)
        noisy[i] = True
    return captions, noisy
