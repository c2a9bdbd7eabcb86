"""Performer / FAVOR+ (note B3): convergence to softmax attention, positivity, causality."""

from __future__ import annotations

import pytest
import torch

from paperlab import create
from paperlab.attention import scaled_dot_product_attention
from paperlab.attention.performer import (
    PerformerAttention,
    draw_projection,
    kernel_estimate,
    performer_attention,
)
from paperlab.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.note("B3", reference="exact softmax attention")

D = 16


def _qkv(n=48, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 2, n, D, generator=g, dtype=torch.float64) * scale for _ in range(3)]


def _error(m, causal=False, orthogonal=True, draws=4):
    q, k, v = _qkv()
    exact = scaled_dot_product_attention(q, k, v, causal=causal)
    errs = []
    for s in range(draws):
        w = draw_projection(m, D, orthogonal=orthogonal, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(100 + s))
        errs.append(float((performer_attention(q, k, v, features=w, causal=causal)
                           - exact).abs().mean()))
    return sum(errs) / len(errs)


@pytest.mark.parametrize("causal", [False, True])
def test_estimate_converges_to_softmax_attention(causal):
    small, large = _error(64, causal), _error(4096, causal)
    assert large < small / 3, (small, large)


def test_orthogonal_rows_are_orthogonal_within_a_block():
    w = draw_projection(2 * D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = w[:D] / w[:D].norm(dim=-1, keepdim=True)
    assert torch.allclose(u @ u.T, torch.eye(D, dtype=torch.float64), atol=1e-10)


def test_positive_features_give_positive_kernel_estimates():
    q, k, _ = _qkv(scale=1.5)
    w = draw_projection(32, D, dtype=torch.float64)
    assert (kernel_estimate(q, k, w) > 0).all()
    assert (kernel_estimate(q, k, w, kind="trig") < 0).any()


def test_causal_output_ignores_future_tokens():
    q, k, v = _qkv(n=20)
    w = draw_projection(64, D, dtype=torch.float64)
    out = performer_attention(q, k, v, features=w, causal=True, chunk_size=8)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 11:] = 10.0 * torch.randn_like(k2[:, :, 11:])
    v2[:, :, 11:] += 3.0
    out2 = performer_attention(q, k2, v2, features=w, causal=True, chunk_size=8)
    torch.testing.assert_close(out[:, :, :11], out2[:, :, :11], rtol=0, atol=1e-12)


def test_chunked_causal_equals_quadratic_estimate():
    q, k, v = _qkv(n=20)
    w = draw_projection(32, D, dtype=torch.float64)
    a = performer_attention(q, k, v, features=w, causal=True, chunk_size=4)
    b = performer_attention(q, k, v, features=w, causal=True, chunk_size=64)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_gradcheck_causal():
    q, k, v = (t[:, :1, :6, :4].clone().requires_grad_() for t in _qkv())
    w = draw_projection(8, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k, v: performer_attention(q, k, v, features=w, causal=True, chunk_size=4),
        (q, k, v))


def test_padding_equals_dropping_keys():
    q, k, v = _qkv(n=10)
    w = draw_projection(32, D, dtype=torch.float64)
    pad = torch.zeros(1, 10, dtype=torch.bool)
    pad[:, 7:] = True
    a = performer_attention(q, k, v, features=w, key_padding_mask=pad)
    b = performer_attention(q, k[:, :, :7], v[:, :, :7], features=w)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_module_shapes_redraw_and_errors():
    m = create("attention", "performer", dim=32, num_heads=2, causal=True, seed=0,
               redraw_every=2)
    x = torch.randn(2, 9, 32)
    assert m(x).shape == (2, 9, 32)
    w0 = m.projection.clone()
    m(x)
    m(x)
    assert not torch.equal(w0, m.projection)
    m.redraw_features()
    m.eval()
    w1 = m.projection.clone()
    m(x)
    m(x)
    m(x)
    assert torch.equal(w1, m.projection)
    with pytest.raises(ArgumentError):
        PerformerAttention(32, 2, num_features=0)
    with pytest.raises(ArgumentError):
        PerformerAttention(32, 2, kind="cos")
    with pytest.raises(ArgumentError):
        m(x, use_cache=True)
    q, k, v = _qkv()
    with pytest.raises(ShapeError):
        performer_attention(q, k, v, features=torch.randn(8, D + 1))
    with pytest.raises(ArgumentError):
        draw_projection(0, D)


def test_module_float32_no_nan_with_large_inputs():
    m = PerformerAttention(32, 2, causal=True, seed=0)
    x = 20 * torch.randn(1, 64, 32)
    assert torch.isfinite(m(x)).all()
