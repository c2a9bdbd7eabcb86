"""Plain text for MLM: one item per non-blank line, encoding errors named with file and line."""

from __future__ import annotations

import pytest

from paperlab import create
from paperlab.data.formats.common import DataFormatError, MissingFileError
from paperlab.data.formats.text import TextLinesDataset, read_lines
from paperlab.errors import ArgumentTypeError


def test_lines_are_stripped_blank_lines_skipped_sources_kept(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbfthe cat sat\r\n\n   \n  a dog ran  \nlast line without newline")
    ds = TextLinesDataset(path)
    assert list(ds) == ["the cat sat", "a dog ran", "last line without newline"]
    assert ds.sources == [(path, 1), (path, 4), (path, 5)] and ds.skipped == []
    assert read_lines(path)[0] == [
        (1, "the cat sat"),
        (4, "a dog ran"),
        (5, "last line without newline"),
    ]


def test_folder_and_list_of_files_in_order(tmp_path):
    (tmp_path / "b.txt").write_text("two\n")
    (tmp_path / "a.txt").write_text("one\n\nuno\n")
    (tmp_path / "c.md").write_text("not read\n")
    assert list(TextLinesDataset(tmp_path)) == ["one", "uno", "two"]
    assert list(TextLinesDataset([tmp_path / "b.txt", tmp_path / "a.txt"])) == ["two", "one", "uno"]
    assert len(create("dataset", "text-lines", paths=tmp_path)) == 3


def test_latin1_file_reads_with_its_encoding_and_fails_as_utf8_naming_the_line(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes("fine\nnaïve café\nok\n".encode("latin-1"))
    assert TextLinesDataset(path, encoding="latin-1")[1] == "naïve café"
    with pytest.raises(
        DataFormatError,
        match=r"old\.txt, line 2: not valid utf-8: byte 0xef "
        r"at column 3",
    ) as info:
        TextLinesDataset(path)
    assert info.value.line == 2
    ds = TextLinesDataset(path, skip_bad=True)
    assert list(ds) == ["fine", "ok"] and ds.sources[1][1] == 3
    assert [(s.line, s.reason.split(":")[0]) for s in ds.skipped] == [(2, "not valid utf-8")]


def test_missing_and_empty_inputs_are_named(tmp_path):
    with pytest.raises(MissingFileError, match=r"absent\.txt: text file not found"):
        TextLinesDataset(tmp_path / "absent.txt")
    with pytest.raises(MissingFileError, match="text folder has no \\*.txt files"):
        TextLinesDataset(tmp_path)
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(DataFormatError, match=r"blank\.txt: no non-blank lines"):
        TextLinesDataset(tmp_path / "blank.txt")
    with pytest.raises(ArgumentTypeError, match="at least one file"):
        TextLinesDataset([])
    with pytest.raises(ArgumentTypeError, match="paths must be a path or a list"):
        TextLinesDataset(42)
