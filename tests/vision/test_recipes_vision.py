"""The ``vit`` and ``mae`` recipes train through the Trainer and evaluate; the linear probe."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from paperlab.recipes.vision import MAERecipeConfig, ViTRecipeConfig, linear_probe
from paperlab.training.trainer import train

pytestmark = pytest.mark.note("D3", "D4")


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_vit_recipe_trains_and_reports_accuracy(tmp_path):
    cfg = ViTRecipeConfig(steps=40, batch_size=64, warmup=4, log_every=1, progress=False,
                          patch_size=4, dim=32, depth=1, out=str(tmp_path))
    summary = train("vit", cfg)
    assert summary.step == 40 and summary.checkpoint is not None
    assert summary.eval["accuracy"] > 0.5  # chance is 0.1; 40 steps of a 1-layer ViT
    losses = _losses(tmp_path)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_mae_recipe_trains_and_reports_reconstruction_and_probe(tmp_path):
    cfg = MAERecipeConfig(steps=30, batch_size=64, warmup=3, log_every=1, progress=False,
                          dim=16, depth=1, decoder_dim=16, decoder_depth=1,
                          out=str(tmp_path))
    summary = train("mae", cfg)
    assert summary.step == 30
    assert set(summary.eval) == {"reconstruction_mse", "probe_accuracy"}
    assert 0.0 < summary.eval["reconstruction_mse"] < 0.2  # at init it is ~1
    assert summary.eval["probe_accuracy"] > 0.3  # chance is 0.1
    losses = _losses(tmp_path)
    assert losses[-1] < 0.5 * losses[0]
    again = train("mae", replace(cfg, out=str(tmp_path / "again")))
    assert again.loss == summary.loss  # masks come from the per-step seeded RNG


def test_linear_probe_separates_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=g)
    centres = torch.randn(3, 8, generator=g) * 4
    feats = centres[labels] + torch.randn(300, 8, generator=g)
    assert linear_probe(feats[:200], labels[:200], feats[200:], labels[200:]) > 0.95
    noise = torch.randn(300, 8, generator=g)
    assert linear_probe(noise[:200], labels[:200], noise[200:], labels[200:]) < 0.6
