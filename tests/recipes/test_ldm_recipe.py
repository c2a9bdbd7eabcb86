"""G1 recipe ``ldm``: the autoencoder stage then the diffusion stage through the shared Trainer,
on the digits (prompt or class) and on a captions file; the saved run reloads for sampling."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from paperlab import registry
from paperlab.errors import ConfigError
from paperlab.recipes import ldm as recipe
from paperlab.training.trainer import train

pytestmark = pytest.mark.note("G1")

TINY = dict(steps=3, autoencoder_steps=2, train_timesteps=10, batch_size=16, progress=False,
            unet_channels=(16,), unet_groups=4, context_dim=8)


def test_registered_with_a_sampler():
    entry = registry.get("recipe", "ldm")
    assert entry.meta["config"] is recipe.LDMConfig and entry.meta["sample"] is recipe.sample_ldm
    assert registry.get("recipe", "ldm-autoencoder").meta["config"] is recipe.LDMAutoencoderConfig


def test_two_stages_then_reload_and_sample(tmp_path):
    out = tmp_path / "run"
    cfg = recipe.LDMConfig(**TINY, out=str(out))
    summary = train("ldm", cfg)
    assert summary.step == 3 and "heldout_loss" in summary.eval
    stage1 = json.loads((out / "autoencoder" / "config.json").read_text())
    assert stage1["recipe"] == "ldm-autoencoder" and stage1["steps"] == 2
    assert (out / "autoencoder" / "metrics.jsonl").read_text().count("\n") == 2
    assert (out / "tokenizer.json").is_file()
    model = recipe.load_ldm(out)
    assert float(model.scaling_factor) != 1.0
    paths = recipe.sample_ldm(out, tmp_path / "png", prompts=["the digit seven"],
                              num_images=2, steps=3)
    assert len(paths) == 2 and Image.open(paths[0]).size == (64, 64)
    # a second run reuses the finished first stage instead of training it again
    again = recipe.LDMConfig(**{**TINY, "steps": 1}, out=str(out))
    before = (out / "autoencoder" / "metrics.jsonl").stat().st_mtime_ns
    train("ldm", again)
    assert (out / "autoencoder" / "metrics.jsonl").stat().st_mtime_ns == before


def test_class_condition_and_captions_file(tmp_path):
    cfg = recipe.LDMConfig(**TINY, condition="class", out=str(tmp_path / "cls"))
    train("ldm", cfg)
    model = recipe.load_ldm(tmp_path / "cls")
    assert model.condition.kind == "class"
    images = model.generate(labels=[3], steps=2, guidance_scale=2.0)
    assert images.shape == (1, 1, 8, 8)

    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for i in range(8):
        arr = (torch.rand(8, 8, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
        rows.append(f"{i}.png,a {'red' if i % 2 else 'blue'} square")
    (folder / "captions.csv").write_text("image,caption\n" + "\n".join(rows) + "\n")
    cfg = recipe.LDMConfig(**{**TINY, "batch_size": 4}, data=str(folder / "captions.csv"),
                           out=str(tmp_path / "file"))
    train("ldm", cfg)
    model = recipe.load_ldm(tmp_path / "file")
    assert model.generate("a red square", steps=2).shape == (1, 1, 8, 8)


def test_bad_config():
    with pytest.raises(ConfigError, match="condition must be one of"):
        recipe.LDMConfig(condition="text").validate()
    with pytest.raises(ConfigError, match="condition=class is for the digits"):
        recipe.LDMConfig(condition="class", data="x.csv").validate()
    with pytest.raises(ConfigError, match="image_size"):
        recipe.LDMConfig(image_size=16).validate()
