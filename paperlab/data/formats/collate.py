"""Batching image-caption pairs for CLIP, SigLIP and BLIP: stack the images, tokenise the captions.

``collate_image_text(batch, tokenizer, max_length)`` takes what ``ImageTextDataset`` or
``ShapesDataset`` items look like, a list of ``(image (3, S, S), caption str)``, and returns

    images (B, 3, S, S) float32, input_ids (B, L) int64, attention_mask (B, L) bool

with L = ``max_length`` and ``attention_mask`` True on real tokens, through
``paperlab.language.tokenizer.encode_batch`` (HF ``tokenizers``; imported when called, so
``data/`` keeps no import-time dependency on a model family). For a ``DataLoader`` pass
``collate_fn=functools.partial(collate_image_text, tokenizer=tok, max_length=32)``; the
partial pickles, so it works with worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError


def collate_image_text(
    batch: Sequence[tuple[torch.Tensor, str]], tokenizer: Any, max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``(image, caption)`` pairs into images (B, 3, S, S) and tokenised captions."""
    from paperlab.language.tokenizer import encode_batch

    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise ArgumentTypeError(f"batch must be a list of (image, caption), got {type(batch)}")
    if not batch:
        raise ArgumentError("batch must hold at least one (image, caption) pair, got none")
    images, captions = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ArgumentTypeError(f"batch[{i}] must be an (image, caption) pair, got {item!r}")
        image, caption = item
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ShapeError(f"batch[{i}] image must be a (C, H, W) tensor, got {got}")
        if image.shape != batch[0][0].shape:
            raise ShapeError(
                f"batch[{i}] image has shape {tuple(image.shape)}, batch[0] has "
                f"{tuple(batch[0][0].shape)}; give the dataset an image_size"
            )
        if not isinstance(caption, str):
            raise ArgumentTypeError(f"batch[{i}] caption must be a str, got {type(caption)}")
        images.append(image)
        captions.append(caption)
    input_ids, attention_mask = encode_batch(tokenizer, captions, max_length)
    return torch.stack(images), input_ids, attention_mask
