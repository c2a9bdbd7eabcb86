"""Multiplicative absolute positions: y = x * p for the sinusoidal and the learned table,
offsets, gradients and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import paperlab
from paperlab.errors import ArgumentError, ShapeError
from paperlab.position import kind_of
from paperlab.position.multiplicative import MultiplicativePositionalEncoding, multiply_positions

pytestmark = pytest.mark.note("A1", reference="definition")


def _loop_reference(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """x[b, k, j] * (sin or cos)((offset + k) / base^(2i/d)), one element at a time."""
    b, n, d = x.shape
    out = torch.empty_like(x, dtype=torch.float64)
    for bi in range(b):
        for k in range(n):
            for j in range(d):
                angle = (offset + k) / base ** (2 * (j // 2) / d)
                p = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                out[bi, k, j] = float(x[bi, k, j]) * p
    return out


def test_sinusoidal_table_multiplies_the_input():
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    pe = MultiplicativePositionalEncoding(6)
    assert kind_of("multiplicative") == "absolute"
    torch.testing.assert_close(pe(x), _loop_reference(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pe(x, offset=50), _loop_reference(x, 50), rtol=1e-12, atol=1e-12)
    assert not list(pe.parameters())


def test_learned_table_multiplies_and_starts_near_one():
    torch.manual_seed(0)
    pe = paperlab.create("position", "multiplicative", dim=4, table="learned", max_positions=16)
    w = pe.weight.detach()
    assert w.shape == (16, 4) and (w - 1).abs().max() < 0.2 and (w - 1).std() > 0.005
    x = torch.randn(2, 5, 4)
    assert torch.equal(pe(x).detach(), x * w[:5])
    assert torch.equal(pe(x, offset=11).detach(), x * w[11:16])
    ids = torch.tensor([[4, 3, 2, 1, 0], [0, 0, 9, 9, 15]])
    assert torch.equal(pe(x, position_ids=ids).detach(), x * w[ids])


def test_the_position_scales_not_shifts():
    """Zero input stays zero (an additive encoding would give p); doubling x doubles y."""
    pe = MultiplicativePositionalEncoding(8)
    assert torch.equal(pe(torch.zeros(1, 4, 8)), torch.zeros(1, 4, 8))
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(pe(2 * x), 2 * pe(x))


def test_learned_rows_get_gradients_of_x():
    pe = MultiplicativePositionalEncoding(4, table="learned", max_positions=8)
    x = torch.randn(3, 5, 4)
    pe(x, offset=2).sum().backward()
    g = pe.weight.grad
    torch.testing.assert_close(g[2:7], x.sum(0))
    assert g[:2].abs().sum() == 0 and g[7:].abs().sum() == 0


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="table must be one of"):
        MultiplicativePositionalEncoding(8, table="rope")
    with pytest.raises(ArgumentError, match="dim must be even"):
        MultiplicativePositionalEncoding(7)
    MultiplicativePositionalEncoding(7, table="learned")  # any dim for a learned table
    with pytest.raises(ArgumentError, match="max_positions"):
        MultiplicativePositionalEncoding(8, table="learned", max_positions=0)
    with pytest.raises(ArgumentError, match="base must be > 0"):
        MultiplicativePositionalEncoding(8, base=-1.0)
    pe = MultiplicativePositionalEncoding(8, table="learned", max_positions=8)
    with pytest.raises(ArgumentError, match="max_positions=8"):
        pe(torch.randn(1, 5, 8), offset=4)
    with pytest.raises(ShapeError, match=r"x must be \(B, N, C=8\)"):
        pe(torch.randn(1, 5, 3))
    with pytest.raises(ShapeError, match="p must be"):
        multiply_positions(torch.randn(2, 5, 4), torch.randn(4, 4))
    with pytest.raises(ShapeError, match="p has batch 3"):
        multiply_positions(torch.randn(2, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(ShapeError, match="x must be"):
        multiply_positions(torch.randn(5, 4), torch.randn(5, 4))
