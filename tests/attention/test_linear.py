"""Linear attention (note B1): recurrent == parallel == chunked, the formula, RoPE, caches."""

from __future__ import annotations

import pytest
import torch
from parity import assert_close

import paperlab
from paperlab.attention import (
    LinearAttention,
    LinearState,
    linear_attention,
    linear_attention_recurrent,
    linear_attention_step,
)
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.position import RotaryEmbedding

pytestmark = pytest.mark.note("B1", reference="definition (quadratic form)")

B, H, N, D, DV = 2, 3, 13, 4, 5


def _inputs(n=N, m=None, dtype=torch.float64, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    m = n if m is None else m
    q = torch.randn(B, H, n, D, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(B, H, m, D, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(B, H, m, DV, generator=g, dtype=torch.float64).to(dtype)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _phi(x):
    return torch.nn.functional.elu(x) + 1


def _loop_reference(q, k, v, *, causal, pad=None, eps=1e-6, rotate=None):
    """The formula, one query and one key at a time, in float64 (independent of linear.py)."""
    b, h, n, _ = q.shape
    m = k.shape[-2]
    out = torch.zeros(b, h, n, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                num = torch.zeros(v.shape[-1], dtype=torch.float64)
                den = 0.0
                for j in range(m):
                    if (causal and j > i) or (pad is not None and pad[bi, j]):
                        continue
                    fq, fk = _phi(q[bi, hi, i].double()), _phi(k[bi, hi, j].double())
                    den += float(fq @ fk)
                    if rotate is not None:
                        fq, fk = rotate(fq, i), rotate(fk, j)
                    num += float(fq @ fk) * v[bi, hi, j].double()
                out[bi, hi, i] = num / (den + eps)
    return out


def test_noncausal_parallel_equals_the_loop_transcription():
    q, k, v = _inputs(n=6, m=9)
    assert_close(linear_attention(q, k, v), _loop_reference(q, k, v, causal=False))


def test_causal_equals_the_loop_transcription():
    q, k, v = _inputs(n=7)
    assert_close(linear_attention(q, k, v, causal=True), _loop_reference(q, k, v, causal=True))


def test_causal_recurrent_equals_parallel_equals_chunked():
    q, k, v = _inputs()
    recurrent = linear_attention_recurrent(q, k, v)
    quadratic = linear_attention(q, k, v, causal=True, chunk_size=N)  # one chunk: masked form
    assert_close(recurrent, quadratic, atol=1e-10, rtol=1e-10)
    for chunk in (1, 2, 3, 5, 8, 12, 64, None):
        chunked = linear_attention(q, k, v, causal=True, chunk_size=chunk)
        assert_close(chunked, recurrent, what=f"chunk_size={chunk}")


def test_state_carries_over_between_calls():
    q, k, v = _inputs()
    whole, final = linear_attention(q, k, v, causal=True, return_state=True)
    a, s = linear_attention(q[:, :, :5], k[:, :, :5], v[:, :, :5], causal=True,
                            chunk_size=2, return_state=True)
    b_, s = linear_attention(q[:, :, 5:], k[:, :, 5:], v[:, :, 5:], causal=True,
                             chunk_size=3, state=s, return_state=True)
    assert_close(torch.cat((a, b_), dim=2), whole)
    assert s.position == N and final.position == N
    assert_close((s.S, s.z), (final.S, final.z))
    _, rec = linear_attention_recurrent(q, k, v, return_state=True)
    assert_close((rec.S, rec.z), (final.S, final.z))


def test_step_is_the_rnn_update():
    q, k, v = _inputs(n=2)
    out0, s = linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    f = _phi(k[:, :, 0])
    assert_close(s.S, f[..., :, None] * v[:, :, 0, None, :])
    assert_close(s.z, f)
    assert s.position == 1
    out1, s = linear_attention_step(q[:, :, 1], k[:, :, 1], v[:, :, 1], s)
    assert s.position == 2 and out1.shape == (B, H, DV)


def test_key_padding_removes_keys():
    q, k, v = _inputs(n=6, m=8)
    pad = torch.zeros(B, 8, dtype=torch.bool)
    pad[0, 5:] = True
    pad[1, 0] = True
    got = linear_attention(q, k, v, key_padding_mask=pad)
    assert_close(got, _loop_reference(q, k, v, causal=False, pad=pad))
    assert_close(got[0], linear_attention(q[:1], k[:1, :, :5], v[:1, :, :5])[0])
    q, k, v = _inputs(n=8)
    causal = linear_attention(q, k, v, causal=True, chunk_size=3, key_padding_mask=pad)
    assert_close(causal, _loop_reference(q, k, v, causal=True, pad=pad))
    assert_close(causal, linear_attention_recurrent(q, k, v, key_padding_mask=pad))


def test_relu_feature_map_with_empty_rows_is_finite():
    q, k, v = _inputs()
    out = linear_attention(-q.abs(), k.abs(), v, feature_map="relu", causal=True)
    assert torch.equal(out, torch.zeros_like(out))  # phi(q) = 0: 0 / eps
    custom = linear_attention(q, k, v, feature_map=torch.exp)
    assert torch.isfinite(custom).all()


def test_bfloat16_inputs_keep_a_float32_state():
    q, k, v = _inputs(n=64, dtype=torch.bfloat16, seed=3)
    out, state = linear_attention(q, k, v, causal=True, chunk_size=16, return_state=True)
    assert out.dtype == torch.bfloat16 and state.S.dtype == torch.float32
    assert state.z.dtype == torch.float32 and torch.isfinite(out).all()
    ref = linear_attention(q.double(), k.double(), v.double(), causal=True)
    assert_close(out, ref.to(torch.bfloat16), dtype=torch.bfloat16)
    out_t, s = linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    assert out_t.dtype == torch.bfloat16 and s.S.dtype == torch.float32


def test_gradcheck_of_the_chunked_scan_and_the_recurrence():
    q, k, v = (t[:1, :1].detach().requires_grad_() for t in _inputs(n=5))
    for fn in (
        lambda q, k, v: linear_attention(q, k, v, causal=True, chunk_size=2),
        lambda q, k, v: linear_attention_recurrent(q, k, v),
        lambda q, k, v: linear_attention(q, k, v),
    ):
        assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6, fast_mode=True)


# --- RoPE inside linear attention (RoFormer section 3.3) --------------------------------------


def _rope(dim=D):
    return RotaryEmbedding(dim).double()


def test_rope_numerator_only_matches_the_loop():
    rope = _rope()

    def rotate_one(x, pos):
        return rope.rotate(x[None, None, None], offset=pos)[0, 0, 0]

    q, k, v = _inputs(n=6)
    got = linear_attention(q, k, v, causal=True, chunk_size=4, rotate=rope.rotate)
    assert_close(got, _loop_reference(q, k, v, causal=True, rotate=rotate_one))
    got = linear_attention(q, k, v, rotate=rope.rotate)
    assert_close(got, _loop_reference(q, k, v, causal=False, rotate=rotate_one))


def test_rope_linear_attention_is_relative():
    """Scores depend on m - n only: shifting every position leaves the output unchanged."""
    rope = _rope()
    q, k, v = _inputs()
    base = linear_attention(q, k, v, rotate=rope.rotate)
    for shift in (1, 7, 100):

        def rotate(x, offset, shift=shift):
            return rope.rotate(x, offset=offset + shift)

        shifted = linear_attention(q, k, v, rotate=rotate)
        assert_close(shifted, base, what=f"shift {shift}")
    fq, fk = _phi(q[0, 0, 0]), _phi(k[0, 0, 1])

    def score(m, n):
        r = rope.rotate
        return float(r(fq[None, None, None], offset=m).flatten() @ r(fk[None, None, None],
                                                                         offset=n).flatten())

    assert abs(score(3, 1) - score(13, 11)) < 1e-12
    assert abs(score(3, 1) - score(1, 3)) > 1e-6  # the direction matters


def test_rope_recurrent_equals_chunked():
    rope = _rope()
    q, k, v = _inputs()
    rec = linear_attention_recurrent(q, k, v, rotate=rope.rotate)
    assert_close(linear_attention(q, k, v, causal=True, chunk_size=4, rotate=rope.rotate), rec)


# --- the module ------------------------------------------------------------------------------

C, HEADS = 16, 2


@pytest.mark.parametrize("position", [None, "rope"])
def test_kv_state_decoding_equals_the_full_forward(position):
    torch.manual_seed(0)
    attn = LinearAttention(C, HEADS, causal=True, position=position, chunk_size=4).double()
    x = torch.randn(2, 11, C, dtype=torch.float64)
    pad = torch.zeros(2, 11, dtype=torch.bool)
    pad[1, :3] = True
    full = attn(x, key_padding_mask=pad)
    out, state = attn(x[:, :5], key_padding_mask=pad[:, :5], use_cache=True)
    pieces = [out]
    for t in range(5, 8):
        out, state = attn(x[:, t : t + 1], key_padding_mask=pad[:, t : t + 1], cache=state,
                          use_cache=True)
        pieces.append(out)
    out, state = attn(x[:, 8:], cache=state, use_cache=True)
    pieces.append(out)
    assert isinstance(state, LinearState) and state.position == 11
    assert state.S.shape == (2, HEADS, C // HEADS, C // HEADS)  # constant-size state
    assert_close(torch.cat(pieces, dim=1), full)


def test_module_noncausal_and_registry():
    attn = paperlab.create("attention", "linear", dim=C, num_heads=HEADS)
    x = torch.randn(2, 9, C, requires_grad=True)
    out = attn(x)
    assert out.shape == (2, 9, C)
    out.sum().backward()
    assert all(p.grad is not None for p in attn.parameters())
    rope = paperlab.create("attention", "linear", dim=C, num_heads=HEADS, position="rope")
    assert rope(x).shape == (2, 9, C)


def test_errors():
    q, k, v = _inputs()
    for bad in (0, -3):
        with pytest.raises(ArgumentError, match="chunk_size must be >= 1"):
            linear_attention(q, k, v, causal=True, chunk_size=bad)
    with pytest.raises(ArgumentTypeError, match="chunk_size must be an int"):
        linear_attention(q, k, v, causal=True, chunk_size=2.5)
    with pytest.raises(ArgumentError, match="only applies to causal=True"):
        linear_attention(q, k, v, chunk_size=4)
    with pytest.raises(ArgumentError, match="feature_map must be one of"):
        linear_attention(q, k, v, feature_map="softplus")
    with pytest.raises(ShapeError, match="same head dim"):
        linear_attention(q, k[..., :2], v)
    q2, k2, v2 = _inputs(n=5, m=7)
    with pytest.raises(ShapeError, match="same length"):
        linear_attention(q2, k2, v2, causal=True)
    with pytest.raises(ShapeError, match="key_padding_mask"):
        linear_attention(q, k, v, key_padding_mask=torch.zeros(B, 3, dtype=torch.bool))
    with pytest.raises(ShapeError, match="state must hold"):
        bad_state = LinearState(torch.zeros(1, 1, D, DV), torch.zeros(1, 1, D), 0)
        linear_attention(q, k, v, causal=True, state=bad_state)
    with pytest.raises(ConfigError, match="kind 'rotary'"):
        LinearAttention(C, HEADS, position="t5")
    with pytest.raises(ArgumentError, match="causal=True"):
        LinearAttention(C, HEADS)(torch.randn(1, 3, C), use_cache=True)
