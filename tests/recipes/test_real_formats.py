"""The D-series recipes train on the user's own files: image-text pairs (CSV, JSONL) for
``clip``, ``siglip`` and ``blip``, an ImageFolder for ``vit`` and ``mae``.

Each test writes its own small data set with Pillow into tmp_path: 24 coloured squares
("a small red square at the left", 4 colours x 2 sizes x 3 positions, all captions
distinct) and a 3-class folder of 8 squares per colour. Recipes run a few Trainer steps
(tiny models) directly or through ``paperlab train`` in-process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from paperlab.cli import main
from paperlab.data.formats.common import DataFormatError
from paperlab.errors import ConfigError
from paperlab.recipes.data_sources import retrieval_groups, seeded_split, to_grayscale
from paperlab.training.trainer import train

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
          "yellow": (230, 220, 30)}
SIZES = {"small": 4, "big": 8}
POSITIONS = {"left": 1, "middle": 6, "right": 11}
SMALL = ["--set", "dim=16", "--set", "depth=1", "--set", "patch_size=8"]


def square(path: Path, color: tuple[int, int, int], x: int, side: int, size: int = 16) -> Path:
    """A black ``size`` x ``size`` PNG with a ``side``-pixel square of ``color`` at column x."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size))
    y = (size - side) // 2
    ImageDraw.Draw(img).rectangle([x, y, min(x + side, size) - 1, y + side - 1], fill=color)
    img.save(path)
    return path


def pairs(folder: Path) -> list[tuple[str, str]]:
    """(relative image path, caption) of the 24 squares, written under ``folder/img``."""
    out = []
    for cname, rgb in COLORS.items():
        for sname, side in SIZES.items():
            for pname, x in POSITIONS.items():
                rel = f"img/{cname}_{sname}_{pname}.png"
                square(folder / rel, rgb, min(x, 16 - side), side)
                out.append((rel, f"a {sname} {cname} square at the {pname}"))
    return out


def write_csv(path: Path, rows: list[tuple[str, str]], header=("image", "caption")) -> Path:
    lines = [",".join(header)] + [f"{a},{b}" for a, b in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"image": a, "caption": b}) + "\n" for a, b in rows))
    return path


