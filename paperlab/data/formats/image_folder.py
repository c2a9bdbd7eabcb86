"""ImageFolder classification data: ``root/<class name>/**/<image>``, as torchvision reads it.

Classes are the sub-folders of ``root`` sorted by name (hidden ones skipped), so class ids are
stable across machines; images are the files below each class folder (recursively, sorted)
whose suffix is an image suffix (``formats.common.IMAGE_SUFFIXES``); other files are ignored.

Errors follow ``formats.common``: a missing root, a root without class folders, or a class
folder without images raise ``DataFormatError`` naming the folder. Images are checked to be
readable only when loaded (``dataset[i]``), where a corrupt one raises naming the file, unless
``verify_images=True`` decodes each up front; with ``skip_bad=True`` the corrupt ones are then
dropped and listed in ``.skipped`` (line is None: there are no lines here).

``dataset[i]`` is ``(image (3, S, S) float32 in [0, 1], class id int)``: resized to
``image_size`` (224 by default; ``None`` keeps each image's own (H, W)).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from paperlab.data.formats.common import (
    IMAGE_SUFFIXES,
    BadRows,
    DataFormatError,
    Skipped,
    check_image_size,
    existing,
    image_problem,
    read_image,
)
from paperlab.registry import export_dataset


def find_classes(root: Path) -> list[str]:
    """The sorted names of the visible sub-folders of ``root``."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files below ``folder`` with an image suffix (any case), skipping hidden ones, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


@export_dataset("image-folder", note="D3", tags=("vision", "formats"))
class ImageFolderDataset(Dataset):
    """Images in one folder per class: ``(image, class id)``, classes sorted by name."""

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int | None = 224,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip_bad: bool = False,
        verify_images: bool = False,
    ) -> None:
        self.root = existing(root, "image folder root", folder=True)
        self.image_size = check_image_size(image_size)
        self.transform = transform
        self.classes = find_classes(self.root)
        if not self.classes:
            raise DataFormatError(
                self.root, None, "no class sub-folders (expected root/<class name>/<image>)"
            )
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        rows = BadRows(skip_bad)
        self.samples: list[tuple[Path, int]] = []
        for name in self.classes:
            files = image_files(self.root / name)
            if not files:
                raise DataFormatError(
                    self.root / name,
                    None,
                    f"class folder {name!r} has no images (suffixes: {', '.join(IMAGE_SUFFIXES)})",
                )
            for file in files:
                problem = image_problem(file, verify_images)
                if problem is not None:
                    rows.bad(file, None, problem)
                    continue
                self.samples.append((file, self.class_to_idx[name]))
        self.skipped: list[Skipped] = rows.skipped

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file, label = self.samples[index]
        image = read_image(file, self.image_size, file, None)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
