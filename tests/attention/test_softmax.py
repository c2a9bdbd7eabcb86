"""Softmax attention: parity with torch's SDPA and nn.MultiheadAttention, caches, positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity import assert_close, assert_parity

import paperlab
from paperlab.attention import KVCache, MultiHeadAttention, scaled_dot_product_attention
from paperlab.attention.masks import causal_mask
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError

pytestmark = pytest.mark.note("B1", reference="torch scaled_dot_product_attention")

B, H, N, M, D = 2, 3, 6, 9, 8


def _inputs(n=N, m=M, d=D, dv=None, dtype=torch.float32, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, n, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(B, H, m, d, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(B, H, m, dv or d, generator=g, dtype=torch.float64).to(dtype)
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _bool_mask(n=N, m=M, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, 1, n, m, generator=g) > 0.4
    mask[..., 0] = True  # every row sees a key
    return mask


# --- the function vs torch.nn.functional.scaled_dot_product_attention -------------------------


def test_plain_matches_torch_float32_with_gradients():
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(q, k, v),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        _inputs(),
    )


def test_bool_mask_matches_torch():
    mask = _bool_mask()
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        _inputs(),
    )


def test_float_mask_is_our_bias_and_scale_is_honoured():
    g = torch.Generator().manual_seed(2)
    bias = torch.randn(1, H, N, M, generator=g)
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, bias=bias, scale=0.3),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3),
        _inputs(),
    )


def test_causal_square_matches_torch_is_causal():
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        _inputs(n=7, m=7),
    )


def test_causal_rectangular_is_bottom_right_unlike_torch_top_left():
    """N != M: ours lets query i see keys <= i + M - N (a KV cache); torch's is_causal j <= i."""
    bottom_right = torch.ones(N, M, dtype=torch.bool).tril(M - N)
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=bottom_right),
        _inputs(),
    )
    q, k, v = _inputs(grad=False)
    top_left = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ours_top_left = scaled_dot_product_attention(q, k, v, mask=causal_mask(N, M, offset=0))
    assert_close(ours_top_left, top_left)
    ours = scaled_dot_product_attention(q, k, v, causal=True)
    assert not torch.allclose(ours, top_left)


def test_everything_at_once_float64():
    mask = _bool_mask()
    bias = torch.randn(B, 1, N, M, dtype=torch.float64)
    pad = torch.zeros(B, M, dtype=torch.bool)
    pad[0, -2:] = True
    want_mask = mask & ~pad[:, None, None, :] & torch.ones(N, M, dtype=torch.bool).tril(M - N)
    assert_parity(
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, mask=mask, bias=bias, causal=True, key_padding_mask=pad, scale=0.5
        ),
        lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.masked_fill(~want_mask, float("-inf")), scale=0.5
        ),
        _inputs(dtype=torch.float64),
    )


def test_value_dim_may_differ():
    q, k, v = _inputs(dv=5, grad=False)
    assert scaled_dot_product_attention(q, k, v).shape == (B, H, N, 5)
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_bfloat16_matches_torch_and_accumulates_in_float32():
    q, k, v = _inputs(dtype=torch.bfloat16, grad=False)
    ours = scaled_dot_product_attention(q, k, v, causal=True, mask=_bool_mask())
    assert ours.dtype == torch.bfloat16
    ref = scaled_dot_product_attention(q.float(), k.float(), v.float(), causal=True,
                                       mask=_bool_mask())
    assert_close(ours, ref.to(torch.bfloat16), dtype=torch.bfloat16)
    want = F.scaled_dot_product_attention(
        q, k, v, attn_mask=_bool_mask() & torch.ones(N, M, dtype=torch.bool).tril(M - N)
    )
    assert_close(ours, want, dtype=torch.bfloat16)


def test_half_precision_large_scores_stay_finite():
    q, k, v = _inputs(dtype=torch.float16, grad=False)
    out = scaled_dot_product_attention(q * 300, k * 300, v)
    assert torch.isfinite(out).all()


