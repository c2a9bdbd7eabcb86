"""Image-text pairs from the user's own files: CSV/TSV (as open_clip's ``CsvDataset`` takes them)
or JSON Lines.

Formats
-------
CSV/TSV: a header row, then one pair per row; one column holds the image path and one the
caption (open_clip's defaults are ``filepath`` and ``title`` with a tab separator: pass
``image_key="filepath", caption_key="title"``). Quoted fields may contain the separator or
span lines, as the ``csv`` module reads them (strict quoting).

JSON Lines: one object per line, ``{"image": "cats/1.jpg", "caption": "a cat"}`` with
configurable keys; blank lines are ignored.

Relative image paths are relative to the folder of the list file, so a data set folder can be
moved as a whole. The separator comes from the suffix unless given: ``.csv`` is ``,``,
``.tsv`` is a tab, ``.jsonl``/``.ndjson`` are JSON Lines.

Errors (see ``formats.common``)
-------------------------------
Bad rows (wrong number of fields, bad JSON, a missing key, an empty path or caption, an image
file that does not exist, or, with ``verify_images=True``, an image Pillow cannot decode) are
found when the dataset is built and raise ``DataFormatError`` naming file and line; with
``skip_bad=True`` they are dropped and listed in ``.skipped``. Decoding every image up front
is slow, so by default an image that exists but is corrupt is found when it is loaded
(``dataset[i]``) and then always raises, naming the list file, the line and the image: a
Dataset cannot drop an index mid-epoch. Use ``verify_images=True`` with ``skip_bad=True`` to
drop such images when the dataset is built.

``dataset[i]`` is ``(image (3, S, S) float32 in [0, 1], caption str)``: the image resized to
``image_size`` (224 by default, CLIP's input; ``None`` keeps its own (H, W)), the caption
stripped of surrounding whitespace. ``transform``, if given, maps that image tensor to
another tensor.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from paperlab.data.formats.common import (
    BadRows,
    DataFormatError,
    Skipped,
    check_image_size,
    decoded_lines,
    existing,
    image_problem,
    read_image,
)
from paperlab.errors import ArgumentError
from paperlab.registry import export_dataset

SEPARATORS = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Pair:
    """One usable row: where it was written, the resolved image path and the caption."""

    line: int
    image: Path
    caption: str


def detect_format(path: Path, sep: str | None) -> str | None:
    """The CSV separator for ``path`` (``None`` for JSON Lines), from ``sep`` or the suffix."""
    suffix = path.suffix.lower()
    if sep is not None:
        if suffix in JSONL_SUFFIXES:
            raise ArgumentError(f"sep must be None for a JSON Lines file ({path}), got {sep!r}")
        if not isinstance(sep, str) or len(sep) != 1:
            raise ArgumentError(f"sep must be a single character, got {sep!r}")
        return sep
    if suffix in JSONL_SUFFIXES:
        return None
    if suffix in SEPARATORS:
        return SEPARATORS[suffix]
    known = ", ".join([*SEPARATORS, *JSONL_SUFFIXES])
    raise ArgumentError(
        f"cannot tell the format of {path} from its suffix {suffix!r} (known: {known}); "
        f"pass sep=',' or sep='\\t' for a CSV/TSV file"
    )


def _csv_records(path: Path, sep: str, rows: BadRows) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for each non-blank CSV record, header included."""
    numbered = list(decoded_lines(path, rows))
    reader = csv.reader((text + "\n" for _, text in numbered), delimiter=sep, strict=True)
    consumed = 0
    while True:
        start = numbered[consumed][0] if consumed < len(numbered) else None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataFormatError(
                path, start, f"CSV cannot be parsed ({exc}); check the quotes of this record"
            ) from exc
        consumed = reader.line_num
        if fields:
            yield start, fields


