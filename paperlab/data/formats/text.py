"""Plain text for masked-language-model training: one document (or sentence) per line.

``TextLinesDataset(paths)`` reads one file, every ``*.txt`` file of a folder (sorted), or a
list of files. Each non-blank line, stripped of surrounding whitespace, is one item; blank
lines are skipped. Lines are decoded one by one (``encoding``, UTF-8 by default; a leading
byte-order mark is removed), so a line that is not valid text raises ``DataFormatError``
naming the file, the line and the column of the bad byte, or, with ``skip_bad=True``, is
dropped and listed in ``.skipped``. Tokenisation is the tokenizer's job
(``paperlab.language.tokenizer``), not this reader's.

``dataset[i]`` is a ``str``; ``dataset.sources[i]`` is its ``(file, line)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch.utils.data import Dataset

from paperlab.data.formats.common import (
    BadRows,
    DataFormatError,
    MissingFileError,
    Skipped,
    decoded_lines,
    existing,
)
from paperlab.errors import ArgumentTypeError
from paperlab.registry import export_dataset


def text_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files to read: ``paths`` itself, the sorted ``*.txt`` of a folder, or each of a list."""
    if isinstance(paths, (str, Path)):
        p = Path(paths)
        if p.is_dir():
            files = sorted(f for f in p.glob("*.txt") if f.is_file())
            if not files:
                raise MissingFileError(p, None, "text folder has no *.txt files")
            return files
        return [existing(p, "text file")]
    if isinstance(paths, bytes) or not isinstance(paths, Iterable):
        raise ArgumentTypeError(
            f"paths must be a path or a list of paths, got {type(paths).__name__}"
        )
    files = [existing(p, "text file") for p in paths]
    if not files:
        raise ArgumentTypeError("paths must name at least one file, got an empty list")
    return files


def read_lines(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    skip_bad: bool = False,
) -> tuple[list[tuple[int, str]], list[Skipped]]:
    """The non-blank, stripped lines of one file as ``(line number, text)``, and what was
    skipped (undecodable lines, with ``skip_bad``)."""
    rows = BadRows(skip_bad)
    p = existing(path, "text file")
    lines = [(n, t.strip()) for n, t in decoded_lines(p, rows, encoding) if t.strip()]
    return lines, rows.skipped


@export_dataset("text-lines", note="D2", tags=("language", "formats"))
class TextLinesDataset(Dataset):
    """Plain-text lines (one document per line, blank lines skipped) for MLM: ``str`` items."""

    def __init__(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        encoding: str = "utf-8",
        skip_bad: bool = False,
    ) -> None:
        self.files = text_files(paths)
        self.lines: list[str] = []
        self.sources: list[tuple[Path, int]] = []
        self.skipped: list[Skipped] = []
        for file in self.files:
            lines, skipped = read_lines(file, encoding=encoding, skip_bad=skip_bad)
            self.lines.extend(text for _, text in lines)
            self.sources.extend((file, n) for n, _ in lines)
            self.skipped.extend(skipped)
        if not self.lines:
            names = ", ".join(str(f) for f in self.files)
            raise DataFormatError(names, None, f"no non-blank lines ({len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> str:
        return self.lines[index]
