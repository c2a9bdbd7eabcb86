"""Local (sliding-window) and Linformer attention (note B2)."""

from __future__ import annotations

import pytest
import torch
from parity import assert_close

import paperlab
from paperlab.attention import (
    KVCache,
    LinformerAttention,
    LocalAttention,
    linformer_attention,
    local_attention,
    scaled_dot_product_attention,
)
from paperlab.attention.masks import band_mask
from paperlab.errors import ArgumentError, ConfigError, ShapeError

pytestmark = pytest.mark.note("B2", reference="definition (masked softmax)")

B, H, D = 2, 2, 4


def _inputs(n, m=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = n if m is None else m
    return (
        torch.randn(B, H, n, D, generator=g, dtype=torch.float64).to(dtype),
        torch.randn(B, H, m, D, generator=g, dtype=torch.float64).to(dtype),
        torch.randn(B, H, m, D + 1, generator=g, dtype=torch.float64).to(dtype),
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, m", [(13, 13), (1, 1), (16, 16), (5, 12), (1, 9)])
def test_local_equals_full_attention_with_a_band_mask(causal, n, m):
    q, k, v = _inputs(n, m)
    for window in (1, 2, 3, 4, 7, 40):
        ours = local_attention(q, k, v, window, causal=causal)
        full = scaled_dot_product_attention(q, k, v, mask=band_mask(n, m, window, causal=causal))
        assert_close(ours, full, what=f"window={window} causal={causal} n={n} m={m}")


def test_local_with_key_padding_and_empty_rows():
    q, k, v = _inputs(11)
    pad = torch.zeros(B, 11, dtype=torch.bool)
    pad[0, 3:6] = True
    pad[1, -1] = True
    for causal in (False, True):
        ours = local_attention(q, k, v, 2, causal=causal, key_padding_mask=pad)
        full = scaled_dot_product_attention(
            q, k, v, mask=band_mask(11, 11, 2, causal=causal), key_padding_mask=pad
        )
        assert_close(ours, full)
    # query 4 of batch 0, causal window 2, sees keys 3 and 4: both padding -> output 0
    out = local_attention(q, k, v, 2, causal=True, key_padding_mask=pad)
    assert torch.equal(out[0, :, 4], torch.zeros_like(out[0, :, 4]))


def test_local_float32_and_bfloat16():
    q, k, v = _inputs(20, dtype=torch.float32)
    full = scaled_dot_product_attention(q, k, v, mask=band_mask(20, 20, 5))
    assert_close(local_attention(q, k, v, 5), full)
    qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
    out = local_attention(qb, kb, vb, 5)
    assert out.dtype == torch.bfloat16
    assert_close(out, full.to(torch.bfloat16), dtype=torch.bfloat16)


def test_local_gradcheck():
    q, k, v = (t[:1, :1].detach().requires_grad_() for t in _inputs(7))
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda q, k, v, c=causal: local_attention(q, k, v, 3, causal=c),
            (q, k, v),
            fast_mode=True,
        )


def test_local_errors():
    q, k, v = _inputs(6)
    for bad in (0, -2):
        with pytest.raises(ArgumentError, match="window must be >= 1"):
            local_attention(q, k, v, bad)
    q2, k2, v2 = _inputs(8, 5)
    with pytest.raises(ShapeError, match="N <= M"):
        local_attention(q2, k2, v2, 2)
    with pytest.raises(ArgumentError, match="window must be >= 1"):
        LocalAttention(8, 2, window=0)


C, HEADS = 16, 2


@pytest.mark.parametrize("position", [None, "rope"])
def test_local_module_decoding_with_a_window_cache_equals_the_full_forward(position):
    torch.manual_seed(0)
    attn = LocalAttention(C, HEADS, 3, causal=True, position=position).double()
    x = torch.randn(2, 12, C, dtype=torch.float64)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[0, :2] = True
    full = attn(x, key_padding_mask=pad)
    out, cache = attn(x[:, :5], key_padding_mask=pad[:, :5], use_cache=True)
    pieces = [out]
    for t in range(5, 9):
        out, cache = attn(x[:, t : t + 1], cache=cache, use_cache=True)
        assert isinstance(cache, KVCache) and cache.length <= 2  # window - 1 keys kept
        pieces.append(out)
    out, cache = attn(x[:, 9:], cache=cache, use_cache=True)
    pieces.append(out)
    assert cache.position == 12
    assert_close(torch.cat(pieces, dim=1), full)


def test_local_module_equals_softmax_module_when_the_window_covers_everything():
    torch.manual_seed(0)
    local = paperlab.create("attention", "local", dim=C, num_heads=HEADS, window=50).double()
    full = paperlab.create("attention", "softmax", dim=C, num_heads=HEADS).double()
    full.load_state_dict(local.state_dict())
    x = torch.randn(2, 9, C, dtype=torch.float64)
    assert_close(local(x), full(x))


# --- Linformer -------------------------------------------------------------------------------


def test_linformer_with_identity_projections_is_full_attention():
    q, k, v = _inputs(7, 7)
    eye = torch.eye(7, dtype=torch.float64)
    assert_close(linformer_attention(q, k, v, eye, eye), scaled_dot_product_attention(q, k, v))
    # longer projections: only the first M columns are used
    wide = torch.cat((eye, torch.randn(7, 5, dtype=torch.float64)), dim=1)
    assert_close(linformer_attention(q, k, v, wide, wide), scaled_dot_product_attention(q, k, v))


def test_linformer_definition_and_padding():
    q, k, v = _inputs(6, 9)
    g = torch.Generator().manual_seed(1)
    e, f = torch.randn(3, 9, generator=g, dtype=torch.float64), torch.randn(3, 9, generator=g,
                                                                             dtype=torch.float64)
    want = torch.softmax(q @ (e @ k).transpose(-1, -2) / D**0.5, dim=-1) @ (f @ v)
    assert_close(linformer_attention(q, k, v, e, f), want)
    pad = torch.zeros(B, 9, dtype=torch.bool)
    pad[:, 6:] = True
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 100.0  # padded content must not matter
    v2[:, :, 6:] -= 50.0
    assert_close(
        linformer_attention(q, k2, v2, e, f, key_padding_mask=pad),
        linformer_attention(q, k[:, :, :6], v[:, :, :6], e[:, :6], f[:, :6]),
    )


def test_linformer_module_shapes_gradients_and_errors():
    attn = paperlab.create("attention", "linformer", dim=C, num_heads=HEADS, seq_len=32, k=8)
    assert isinstance(attn, LinformerAttention) and attn.E.shape == (8, 32)
    for n in (32, 10):
        x = torch.randn(2, n, C, requires_grad=True)
        out = attn(x)
        assert out.shape == (2, n, C)
        attn.zero_grad()
        out.square().sum().backward()
        for name, p in attn.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0
    assert attn.E.grad[:, 10:].abs().sum() == 0  # a 10-token input uses 10 columns
    shared = LinformerAttention(C, HEADS, 16, 4, share_kv=True)
    assert shared.F is None and shared(torch.randn(1, 16, C)).shape == (1, 16, C)
    with pytest.raises(ShapeError, match="seq_len=32"):
        attn(torch.randn(1, 33, C))
    with pytest.raises(ConfigError, match="cannot be causal"):
        LinformerAttention(C, HEADS, causal=True)
    with pytest.raises(ConfigError, match="no position encoding"):
        LinformerAttention(C, HEADS, position="rope")
    q, k, v = _inputs(5)
    with pytest.raises(ShapeError, match="L >= M=5"):
        linformer_attention(q, k, v, torch.randn(2, 4), torch.randn(2, 4))


PLUGGABLE = [(name, causal) for name in ("softmax", "linear", "local", "linformer")
             for causal in (False, True) if not (name == "linformer" and causal)]


@pytest.mark.parametrize("name, causal", PLUGGABLE)
def test_every_attention_plugs_in_by_name(name, causal):
    torch.manual_seed(0)
    attn = paperlab.create("attention", name, dim=C, num_heads=HEADS, causal=causal,
                           dropout=0.1, bias=False)
    x = torch.randn(2, 10, C)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[1, -3:] = True
    out = attn(x, key_padding_mask=pad)
    assert out.shape == (2, 10, C) and torch.isfinite(out).all()
    attn.eval()
    assert torch.equal(attn(x), attn(x))
    if causal:  # the future does not leak
        y = x.clone()
        y[:, 6:] += 1.0
        assert_close(attn(y)[:, :6], attn(x)[:, :6])
