"""TransNormer (note B4): NormAttention and DiagAttention."""

from __future__ import annotations

import pytest
import torch

from paperlab import create
from paperlab.attention import scaled_dot_product_attention
from paperlab.attention.linear import elu_plus_one
from paperlab.attention.transnormer import (
    DiagAttention,
    NormAttention,
    TransNormer,
    diag_attention,
    norm_attention,
)
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("B4", reference="definition")


def _qkv(n=10, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 2, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
def test_norm_attention_matches_definition(causal):
    q, k, v = _qkv()
    a = elu_plus_one(q) @ elu_plus_one(k).transpose(-1, -2)
    if causal:
        a = a.tril()
    num = a @ v
    ref = num / (num.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    out = norm_attention(q, k, v, causal=causal, chunk_size=3 if causal else None)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_diag_attention_is_block_masked_softmax(causal):
    q, k, v = _qkv(n=10)
    blk = torch.arange(10) // 4
    mask = blk[:, None] == blk[None, :]
    ref = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
    out = diag_attention(q, k, v, block_size=4, causal=causal)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_padding_and_gradients():
    x = torch.randn(2, 11, 16, requires_grad=True)
    pad = torch.zeros(2, 11, dtype=torch.bool)
    pad[0, 8:] = True
    for name, kw in (("norm-attention", {}), ("diag-attention", {"block_size": 4})):
        m = create("attention", name, dim=16, num_heads=2, **kw)
        out = m(x, key_padding_mask=pad)
        assert out.shape == (2, 11, 16)
        x2 = x.detach().clone()
        x2[0, 8:] = 5.0
        out2 = m(x2, key_padding_mask=pad)
        torch.testing.assert_close(out[0, :8], out2[0, :8])
        out.square().sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_gradcheck_causal_norm_attention():
    q, k, v = (t[:1, :1, :6, :3].clone().requires_grad_() for t in _qkv())
    assert torch.autograd.gradcheck(
        lambda q, k, v: norm_attention(q, k, v, causal=True, chunk_size=4), (q, k, v))


def test_causal_modules_ignore_the_future():
    x = torch.randn(1, 12, 16)
    for m in (NormAttention(16, 2, causal=True), DiagAttention(16, 2, causal=True, block_size=4)):
        x2 = x.clone()
        x2[:, 7:] = torch.randn(1, 5, 16)
        torch.testing.assert_close(m(x)[:, :7], m(x2)[:, :7])


def test_stack_uses_diag_then_norm():
    net = TransNormer(16, 2, depth=4, block_size=4, causal=True)
    assert [layer.kind for layer in net.layers] == ["diag", "diag", "norm", "norm"]
    assert net(torch.randn(2, 9, 16)).shape == (2, 9, 16)


def test_bad_inputs():
    q, k, v = _qkv()
    with pytest.raises(ArgumentError):
        diag_attention(q, k, v, block_size=0)
    with pytest.raises(ShapeError):
        diag_attention(q, k[:, :, :5], v[:, :, :5], block_size=2)
    with pytest.raises(ArgumentError):
        norm_attention(q, k, v, norm="batchnorm")
    with pytest.raises(ArgumentError):
        NormAttention(16, 2, chunk_size=4)
    with pytest.raises(ArgumentError):
        TransNormer(16, 2, depth=2, num_diag=3)
