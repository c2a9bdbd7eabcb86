"""BLIP: parity with HF BlipForImageTextRetrieval (ITM logits, ITC cosine similarities) and
BlipForConditionalGeneration (LM logits, loss, greedy captions) through our importer; the
hard-negative sampler; the three losses train; bad inputs give clear errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.hub.base import WeightImportError
from paperlab.multimodal.blip import (
    BLIP,
    BLIPConfig,
    BLIPTextConfig,
    blip_vision_config,
    sample_hard_negatives,
)

pytestmark = pytest.mark.note("D7")

VOCAB, PAD, BOS, SEP = 40, 0, 30, 3
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, bos_token_id=BOS,
            sep_token_id=SEP, pad_token_id=PAD, eos_token_id=SEP)
VISION = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              image_size=16, patch_size=4)


def hf_blip(tmp_path, kind: str, noise: float = 0.05, **extra):
    """A random tiny HF BLIP (retrieval or captioning), perturbed so no LayerNorm is the
    identity and no bias is zero, saved to ``tmp_path``."""
    transformers = require("transformers")
    torch.manual_seed(0)
    cfg = transformers.BlipConfig(text_config={**TEXT, **extra}, vision_config=VISION,
                                  image_text_hidden_size=20)
    cls = {"itm": transformers.BlipForImageTextRetrieval,
           "caption": transformers.BlipForConditionalGeneration}[kind]
    ref = cls(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(noise * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    return ref


def batch(dtype=torch.float32):
    """Three images and three captions: full length and two right-padded."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 16, 16, generator=g, dtype=dtype)
    ids = torch.randint(4, 30, (3, 9), generator=g)
    ids[:, 0] = 2
    mask = torch.ones(3, 9, dtype=torch.long)
    for row, length in ((0, 9), (1, 6), (2, 4)):
        ids[row, length - 1] = SEP
        ids[row, length:] = PAD
        mask[row, length:] = 0
    return images, ids, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_itm_and_itc_equal_hf_retrieval(tmp_path, dtype):
    """ITM logits (use_itm_head=True) and ITC cosine similarities (use_itm_head=False) equal
    HF's. Measured max abs error: float32 9e-8 (ITM logits ~0.5), 1.3e-7 (cosine);
    float64 2e-16."""
    ref = hf_blip(tmp_path, "itm").to(dtype)
    ours = load_pretrained("blip", tmp_path).to(dtype)
    assert ours.config.encoder and not ours.config.decoder
    images, ids, mask = batch(dtype)
    with torch.no_grad():
        r_itm = ref(input_ids=ids, pixel_values=images, attention_mask=mask).itm_score
        r_sim = ref(input_ids=ids, pixel_values=images, attention_mask=mask,
                    use_itm_head=False).itm_score
        o_itm = ours.itm_logits(images, ids, mask)
        o_sim = ours.encode_image(images) @ ours.encode_text(ids, mask).T
    tol = dict(atol=5e-6, rtol=1e-5) if dtype == torch.float32 else {}
    assert_close(o_itm, r_itm, **tol, what="ITM logits")
    assert_close(o_sim, r_sim, **tol, what="ITC cosine similarity")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lm_logits_and_loss_equal_hf_captioning(tmp_path, dtype):
    """LM logits given pixel_values and input_ids, and the label-smoothed loss (HF's
    label_smoothing=0.1, labels = ids with padding -100), equal HF's. Measured max abs error
    on the logits (size ~1): float32 2.4e-7, float64 5e-16."""
    ref = hf_blip(tmp_path, "caption", label_smoothing=0.1).to(dtype)
    ours = load_pretrained("blip", tmp_path).to(dtype)
    assert ours.config.decoder and not ours.config.encoder
    assert ours.config.label_smoothing == pytest.approx(0.1)
    images, ids, mask = batch(dtype)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        r = ref(pixel_values=images, input_ids=ids, attention_mask=mask, labels=labels)
        logits = ours.lm_logits(images, ids, mask)
        loss = ours.lm_loss(ours.image_tokens(images), ids, mask)  # bos_token_id replaces ids[:, 0]
        bos_ids = ids.clone()
        bos_ids[:, 0] = BOS
        r_bos = ref(pixel_values=images, input_ids=bos_ids, attention_mask=mask, labels=labels)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else {}
    assert_close(logits, r.logits, **tol, what="LM logits")
    assert_close(loss, r_bos.loss, **tol, what="LM loss (label smoothing 0.1)")