def test_rows_without_a_visible_key_give_zero_not_nan():
    q, k, v = _inputs(dtype=torch.float64)
    mask = torch.ones(N, M, dtype=torch.bool)
    mask[2] = False
    out = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # a -inf bias (ALiBi's causal bias carries some) can empty a row too
    bias = torch.zeros(N, M, dtype=torch.float64)
    bias[4] = float("-inf")
    out = scaled_dot_product_attention(q, k, v, bias=bias)
    assert torch.equal(out[:, :, 4], torch.zeros_like(out[:, :, 4]))
    q.grad = None
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    # more queries than keys, bottom-right causal: the first N - M queries see nothing
    q2, k2, v2 = _inputs(n=9, m=6, grad=False)
    out2 = scaled_dot_product_attention(q2, k2, v2, causal=True)
    assert torch.equal(out2[:, :, :3], torch.zeros_like(out2[:, :, :3]))
    assert not torch.isnan(out2).any()


def test_dropout_uses_the_generator():
    q, k, v = _inputs(grad=False)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=g)

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    with pytest.raises(ArgumentError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _inputs(grad=False)
    with pytest.raises(ShapeError, match="same head dim"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ShapeError, match=r"mask must broadcast to \(B, H, N, M\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(N, N, dtype=torch.bool))
    with pytest.raises(ArgumentTypeError, match="mask must have dtype torch.bool"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(N, M))
    with pytest.raises(ShapeError, match="key_padding_mask"):
        scaled_dot_product_attention(q, k, v, key_padding_mask=torch.zeros(B, N, dtype=torch.bool))


# --- MultiHeadAttention vs torch.nn.MultiheadAttention ----------------------------------------

C, HEADS = 16, 4


def _copy_from_torch(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    with torch.no_grad():
        if ref.in_proj_weight is not None:
            wq, wk, wv = ref.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        for lin, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)


def _pair(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(C, HEADS, batch_first=True, dtype=dtype, **kw)
    ours = MultiHeadAttention(C, HEADS, kdim=kw.get("kdim"), vdim=kw.get("vdim")).to(dtype)
    with torch.no_grad():  # non-zero biases so that copying them is tested
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    _copy_from_torch(ours, ref)
    return ours, ref


def test_mha_matches_torch_with_key_padding_and_gradients():
    ours, ref = _pair()
    x = torch.randn(2, 7, C, dtype=torch.float64, requires_grad=True)
    pad = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])
    assert_parity(
        lambda x: ours(x, key_padding_mask=pad),
        lambda x: ref(x, x, x, key_padding_mask=pad, need_weights=False)[0],
        [x],
    )
    ours.zero_grad()
    ref.zero_grad()
    ours(x, key_padding_mask=pad).square().sum().backward()
    ref(x, x, x, key_padding_mask=pad, need_weights=False)[0].square().sum().backward()
    assert_close(ours.q_proj.weight.grad, ref.in_proj_weight.grad[:C], what="q_proj grad")
    assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad, what="out_proj grad")


def test_mha_causal_matches_torch_with_its_inverted_mask_convention():
    ours, ref = _pair()
    ours.causal = True
    x = torch.randn(2, 7, C, dtype=torch.float64)
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)  # torch: True = NOT allowed
    want = ref(x, x, x, attn_mask=future, need_weights=False)[0]
    assert_close(ours(x), want)
    ours.causal = False
    assert_close(ours(x, mask=~future), want)


def test_mha_cross_attention_with_kdim_vdim_float32():
    ours, ref = _pair(dtype=torch.float32, kdim=10, vdim=6)
    x = torch.randn(2, 5, C)
    key, value = torch.randn(2, 8, 10), torch.randn(2, 8, 6)
    assert_close(ours(x, key, value), ref(x, key, value, need_weights=False)[0])


