"""E2-E3 recipe ``face``: a margin loss on synthetic identities or an ImageFolder of
identities, verification of held-out identities, checkpoints and exact resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperlab import registry
from paperlab.errors import ConfigError
from paperlab.recipes.face import (
    FaceRecipeConfig,
    balanced_pairs,
    face_recipe,
    margin_losses,
    parse_loss_args,
)
from paperlab.training.trainer import train

pytestmark = pytest.mark.note("E3")


def _cfg(tmp: Path, **kw) -> FaceRecipeConfig:
    base = FaceRecipeConfig(
        steps=4, batch_size=16, warmup=1, identities=6, images_per_identity=4,
        heldout_identities=4, eval_pairs=200, image_size=16, embedding_dim=16, widths=(8, 16),
        blocks=(1, 1), progress=False, out=str(tmp),
    )  # fmt: skip
    return replace(base, **kw)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_registered_with_every_margin_loss():
    assert registry.get("recipe", "face").meta["config"] is FaceRecipeConfig
    assert {"softmax", "lsoftmax", "sphereface", "normface", "cosface", "arcface",
            "combined-margin", "partial-fc"} <= set(margin_losses())
    assert "clip" not in margin_losses()


@pytest.mark.parametrize("loss", ["softmax", "lsoftmax", "sphereface", "normface", "cosface",
                                  "arcface", "combined-margin", "partial-fc"])
def test_every_margin_loss_gives_a_finite_loss_and_gradients(tmp_path, loss):
    task = face_recipe(_cfg(tmp_path, loss=loss, identities=3, images_per_identity=2))
    images, labels = task.train_set[:6]
    value, _ = task.loss(task.model, (images, labels))
    value.backward()
    assert torch.isfinite(value)
    head = task.model.head.weight.grad
    assert head is not None and torch.isfinite(head).all()


def test_train_resume_is_exact_and_evaluates_heldout_identities(tmp_path):
    straight = tmp_path / "straight"
    summary = train("face", _cfg(straight, checkpoint_every=2))
    assert summary.step == 4 and summary.checkpoint is not None
    ev = summary.eval
    assert set(ev) == {"accuracy", "accuracy_std", "val@far1e-3", "tar@far1e-2"}
    assert 0.0 <= ev["accuracy"] <= 1.0
    resumed = tmp_path / "resumed"
    at_2 = sorted((straight / "checkpoints").glob("step-*"))[0]
    first = train("face", _cfg(resumed, checkpoint_every=2), resume=at_2)
    assert first.step == 4
    assert [m["loss"] for m in _metrics(resumed)] == [m["loss"] for m in _metrics(straight)][2:]
    assert first.eval == ev


def test_image_folder_of_identities_holds_out_whole_identities(tmp_path, capsys):
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for ident in range(10):
        (root / f"person_{ident}").mkdir(parents=True)
        base = rng.integers(0, 255, (20, 20, 3))
        for k in range(6):
            img = np.clip(base + rng.integers(-20, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"person_{ident}" / f"{k}.jpg")
    cfg = _cfg(tmp_path / "run", data=str(root), loss="cosface", eval_fraction=0.3, steps=2,
               eval_pairs=100)
    summary = train("face", cfg)
    assert 0.0 <= summary.eval["accuracy"] <= 1.0
    err = capsys.readouterr().err
    assert "60 images of 10 identities (7 identities for training, 3 held out" in err
    task = face_recipe(cfg)
    assert task.model.head.num_classes == 7
    assert sorted({int(task.train_set[i][1]) for i in range(len(task.train_set))}) == list(range(7))


def test_balanced_pairs_half_same_half_different():
    labels = torch.arange(5).repeat_interleave(4)
    a, b, same = balanced_pairs(labels, 20, seed=0)
    assert same.sum() == 10 and len(same) == 20
    assert torch.equal(labels[a] == labels[b], same) and (a != b).all()
    with pytest.raises(ConfigError, match="two images of one identity"):
        balanced_pairs(torch.arange(4), 10, seed=0)
    with pytest.raises(ConfigError, match="at least 10 of each"):
        balanced_pairs(torch.arange(3).repeat_interleave(2), 100, seed=0)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="loss must be one of"):
        _cfg(tmp_path, loss="clip").validate()
    with pytest.raises(ConfigError, match="loss_args expects key=value"):
        parse_loss_args("s30")
    assert parse_loss_args("s=30, m=0.4,easy_margin=true") == {"s": 30, "m": 0.4,
                                                              "easy_margin": True}
    with pytest.raises(ConfigError, match="do not fit loss"):
        face_recipe(_cfg(tmp_path, loss="cosface", loss_args="margin=3"))