def test_greedy_captions_equal_hf_generate(tmp_path):
    """Greedy decoding from [BOS] until [SEP] gives HF generate(do_sample=False)'s ids. The
    weights are perturbed more (0.3) so that the three images get three different captions
    and one row stops at [SEP] (id 26 here) and is padded, as HF pads it."""
    from paperlab.multimodal.capfilt import generate_captions

    ref = hf_blip(tmp_path, "caption", noise=0.3, sep_token_id=26)
    ours = load_pretrained("blip", tmp_path)
    images = 3 * batch()[0]
    with torch.no_grad():
        r = ref.generate(pixel_values=images, max_new_tokens=8, do_sample=False, num_beams=1)
    o = generate_captions(ours, images, max_new_tokens=8, greedy=True)
    assert len({tuple(row) for row in r.tolist()}) == 3  # the image matters
    assert r[0, -2].item() == 26 and r[0, -1].item() == PAD  # a row that ended
    assert o.tolist() == r.tolist()


def hf_grads_as_ours(ref) -> dict[str, torch.Tensor]:
    """HF's parameter gradients under our names (the importer's own mapping, qkv split)."""
    from paperlab.hub.base import rename_state
    from paperlab.hub.blip import BLIP_RULES, IGNORE, split_qkv

    grads = {k: p.grad for k, p in ref.named_parameters() if p.grad is not None}
    return split_qkv(rename_state(grads, BLIP_RULES, IGNORE))


def assert_grads_equal(ours, ref, count: int) -> None:
    theirs = hf_grads_as_ours(ref)
    mine = dict(ours.named_parameters())
    assert len(theirs) == count
    for name, grad in theirs.items():
        assert_close(mine[name].grad, grad, atol=2e-6, rtol=1e-4, what=f"grad {name}")


def test_gradients_of_the_lm_loss_equal_hf(tmp_path):
    """Backward of the label-smoothed LM loss: all 99 parameter gradients (vision, decoder,
    head) equal HF's. Measured max abs error 7e-8 (largest gradient 0.3)."""
    ref = hf_blip(tmp_path, "caption", label_smoothing=0.1).train()
    ours = load_pretrained("blip", tmp_path).train()
    images, ids, mask = batch()
    ids[:, 0] = BOS
    ref(pixel_values=images, input_ids=ids, attention_mask=mask,
        labels=ids.masked_fill(mask == 0, -100)).loss.backward()
    ours.lm_loss(ours.image_tokens(images), ids, mask).backward()
    assert_grads_equal(ours, ref, 99)


def test_gradients_through_itm_and_itc_equal_hf(tmp_path):
    """The same random cotangent on the ITM logits and on the cosine similarities, back
    through both models: all 100 parameter gradients (text encoder, heads, vision) equal
    HF's. Measured max abs error 1.2e-6 (largest gradient 4.8)."""
    ref = hf_blip(tmp_path, "itm")
    ours = load_pretrained("blip", tmp_path)
    images, ids, mask = batch()
    g = torch.Generator().manual_seed(4)
    w_itm, w_sim = torch.randn(3, 2, generator=g), torch.randn(3, 3, generator=g)
    r_itm = ref(input_ids=ids, pixel_values=images, attention_mask=mask).itm_score
    r_sim = ref(input_ids=ids, pixel_values=images, attention_mask=mask,
                use_itm_head=False).itm_score
    ((r_itm * w_itm).sum() + (r_sim * w_sim).sum()).backward()
    o_sim = ours.encode_image(images) @ ours.encode_text(ids, mask).T
    ((ours.itm_logits(images, ids, mask) * w_itm).sum() + (o_sim * w_sim).sum()).backward()
    assert_grads_equal(ours, ref, 100)