def _read_csv(
    path: Path,
    sep: str,
    image_key: str,
    caption_key: str,
    rows: BadRows,
) -> Iterator[tuple[int, str, str]]:
    records = _csv_records(path, sep, rows)
    first = next(records, None)
    if first is None:
        raise DataFormatError(path, None, "empty file: expected a header row naming the columns")
    header_line, header = first
    header = [h.strip() for h in header]
    for key, name in ((image_key, "image_key"), (caption_key, "caption_key")):
        if key not in header:
            raise DataFormatError(
                path,
                header_line,
                f"the header has no column {key!r} ({name}); columns are {header}",
            )
    i, c = header.index(image_key), header.index(caption_key)
    for line, fields in records:
        if len(fields) != len(header):
            rows.bad(
                path, line, f"expected {len(header)} fields ({sep!r}-separated), got {len(fields)}"
            )
            continue
        yield line, fields[i], fields[c]


def _read_jsonl(
    path: Path,
    image_key: str,
    caption_key: str,
    rows: BadRows,
) -> Iterator[tuple[int, str, str]]:
    for line, text in decoded_lines(path, rows):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            rows.bad(path, line, f"bad JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(record, dict):
            rows.bad(path, line, f"expected a JSON object, got {type(record).__name__}")
            continue
        missing = [k for k in (image_key, caption_key) if k not in record]
        if missing:
            rows.bad(path, line, f"no key {missing[0]!r}; keys are {sorted(record)}")
            continue
        values = record[image_key], record[caption_key]
        wrong = [(k, v) for k, v in zip((image_key, caption_key), values) if not isinstance(v, str)]
        if wrong:
            k, v = wrong[0]
            rows.bad(path, line, f"{k!r} must be a string, got {type(v).__name__} {v!r}")
            continue
        yield line, values[0], values[1]


@export_dataset("image-text", note="D5-D7", tags=("multimodal", "formats"))
class ImageTextDataset(Dataset):
    """Image-caption pairs listed in a CSV/TSV or JSON Lines file: ``(image, caption)``."""

    def __init__(
        self,
        path: str | Path,
        *,
        image_key: str = "image",
        caption_key: str = "caption",
        sep: str | None = None,
        image_size: int | None = 224,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip_bad: bool = False,
        verify_images: bool = False,
    ) -> None:
        self.path = existing(path, "image-text list file")
        for key, name in ((image_key, "image_key"), (caption_key, "caption_key")):
            if not isinstance(key, str) or not key:
                raise ArgumentError(f"{name} must be a non-empty string, got {key!r}")
        self.image_size = check_image_size(image_size)
        self.transform = transform
        separator = detect_format(self.path, sep)
        rows = BadRows(skip_bad)
        raw = (
            _read_jsonl(self.path, image_key, caption_key, rows)
            if separator is None
            else _read_csv(self.path, separator, image_key, caption_key, rows)
        )
        folder = self.path.parent
        self.pairs: list[Pair] = []
        for line, image, caption in raw:
            if not image.strip():
                rows.bad(self.path, line, f"empty image path ({image_key!r})")
                continue
            if not caption.strip():
                rows.bad(self.path, line, f"empty caption ({caption_key!r})")
                continue
            resolved = Path(image.strip())
            resolved = resolved if resolved.is_absolute() else folder / resolved
            problem = image_problem(resolved, verify_images)
            if problem is not None:
                rows.bad(self.path, line, problem)
                continue
            self.pairs.append(Pair(line, resolved, caption.strip()))
        self.skipped: list[Skipped] = rows.skipped
        if not self.pairs:
            raise DataFormatError(
                self.path, None, f"no usable image-caption pairs ({len(self.skipped)} rows skipped)"
            )

    @property
    def captions(self) -> list[str]:
        return [p.caption for p in self.pairs]

    @property
    def images(self) -> list[Path]:
        return [p.image for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        pair = self.pairs[index]
        image = read_image(pair.image, self.image_size, self.path, pair.line)
        if self.transform is not None:
            image = self.transform(image)
        return image, pair.caption
