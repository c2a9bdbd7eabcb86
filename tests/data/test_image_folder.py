"""ImageFolder classification: sorted classes, image files only, errors naming the folder/file."""

from __future__ import annotations

import pytest
import torch
from data_files import write_corrupt, write_png

from paperlab import create
from paperlab.data.formats.common import DataFormatError, MissingFileError
from paperlab.data.formats.image_folder import ImageFolderDataset


def _tree(root):
    write_png(root / "zebra" / "1.png", (0, 0, 0))
    write_png(root / "apple" / "b.JPG", (255, 0, 0))
    write_png(root / "apple" / "a.png", (0, 255, 0), size=(3, 5))
    write_png(root / "apple" / "nested" / "c.png", (0, 0, 255))
    write_png(root / "apple" / ".hidden.png", (1, 1, 1))
    (root / "apple" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    write_png(root / ".cache" / "x.png", (1, 1, 1))
    (root / "README.md").write_text("a file at the root is not a class")


def test_classes_sorted_images_found_recursively_labels_match(tmp_path):
    _tree(tmp_path)
    ds = ImageFolderDataset(tmp_path, image_size=4)
    assert ds.classes == ["apple", "zebra"] and ds.class_to_idx == {"apple": 0, "zebra": 1}
    names = [p.relative_to(tmp_path).as_posix() for p, _ in ds.samples]
    assert names == ["apple/a.png", "apple/b.JPG", "apple/nested/c.png", "zebra/1.png"]
    assert ds.targets == [0, 0, 0, 1] and ds.skipped == []
    image, label = ds[0]
    assert label == 0 and image.shape == (3, 4, 4) and image.dtype == torch.float32
    assert torch.allclose(image, torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, 4, 4))
    assert ImageFolderDataset(tmp_path, image_size=None)[0][0].shape == (
        3,
        5,
        3,
    )  # native size (3, H, W)
    flipped = ImageFolderDataset(tmp_path, image_size=4, transform=lambda x: 1 - x)
    assert torch.allclose(flipped[1][0], 1 - ds[1][0])
    assert len(create("dataset", "image-folder", root=tmp_path)) == 4


def test_corrupt_image_raises_naming_the_file_or_is_dropped_when_verified(tmp_path):
    write_png(tmp_path / "cat" / "ok.png", (5, 5, 5))
    bad = write_corrupt(tmp_path / "cat" / "broken.png")
    write_png(tmp_path / "dog" / "ok.png", (9, 9, 9))
    ds = ImageFolderDataset(tmp_path)
    assert len(ds) == 3
    with pytest.raises(DataFormatError, match=r"broken\.png: cannot read image") as info:
        ds[0]
    assert info.value.path == str(bad) and info.value.line is None
    with pytest.raises(DataFormatError, match=r"broken\.png: cannot read image"):
        ImageFolderDataset(tmp_path, verify_images=True)
    verified = ImageFolderDataset(tmp_path, verify_images=True, skip_bad=True)
    assert len(verified) == 2 and verified.targets == [0, 1]
    assert len(verified.skipped) == 1 and verified.skipped[0].path == str(bad)


def test_missing_root_empty_root_and_empty_class_are_named(tmp_path):
    with pytest.raises(MissingFileError, match=r"nowhere: image folder root not found"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(MissingFileError, match="must be a folder, not a file"):
        ImageFolderDataset(tmp_path / "file.png")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataFormatError, match="no class sub-folders"):
        ImageFolderDataset(root)
    write_png(root / "a" / "1.png", (0, 0, 0))
    (root / "b").mkdir()
    (root / "b" / "list.txt").write_text("x")
    with pytest.raises(DataFormatError, match=r"root/b: class folder 'b' has no images"):
        ImageFolderDataset(root)
