"""Image-text pairs from CSV/TSV/JSONL: reading, relative paths, and errors that name file+line."""

from __future__ import annotations

import json

import pytest
import torch
from data_files import write_corrupt, write_png

from paperlab import create
from paperlab.data.formats.common import DataFormatError, MissingFileError, describe_skipped
from paperlab.data.formats.image_text import ImageTextDataset
from paperlab.errors import ArgumentError

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (10, 200, 30)


def _rgb(color) -> torch.Tensor:
    return torch.tensor(color, dtype=torch.float32).div(255).view(3, 1, 1)


def test_csv_in_open_clip_layout_reads_images_relative_to_the_file(tmp_path):
    write_png(tmp_path / "imgs" / "a.png", RED, size=(10, 6))
    write_png(tmp_path / "imgs" / "b.png", BLUE, size=(5, 7))
    path = tmp_path / "pairs.csv"
    path.write_text('filepath,title\nimgs/a.png,a red thing\nimgs/b.png,"blue, and square"\n')
    ds = ImageTextDataset(path, image_key="filepath", caption_key="title", image_size=12)
    assert len(ds) == 2 and ds.captions == ["a red thing", "blue, and square"]
    assert ds.skipped == [] and [p.line for p in ds.pairs] == [2, 3]
    image, caption = ds[1]
    assert caption == "blue, and square"
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32
    assert torch.allclose(image, _rgb(BLUE).expand(3, 12, 12), atol=1e-6)
    native = ImageTextDataset(path, image_key="filepath", caption_key="title", image_size=None)
    assert native[0][0].shape == (3, 6, 10)  # no resize: (3, H, W)


def test_tsv_and_explicit_separator_and_multiline_quoted_caption(tmp_path):
    write_png(tmp_path / "a.png", GREEN)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("image\tcaption\na.png\tgreen, small\n")
    assert ImageTextDataset(tsv, image_size=4).captions == ["green, small"]
    txt = tmp_path / "pairs.txt"
    txt.write_text('image;caption\na.png;"two\nlines"\na.png;third\nmissing.png;x\n')
    with pytest.raises(DataFormatError, match=r"pairs\.txt, line 5: image file not found"):
        ImageTextDataset(txt, sep=";")  # the quoted caption spans lines 2-3
    ds = ImageTextDataset(txt, sep=";", skip_bad=True)
    assert ds.captions == ["two\nlines", "third"] and [p.line for p in ds.pairs] == [2, 4]


def test_jsonl_with_custom_keys_absolute_paths_and_blank_lines(tmp_path):
    img = write_png(tmp_path / "deep" / "x.png", RED)
    path = tmp_path / "sub" / "pairs.jsonl"
    path.parent.mkdir()
    rows = [{"url": str(img), "text": "red", "extra": 1}, {"url": "../deep/x.png", "text": "again"}]
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    ds = ImageTextDataset(path, image_key="url", caption_key="text", image_size=3)
    assert ds.captions == ["red", "again"] and ds.images == [img, path.parent / "../deep/x.png"]
    assert torch.equal(ds[0][0], ds[1][0])
    shifted = ImageTextDataset(
        path, image_key="url", caption_key="text", image_size=3, transform=lambda x: x * 0.5
    )
    assert torch.allclose(shifted[0][0], 0.5 * ds[0][0])


GOOD_JSON = '{"image": "a.png", "caption": "ok"}\n'


@pytest.mark.parametrize(
    "name, text, line, message",
    [
        ("p.csv", "image,caption\na.png,ok\nb.png\n", 3, "expected 2 fields"),
        ("p.csv", "image,caption\na.png,ok\na.png,   \n", 3, "empty caption"),
        ("p.csv", "image,caption\n\n,hello\na.png,ok\n", 3, "empty image path"),
        ("p.csv", "image,caption\na.png,ok\nnope.png,hi\n", 3, "image file not found"),
        ("p.jsonl", GOOD_JSON + '{"image": "a.png",\n', 2, "bad JSON"),
        ("p.jsonl", GOOD_JSON + "[1, 2]\n", 2, "expected a JSON object, got list"),
        ("p.jsonl", '{"image": "a.png"}\n' + GOOD_JSON, 1, "no key 'caption'"),
        ("p.jsonl", '{"image": "a.png", "caption": 7}\n' + GOOD_JSON, 1, "'caption' must be a"),
        ("p.csv", b"image,caption\na.png,caf\xe9\na.png,ok\n", 2, "not valid utf-8: byte 0xe9"),
    ],
)
def test_bad_rows_name_file_and_line_and_skip_bad_counts_them(tmp_path, name, text, line, message):
    write_png(tmp_path / "a.png", RED)
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataFormatError, match=rf"{name}, line {line}: {message}") as info:
        ImageTextDataset(path, image_size=4)
    assert info.value.path == str(path) and info.value.line == line
    assert "skip_bad=True" in str(info.value)
    ds = ImageTextDataset(path, image_size=4, skip_bad=True)
    assert ds.captions == ["ok"] and len(ds.skipped) == 1
    assert ds.skipped[0].line == line and ds.skipped[0].reason.startswith(message)


