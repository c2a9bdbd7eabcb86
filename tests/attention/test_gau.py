"""GAU and FLASH (note B5): one chunk == quadratic GAU, causality, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from paperlab import create
from paperlab.attention.gau import (
    FLASH,
    GatedAttentionUnit,
    gau_attention,
    mixed_chunk_attention,
)
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("B5", reference="definition (quadratic GAU)")


def _qkv(n=13, s=8, e=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(2, 1, n, s, generator=g, dtype=torch.float64) for _ in range(2))
    return q, k, torch.randn(2, 1, n, e, generator=g, dtype=torch.float64)


def _definition(q, k, v, causal, q_lin=None, k_lin=None, chunk=None):
    n, s = q.shape[-2], q.shape[-1]
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    c = chunk or n
    for i in range(n):
        for j in range(n):
            same = i // c == j // c
            if same and (not causal or j <= i):
                w = torch.relu((q[..., i, :] * k[..., j, :]).sum(-1) / s**0.5) ** 2 / c
                out[..., i, :] += w[..., None] * v[..., j, :]
            if q_lin is not None and (not causal or j // c < i // c):
                w = (q_lin[..., i, :] * k_lin[..., j, :]).sum(-1) / c
                out[..., i, :] += w[..., None] * v[..., j, :]
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_one_chunk_equals_quadratic_gau(causal):
    q, k, v = _qkv()
    n = q.shape[-2]
    gau = gau_attention(q, k, v, causal=causal)
    flash = mixed_chunk_attention(q, k, v, chunk_size=n, causal=causal)
    torch.testing.assert_close(flash, gau, rtol=0, atol=1e-12)
    torch.testing.assert_close(gau, _definition(q, k, v, causal), rtol=0, atol=1e-12)
    wide = mixed_chunk_attention(q, k, v, chunk_size=64, causal=causal)  # C > N: one chunk
    torch.testing.assert_close(wide, gau_attention(q, k, v, causal=causal, normalizer=64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_mixed_chunks_match_definition(causal):
    q, k, v = _qkv()
    ql, kl, _ = _qkv(seed=1)
    out = mixed_chunk_attention(q, k, v, chunk_size=4, causal=causal, q_lin=ql, k_lin=kl)
    torch.testing.assert_close(out, _definition(q, k, v, causal, ql, kl, chunk=4),
                               rtol=0, atol=1e-12)


def test_causal_flash_ignores_the_future():
    torch.manual_seed(0)
    m = FLASH(16, causal=True, chunk_size=4, qk_dim=8).double()
    x = torch.randn(1, 14, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 9:] = torch.randn(1, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x)[:, :9], m(x2)[:, :9], rtol=0, atol=1e-12)


def test_gradcheck_causal_mixed_chunks():
    q, k, v = (t[:1, :, :7, :3].clone().requires_grad_() for t in _qkv())
    ql, kl = (t[:1, :, :7, :3].clone().requires_grad_() for t in _qkv(seed=2)[:2])
    assert torch.autograd.gradcheck(
        lambda *a: mixed_chunk_attention(a[0], a[1], a[2], chunk_size=3, causal=True,
                                         q_lin=a[3], k_lin=a[4]), (q, k, v, ql, kl))


def test_flash_module_one_chunk_equals_gau_module_causal():
    torch.manual_seed(0)
    flash = FLASH(16, causal=True, chunk_size=10, qk_dim=8).double()
    gau = GatedAttentionUnit(16, causal=True, qk_dim=8).double()
    state = {k: v for k, v in flash.state_dict().items() if "scale_offset" not in k}
    gau.load_state_dict(state, strict=False)
    with torch.no_grad():  # FLASH's first two scale/offsets are GAU's q and k
        gau.scale_offset.gamma.copy_(flash.scale_offset.gamma[:2])
        gau.scale_offset.beta.copy_(flash.scale_offset.beta[:2])
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    torch.testing.assert_close(flash(x), gau(x), rtol=0, atol=1e-12)


def test_modules_shapes_padding_gradients():
    x = torch.randn(2, 9, 16)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    for name in ("gau", "flash"):
        kw = {"chunk_size": 4} if name == "flash" else {}
        m = create("attention", name, dim=16, num_heads=2, qk_dim=8, **kw)
        out = m(x, key_padding_mask=pad)
        assert out.shape == (2, 9, 16)
        x2 = x.clone()
        x2[1, 6:] = 7.0
        torch.testing.assert_close(m(x2, key_padding_mask=pad)[1, :6], out[1, :6])
        out.square().sum().backward()
        for p in m.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


def test_bad_inputs():
    q, k, v = _qkv()
    with pytest.raises(ArgumentError):
        mixed_chunk_attention(q, k, v, chunk_size=0)
    with pytest.raises(ArgumentError):
        FLASH(16, chunk_size=-1)
    with pytest.raises(ArgumentError):
        mixed_chunk_attention(q, k, v, chunk_size=4, q_lin=q)
    with pytest.raises(ShapeError):
        mixed_chunk_attention(q, k[:, :, :5], v[:, :, :5], chunk_size=4)
    with pytest.raises(ArgumentError):
        GatedAttentionUnit(16, 3)
    with pytest.raises(ArgumentError):
        FLASH(16)(torch.randn(1, 4, 16), use_cache=True)
    with pytest.raises(ArgumentError):
        GatedAttentionUnit(16, causal=True)(torch.randn(1, 4, 16), use_cache=True)


@pytest.mark.parametrize("steps", [[1] * 11, [5, 1, 1, 4], [3, 8]])
def test_causal_flash_cache_decoding_equals_full_forward(steps):
    torch.manual_seed(0)
    m = FLASH(16, causal=True, chunk_size=4, qk_dim=8, position="rope").double()
    x = torch.randn(2, sum(steps), 16, dtype=torch.float64)
    full = m(x)
    cache, outs, start = None, [], 0
    for n in steps:
        out, cache = m(x[:, start:start + n], cache=cache, use_cache=True)
        outs.append(out)
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-12)
    assert cache.position == sum(steps) and cache.keys.shape[-2] == sum(steps) % 4