def test_import_refuses_bad_checkpoints(tmp_path):
    ref = hf_blip(tmp_path, "caption")
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    state["text_decoder.cls.predictions.decoder.weight"] = torch.randn(VOCAB, 32)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="untied"):
        load_pretrained("blip", tmp_path)
    state.pop("text_decoder.cls.predictions.decoder.weight")
    state["text_decoder.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="text_decoder.extra.weight"):
        load_pretrained("blip", tmp_path)
    state.pop("text_decoder.extra.weight")
    state.pop("text_decoder.cls.predictions.bias")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="missing.*lm_head.bias"):
        load_pretrained("blip", tmp_path)
    del ref
    transformers = require("transformers")
    plain = tmp_path / "plain"  # HF's BlipModel (text_model.*): not one of the two layouts
    cfg = transformers.BlipConfig(text_config=TEXT, vision_config=VISION)
    transformers.BlipModel(cfg).save_pretrained(plain)
    with pytest.raises(ConfigError, match="neither text_encoder"):
        load_pretrained("blip", plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArgumentError, match="no config.json"):
        load_pretrained("blip", empty)


# --- our model alone -------------------------------------------------------------------------


def small(**kw) -> BLIP:
    text = BLIPTextConfig(vocab_size=20, max_length=10, dim=16, depth=1, num_heads=2, mlp_dim=32,
                          pad_token_id=0, eos_token_id=3, bos_token_id=5, enc_token_id=6)
    vision = blip_vision_config(image_size=8, patch_size=4, dim=16, depth=1, num_heads=2,
                                mlp_dim=32)
    return BLIP(BLIPConfig(vision=vision, text=text, embed_dim=8, **kw))


def test_hard_negatives_follow_the_similarity_and_skip_positives():
    """Draws follow softmax(sim) + 1e-4 over the negatives: a 4-nat gap gives ~e^4 : 1."""
    sim = torch.tensor([[0.0, 4.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    same = torch.eye(3, dtype=torch.bool)
    same[2, 1] = True  # text 1 is a duplicate of image 2's caption
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(sim, same, g) for _ in range(4000)])
    assert not bool(((draws[:, 0] == 0) | (draws[:, 1] == 1) | (draws[:, 2] == 2)).any())
    assert bool((draws[:, 2] == 0).all())  # the only negative left for row 2
    p1 = float((draws[:, 0] == 1).double().mean())
    expected = (torch.e**4 / (torch.e**4 + 2) + 1e-4) / (torch.e**4 / (torch.e**4 + 2)
                                                         + 1 / (torch.e**4 + 2) + 2e-4)
    assert abs(p1 - expected) < 4 * (expected * (1 - expected) / 4000) ** 0.5
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sample_hard_negatives(sim, same, g1), sample_hard_negatives(sim, same, g2))
    with pytest.raises(ArgumentError, match="no negative"):
        sample_hard_negatives(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool))


def test_losses_are_finite_and_train_every_parameter():
    torch.manual_seed(0)
    model = small()
    images = torch.rand(4, 3, 8, 8)
    ids = torch.tensor([[2, 7, 8, 3, 0], [2, 9, 3, 0, 0], [2, 10, 11, 12, 3], [2, 13, 3, 0, 0]])
    mask = ids != 0
    out = model(images, ids, mask, generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(t) for t in out)
    assert out.loss.item() == pytest.approx((out.itc + out.itm + out.lm).item(), rel=1e-6)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # the ITC temperature starts at 0.07 and is clamped to [0.001, 0.5]
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.temp.fill_(5.0)
    assert model.scale().item() == pytest.approx(2.0)


