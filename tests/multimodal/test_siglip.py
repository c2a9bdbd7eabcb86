"""SigLIP: parity with HF SiglipModel through our importer (padded text), the MAP head against
torch's MultiheadAttention, the training-step gradients, the paper's initialisation, errors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.hub.base import WeightImportError, rename_state
from paperlab.multimodal.siglip import (
    AttentionPoolingHead,
    SigLIP,
    prior_logit_bias,
    siglip_text_config,
    siglip_vision_config,
)

pytestmark = pytest.mark.note("D6")

TEXT = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=12, projection_size=24)
VISION = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              image_size=16, patch_size=4)


def hf_siglip(tmp_path):
    """A random tiny HF SiglipModel (text width 32 -> head 24 = image width), perturbed."""
    transformers = require("transformers")
    torch.manual_seed(0)
    cfg = transformers.SiglipConfig(text_config=TEXT, vision_config=VISION)
    ref = transformers.SiglipModel(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    return ref


def batch(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 16, 16, generator=g, dtype=dtype)
    ids = torch.randint(2, 50, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 1
    return images, ids, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_hf_siglip_model(tmp_path, dtype):
    """Embeddings and logits (scale and bias included) equal HF's; the padded rows are pooled
    at their last (padding) position, as HF does. Measured max error: float32 1.8e-7, float64
    2.2e-16."""
    ref = hf_siglip(tmp_path).to(dtype)
    ours = load_pretrained("siglip", tmp_path).to(dtype)
    images, ids, mask = batch(dtype)
    with torch.no_grad():
        r = ref(input_ids=ids, pixel_values=images, attention_mask=mask)
        o = ours(images, ids, mask)
    tol = dict(atol=2e-6, rtol=1e-5) if dtype == torch.float32 else {}
    assert_close(o.image_embeds, r.image_embeds, **tol, what="image_embeds")
    assert_close(o.text_embeds, r.text_embeds, **tol, what="text_embeds")
    assert_close(o.logits_per_image, r.logits_per_image, **tol, what="logits_per_image")
    # padded keys are really masked: changing padded ids before the last (pooled) position,
    # whose own id is its query, changes nothing
    ids2 = ids.clone()
    ids2[:, :-1][mask[:, :-1] == 0] = 7
    with torch.no_grad():
        assert_close(ours.encode_text(ids2, mask)[1:], o.text_embeds[1:], **tol, what="pad ids")


def test_training_step_gradients_equal_hf(tmp_path):
    """The sigmoid loss and every parameter's gradient equal HF's return_loss=True (same 1/B
    normalisation; the packed in_proj gradient split like the weights). Measured: loss equal,
    gradients max error 6e-8 (float32)."""
    ref = hf_siglip(tmp_path).train()
    ours = load_pretrained("siglip", tmp_path).train()
    images, ids, mask = batch()
    images = images[:3]
    loss_ref = ref(input_ids=ids, pixel_values=images, attention_mask=mask, return_loss=True).loss
    loss = ours.loss(images, ids, mask)
    assert_close(loss, loss_ref, atol=1e-5, what="loss")
    loss_ref.backward()
    loss.backward()
    from paperlab.hub.clip import IGNORE, reshape_vision
    from paperlab.hub.siglip import SIGLIP_RULES, split_in_proj

    theirs = {k: p.grad for k, p in ref.named_parameters()}
    theirs = split_in_proj(theirs, "vision_model.head.attention.", "vision_model.head.attention.")
    expected = reshape_vision(rename_state(theirs, SIGLIP_RULES, IGNORE))
    mine = dict(ours.named_parameters())
    assert set(expected) == set(mine)  # every parameter compared
    for name, grad in expected.items():
        assert_close(mine[name].grad, grad, atol=1e-5, rtol=1e-4, what=f"grad {name}")


def test_map_head_equals_torch_multihead_attention():
    """Our MAP head with the packed in_proj split three ways equals the same computation done
    by torch.nn.MultiheadAttention (float64, ~1e-16)."""
    torch.manual_seed(0)
    head = AttentionPoolingHead(16, 4, 24).double()
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).double()
    with torch.no_grad():
        a = head.attention
        mha.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        mha.out_proj.weight.copy_(a.out_proj.weight)
        mha.out_proj.bias.copy_(a.out_proj.bias)
    tokens = torch.randn(3, 7, 16, dtype=torch.float64)
    probe = head.probe.expand(3, -1, -1)
    attn = mha(probe, tokens, tokens, need_weights=False)[0]
    expected = (attn + head.ffn(head.norm(attn)))[:, 0]
    assert_close(head(tokens), expected, what="MAP head")


def test_paper_initialisation_and_prior_bias():
    model = SigLIP()
    assert model.logit_scale.item() == pytest.approx(math.log(10))
    assert model.scale().item() == pytest.approx(10.0)
    assert model.logit_bias.item() == -10.0
    assert prior_logit_bias(16) == pytest.approx(-math.log(15))
    assert prior_logit_bias(22027) == pytest.approx(-10.0, abs=1e-4)
    custom = SigLIP(logit_bias_init=prior_logit_bias(16), logit_scale_init=0.0)
    assert custom.logit_bias.item() == pytest.approx(-math.log(15))
    assert custom.scale().item() == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="embedding widths differ.*dim=64.*head_dim=32"):
        SigLIP(text=siglip_text_config(head_dim=32))
    with pytest.raises(ConfigError, match="pool='none'"):
        SigLIP(vision=siglip_vision_config(pool="mean"))
    model = SigLIP()
    with pytest.raises(ShapeError, match="32x32"):
        model.encode_image(torch.randn(2, 3, 16, 16))
    with pytest.raises(ShapeError, match="tokens must be"):
        model.head(torch.randn(2, 5, 8))


def test_importer_splits_in_proj_and_names_bad_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_siglip(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["vision_model.head.attention.in_proj_weight"] = torch.zeros(24, 24)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="wrong shape.*head.attention.q_proj.weight"):
        load_pretrained("siglip", tmp_path)


def test_siglip_recipe_trains_and_evaluates(tmp_path):
    """The ``siglip`` recipe through the Trainer: the sigmoid loss falls over 40 steps (from
    about 10 at b = -10) and the evaluation reports fractions."""
    import json

    from paperlab.recipes.clip import ContrastiveConfig
    from paperlab.training.trainer import train

    cfg = ContrastiveConfig(steps=40, batch_size=16, n_train=160, n_eval=30, warmup=4,
                            out=str(tmp_path), progress=False, dim=32, depth=1)
    summary = train("siglip", cfg)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["loss"] for r in logged[:5]) / 5
    last = sum(r["loss"] for r in logged[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert all(0.0 <= v <= 1.0 for v in summary.eval.values()) and "t2i@5" in summary.eval
