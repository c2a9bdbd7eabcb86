"""RoPE (note A2): parity with HF RoFormer, Llama and GPT-NeoX; relativity; scaling; errors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close, assert_parity

from paperlab.errors import ArgumentError, ShapeError
from paperlab.position.rope import (
    RotaryEmbedding,
    RotaryEmbedding2D,
    apply_axial_rotary,
    apply_rotary,
    axial_rotary,
    rotary_cos_sin,
    rotary_inv_freq,
)

pytestmark = pytest.mark.note("A2")

LAYOUTS = [False, True]  # interleaved?


def _qk(b=2, h=3, n=16, d=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    return q, k


# --- parity with HF ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 7])
def test_interleaved_matches_hf_roformer(offset):
    require("transformers")
    from transformers.models.roformer.modeling_roformer import (
        RoFormerSelfAttention,
        RoFormerSinusoidalPositionalEmbedding,
    )

    n, d = 48, 32
    table = RoFormerSinusoidalPositionalEmbedding(n + offset, d)
    with torch.no_grad():
        table.weight.copy_(table.create_weight())
    # the offset is positional: HF renamed it (past_key_values_length -> cache_length)
    sinusoidal_pos = table((1, n), offset)[None, None]  # (1, 1, N, D)
    q, k = _qk(n=n, d=d)
    ref_q, ref_k = RoFormerSelfAttention.apply_rotary_position_embeddings(sinusoidal_pos, q, k)
    rope = RotaryEmbedding(d, interleaved=True)
    assert_close(rope.rotate(q, offset=offset), ref_q)
    assert_close(rope.rotate(k, offset=offset), ref_k)


def _llama_config(transformers, head_dim, base, scaling=None):
    kwargs = dict(
        hidden_size=4 * head_dim,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        num_hidden_layers=1,
        vocab_size=64,
        max_position_embeddings=256,
        rope_theta=base,
    )
    if scaling is not None:
        kwargs["rope_scaling"] = {"type": scaling[0], "rope_type": scaling[0], "factor": scaling[1]}
    return transformers.LlamaConfig(**kwargs)


@pytest.mark.parametrize("scaling", [None, ("linear", 4.0)])
def test_half_split_matches_hf_llama(scaling):
    transformers = require("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    d, base, n = 16, 500.0, 40
    hf = LlamaRotaryEmbedding(_llama_config(transformers, d, base, scaling))
    g = torch.Generator().manual_seed(1)
    position_ids = torch.stack([torch.arange(5, 5 + n), torch.randperm(60, generator=g)[:n]])
    q, k = _qk(b=2, h=4, n=n, d=d)
    ref_cos, ref_sin = hf(q, position_ids)
    ours = RotaryEmbedding(
        d, base, scaling=scaling and scaling[0], scaling_factor=scaling[1] if scaling else 1.0
    )
    cos, sin = ours(position_ids)
    assert cos.dtype == torch.float32 and cos.shape == (2, n, d)
    assert_close((cos, sin), (ref_cos, ref_sin))
    ref_q, ref_k = apply_rotary_pos_emb(q, k, ref_cos, ref_sin)
    assert_close(ours.rotate(q, position_ids=position_ids), ref_q)
    assert_close(ours.rotate(k, position_ids=position_ids), ref_k)


def test_long_positions_are_exact_where_float32_angles_drift():
    """At position 4096 HF's float32 angles drift ~1e-4; ours are rounded from float64 angles."""
    transformers = require("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    d = 64
    hf = LlamaRotaryEmbedding(_llama_config(transformers, d, 10000.0))
    position_ids = torch.arange(4096)[None]
    ref_cos, _ = hf(torch.zeros(1), position_ids)
    cos, _ = RotaryEmbedding(d)(position_ids)
    truth, _ = rotary_cos_sin(position_ids, rotary_inv_freq(d), dtype=torch.float64)
    assert_close(cos, truth, atol=1e-7, rtol=0)  # float32 rounding of the true value
    assert_close(ref_cos, truth, atol=5e-4, rtol=0)  # the reference's own drift


def test_apply_rotary_forward_and_backward_match_llama_in_float64():
    require("transformers")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, _ = _qk(n=12, d=16, dtype=torch.float64)
    cos, sin = rotary_cos_sin(torch.arange(12)[None].expand(2, 12), rotary_inv_freq(16),
                              dtype=torch.float64)
    q.requires_grad_(True)
    assert_parity(
        lambda x: apply_rotary(x, cos, sin),
        lambda x: apply_rotary_pos_emb(x, x, cos, sin)[0],
        [q],
    )


def test_partial_rotary_matches_hf_gpt_neox():
    transformers = require("transformers")
    from transformers.models.gpt_neox.modeling_gpt_neox import (
        GPTNeoXRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    head_dim, n = 32, 20
    cfg = transformers.GPTNeoXConfig(
        hidden_size=2 * head_dim, num_attention_heads=2, intermediate_size=64,
        num_hidden_layers=1, vocab_size=64, rotary_pct=0.25, max_position_embeddings=128,
    )
    hf = GPTNeoXRotaryEmbedding(cfg)
    q, k = _qk(b=1, h=2, n=n, d=head_dim)
    position_ids = torch.arange(3, 3 + n)[None]
    ref_q, ref_k = apply_rotary_pos_emb(q, k, *hf(q, position_ids))
    ours = RotaryEmbedding(head_dim // 4)
    assert_close(ours.rotate(q, offset=3), ref_q)
    assert_close(ours.rotate(k, offset=3), ref_k)


@pytest.mark.parametrize("interleaved", LAYOUTS)
@pytest.mark.parametrize("rot", [8, 4])  # full and partial rotary
def test_apply_rotary_gradcheck(interleaved, rot):
    x = torch.randn(2, 2, 3, 8, dtype=torch.float64, requires_grad=True)
    cos, sin = rotary_cos_sin(torch.arange(3), rotary_inv_freq(rot), interleaved=interleaved,
                              dtype=torch.float64)
    cos.requires_grad_(True)
    sin.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, c, s: apply_rotary(x, c, s, interleaved=interleaved), (x, cos, sin)
    )


# --- relativity (float64) --------------------------------------------------------------------


def _turn(x, pos, dim, interleaved, base=10000.0):
    """R_pos x for one vector x (D,), any real pos (negative allowed)."""
    cos, sin = rotary_cos_sin(torch.tensor([float(pos)]), rotary_inv_freq(dim, base),
                              interleaved=interleaved, dtype=torch.float64)
    return apply_rotary(x[None], cos, sin, interleaved=interleaved)[0]


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 5000),
    n=st.integers(0, 5000),
    s=st.integers(0, 5000),
    half_d=st.integers(1, 32),
    interleaved=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_scores_depend_only_on_the_relative_position(m, n, s, half_d, interleaved, seed):
    d = 2 * half_d
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, d, generator=g, dtype=torch.float64)
    score = _turn(q, m, d, interleaved) @ _turn(k, n, d, interleaved)
    shifted = _turn(q, m + s, d, interleaved) @ _turn(k, n + s, d, interleaved)
    relative = q @ _turn(k, n - m, d, interleaved)
    assert abs(score - shifted) < 1e-9 * (1 + abs(score))
    assert abs(score - relative) < 1e-9 * (1 + abs(score))


