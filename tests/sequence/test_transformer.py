"""The encoder-decoder Transformer: parity with torch.nn.Transformer, KV cache, beam search."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from parity import assert_close

from paperlab import create
from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.sequence.transformer import (
    Seq2SeqCache,
    Seq2SeqConfig,
    Seq2SeqTransformer,
)
from paperlab.sequence.transformer_weights import load_torch_transformer

pytestmark = pytest.mark.note("C2", reference="torch.nn.Transformer")

SV, TV, D, H = 11, 9, 16, 2
BOS, EOS = 0, 1


def model(**kw) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    cfg = dict(src_vocab_size=SV, tgt_vocab_size=TV, dim=D, num_heads=H, dropout=0.0,
               ffn_dim=24)
    cfg.update(kw)
    return Seq2SeqTransformer(Seq2SeqConfig(**cfg)).eval()


def ids(b: int, n: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (b, n), generator=torch.Generator().manual_seed(seed))


def torch_pair(norm_first: bool, dtype: torch.dtype, layers: int = 2):
    torch.manual_seed(1)
    with warnings.catch_warnings():  # pre-LN: "enable_nested_tensor is True, but ..."
        warnings.simplefilter("ignore", UserWarning)
        ref = torch.nn.Transformer(
            d_model=D, nhead=H, num_encoder_layers=layers, num_decoder_layers=layers,
            dim_feedforward=24, dropout=0.0, batch_first=True, norm_first=norm_first,
        ).to(dtype)
    ours = model(norm_first=norm_first, final_norm=True, num_encoder_layers=layers,
                 num_decoder_layers=layers).to(dtype)
    load_torch_transformer(ours, ref.state_dict())
    ref.train()  # dropout is 0; training mode keeps torch off its nested-tensor fast path
    return ours, ref


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_core_parity_with_torch_transformer(norm_first, dtype):
    ours, ref = torch_pair(norm_first, dtype)
    g = torch.Generator().manual_seed(2)
    src = torch.randn(3, 7, D, generator=g, dtype=dtype)
    tgt = torch.randn(3, 5, D, generator=g, dtype=dtype)
    src_pad = torch.zeros(3, 7, dtype=torch.bool)
    src_pad[1, 5:] = True
    src_pad[2, 3:] = True
    tgt_pad = torch.zeros(3, 5, dtype=torch.bool)
    tgt_pad[0, 4:] = True
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # torch: True = masked
    expected = ref(src, tgt, tgt_mask=causal, src_key_padding_mask=src_pad,
                   tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad,
                   tgt_is_causal=True)
    memory = ours.encoder_stack(src, src_pad)
    got = ours.decoder_stack(tgt, memory, memory_key_padding_mask=src_pad,
                             tgt_key_padding_mask=tgt_pad)
    assert_close(got, expected, dtype=dtype)
    # without padding, and the encoder alone
    assert_close(ours.encoder_stack(src), ref.encoder(src), dtype=dtype, what="encoder")
    full = ref(src, tgt, tgt_mask=causal, tgt_is_causal=True)
    assert_close(ours.decoder_stack(tgt, ours.encoder_stack(src)), full, dtype=dtype)


def test_loader_checks_layer_counts_and_final_norm():
    ref = torch.nn.Transformer(d_model=D, nhead=H, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=24, batch_first=True)
    with pytest.raises(ConfigError, match="layers"):
        load_torch_transformer(model(), ref.state_dict())
    with pytest.raises(ConfigError, match="final_norm"):
        load_torch_transformer(model(num_encoder_layers=1, num_decoder_layers=1),
                               ref.state_dict())


def test_shapes_registry_tied_and_config_round_trip():
    m = create("model", "seq2seq-transformer", src_vocab_size=SV, tgt_vocab_size=TV, dim=D,
               num_heads=H)
    assert m(ids(2, 6, SV, 0), ids(2, 4, TV, 1)).shape == (2, 4, TV)
    assert m.head.weight is m.tgt_embed.weight
    assert isinstance(m.encoder_norm, torch.nn.Identity)  # post-LN as published
    assert not isinstance(model(norm_first=True).encoder_norm, torch.nn.Identity)
    shared = model(tgt_vocab_size=SV, share_embeddings=True)
    assert shared.src_embed is shared.tgt_embed
    cfg = Seq2SeqConfig(dim=32, position="rope", final_norm=True)
    assert Seq2SeqConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("position", ["sinusoidal", "rope", "none", "learned"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_kv_cache_decoding_equals_full_forward(position, norm_first):
    m = model(position=position, norm_first=norm_first, max_positions=32)
    src, tgt = ids(2, 6, SV, 3), ids(2, 7, TV, 4)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    full = m(src, tgt, src_key_padding_mask=pad)
    cache = m.start_cache(m.encode(src, pad), pad)
    cross = cache.cross
    steps = []
    for a, b in ((0, 3), (3, 4), (4, 5), (5, 7)):  # a prefill then single and double steps
        logits, cache = m.decode_step(tgt[:, a:b], cache)
        steps.append(logits)
        assert cache.cross is cross  # cross-attention keys/values computed once
    assert cache.position == 7 and cache.self_attn[0].length == 7
    assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_decoder_is_causal_and_source_padding_is_ignored():
    m = model()
    src, tgt = ids(2, 6, SV, 5), ids(2, 6, TV, 6)
    base = m(src, tgt)
    changed = tgt.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % TV
    out = m(src, changed)
    assert_close(out[:, :4], base[:, :4], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out[:, 4:], base[:, 4:])
    # padded source tokens change nothing (encoder and cross-attention both mask them)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[:, 4:] = True
    other = src.clone()
    other[:, 4:] = (other[:, 4:] + 3) % SV
    a = m(src, tgt, src_key_padding_mask=pad)
    b = m(other, tgt, src_key_padding_mask=pad)
    assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert_close(a, m(src[:, :4], tgt), atol=1e-5, rtol=1e-5)  # == the unpadded source
    # target padding: padded keys are ignored by later queries
    tpad = torch.zeros(2, 6, dtype=torch.bool)
    tpad[:, 2] = True
    t2 = tgt.clone()
    t2[:, 2] = (t2[:, 2] + 1) % TV
    x = m(src, tgt, tgt_key_padding_mask=tpad)
    y = m(src, t2, tgt_key_padding_mask=tpad)
    keep = [0, 1, 3, 4, 5]
    assert_close(x[:, keep], y[:, keep], atol=1e-6, rtol=1e-6)


def test_greedy_matches_stepwise_argmax_without_cache():
    m = model()
    src = ids(3, 5, SV, 7)
    out = m.greedy_decode(src, 6, BOS, EOS)
    assert out[:, 0].eq(BOS).all()
    seq = torch.full((3, 1), BOS)
    for _ in range(out.shape[1] - 1):
        nxt = m(src, seq)[:, -1].argmax(-1)
        seq = torch.cat((seq, nxt[:, None]), dim=1)
    for i in range(3):  # equal up to and including the first eos
        row = seq[i].tolist()
        end = row.index(EOS, 1) + 1 if EOS in row[1:] else len(row)
        assert out[i, :end].tolist() == row[:end]
        assert out[i, end:].eq(EOS).all()


def _fill(t: torch.Tensor, n: int) -> torch.Tensor:
    """Pad (B, L) ids with EOS to (B, n)."""
    return torch.cat((t, torch.full((t.shape[0], n - t.shape[1]), EOS)), dim=1)


def test_beam_width_one_equals_greedy():
    for seed in range(3):
        m = model(num_encoder_layers=1, num_decoder_layers=1)
        with torch.no_grad():  # a larger output scale makes early eos decisions likely
            m.head.weight.mul_(1.0 + seed)
        src = ids(4, 5, SV, 10 + seed)
        greedy = m.greedy_decode(src, 6, BOS, EOS)
        seqs, scores = m.beam_search(src, 1, 6, BOS, EOS)
        n = max(greedy.shape[1], seqs.shape[2])
        assert torch.equal(_fill(seqs[:, 0], n), _fill(greedy, n))
        # float32 model: cached and full-forward logits agree to ~1e-7
        assert_close(scores[:, 0], m.sequence_log_prob(src, greedy, EOS), atol=1e-5, rtol=1e-5)


def _all_sequences(max_len: int, vocab: int) -> list[list[int]]:
    """Every target (after BOS) of 1..max_len tokens: ends at its first EOS or at max_len."""
    body = [t for t in range(vocab) if t != EOS]
    seqs = []
    for n in range(0, max_len):
        seqs += [list(p) + [EOS] for p in itertools.product(body, repeat=n)]
    seqs += [list(p) for p in itertools.product(body, repeat=max_len)]
    return seqs


def test_beam_search_sorted_exhaustive_optimum_and_at_least_greedy():
    m = model(tgt_vocab_size=4, num_encoder_layers=1, num_decoder_layers=1)
    src = ids(2, 4, SV, 20)
    max_len = 3
    cands = _all_sequences(max_len, 4)
    seqs, scores = m.beam_search(src, 64, max_len, BOS, EOS)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    greedy = m.greedy_decode(src, max_len, BOS, EOS)
    g_lp = m.sequence_log_prob(src, greedy, EOS)
    for i in range(2):
        full = torch.tensor([[BOS] + c + [EOS] * (max_len - len(c)) for c in cands])
        lp = m.sequence_log_prob(src[i:i + 1].expand(len(cands), -1), full, EOS)
        best = float(lp.max())
        assert scores[i, 0].item() == pytest.approx(best, abs=1e-5)  # exhaustive: the optimum
        assert scores[i, 0] >= g_lp[i] - 1e-5
        finite = scores[i] > float("-inf")
        assert int(finite.sum()) == len(cands)  # every hypothesis found and scored
        rescored = m.sequence_log_prob(src[i:i + 1].expand(int(finite.sum()), -1),
                                       seqs[i, finite], EOS)
        assert_close(rescored, scores[i, finite], atol=1e-5, rtol=1e-5)
    # a narrow beam: still sorted, scores are the sequences' log-probs, length penalty works
    seqs, scores = m.beam_search(src, 3, max_len, BOS, EOS, length_penalty=0.6)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        Seq2SeqConfig(dim=30, num_heads=4).check()
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        Seq2SeqTransformer(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="share_embeddings"):
        Seq2SeqTransformer(src_vocab_size=5, tgt_vocab_size=6, share_embeddings=True)
    with pytest.raises(ConfigError, match="activation"):
        Seq2SeqTransformer(activation="tanh")
    m = model()
    src, tgt = ids(2, 6, SV, 0), ids(2, 4, TV, 1)
    with pytest.raises(ShapeError, match="src_key_padding_mask"):
        m(src, tgt, src_key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ShapeError, match="tgt_key_padding_mask"):
        m(src, tgt, tgt_key_padding_mask=torch.zeros(2, 6, dtype=torch.bool))
    with pytest.raises(ShapeError, match="batch"):
        m(src, ids(3, 4, TV, 1))
    with pytest.raises(ArgumentError, match="tgt must lie"):
        m(src, tgt + TV)
    with pytest.raises(ShapeError, match="src must be"):
        m(src[0], tgt)
    with pytest.raises(ArgumentError, match="eos"):
        m.greedy_decode(src, 4, BOS, TV)
    with pytest.raises(ArgumentError, match="beam_size"):
        m.beam_search(src, 0, 4, BOS, EOS)
    with pytest.raises(TypeError, match="Seq2SeqCache"):
        m.decode_step(tgt, object())  # type: ignore[arg-type]
    assert isinstance(m.start_cache(m.encode(src)), Seq2SeqCache)


def test_trains_on_a_tiny_copy_task():
    torch.manual_seed(0)
    m = model(dim=32, num_heads=4, ffn_dim=64, tgt_vocab_size=SV).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(120):
        src = torch.randint(2, SV, (32, 5), generator=g)
        tgt = torch.cat((torch.full((32, 1), BOS), src, torch.full((32, 1), EOS)), dim=1)
        logits = m(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.25 * losses[0]  # from ~log(V) to well below