def test_unimodal_text_ignores_the_image_and_the_decoder_is_causal():
    torch.manual_seed(0)
    model = small().eval()
    ids = torch.tensor([[2, 7, 8, 3]])
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.equal(model.encode_text(ids), model.encode_text(ids))
    assert (model.itm_logits(a, ids) - model.itm_logits(b, ids)).abs().max() > 1e-6
    later = ids.clone()
    later[0, 3] = 9
    la, lb = model.lm_logits(a, ids), model.lm_logits(a, later)
    assert_close(la[:, :3], lb[:, :3], what="causal prefix")
    assert (la[:, 3] - lb[:, 3]).abs().max() > 1e-6


def test_bad_inputs_raise_clear_errors():
    model = small()
    ids = torch.tensor([[2, 7, 3], [2, 8, 3]])
    with pytest.raises(ShapeError, match="must be 8x8"):
        model.itm_logits(torch.rand(2, 3, 16, 16), ids)
    with pytest.raises(ShapeError, match="same number of pairs"):
        model(torch.rand(3, 3, 8, 8), ids)
    with pytest.raises(ShapeError, match="image tokens must be"):
        model.itm_logits(None, ids, tokens=torch.rand(2, 5, 7))
    with pytest.raises(ShapeError, match="more than max_length"):
        model.encode_text(torch.ones(1, 11, dtype=torch.long))
    with pytest.raises(ConfigError, match="decoder=False"):
        small(decoder=False).lm_logits(torch.rand(2, 3, 8, 8), ids)
    with pytest.raises(ConfigError, match="encoder=True or decoder=True"):
        small(encoder=False, decoder=False)
    with pytest.raises(ConfigError, match="bos_token_id"):
        BLIPTextConfig(vocab_size=10, bos_token_id=10).check()
    with pytest.raises(ConfigError, match="temperature_init"):
        small(temperature_init=0.9)
    with pytest.raises(ArgumentError, match="no negative"):
        model(torch.rand(2, 3, 8, 8), torch.tensor([[2, 7, 3], [2, 7, 3]]))


# --- the recipe ------------------------------------------------------------------------------


def test_blip_recipe_trains_through_the_trainer(tmp_path):
    """A few Trainer steps on the shapes captions: the loss falls, the three parts are
    logged, the evaluation reports recall, ITM accuracy and caption exactness in [0, 1]."""
    import json

    from paperlab import registry
    from paperlab.recipes.blip import BLIPRecipeConfig
    from paperlab.training.trainer import train

    assert registry.get("recipe", "blip").meta["config"] is BLIPRecipeConfig
    cfg = BLIPRecipeConfig(steps=40, batch_size=16, warmup=3, n_train=200, n_eval=30, dim=32,
                           depth=1, projection_dim=8, progress=False, out=str(tmp_path / "run"))
    summary = train("blip", cfg)
    assert summary.step == 40 and summary.checkpoint is not None
    rows = [json.loads(line) for line in (summary.out / "metrics.jsonl").read_text().splitlines()]
    assert {"itc", "itm", "lm"} <= set(rows[0])
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.9 * first
    for key in ("i2t@1", "t2i@5", "itm_accuracy", "caption_exact", "zero_shot_heldout"):
        assert 0.0 <= summary.eval[key] <= 1.0, key


def test_blip_recipe_resumes_exactly(tmp_path):
    """The hard negatives are drawn from a generator seeded off the Trainer's per-step seed,
    so a run resumed from its step-3 checkpoint repeats steps 4-6 bitwise."""
    import json

    from paperlab.recipes.blip import BLIPRecipeConfig
    from paperlab.training.trainer import train

    def cfg(out):
        return BLIPRecipeConfig(steps=6, batch_size=8, warmup=2, n_train=40, n_eval=10, dim=16,
                                depth=1, projection_dim=8, checkpoint_every=3, progress=False,
                                out=str(out))

    def losses(out):
        return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text()
                .splitlines()]

    train("blip", cfg(tmp_path / "a"))
    resumed = train("blip", cfg(tmp_path / "b"),
                    resume=tmp_path / "a" / "checkpoints" / "step-00000003")
    assert resumed.step == 6
    assert losses(tmp_path / "b") == losses(tmp_path / "a")[3:]
