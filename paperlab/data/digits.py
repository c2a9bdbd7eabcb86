"""scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes), as tensors.

The data ship inside scikit-learn, so nothing is downloaded. Pixels are scaled from 0..16 to
0..1. The train/test split is a fixed, seeded, stratified-by-shuffle split.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from paperlab.errors import ArgumentError


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits: images (1797, 1, 8, 8) float32 in [0, 1] and labels (1797,) int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    return images, labels


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train and test ``TensorDataset``s of (image (1, 8, 8), label), split by a seeded shuffle."""
    if not 0.0 < test_fraction < 1.0:
        raise ArgumentError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = load_digits_tensors()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])