@pytest.mark.parametrize("interleaved", LAYOUTS)
def test_rotation_keeps_norms_and_module_matches_functions(interleaved):
    q, _ = _qk(dtype=torch.float64)
    rope = RotaryEmbedding(32, interleaved=interleaved)
    out = rope.rotate(q, offset=3)
    assert out.dtype == torch.float64
    assert_close(out.norm(dim=-1), q.norm(dim=-1))
    cos, sin = rotary_cos_sin(torch.arange(3, 19), rotary_inv_freq(32), interleaved=interleaved,
                              dtype=torch.float64)
    assert_close(out, apply_rotary(q, cos, sin, interleaved=interleaved))


@settings(max_examples=25, deadline=None)
@given(
    a=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    b=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    s=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    interleaved=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_2d_scores_depend_only_on_row_and_column_differences(a, b, s, interleaved, seed):
    d = 16
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, 2, d + 4, generator=g, dtype=torch.float64)  # 4 pass-through dims
    rope = RotaryEmbedding2D(d, interleaved=interleaved)

    def score(pa, pb):
        pos = torch.tensor([pa, pb])
        out = rope.rotate(x, position_ids=pos)
        return float(out[0, 0, 0] @ out[0, 0, 1])

    shift = (a[0] + s[0], a[1] + s[1]), (b[0] + s[0], b[1] + s[1])
    assert abs(score(a, b) - score(*shift)) < 1e-9 * (1 + abs(score(a, b)))


