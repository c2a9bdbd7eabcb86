"""CapFilt and captioning: the nucleus, determinism by generator, the threshold's ends, and
filtering by a hand-set ITM scorer."""

from __future__ import annotations

import pytest
import torch

from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.language.tokenizer import SPECIALS, token_id, word_level_tokenizer
from paperlab.multimodal.blip import BLIP, BLIPConfig, BLIPTextConfig, blip_vision_config
from paperlab.multimodal.capfilt import (
    capfilt,
    decode_captions,
    generate_captions,
    itm_scores,
    top_p_filter,
)

pytestmark = pytest.mark.note("D7")

WORDS = ["a", "red", "blue", "circle", "square", "good", "bad"]


def tokenizer():
    return word_level_tokenizer(WORDS, specials=(*SPECIALS, "[DEC]", "[ENC]"))


def model(tok, **kw) -> BLIP:
    torch.manual_seed(0)
    text = BLIPTextConfig(
        vocab_size=tok.get_vocab_size(), max_length=8, dim=16, depth=1, num_heads=2, mlp_dim=32,
        pad_token_id=token_id(tok, "[PAD]"), eos_token_id=token_id(tok, "[SEP]"),
        bos_token_id=token_id(tok, "[DEC]"), enc_token_id=token_id(tok, "[ENC]"),
    )
    vision = blip_vision_config(image_size=8, patch_size=4, dim=16, depth=1, num_heads=2,
                                mlp_dim=32)
    return BLIP(BLIPConfig(vision=vision, text=text, embed_dim=8, **kw)).eval()


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(5))


CAPTIONS = ["a red circle", "a blue square good", "bad", "a good circle"]


def test_top_p_keeps_the_smallest_nucleus_and_renormalises():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.allclose(top_p_filter(logits, 0.8),
                          torch.tensor([[0.625, 0.375, 0.0, 0.0]], dtype=torch.float64))
    assert int((top_p_filter(logits, 0.81) > 0).sum()) == 3
    assert torch.allclose(top_p_filter(logits, 1.0), logits.exp().double())
    assert torch.equal(top_p_filter(logits, 1e-9), torch.tensor([[1.0, 0, 0, 0]]).double())
    with pytest.raises(ArgumentError, match="top_p"):
        top_p_filter(logits, 0.0)


def test_generation_is_deterministic_by_generator_and_tiny_top_p_is_greedy():
    tok = tokenizer()
    m = model(tok)
    x = images()
    a = generate_captions(m, x, top_p=0.9, num_return=2, generator=torch.Generator().manual_seed(1))
    b = generate_captions(m, x, top_p=0.9, num_return=2, generator=torch.Generator().manual_seed(1))
    c = generate_captions(m, x, top_p=0.9, num_return=2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape[0] == 8 and not torch.equal(a, c)
    assert bool((a[:, 0] == token_id(tok, "[DEC]")).all())
    greedy = generate_captions(m, x, greedy=True)
    nucleus = generate_captions(m, x, top_p=1e-9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(greedy, nucleus)
    assert all(isinstance(t, str) for t in decode_captions(tok, a))
    with pytest.raises(ArgumentError, match="max_new_tokens must be <= 7"):
        generate_captions(m, x, max_new_tokens=8)


def test_threshold_zero_keeps_everything_and_one_nothing():
    tok = tokenizer()
    m = model(tok)
    x = images()
    common = dict(tokenizer=tok, num_synthetic=2, generator=torch.Generator().manual_seed(0))
    everything = capfilt(m, x, CAPTIONS, threshold=0.0, **common)
    assert everything.stats == {"originals": 4.0, "originals_kept": 4.0, "synthetic": 8.0,
                                "synthetic_kept": 8.0, "pairs": 12.0}
    assert everything.pairs[:4] == list(enumerate(CAPTIONS))
    common["generator"] = torch.Generator().manual_seed(0)
    nothing = capfilt(m, x, CAPTIONS, threshold=1.0, **common)
    assert nothing.pairs == [] and not bool(nothing.original_kept.any())
    assert nothing.synthetic == everything.synthetic  # same generator, same captions
    # the scores are ITM margins: p = sigmoid(margin) is what the threshold cuts
    p = torch.sigmoid(everything.original_scores)
    half = capfilt(m, x, CAPTIONS, tokenizer=tok, threshold=0.5, num_synthetic=0)
    assert torch.equal(half.original_kept, p > 0.5) and half.synthetic == [[]] * 4
    # a separate captioner writes the synthetic captions (the filter still scores them)
    torch.manual_seed(9)
    other = BLIP(m.config).eval()
    split = capfilt(m, x, CAPTIONS, tokenizer=tok, captioner=other, num_synthetic=1,
                    generator=torch.Generator().manual_seed(7))
    ids = generate_captions(other, x, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert [row[0] for row in split.synthetic] == decode_captions(tok, ids)


def test_a_hand_set_itm_scorer_gives_the_expected_filtering(monkeypatch):
    """ITM says "match" exactly for captions containing "good" (and, as BLIP does, sees
    [ENC] as the first token): CapFilt keeps those and only those."""
    tok = tokenizer()
    m = model(tok)
    good, enc = token_id(tok, "good"), token_id(tok, "[ENC]")
    seen_first = []

    def fake_itm(images, input_ids, attention_mask=None, *, tokens=None):
        seen_first.extend(input_ids[:, 0].tolist())
        hit = (input_ids == good).any(dim=1).float()
        return torch.stack((torch.zeros_like(hit), 8.0 * hit - 4.0), dim=1)

    monkeypatch.setattr(m, "itm_logits", fake_itm)
    out = capfilt(m, images(), CAPTIONS, tokenizer=tok, threshold=0.5, num_synthetic=3,
                  generator=torch.Generator().manual_seed(0))
    assert out.original_kept.tolist() == [False, True, False, True]
    expected_syn = [["good" in t.split() for t in row] for row in out.synthetic]
    assert out.synthetic_kept.tolist() == expected_syn
    assert set(seen_first) == {enc}
    kept_text = [c for _, c in out.pairs]
    assert kept_text[:2] == ["a blue square good", "a good circle"]
    assert all("good" in c.split() for c in kept_text)
    scores = itm_scores(m, images(2), ["good", "bad"], tokenizer=tok)
    assert scores.tolist() == [4.0, -4.0]


def test_capfilt_bad_inputs():
    tok = tokenizer()
    m = model(tok)
    with pytest.raises(ShapeError, match="pair up one to one"):
        capfilt(m, images(3), CAPTIONS, tokenizer=tok)
    with pytest.raises(ArgumentError, match="threshold"):
        capfilt(m, images(), CAPTIONS, tokenizer=tok, threshold=1.5)
    with pytest.raises(ConfigError, match="no text decoder"):
        capfilt(model(tok, decoder=False), images(), CAPTIONS, tokenizer=tok, num_synthetic=1)
    with pytest.raises(ConfigError, match="no text encoder"):
        capfilt(model(tok, encoder=False), images(), CAPTIONS, tokenizer=tok)
