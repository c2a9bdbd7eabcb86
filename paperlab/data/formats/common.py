"""Shared pieces of the file-format readers: the error that names file and line, the record of
skipped rows, line-by-line decoding and image loading.

Every reader follows one rule. A problem in the user's data raises ``DataFormatError`` whose
message starts with ``<file>, line <n>:`` (or just ``<file>:`` where lines do not apply) and
says what is wrong, so the fix is one editor jump away. With ``skip_bad=True`` a bad row is
dropped instead and recorded in ``.skipped`` as ``Skipped(path, line, reason)``. Problems
with the whole file (it does not exist, a required column is missing from the header, a CSV
quote that never closes) always raise: there is no row to skip.

Images are read with Pillow, converted to RGB, optionally resized to (S, S) with bicubic
filtering, and returned as float32 tensors (3, H, W) in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paperlab.errors import ArgumentError, PaperlabError, check_int

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
)


class DataFormatError(PaperlabError, ValueError):
    """A data file (or a row or image it names) cannot be used; the message names file and line."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class MissingFileError(DataFormatError, FileNotFoundError):
    """A data file or folder does not exist."""


@dataclass(frozen=True)
class Skipped:
    """One dropped row: the file, the line (None where lines do not apply) and why."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


def describe_skipped(skipped: list[Skipped]) -> str:
    """One line for a log: ``"3 bad rows skipped: 2 image file not found, 1 bad JSON"``."""
    if not skipped:
        return "no bad rows"
    counts: dict[str, int] = {}
    for s in skipped:
        kind = re.split(r"[:;]| \(", s.reason, maxsplit=1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(skipped)} bad row{'s' if len(skipped) != 1 else ''} skipped: {parts}"


class BadRows:
    """Raise on a bad row, or, with ``skip_bad``, record it and carry on."""

    def __init__(self, skip_bad: bool) -> None:
        if not isinstance(skip_bad, bool):
            raise ArgumentError(f"skip_bad must be True or False, got {skip_bad!r}")
        self.skip_bad = skip_bad
        self.skipped: list[Skipped] = []

    def bad(self, path: str | Path, line: int | None, reason: str) -> None:
        if not self.skip_bad:
            raise DataFormatError(path, line, reason + " (pass skip_bad=True to drop such rows)")
        self.skipped.append(Skipped(str(path), line, reason))


def existing(path: str | Path, what: str = "file", *, folder: bool = False) -> Path:
    """``path`` as a Path if it exists (as a folder when ``folder``), else ``MissingFileError``."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(p, None, f"{what} not found")
    if folder and not p.is_dir():
        raise MissingFileError(p, None, f"{what} must be a folder, not a file")
    if not folder and not p.is_file():
        raise MissingFileError(p, None, f"{what} must be a file, not a folder")
    return p


def decoded_lines(
    path: Path,
    rows: BadRows,
    encoding: str = "utf-8",
) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without the line ending) for each line of ``path``.

    Each line is decoded on its own (``encoding`` must be ASCII-compatible: utf-8, latin-1,
    cp1252, ...), so an undecodable line is reported by number and, with ``skip_bad``, dropped
    alone. A UTF-8 byte-order mark at the start is removed.
    """
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    for number, chunk in enumerate(chunks, start=1):
        try:
            text = chunk.decode(encoding)
        except UnicodeDecodeError as exc:
            rows.bad(
                path,
                number,
                f"not valid {encoding}: byte 0x{chunk[exc.start]:02x} at "
                f"column {exc.start + 1} ({exc.reason})",
            )
            continue
        yield number, text[:-1] if text.endswith("\r") else text


def load_image(path: Path, image_size: int | None = None) -> torch.Tensor:
    """Read ``path`` as RGB (3, H, W) float32 in [0, 1], resized to (S, S) if ``image_size``.

    Raises ``OSError`` or ``ValueError`` from Pillow on a missing or unreadable file; the
    readers turn that into a ``DataFormatError`` naming the row.
    """
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BICUBIC)
    array = np.array(rgb, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def check_image_size(image_size: int | None) -> int | None:
    """``image_size`` if it is None or an int >= 1, else a named error."""
    return None if image_size is None else check_int("image_size", image_size, minimum=1)


def read_image(
    path: Path,
    image_size: int | None,
    source: str | Path,
    line: int | None,
) -> torch.Tensor:
    """``load_image`` with any failure raised as ``DataFormatError`` naming ``source``/``line``."""
    try:
        return load_image(path, image_size)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three on bad files
        reason = "image file not found" if not path.exists() else "cannot read image"
        raise DataFormatError(source, line, f"{reason} {path}: {exc}") from exc


def image_problem(path: Path, verify: bool) -> str | None:
    """Why ``path`` cannot be used as an image (None if fine); decodes it only when ``verify``."""
    if not path.is_file():
        return f"image file not found: {path}"
    if verify:
        try:
            load_image(path)
        except (OSError, ValueError, SyntaxError) as exc:
            return f"cannot read image {path}: {exc}"
    return None