def test_2d_halves_follow_rows_and_columns():
    h, w, d = 3, 4, 16
    cos, sin = axial_rotary(h, w, d, dtype=torch.float64)
    assert cos.shape == (h * w, d)
    row_cos, _ = rotary_cos_sin(torch.arange(h).repeat_interleave(w), rotary_inv_freq(d // 2),
                                dtype=torch.float64)
    col_cos, _ = rotary_cos_sin(torch.arange(w).repeat(h), rotary_inv_freq(d // 2),
                                dtype=torch.float64)
    assert_close(cos, torch.cat((row_cos, col_cos), dim=-1))
    x = torch.randn(2, 2, h * w, d, dtype=torch.float64)
    c_i, s_i = axial_rotary(h, w, d, interleaved=True, dtype=torch.float64)
    assert_close(apply_axial_rotary(x, c_i, s_i, interleaved=True),
                 apply_rotary(x, c_i, s_i, interleaved=True))
    rope = RotaryEmbedding2D(d)
    assert_close(rope.rotate(x, grid=(h, w)), apply_axial_rotary(x, cos, sin))
    sq = torch.randn(1, 1, 9, d, dtype=torch.float64)
    assert_close(rope.rotate(sq), rope.rotate(sq, grid=(3, 3)))


# --- partial rotary, scaling, offsets, caching, dtypes ----------------------------------------


@pytest.mark.parametrize("interleaved", LAYOUTS)
def test_partial_rotary_passes_the_tail_through(interleaved):
    q, _ = _qk(dtype=torch.float64)
    rope = RotaryEmbedding(8, interleaved=interleaved)
    out = rope.rotate(q)
    assert torch.equal(out[..., 8:], q[..., 8:])
    assert_close(out[..., :8], rope.rotate(q[..., :8]))


def test_linear_scaling_interpolates_positions():
    scaled = RotaryEmbedding(16, scaling="linear", scaling_factor=4.0)
    cos, sin = scaled(torch.arange(0, 40, 4), dtype=torch.float64)
    ref = rotary_cos_sin(torch.arange(10), rotary_inv_freq(16), dtype=torch.float64)
    assert_close((cos, sin), ref)


def test_ntk_scaling_raises_the_base():
    d, factor = 64, 8.0
    inv = rotary_inv_freq(d, 10000.0, scaling="ntk", scaling_factor=factor)
    assert_close(inv, rotary_inv_freq(d, 10000.0 * factor ** (d / (d - 2))))
    plain = rotary_inv_freq(d, 10000.0)
    assert inv[0] == plain[0] == 1.0  # the fastest plane is untouched ...
    assert math.isclose(inv[-1] / plain[-1], 1 / factor, rel_tol=1e-12)  # ... the slowest /factor
    rope = RotaryEmbedding(d, scaling="ntk", scaling_factor=factor)
    cos, _ = rope(seq_len=5, dtype=torch.float64)
    assert_close(cos, rotary_cos_sin(torch.arange(5), inv, dtype=torch.float64)[0])


@pytest.mark.parametrize("interleaved", LAYOUTS)
def test_offset_equals_slicing_and_cache_equals_recompute(interleaved):
    cached = RotaryEmbedding(32, interleaved=interleaved, max_positions=64)
    fresh = RotaryEmbedding(32, interleaved=interleaved)
    full_cos, full_sin = fresh(seq_len=100)
    for offset, n in [(0, 10), (13, 20), (50, 30)]:  # the last crosses the cache's end
        for rope in (cached, fresh):
            cos, sin = rope(seq_len=n, offset=offset)
            assert torch.equal(cos, full_cos[offset:offset + n])
            assert torch.equal(sin, full_sin[offset:offset + n])
    q, _ = _qk(n=10)
    by_ids = fresh.rotate(q, position_ids=torch.arange(5, 15))
    assert torch.equal(cached.rotate(q, offset=5), by_ids)


def test_low_precision_input_keeps_its_dtype_and_float32_tables():
    rope = RotaryEmbedding(32)
    q, _ = _qk()
    cos, _ = rope(seq_len=16)
    assert cos.dtype == torch.float32
    out = rope.rotate(q.bfloat16())
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), rope.rotate(q), dtype=torch.bfloat16, atol=5e-2)


def test_cos_sin_shapes_broadcast():
    q, _ = _qk(b=2, h=3, n=5, d=8, dtype=torch.float64)
    cos, sin = rotary_cos_sin(torch.arange(5), rotary_inv_freq(8), dtype=torch.float64)
    want = apply_rotary(q, cos, sin)
    for c, s in [(cos[None].expand(2, 5, 8), sin[None].expand(2, 5, 8)),
                 (cos[None, None].expand(2, 1, 5, 8), sin[None, None].expand(2, 1, 5, 8))]:
        assert_close(apply_rotary(q, c, s), want)


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    q, _ = _qk(d=8)
    cos, sin = rotary_cos_sin(torch.arange(16), rotary_inv_freq(8))
    with pytest.raises(ArgumentError, match="dim"):
        RotaryEmbedding(7)
    with pytest.raises(ArgumentError, match="dim"):
        RotaryEmbedding2D(6)
    with pytest.raises(ArgumentError, match="scaling"):
        RotaryEmbedding(8, scaling="yarn")
    with pytest.raises(ArgumentError, match="scaling_factor"):
        RotaryEmbedding(8, scaling_factor=2.0)
    with pytest.raises(ShapeError, match="rot_dim"):
        apply_rotary(q[..., :4], cos, sin)
    with pytest.raises(ShapeError, match="rot_dim"):
        RotaryEmbedding(16).rotate(q)
    with pytest.raises(ShapeError, match="even"):
        apply_rotary(q, cos[..., :5], sin[..., :5])
    with pytest.raises(ShapeError, match="sin"):
        apply_rotary(q, cos, sin[:8])
    with pytest.raises(ShapeError, match="broadcast"):
        apply_rotary(q, cos[:8], sin[:8])
    with pytest.raises(ArgumentError, match="offset"):
        RotaryEmbedding(8).rotate(q, offset=-1)
    with pytest.raises(ShapeError, match="position_ids"):
        RotaryEmbedding(8).rotate(q, position_ids=torch.arange(15))
    with pytest.raises(ShapeError, match="grid"):
        RotaryEmbedding2D(8).rotate(q, grid=(3, 4))
    with pytest.raises(ShapeError, match="square"):
        RotaryEmbedding2D(8).rotate(q[:, :, :12])