@pytest.mark.parametrize("position", [None, "rope"])
def test_fast_path_equals_written_out_path(position):
    torch.manual_seed(0)
    mha = MultiHeadAttention(C, HEADS, causal=True, position=position).double()
    x = torch.randn(2, 7, C, dtype=torch.float64)
    pad = torch.tensor([[True] + [False] * 6, [False] * 7])
    mask = torch.rand(7, 7) > 0.3
    for kw in ({}, {"key_padding_mask": pad}, {"mask": mask}):
        mha.fast_path = True
        fast = mha(x, **kw)
        mha.fast_path = False
        slow = mha(x, **kw)
        assert_close(fast, slow, what=f"fast vs written-out {kw.keys()}")


@pytest.mark.parametrize(
    "position, kwargs",
    [(None, {}), ("rope", {}), ("t5", {"num_buckets": 8, "max_distance": 16}), ("alibi", {})],
)
def test_kv_cache_decoding_equals_the_full_forward(position, kwargs):
    torch.manual_seed(0)
    mha = MultiHeadAttention(
        C, HEADS, causal=True, position=position, position_kwargs=kwargs or None
    ).double()
    x = torch.randn(2, 10, C, dtype=torch.float64)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[1, :2] = True  # a left-padded sequence
    full = mha(x, key_padding_mask=pad)
    out, cache = mha(x[:, :4], key_padding_mask=pad[:, :4], use_cache=True)
    pieces = [out]
    for t in range(4, 7):  # one token at a time
        out, cache = mha(x[:, t : t + 1], key_padding_mask=pad[:, t : t + 1], cache=cache,
                         use_cache=True)
        pieces.append(out)
    out, cache = mha(x[:, 7:], cache=cache, use_cache=True)  # then three at once
    pieces.append(out)
    assert isinstance(cache, KVCache) and cache.position == 10 and cache.length == 10
    assert_close(torch.cat(pieces, dim=1), full)


def test_cache_holds_rotated_keys():
    torch.manual_seed(0)
    mha = MultiHeadAttention(C, HEADS, causal=True, position="rope").double()
    x = torch.randn(1, 5, C, dtype=torch.float64)
    _, cache = mha(x, use_cache=True)
    k = mha.k_proj(x).view(1, 5, HEADS, -1).transpose(1, 2)
    assert_close(cache.keys, mha.position.rotate(k))


def test_positions_by_name_and_their_errors():
    t5 = MultiHeadAttention(C, HEADS, position="t5")
    assert t5.position.num_heads == HEADS and t5.position.bidirectional and t5.scale == 1.0
    alibi = MultiHeadAttention(C, HEADS, causal=True, position="alibi")
    assert alibi.position.causal
    rope = MultiHeadAttention(C, HEADS, position="rope")
    assert rope.position.dim == C // HEADS
    shaw = MultiHeadAttention(C, HEADS, position="shaw", position_kwargs={"max_distance": 3})
    assert shaw(torch.randn(1, 4, C)).shape == (1, 4, C)
    with pytest.raises(ConfigError, match="absolute encoding.*x = pe\\(x\\)"):
        MultiHeadAttention(C, HEADS, position="sinusoidal")
    with pytest.raises(ConfigError, match="without a position"):
        MultiHeadAttention(C, HEADS, position_kwargs={"dim": 4})


def test_module_errors():
    with pytest.raises(ArgumentError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(C, HEADS)
    with pytest.raises(ArgumentError, match="causal=True"):
        mha(torch.randn(1, 3, C), use_cache=True)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, N, C\) with C=16"):
        mha(torch.randn(1, 3, 8))
    with pytest.raises(ShapeError, match="key_padding_mask"):
        mha(torch.randn(1, 3, C), key_padding_mask=torch.zeros(1, 4, dtype=torch.bool))
    causal = MultiHeadAttention(C, HEADS, causal=True)
    with pytest.raises(ArgumentTypeError, match="KVCache"):
        causal(torch.randn(1, 3, C), cache=("k", "v"))


def test_registry_builds_it_by_name():
    mha = paperlab.create("attention", "softmax", dim=C, num_heads=HEADS, causal=True)
    assert isinstance(mha, MultiHeadAttention)
    assert mha(torch.randn(2, 5, C)).shape == (2, 5, C)
