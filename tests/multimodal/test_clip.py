"""CLIP: parity with HF CLIPModel through our importer (both EOT rules, padded text), the text
tower alone, gradients of a training step, and the bad-input errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.hub.base import WeightImportError, rename_state
from paperlab.multimodal.clip import CLIP, CLIPConfig, clip_text_config, clip_vision_config
from paperlab.multimodal.text import TextTransformer, pool_index

pytestmark = pytest.mark.note("D5")

VOCAB, EOS, PAD = 50, 49, 1
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=12, bos_token_id=0, pad_token_id=PAD)
VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              image_size=16, patch_size=4)


def hf_clip(tmp_path, eos: int = EOS):
    """A random tiny HF CLIPModel, perturbed so no LayerNorm is the identity, saved."""
    transformers = require("transformers")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(text_config={**TEXT, "eos_token_id": eos},
                                  vision_config=VISION, projection_dim=24)
    ref = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    return ref


def batch(b_img: int = 4, dtype=torch.float32):
    """Images and three captions: full length, and two right-padded (mask 0 after EOT)."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b_img, 3, 16, 16, generator=g, dtype=dtype)
    ids = torch.randint(3, 45, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    for row, length in ((0, 10), (1, 7), (2, 5)):
        ids[row, length - 1] = EOS
        ids[row, length:] = PAD
        mask[row, length:] = 0
    return images, ids, mask


@pytest.mark.parametrize("eos, pool", [(EOS, "eos"), (2, "argmax")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_hf_clip_model(tmp_path, eos, pool, dtype):
    """image_embeds, text_embeds and logits equal HF's (measured max error: float32 0, HF
    runs the same kernels in the same order; float64 1e-15). eos 2 is HF's legacy argmax rule (EOS
    = 49 is the largest id here, so both rules agree; the next test tells them apart)."""
    ref = hf_clip(tmp_path, eos).to(dtype)
    ours = load_pretrained("clip", tmp_path).to(dtype)
    assert ours.config.text.pool == pool
    images, ids, mask = batch(dtype=dtype)
    with torch.no_grad():
        r = ref(input_ids=ids, pixel_values=images, attention_mask=mask)
        o = ours(images, ids, mask)
    tol = dict(atol=2e-6, rtol=1e-5) if dtype == torch.float32 else {}
    assert_close(o.image_embeds, r.image_embeds, **tol, what="image_embeds")
    assert_close(o.text_embeds, r.text_embeds, **tol, what="text_embeds")
    assert_close(o.logits_per_image, r.logits_per_image, **tol, what="logits_per_image")
    assert_close(o.logits_per_text, r.logits_per_text, **tol, what="logits_per_text")


def test_eos_rules_differ_where_hf_differs(tmp_path):
    """With EOT id 40 below other ids, "eos" (first 40) and "argmax" (largest id) read
    different tokens; each equals HF for its eos_token_id (40, and the legacy 2)."""
    _, _, mask = batch()
    ids = torch.tensor([[5, 48, 7, 40, 9, 9, 9, 9, 9, 9],
                        [5, 6, 40, 47, 8, 40, 1, 1, 1, 1],
                        [40, 12, 46, 3, 3, 1, 1, 1, 1, 1]])
    mask = torch.tensor([[1] * 10, [1] * 6 + [0] * 4, [1] * 5 + [0] * 5])
    first, largest = pool_index(ids, "eos", 40), pool_index(ids, "argmax")
    assert first.tolist() == [3, 2, 0] and largest.tolist() == [1, 3, 2]
    for eos, pool in ((40, "eos"), (2, "argmax")):
        folder = tmp_path / str(eos)
        ref = hf_clip(folder, eos)
        ours = load_pretrained("clip", folder)
        assert ours.config.text.pool == pool
        with torch.no_grad():
            r = ref.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
            o = ours.encode_text(ids, mask, normalize=False)
        assert_close(o, r, atol=2e-6, what=f"text features, eos {eos}")


def test_pool_rules_pick_the_documented_token():
    ids = torch.tensor([[5, 9, 3, 0], [7, 3, 8, 0]])
    assert pool_index(ids, "eos", 3).tolist() == [2, 1]
    assert pool_index(ids, "argmax").tolist() == [1, 2]
    assert pool_index(ids, "last").tolist() == [3, 3]
    with pytest.raises(ArgumentError, match="no end-of-text token"):
        pool_index(torch.tensor([[5, 6, 0]]), "eos", 3)


def test_training_step_gradients_equal_hf(tmp_path):
    """Backward of the symmetric InfoNCE loss: every parameter's gradient equals HF's
    (HF's return_loss=True is the same loss). Measured max error 2.4e-6 (float32)."""
    ref = hf_clip(tmp_path).train()
    ours = load_pretrained("clip", tmp_path).train()
    images, ids, mask = batch(b_img=3)
    ref(input_ids=ids, pixel_values=images, attention_mask=mask, return_loss=True).loss.backward()
    ours.loss(images, ids, mask).backward()
    from paperlab.hub.clip import CLIP_RULES, IGNORE, reshape_vision

    theirs = {k: p.grad for k, p in ref.named_parameters()}
    expected = reshape_vision(rename_state(theirs, CLIP_RULES, IGNORE))
    mine = dict(ours.named_parameters())
    assert set(expected) == set(mine)  # every parameter compared
    for name, grad in expected.items():
        assert_close(mine[name].grad, grad, atol=1e-5, rtol=1e-4, what=f"grad {name}")


def test_text_tower_ignores_padding_and_positions_after_eot():
    torch.manual_seed(0)
    tower = TextTransformer(vocab_size=20, max_length=8, dim=16, depth=1, num_heads=2,
                            mlp_dim=32, eos_token_id=3).eval()
    ids = torch.tensor([[5, 6, 3, 0, 0, 0]])
    other = torch.tensor([[5, 6, 3, 9, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    a = tower(ids, mask).pooled
    b = tower(other, mask).pooled  # causal and masked: tokens after EOT cannot matter
    c = tower(other).pooled  # causal alone: still invisible to the EOT position
    assert_close(a, b, what="padding content")
    assert_close(a, c, what="tokens after EOT")
    d = tower(torch.tensor([[5, 7, 3, 0, 0, 0]]), mask).pooled
    assert (a - d).abs().max() > 1e-3  # a real token does matter


def test_scale_is_clipped_at_100_as_in_the_paper():
    model = CLIP(projection_dim=8)
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0, rel=1e-6)


def test_configs_round_trip_through_json():
    from paperlab.multimodal.siglip import SigLIPConfig

    cfg = CLIPConfig(vision=clip_vision_config(dim=32), projection_dim=16)
    back = CLIPConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.vision, type(cfg.vision))
    assert CLIP(back).visual_projection.weight.shape == (16, 32)
    assert SigLIPConfig.from_json(SigLIPConfig().to_json()) == SigLIPConfig()


def test_bad_inputs_raise_clear_errors(tmp_path):
    model = CLIP(projection_dim=8)
    ids = torch.tensor([[5, 6, 3]])
    with pytest.raises(ShapeError, match="32x32"):
        model.encode_image(torch.randn(1, 3, 28, 28))
    with pytest.raises(ShapeError, match="max_length"):
        model.encode_text(torch.full((1, 40), 3))
    with pytest.raises(ArgumentError, match="vocab_size"):
        model.encode_text(torch.tensor([[5, 6, 3000]]))
    with pytest.raises(ShapeError, match="attention_mask"):
        model.encode_text(ids, torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="divisible by patch_size"):
        CLIP(vision=clip_vision_config(image_size=30, patch_size=8))
    with pytest.raises(ConfigError, match="pool"):
        CLIPConfig(vision=clip_vision_config(pool="none")).check()
    with pytest.raises(ConfigError, match="eos_token_id"):
        CLIP(text=clip_text_config(eos_token_id=None))


def test_importer_names_missing_and_unexpected_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_clip(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("text_projection.weight")
    state["vision_model.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="vision_model.extra.weight"):
        load_pretrained("clip", tmp_path)
    state.pop("vision_model.extra.weight")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="missing.*text_projection.weight"):
        load_pretrained("clip", tmp_path)
    with pytest.raises(ArgumentError, match="does not exist"):
        load_pretrained("clip", tmp_path / "nowhere")


def test_clip_recipe_trains_and_evaluates(tmp_path):
    """The ``clip`` recipe through the Trainer: the loss falls over 40 steps and the evaluation
    reports zero-shot accuracy and recall@1/5 as fractions."""
    import json

    from paperlab.recipes.clip import ContrastiveConfig
    from paperlab.training.trainer import train

    cfg = ContrastiveConfig(steps=40, batch_size=16, n_train=160, n_eval=30, warmup=4,
                            out=str(tmp_path), progress=False, dim=32, depth=1)
    summary = train("clip", cfg)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["loss"] for r in logged[:5]) / 5
    last = sum(r["loss"] for r in logged[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert set(summary.eval) == {"zero_shot_heldout", "zero_shot_heldout_5way", "zero_shot_seen",
                                 "i2t@1", "i2t@5", "t2i@1", "t2i@5"}
    assert all(0.0 <= v <= 1.0 for v in summary.eval.values())
    assert summary.eval["i2t@5"] >= summary.eval["i2t@1"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["clip", "siglip"])
def test_recipe_under_torchrun_equals_one_process(tmp_path, recipe):
    """torchrun, 2 gloo processes with 8 pairs each: the global-batch loss (all-gather for
    CLIP, ring for SigLIP) makes every step equal a single process on the 16 pairs (measured
    loss difference ~5e-7 over 6 steps)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    common = ["-m", "paperlab", "train", recipe, "--no-progress", "--set", "steps=6",
              "--set", "batch_size=16", "--set", "n_train=128", "--set", "n_eval=30"]
    runs = {
        "one": [sys.executable, *common, "--out", "one"],
        "two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", *common, "--out", "two"],
    }
    for args in runs.values():
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    losses = {
        name: [json.loads(line)["loss"]
               for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in runs
    }
    assert len(losses["one"]) == len(losses["two"]) == 6
    for a, b in zip(losses["one"], losses["two"]):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), losses
