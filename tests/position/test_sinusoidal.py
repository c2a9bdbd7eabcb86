"""Sinusoidal absolute encoding (Vaswani): loop transcription, HF parity, offsets, errors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ShapeError
from paperlab.position.sinusoidal import (
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
    sinusoidal_table,
)

pytestmark = pytest.mark.note("A1")


def _loop_table(n, d, base=10000.0):
    """PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(same), one entry at a time."""
    out = torch.empty(n, d, dtype=torch.float64)
    for p in range(n):
        for i in range(d // 2):
            angle = p / base ** (2 * i / d)
            out[p, 2 * i] = math.sin(angle)
            out[p, 2 * i + 1] = math.cos(angle)
    return out


@pytest.mark.parametrize("d,base", [(16, 10000.0), (6, 100.0)])
def test_table_matches_a_loop_transcription(d, base):
    assert_close(sinusoidal_table(50, d, base, dtype=torch.float64), _loop_table(50, d, base))


def test_table_matches_hf_distilbert():
    require("transformers")
    from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings

    ref = torch.empty(64, 32)
    create_sinusoidal_embeddings(64, 32, ref)
    assert_close(sinusoidal_table(64, 32), ref)


def test_offset_and_position_ids_equal_slicing_the_table():
    pe = SinusoidalPositionalEncoding(16)
    full = sinusoidal_table(40, 16)
    assert torch.equal(pe.encoding(10, offset=25), full[25:35])
    ids = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    assert torch.equal(pe.encoding(5, position_ids=ids), full[ids])
    x = torch.randn(2, 5, 16)
    assert torch.equal(pe(x, offset=7), x + full[7:12])
    assert torch.equal(pe(x, position_ids=ids), x + full[ids])


def test_encoding_is_a_rotation_of_a_shifted_position():
    """PE(p + k) is a fixed linear map of PE(p): the 'wants to be relative' property."""
    d, k = 8, 5
    p = torch.arange(30, dtype=torch.float64)
    a, b = sinusoidal_encoding(p, d, dtype=torch.float64), sinusoidal_encoding(p + k, d,
                                                                              dtype=torch.float64)
    m = torch.linalg.lstsq(a, b).solution
    assert_close(a @ m, b)


def test_module_keeps_dtype_and_has_no_parameters():
    pe = SinusoidalPositionalEncoding(8)
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    assert pe(x).dtype == torch.float64 and not list(pe.parameters())
    assert pe.kind == "absolute"


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="dim"):
        SinusoidalPositionalEncoding(7)
    with pytest.raises(ArgumentError, match="dim"):
        sinusoidal_table(4, 5)
    pe = SinusoidalPositionalEncoding(8)
    with pytest.raises(ShapeError, match="x must be"):
        pe(torch.randn(2, 3, 6))
    with pytest.raises(ArgumentError, match="offset"):
        pe(torch.randn(2, 3, 8), offset=-2)
    with pytest.raises(ShapeError, match="position_ids"):
        pe(torch.randn(2, 3, 8), position_ids=torch.arange(4))
    with pytest.raises(ShapeError, match="position_ids"):
        pe(torch.randn(2, 3, 8), position_ids=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ArgumentError, match="position_ids"):
        pe(torch.randn(2, 3, 8), position_ids=torch.tensor([0, -1, 2]))
    with pytest.raises(ArgumentError, match="not both"):
        pe(torch.randn(2, 3, 8), offset=1, position_ids=torch.arange(3))
