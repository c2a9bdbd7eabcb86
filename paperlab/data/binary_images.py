"""Binary images as flat {0, 1} vectors, for the autoregressive models of note G2.

Two sources:

- ``binarised_digits(...)``: scikit-learn's 8x8 digits (``data/digits.py``) thresholded at half
  intensity (pixel / 16 >= 0.5, i.e. raw value >= 8), flattened to 64 dims, with a seeded
  train / validation / test split.
- ``BinaryImageFolder(root)``: the user's own images, every image file below ``root``
  (recursively, sorted, hidden files skipped), read as greyscale with Pillow, optionally
  resized to (S, S), scaled to [0, 1] and thresholded (``>= threshold``, 0.5 by default;
  ``invert=True`` for dark strokes on a light background). ``dataset[i]`` is a float32 (H * W,)
  vector; ``dataset.shape`` is (H, W). Every image must have the same size (unless resized):
  the first that differs raises ``DataFormatError`` naming the file, as does an unreadable
  file; with ``skip_bad=True`` such files are dropped and listed in ``.skipped``. All images
  are decoded up front (binary images are small), so the errors come at construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from paperlab.data.digits import load_digits_tensors
from paperlab.data.formats.common import (
    BadRows,
    DataFormatError,
    Skipped,
    check_image_size,
    existing,
)
from paperlab.data.formats.image_folder import image_files
from paperlab.errors import ArgumentError
from paperlab.registry import export_dataset


def binarise(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, ...) intensities in [0, 1] -> (N, prod(...)) float32 in {0, 1}: 1 where >= threshold."""
    if not 0.0 < threshold < 1.0:
        raise ArgumentError(f"threshold must be in (0, 1), got {threshold}")
    return (images >= threshold).flatten(1).to(torch.float32)


def binarised_digits(
    *,
    threshold: float = 0.5,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train, validation and test sets (N, 64) in {0, 1} from the 1,797 digits.

    One seeded shuffle: the first ``test_fraction`` is the test set, the next
    ``val_fraction`` (of the whole) the validation set, the rest training.
    """
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0):
        raise ArgumentError(
            f"val_fraction and test_fraction must be in (0, 1), got {val_fraction}, {test_fraction}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise ArgumentError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )
    images, _ = load_digits_tensors()
    x = binarise(images, threshold)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return x[train], x[val], x[test]


def _read_grey(path: Path, image_size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        grey = img.convert("L")
    if image_size is not None and grey.size != (image_size, image_size):
        grey = grey.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


@export_dataset("binary-image-folder", note="G2", tags=("generative", "formats"))
class BinaryImageFolder(Dataset):
    """Every image below a folder, greyscale, thresholded to a flat {0, 1} vector."""

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int | None = None,
        threshold: float = 0.5,
        invert: bool = False,
        skip_bad: bool = False,
    ) -> None:
        self.root = existing(root, "binary image folder", folder=True)
        self.image_size = check_image_size(image_size)
        if not 0.0 < threshold < 1.0:
            raise ArgumentError(f"threshold must be in (0, 1), got {threshold}")
        rows = BadRows(skip_bad)
        files = image_files(self.root)
        if not files:
            raise DataFormatError(self.root, None, "no image files in the folder")
        vectors: list[torch.Tensor] = []
        self.files: list[Path] = []
        self.shape: tuple[int, int] | None = None
        for file in files:
            try:
                pixels = _read_grey(file, self.image_size)
            except (OSError, ValueError, SyntaxError) as exc:
                rows.bad(file, None, f"cannot read image: {exc}")
                continue
            if self.shape is None:
                self.shape = (int(pixels.shape[0]), int(pixels.shape[1]))
            elif pixels.shape != self.shape:
                rows.bad(
                    file,
                    None,
                    f"image size (H, W) = {tuple(pixels.shape)} differs from the first image's "
                    f"{self.shape} ({self.files[0].name}); pass image_size= to resize all",
                )
                continue
            if invert:
                pixels = 1.0 - pixels
            vectors.append(torch.from_numpy((pixels >= threshold).astype(np.float32)).flatten())
            self.files.append(file)
        if not vectors:
            raise DataFormatError(self.root, None, "no readable image of a common size")
        self.data = torch.stack(vectors)
        self.skipped: list[Skipped] = rows.skipped

    @property
    def dim(self) -> int:
        """D = H * W, the length of each vector."""
        return self.data.shape[1]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]
