"""Learned absolute position embeddings: lookup, offsets, gradients, range errors."""

from __future__ import annotations

import pytest
import torch

from paperlab.errors import ArgumentError, ShapeError
from paperlab.position.learned import LearnedPositionalEmbedding, lookup_positions

pytestmark = pytest.mark.note("A1", reference="definition")


def test_offset_and_position_ids_select_table_rows():
    pe = LearnedPositionalEmbedding(32, 8)
    w = pe.weight.detach()
    x = torch.randn(2, 6, 8)
    assert torch.equal(pe(x).detach(), x + w[:6])
    assert torch.equal(pe(x, offset=20).detach(), x + w[20:26])
    ids = torch.tensor([[5, 4, 3, 2, 1, 0], [0, 0, 1, 1, 2, 2]])
    assert torch.equal(pe(x, position_ids=ids).detach(), x + w[ids])
    assert torch.equal(pe.encoding(6, offset=20), pe.encoding(26)[20:])


def test_only_used_rows_get_gradients():
    pe = LearnedPositionalEmbedding(16, 4)
    pe(torch.zeros(3, 5, 4), offset=2).sum().backward()
    g = pe.weight.grad
    assert torch.equal(g[2:7], torch.full((5, 4), 3.0))
    assert g[:2].abs().sum() == 0 and g[7:].abs().sum() == 0


def test_bad_input_names_the_argument():
    pe = LearnedPositionalEmbedding(8, 4)
    with pytest.raises(ArgumentError, match="max_positions=8"):
        pe(torch.randn(1, 5, 4), offset=4)
    with pytest.raises(ArgumentError, match="offset"):
        pe(torch.randn(1, 5, 4), offset=-1)
    with pytest.raises(ShapeError, match="x must be"):
        pe(torch.randn(1, 5, 3))
    with pytest.raises(ArgumentError, match="max_positions"):
        LearnedPositionalEmbedding(0, 4)
    with pytest.raises(ShapeError, match="table"):
        lookup_positions(torch.zeros(4), torch.arange(2))