def test_encoding_error_gives_the_column(tmp_path):
    write_png(tmp_path / "a.png", RED)
    path = tmp_path / "p.csv"
    path.write_bytes(b"image,caption\na.png,caf\xe9\n")
    with pytest.raises(DataFormatError, match="line 2: not valid utf-8: byte 0xe9 at column 10"):
        ImageTextDataset(path)


def test_skip_bad_keeps_the_good_rows_and_lists_every_bad_one(tmp_path):
    write_png(tmp_path / "a.png", RED)
    write_png(tmp_path / "b.png", BLUE)
    path = tmp_path / "mixed.jsonl"
    lines = [
        '{"image": "a.png", "caption": "one"}',
        "{not json",
        '{"image": "gone.png", "caption": "lost"}',
        '{"image": "b.png", "caption": ""}',
        '{"picture": "b.png", "caption": "x"}',
        '{"image": "b.png", "caption": "two"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    ds = ImageTextDataset(path, image_size=4, skip_bad=True)
    assert ds.captions == ["one", "two"] and [p.line for p in ds.pairs] == [1, 6]
    assert [s.line for s in ds.skipped] == [2, 3, 4, 5]
    reasons = [s.reason for s in ds.skipped]
    assert reasons[0].startswith("bad JSON") and "gone.png" in reasons[1]
    assert reasons[2].startswith("empty caption") and reasons[3].startswith("no key 'image'")
    assert str(ds.skipped[0]).startswith(f"{path}, line 2: bad JSON")
    assert describe_skipped(ds.skipped) == (
        "4 bad rows skipped: 1 bad JSON, 1 image file not found, 1 empty caption, 1 no key 'image'"
    )
    assert describe_skipped([]) == "no bad rows"


def test_corrupt_image_raises_on_load_or_is_dropped_when_verified(tmp_path):
    write_png(tmp_path / "good.png", RED)
    write_corrupt(tmp_path / "bad.png")
    path = tmp_path / "pairs.csv"
    path.write_text("image,caption\ngood.png,fine\nbad.png,broken\n")
    ds = ImageTextDataset(path, image_size=4)
    assert len(ds) == 2 and ds[0][1] == "fine"
    with pytest.raises(DataFormatError, match=r"pairs\.csv, line 3: cannot read image .*bad\.png"):
        ds[1]
    with pytest.raises(DataFormatError, match=r"line 3: cannot read image"):
        ImageTextDataset(path, verify_images=True)
    verified = ImageTextDataset(path, image_size=4, verify_images=True, skip_bad=True)
    assert verified.captions == ["fine"] and verified.skipped[0].line == 3
    (tmp_path / "good.png").unlink()  # deleted after the dataset was built
    with pytest.raises(DataFormatError, match=r"line 2: image file not found"):
        ds[0]


def test_whole_file_problems_always_raise(tmp_path):
    write_png(tmp_path / "a.png", RED)
    with pytest.raises(MissingFileError, match="image-text list file not found") as info:
        ImageTextDataset(tmp_path / "absent.csv")
    assert isinstance(info.value, FileNotFoundError)
    header = tmp_path / "h.csv"
    header.write_text("path,text\na.png,x\n")
    with pytest.raises(DataFormatError, match=r"h\.csv, line 1: the header has no column 'image'"):
        ImageTextDataset(header, skip_bad=True)
    quote = tmp_path / "q.csv"
    quote.write_text('image,caption\na.png,ok\na.png,"never closed\na.png,more\n')
    with pytest.raises(DataFormatError, match=r"q\.csv, line 3: CSV cannot be parsed"):
        ImageTextDataset(quote, skip_bad=True)
    (tmp_path / "blank.tsv").write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"blank\.tsv: empty file: expected a header row"):
        ImageTextDataset(tmp_path / "blank.tsv")
    empty = tmp_path / "e.jsonl"
    empty.write_text("{}\n")
    with pytest.raises(DataFormatError, match=r"no usable image-caption pairs \(1 rows skipped\)"):
        ImageTextDataset(empty, skip_bad=True)


def test_bad_arguments_are_named(tmp_path):
    write_png(tmp_path / "a.png", RED)
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(ArgumentError, match=r"cannot tell the format .*'\.json'"):
        ImageTextDataset(tmp_path / "p.json")
    (tmp_path / "p.jsonl").write_text('{"image": "a.png", "caption": "x"}\n')
    with pytest.raises(ArgumentError, match="sep must be None for a JSON Lines file"):
        ImageTextDataset(tmp_path / "p.jsonl", sep=",")
    with pytest.raises(ArgumentError, match="image_key must be a non-empty string"):
        ImageTextDataset(tmp_path / "p.jsonl", image_key="")
    with pytest.raises(ArgumentError, match="image_size must be >= 1"):
        ImageTextDataset(tmp_path / "p.jsonl", image_size=0)
    ds = create("dataset", "image-text", path=tmp_path / "p.jsonl", image_size=2)
    assert ds[0][0].shape == (3, 2, 2)
