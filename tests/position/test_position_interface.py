"""The plug-in interface of ``paperlab.position``: every registered encoding, by kind.

A toy attention that knows only the interface (``kind``, ``rotate``, ``default_scale``, the
bias call) runs every encoding; decoding the last N queries with an offset gives the rows of
the full computation.
"""

from __future__ import annotations

import pytest
import torch

import paperlab
from paperlab.position import KINDS, kind_of
from paperlab.registry import names

pytestmark = pytest.mark.note("A1")

H, D = 2, 8
EXAMPLES = {
    "sinusoidal": dict(dim=H * D),
    "learned": dict(max_positions=64, dim=H * D),
    "recursive": dict(dim=H * D),
    "multiplicative": dict(dim=H * D),
    "rope": dict(dim=D),
    "rope-2d": dict(dim=D),
    "shaw": dict(max_distance=4, head_dim=D),
    "t5": dict(num_heads=H, num_buckets=8, max_distance=16),
    "xl": dict(num_heads=H, head_dim=D),
    "deberta": dict(num_heads=H, head_dim=D, max_distance=4),
    "alibi": dict(num_heads=H),
}


def test_every_encoding_is_registered_with_a_kind():
    assert set(EXAMPLES) <= set(names("position"))
    for name in EXAMPLES:
        assert kind_of(name) in KINDS
    assert kind_of("rope") == "rotary" and kind_of("t5") == "bias"
    assert kind_of("sinusoidal") == "absolute"


def _logits(pe, x, *, offset=0, grid=None):
    """Toy attention logits (B, H, N, M) for x (B, T, H*D); queries are the last N tokens."""
    b, t, _ = x.shape
    n = t - offset
    if pe.kind == "absolute":
        x = torch.cat((pe(x[:, :offset]), pe(x[:, offset:], offset=offset)), dim=1)
    heads = x.view(b, t, H, D).transpose(1, 2)
    q, k = heads[:, :, offset:], heads
    scale = D**-0.5
    if pe.kind == "rotary":
        kw = {"grid": grid} if grid else {}
        q = pe.rotate(q, offset=offset) if not grid else pe.rotate(heads, **kw)[:, :, offset:]
        k = pe.rotate(k, **kw)
    logits = q @ k.transpose(-1, -2)
    if pe.kind == "bias":
        scale = pe.default_scale(D)
        return logits * scale + pe(q, k, scale=scale)
    assert logits.shape == (b, H, n, t)
    return logits * scale


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_decoding_with_an_offset_gives_the_rows_of_the_full_computation(name):
    torch.manual_seed(0)
    pe = paperlab.create("position", name, **EXAMPLES[name]).double()
    x = torch.randn(2, 16, H * D, dtype=torch.float64)
    grid = (4, 4) if name == "rope-2d" else None
    full = _logits(pe, x, grid=grid)
    assert full.shape == (2, H, 16, 16) and not torch.isnan(full).any()
    tail = _logits(pe, x, offset=11, grid=grid)
    assert torch.allclose(tail, full[:, :, 11:], rtol=1e-12, atol=1e-12)  # -inf == -inf


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_positions_matter(name):
    """Shifting the tokens changes the result: the encoding breaks permutation symmetry."""
    torch.manual_seed(1)
    pe = paperlab.create("position", name, **EXAMPLES[name]).double()
    x = torch.randn(1, 16, H * D, dtype=torch.float64)
    grid = (4, 4) if name == "rope-2d" else None
    perm = torch.randperm(16)
    a = _logits(pe, x, grid=grid)[:, :, perm][:, :, :, perm]
    b = _logits(pe, x[:, perm], grid=grid)
    finite = a.isfinite() & b.isfinite()
    assert not torch.allclose(a[finite], b[finite])
