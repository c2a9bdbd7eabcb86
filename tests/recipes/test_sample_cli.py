"""``paperlab sample ldm``: PNGs from a trained run; clear one-line errors (note G1)."""

from __future__ import annotations

import pytest
from PIL import Image

from paperlab.cli import main

pytestmark = pytest.mark.note("G1")


def test_train_then_sample_writes_pngs(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["steps=2", "autoencoder_steps=1", "train_timesteps=10", "batch_size=8",
            "unet_channels=[16]", "unet_groups=4", "context_dim=8"]
    args = ["train", "ldm", "--out", str(run), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    out = tmp_path / "png"
    code = main(["sample", "ldm", "--run", str(run), "--prompt", "the digit seven",
                 "--prompt", "the digit one", "--num-images", "2", "--steps", "3",
                 "--guidance-scale", "2", "--out", str(out)])
    assert code == 0
    assert "4 images written" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "sample_0_0.png", "sample_0_1.png", "sample_1_0.png", "sample_1_1.png"]
    assert Image.open(out / "sample_0_0.png").mode == "L"
    # a class id for a prompt model, and too many steps: one line, status 2
    assert main(["sample", "ldm", "--run", str(run), "--label", "3", "--out", str(out)]) == 2
    assert "labels given" in capsys.readouterr().err
    assert main(["sample", "ldm", "--run", str(run), "--prompt", "x", "--steps", "11",
                 "--out", str(out)]) == 2
    assert "steps must be <= the 10 timesteps" in capsys.readouterr().err


def test_sample_needs_a_run_and_a_sampler(tmp_path, capsys):
    assert main(["sample", "ldm", "--run", str(tmp_path / "none"), "--prompt", "x"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["sample", "digits-mlp", "--run", str(tmp_path)]) == 2
    assert "has no sampler" in capsys.readouterr().err
