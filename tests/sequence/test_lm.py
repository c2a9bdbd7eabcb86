"""The decoder LM and the Transformer block: shapes, causality, KV cache, training, errors."""

from __future__ import annotations

import pytest
import torch
from parity import assert_close

from paperlab import create, registry
from paperlab.errors import ArgumentError, ConfigError, ShapeError, UnknownNameError
from paperlab.sequence.lm import DecoderLM, LMCache, LMConfig, TransformerBlock, lm_loss

pytestmark = pytest.mark.note("C2")

V, C, H = 13, 16, 2


def lm(attention: str = "softmax", position: str = "rope", **kw) -> DecoderLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, dim=C, num_layers=2, num_heads=H, attention=attention,
               position=position, max_positions=64)
    cfg.update(kw)
    return DecoderLM(LMConfig(**cfg))


def tokens(b: int = 2, n: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, n), generator=torch.Generator().manual_seed(seed))


def test_shapes_cache_and_parameter_count():
    model = lm()
    t = tokens()
    assert model(t).shape == (2, 9, V)
    logits, cache = model(t, use_cache=True)
    assert logits.shape == (2, 9, V) and isinstance(cache, LMCache)
    assert cache.position == 9 and len(cache.layers) == 2
    assert model.head.weight is model.embed.weight  # tied
    distinct = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(distinct.values())
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - V * C
    untied = lm(tie_embeddings=False)
    assert untied.num_parameters() == model.num_parameters() + V * C


def test_registry_builds_both_models_and_config_round_trips():
    model = create("model", "decoder-lm", vocab_size=V, dim=C, num_heads=H, position="alibi")
    assert model(tokens()).shape == (2, 9, V)
    block = create("model", "transformer-block", dim=C, num_heads=H, position="rope")
    assert block(torch.randn(2, 5, C)).shape == (2, 5, C)
    cfg = LMConfig(vocab_size=V, dim=C, position="t5", position_kwargs={"num_buckets": 8})
    assert LMConfig.from_json(cfg.to_json()) == cfg


def _causal_attentions() -> list[str]:
    out = []
    for name in registry.names("attention"):
        try:
            create("attention", name, dim=C, num_heads=H, causal=True)
        except (ConfigError, ArgumentError, TypeError):
            continue  # not causal-capable (e.g. Linformer)
        out.append(name)
    return out


def _accepts(attention: str, position: str) -> bool:
    try:
        create("attention", attention, dim=C, num_heads=H, causal=True,
               position=None if position in ("none", "sinusoidal") else position)
    except ConfigError:  # e.g. a bias encoding in an attention without a score matrix
        return False
    return True


CAUSAL_CASES = [
    (a, p)
    for a in _causal_attentions()
    for p in ("none", "sinusoidal", "rope", "alibi", "t5")
    if _accepts(a, p)
]
assert {("softmax", p) for p in ("none", "rope", "alibi", "t5")} <= set(CAUSAL_CASES)


@pytest.mark.parametrize("attention, position", CAUSAL_CASES)
def test_logits_at_t_do_not_depend_on_later_tokens(attention, position):
    model = lm(attention, position).double().eval()
    a = tokens(n=10)
    b = a.clone()
    b[:, 6:] = (b[:, 6:] + 1) % V
    la, lb = model(a), model(b)
    assert_close(la[:, :6], lb[:, :6], atol=1e-10, rtol=1e-10)
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


CACHE_CASES = [
    ("softmax", "rope"),
    ("softmax", "alibi"),
    ("softmax", "t5"),
    ("softmax", "learned"),
    ("softmax", "sinusoidal"),
    ("softmax", "none"),
    ("linear", "rope"),
    ("local", "rope"),
]


@pytest.mark.parametrize("attention, position", CACHE_CASES)
def test_incremental_decoding_equals_the_full_forward(attention, position):
    kw = {"attention_kwargs": {"window": 4}} if attention == "local" else {}
    model = lm(attention, position, **kw).double().eval()
    t = tokens(n=11)
    full = model(t)
    # a prefill of 4 tokens, then one token at a time, then a chunk of 3
    logits, cache = model(t[:, :4], use_cache=True)
    parts = [logits]
    for i in range(4, 8):
        logits, cache = model(t[:, i : i + 1], cache=cache, use_cache=True)
        parts.append(logits)
    logits, cache = model(t[:, 8:], cache=cache, use_cache=True)
    parts.append(logits)
    assert cache.position == 11
    assert_close(torch.cat(parts, dim=1), full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_generate_with_cache_equals_generate_without(position):
    model = lm(position=position)
    prompt = tokens(n=3)
    with_cache = model.generate(prompt, 8)
    without = model.generate(prompt, 8, use_cache=False)
    assert with_cache.shape == (2, 11)
    assert torch.equal(with_cache[:, :3], prompt)
    assert torch.equal(with_cache, without)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = model.generate(prompt, 5, greedy=False, temperature=0.7, generator=g1)
    s2 = model.generate(prompt, 5, greedy=False, temperature=0.7, generator=g2, use_cache=False)
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_a_tiny_lm_learns_a_cycle(norm):
    model = lm(norm=norm)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = torch.arange(24) % 7  # 0 1 2 ... 6 0 1 ...: trivially learnable
    batch = torch.stack([seq.roll(-s) for s in range(4)])
    losses = []
    for _ in range(50):
        loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    assert torch.equal(model.generate(batch[:1, :3], 6)[0, 3:], seq.roll(-3)[:6])


@pytest.mark.parametrize("position", ["rope", "t5", "learned", "sinusoidal", "none"])
def test_every_parameter_gets_a_gradient(position):
    model = lm(position=position, max_positions=9)
    t = tokens()
    (model(t) * torch.randn(2, 9, V)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_t5_bias_is_shared_by_the_layers():
    model = lm(position="t5")
    first, second = (b.attn.position for b in model.blocks)
    assert first is second


def test_encoder_block_with_padding():
    torch.manual_seed(0)
    block = TransformerBlock(C, H, attention="softmax", position="t5", causal=False)
    x = torch.randn(2, 6, C)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    out = block(x, key_padding_mask=pad)
    assert out.shape == (2, 6, C)
    # padded keys do not influence the unpadded rows
    y = x.clone()
    y[1, 4:] += 5.0
    assert_close(block(y, key_padding_mask=pad)[1, :4], out[1, :4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(block(x)[1, :4], out[1, :4])


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="softmax"):
        lm(attention="sofmax")
    with pytest.raises(UnknownNameError, match="rope"):
        lm(position="rop")
    with pytest.raises(ConfigError, match="divisible"):
        lm(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="norm"):
        lm(norm="batchnorm")
    with pytest.raises(ConfigError, match="vocab_size"):
        lm(vocab_size=0)
    with pytest.raises(ConfigError, match="absolute"):
        TransformerBlock(C, H, position="sinusoidal", causal=True)
    with pytest.raises(ConfigError, match="divisible"):
        TransformerBlock(30, 4)
    model = lm(position="learned", max_positions=8)
    with pytest.raises(ArgumentError, match="vocab_size"):
        model(torch.full((1, 3), V))
    with pytest.raises(TypeError, match="integers"):
        model(torch.zeros(1, 3))
    with pytest.raises(ShapeError, match=r"\(B, N\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ArgumentError, match="max_positions"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(TypeError, match="LMCache"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=object())
