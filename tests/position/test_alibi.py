"""ALiBi: slopes against the paper and the reference recipe, bias values, offsets, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ShapeError
from paperlab.position.alibi import ALiBi, alibi_bias, alibi_slopes

pytestmark = pytest.mark.note("A1")


def test_slopes_for_8_heads_are_the_papers_list():
    want = torch.tensor([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256],
                        dtype=torch.float64)
    assert torch.equal(alibi_slopes(8, dtype=torch.float64), want)


def test_slopes_for_12_heads_follow_the_reference_recipe():
    # 8 heads' sequence, then every other slope of the 16-head sequence 2^(-k/2), k = 1, 3, 5, 7
    want = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k / 2) for k in (1, 3, 5, 7)]
    assert_close(alibi_slopes(12, dtype=torch.float64), torch.tensor(want, dtype=torch.float64))
    assert alibi_slopes(16, dtype=torch.float64)[0] == 2.0**-0.5
    assert alibi_slopes(1, dtype=torch.float64).tolist() == [2.0**-8]


@pytest.mark.parametrize("num_heads", [4, 8, 12, 20, 48])
def test_slopes_match_hf_bloom(num_heads):
    require("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    alibi = build_alibi_tensor(torch.ones(1, 2), num_heads, torch.float32)  # slope * position
    assert_close(alibi_slopes(num_heads), alibi[:, 0, 1])


def test_bias_values_and_offsets():
    slopes = alibi_slopes(4, dtype=torch.float64)
    n = 6
    causal = alibi_bias(n, n, slopes)
    sym = alibi_bias(n, n, slopes, causal=False)
    for h in range(4):
        for i in range(n):
            for j in range(n):
                assert sym[0, h, i, j] == -slopes[h] * abs(i - j)
                want = -slopes[h] * (i - j) if j <= i else float("-inf")
                assert causal[0, h, i, j] == want
    full = alibi_bias(10, 10, slopes)
    assert torch.equal(alibi_bias(3, 10, slopes), full[:, :, 7:])
    assert torch.equal(alibi_bias(3, 10, slopes, offset=2), full[:, :, 2:5])


def test_softmax_equals_the_reference_formulation():
    """The reference adds slope * j plus a causal mask: same attention, rows differ by constants."""
    slopes = alibi_slopes(8, dtype=torch.float64)
    n = 12
    scores = torch.randn(1, 8, n, n, dtype=torch.float64)
    j = torch.arange(n, dtype=torch.float64)
    mask = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    ref = slopes[:, None, None] * j + mask
    assert_close((scores + alibi_bias(n, n, slopes)).softmax(-1), (scores + ref).softmax(-1))


def test_module_interface():
    alibi = ALiBi(4)
    q, k = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 9, 8)
    out = alibi(q, k)
    assert out.shape == (1, 4, 3, 9) and out.dtype == torch.float32
    assert torch.equal(out, alibi_bias(3, 9, alibi_slopes(4)))
    assert alibi(q.double(), k.double()).dtype == torch.float64
    assert alibi.kind == "bias" and not alibi.content_dependent
    assert not list(alibi.parameters())


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="num_heads"):
        alibi_slopes(0)
    with pytest.raises(ShapeError, match="slopes"):
        alibi_bias(2, 2, torch.ones(2, 2))
    with pytest.raises(ArgumentError, match="offset"):
        alibi_bias(2, 2, alibi_slopes(2), offset=-3)
    with pytest.raises(ShapeError, match="H=4"):
        ALiBi(4)(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8))