def image_folder(root: Path, per_class: int = 8) -> Path:
    """root/<red|green|blue>/<i>.png: squares of the class colour at varied places."""
    for cname in ("red", "green", "blue"):
        for i in range(per_class):
            square(root / cname / f"{i}.png", COLORS[cname], x=i % 6, side=4 + i % 3, size=12)
    return root


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def one_error_line(err: str) -> str:
    """The single ``paperlab: error:`` line of ``err``, its last line, with no traceback
    (the recipe's start-up report may come before it)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("paperlab: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def assert_fractions(values: dict[str, float], keys: set[str]) -> None:
    assert keys <= set(values), (keys, set(values))
    for k in keys:
        assert 0.0 <= values[k] <= 1.0, (k, values[k])


RECALL = {"i2t@1", "i2t@5", "t2i@1", "t2i@5"}


# --- image-text pairs ------------------------------------------------------------------------


def test_clip_trains_on_a_csv_of_pairs(tmp_path, capsys):
    """CLIP on 24 CSV pairs (18 train images, 6 held out): the loss falls, the evaluation is
    held-out recall@1/5 both ways plus skipped_rows (no zero-shot keys on a data file), and
    the start-up report gives the counts and the word-level vocabulary note."""
    from paperlab.recipes.clip import ContrastiveConfig

    data = write_csv(tmp_path / "pairs.csv", pairs(tmp_path))
    cfg = ContrastiveConfig(data=str(data), steps=30, batch_size=8, warmup=3, lr=3e-3, dim=16,
                            depth=1, patch_size=8, eval_fraction=0.25, log_every=1,
                            progress=False, out=str(tmp_path / "run"))
    summary = train("clip", cfg)
    err = capsys.readouterr().err
    assert "24 image-caption pairs (18 train, 6 held out" in err
    assert "word-level vocabulary of 13 words from the 18 training captions" in err
    assert set(summary.eval) == RECALL | {"skipped_rows"}
    assert_fractions(summary.eval, RECALL)
    assert summary.eval["i2t@5"] >= summary.eval["i2t@1"]
    assert summary.eval["skipped_rows"] == 0.0
    ls = losses(tmp_path / "run")
    assert all(math.isfinite(v) for v in ls)
    assert sum(ls[-5:]) / 5 < 0.9 * sum(ls[:5]) / 5, ls


@pytest.mark.parametrize("recipe", ["siglip", "blip"])
def test_siglip_and_blip_train_on_jsonl_pairs(tmp_path, recipe):
    """SigLIP and BLIP on the JSONL form: finite losses, recall (and for BLIP ITM accuracy
    and caption exactness) as fractions on the held-out pairs."""
    from paperlab.recipes.blip import BLIPRecipeConfig

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(tmp_path))
    cfg = BLIPRecipeConfig(data=str(data), steps=8, batch_size=8, warmup=2, dim=16, depth=1,
                           patch_size=8, projection_dim=8, log_every=1, progress=False,
                           out=str(tmp_path / "run"))
    summary = train(recipe, cfg)
    assert all(math.isfinite(v) for v in losses(tmp_path / "run"))
    keys = RECALL | ({"itm_accuracy", "caption_exact"} if recipe == "blip" else set())
    assert set(summary.eval) == keys | {"skipped_rows"}
    assert_fractions(summary.eval, keys)


def test_tokenizer_folder_is_used_and_a_missing_one_is_a_clear_error(tmp_path, capsys):
    """A WordPiece vocab.txt folder tokenises the captions (BLIP gets [DEC]/[ENC] added to
    it; no vocabulary note); a tokenizer folder that does not exist is one line, exit 2."""
    rows = pairs(tmp_path)
    data = write_csv(tmp_path / "pairs.csv", rows)
    words = sorted({w for _, c in rows for w in c.split()})
    vocab = tmp_path / "tok"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                *words]) + "\n")
    common = ["train", "blip", "--no-progress", "--set", f"data={data}", "--set", "steps=2",
              "--set", "batch_size=4", *SMALL, "--set", "projection_dim=8"]
    code, out, err = cli([*common, "--set", f"tokenizer={vocab}", "--out",
                          str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "word-level" not in err and "itm_accuracy" in out
    code, _, err = cli([*common, "--set", f"tokenizer={tmp_path / 'nowhere'}", "--out",
                        str(tmp_path / "b")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "nowhere" in line and "does not exist" in line


def test_a_bad_row_names_file_and_line_and_skip_bad_reports_the_count(tmp_path, capsys):
    """Row 5 names a missing image, row 8 has three fields: without skip_bad, exit 2 with one
    line naming the file and line 5; with skip_bad the run trains on the other 22 pairs and
    reports "2 bad rows skipped" at start and skipped_rows 2 in the evaluation."""
    rows = pairs(tmp_path)
    rows[3] = ("img/gone.png", rows[3][1])
    bad = write_csv(tmp_path / "pairs.csv", rows)
    text = bad.read_text().splitlines()
    text[7] += ",extra"
    bad.write_text("\n".join(text) + "\n")
    common = ["train", "clip", "--no-progress", "--set", f"data={bad}", "--set", "steps=3",
              "--set", "batch_size=4", *SMALL]
    code, _, err = cli([*common, "--out", str(tmp_path / "a")], capsys)
    assert code == 2
    assert f"{bad}, line 5: image file not found" in one_error_line(err)
    code, out, err = cli([*common, "--set", "skip_bad=true", "--out", str(tmp_path / "b")],
                         capsys)
    assert code == 0, err
    assert "22 image-caption pairs" in err
    assert "2 bad rows skipped: 1 image file not found, 1 expected 2 fields" in err
    assert err.count("bad rows skipped") == 1
    assert "skipped_rows 2.0000" in out
    assert math.isfinite(losses(tmp_path / "b")[-1])


@pytest.mark.slow
def test_pairs_under_torchrun_equal_one_process_and_report_once(tmp_path):
    """torchrun, 2 gloo processes on a CSV with one bad row (skip_bad): the report line comes
    once (rank 0 only) and the 6 losses equal the single process's (measured: identical to
    6 decimals)."""
    import os
    import subprocess
    import sys

    data = write_csv(tmp_path / "pairs.csv", [("img/gone.png", "a lost square"),
                                             *pairs(tmp_path)])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    common = ["-m", "paperlab", "train", "clip", "--no-progress", "--set", f"data={data}",
              "--set", "steps=6", "--set", "batch_size=8", "--set", "skip_bad=true", *SMALL]
    runs = {"one": [sys.executable, *common, "--out", "one"],
            "two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", *common, "--out", "two"]}
    for name, args in runs.items():
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.count("1 bad row skipped: 1 image file not found") == 1, name
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (one, two)


@pytest.mark.parametrize("sets, message", [
    (["eval_fraction=0"], "eval_fraction must be in (0, 1), got 0.0"),
    (["tokenizer=tok"], "tokenizer applies to data=FILE"),
    (["data=nowhere.csv"], "nowhere.csv: image-text list file not found"),
    (["data=PAIRS", "image_size=10", "patch_size=4"], "not divisible by patch_size=4"),
    (["data=PAIRS", "caption_key=title"], "the header has no column 'title' (caption_key)"),
])
def test_pair_config_errors_are_one_line(tmp_path, capsys, sets, message):
    data = write_csv(tmp_path / "pairs.csv", pairs(tmp_path))
    argv = ["train", "siglip", "--no-progress", "--out", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s.replace("PAIRS", str(data))]
    code, _, err = cli(argv, capsys)
    assert code == 2
    assert message in one_error_line(err)


# --- ImageFolder -----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_vit_trains_on_an_image_folder(tmp_path, capsys, channels):
    """ViT on 3 classes x 8 images (12 x 12 PNGs resized to 8 x 8; grayscale or RGB): 2 of
    each class held out, the loss falls and the held-out accuracy beats chance (1/3; measured
    6/6 for both after 60 steps)."""
    from paperlab.recipes.vision import ViTRecipeConfig

    root = image_folder(tmp_path / "folder")
    cfg = ViTRecipeConfig(data=str(root), in_channels=channels, eval_fraction=0.25, steps=60,
                          lr=3e-3, batch_size=9, warmup=2, patch_size=4, dim=16, depth=1,
                          mlp_dim=32, log_every=1, progress=False, out=str(tmp_path / "run"))
    summary = train("vit", cfg)
    assert "24 images in 3 classes (18 train, 6 held out" in capsys.readouterr().err
    assert set(summary.eval) == {"accuracy", "skipped_rows"}
    assert_fractions(summary.eval, {"accuracy"})
    assert summary.eval["accuracy"] * 6 == pytest.approx(round(summary.eval["accuracy"] * 6))
    assert summary.eval["accuracy"] >= 0.5
    ls = losses(tmp_path / "run")
    assert sum(ls[-5:]) / 5 < 0.6 * sum(ls[:5]) / 5, ls


def test_mae_trains_on_an_image_folder_with_a_corrupt_image(tmp_path, capsys):
    """A corrupt PNG in the folder: without skip_bad, exit 2 naming the file; with skip_bad it
    is dropped at start (reported once), MAE trains and reports reconstruction MSE, the
    linear probe's accuracy and skipped_rows 1."""
    root = image_folder(tmp_path / "folder")
    broken = root / "green" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    common = ["train", "mae", "--no-progress", "--set", f"data={root}", "--set", "steps=6",
              "--set", "batch_size=8", "--set", "dim=16", "--set", "depth=1",
              "--set", "decoder_dim=16", "--set", "patch_size=4", "--set", "in_channels=3"]
    code, _, err = cli([*common, "--out", str(tmp_path / "a")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert str(broken) in line and "cannot read image" in line
    code, out, err = cli([*common, "--set", "skip_bad=true", "--out", str(tmp_path / "b")],
                         capsys)
    assert code == 0, err
    assert "1 bad row skipped: 1 cannot read image" in err and err.count("skipped:") == 1
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text()
            .splitlines()]
    last = rows[-1]
    assert 0.0 < last["eval_reconstruction_mse"] < 1.0
    assert 0.0 <= last["eval_probe_accuracy"] <= 1.0
    assert last["eval_skipped_rows"] == 1.0


def test_folder_config_errors(tmp_path, capsys):
    """image_size / in_channels without data, and in_channels=2: one-line errors, exit 2."""
    for sets, message in ((["image_size=16"], "the digits are 8 x 8 grayscale"),
                          ([f"data={tmp_path}", "in_channels=2"], "in_channels must be 1"),
                          ([f"data={tmp_path / 'nowhere'}"], "image folder root not found")):
        argv = ["train", "vit", "--no-progress", "--out", str(tmp_path / "run")]
        for s in sets:
            argv += ["--set", s]
        code, _, err = cli(argv, capsys)
        assert code == 2 and message in one_error_line(err)


# --- the shared pieces -----------------------------------------------------------------------


def test_seeded_split_keeps_groups_together_and_stratifies():
    keys = [f"img{i // 2}" for i in range(20)]  # 10 images with 2 captions each
    train_a, held_a = seeded_split(keys, 0.3, seed=1)
    assert sorted(train_a + held_a) == list(range(20))
    assert len({keys[i] for i in held_a}) == 3
    assert not {keys[i] for i in held_a} & {keys[i] for i in train_a}
    assert seeded_split(keys, 0.3, seed=1) == (train_a, held_a)
    assert any(seeded_split(keys, 0.3, seed=s)[1] != held_a for s in range(2, 6))
    labels = [0] * 10 + [1] * 4 + [2]
    train, held = seeded_split(range(15), 0.25, seed=0, strata=labels)
    assert [sum(labels[i] == c for i in held) for c in range(3)] == [2, 1, 0]
    with pytest.raises(ConfigError, match="need at least 2"):
        seeded_split(["one", "one"], 0.5, seed=0)
    with pytest.raises(ConfigError, match="eval_fraction must be in"):
        seeded_split(keys, 1.0, seed=0)


def test_retrieval_groups_drop_repeated_captions_and_share_images():
    image_rows, text_rows, index = retrieval_groups(
        ["a", "a", "b", "c"], ["x", "y", "x", "z"])
    assert text_rows == [0, 1, 3]  # the second "x" (image b) is ambiguous: dropped
    assert image_rows == [0, 3] and index == [0, 0, 1]  # b keeps no caption: dropped


def test_to_grayscale_matches_pillow(tmp_path):
    from PIL import Image

    from paperlab.data.formats.common import load_image

    rgb = torch.randint(0, 256, (5, 7, 3), generator=torch.Generator().manual_seed(0))
    path = tmp_path / "x.png"
    Image.fromarray(rgb.to(torch.uint8).numpy()).save(path)
    ours = to_grayscale(load_image(path))
    with Image.open(path) as img:
        pillow = torch.from_numpy(np.array(img.convert("L"))).float()
    assert ours.shape == (1, 5, 7)
    assert (ours[0] * 255 - pillow).abs().max() <= 0.51  # Pillow rounds to integers


def test_bad_row_error_type_is_a_paperlab_error():
    from paperlab.errors import PaperlabError

    assert issubclass(DataFormatError, PaperlabError)
