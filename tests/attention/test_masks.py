"""Shared shape and mask checks of ``paperlab.attention.masks``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab.attention.masks import (
    accumulation_dtype,
    attend_mask,
    band_mask,
    causal_mask,
    check_bias,
    check_key_padding_mask,
    check_mask,
    check_qkv,
    check_sequence,
    combine_masks,
    merge_heads,
    padding_to_mask,
    split_heads,
)
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

pytestmark = pytest.mark.note("B2")


def _qkv(n=5, m=7, d=4, dv=3, b=2, h=3, dtype=torch.float32):
    return (
        torch.randn(b, h, n, d, dtype=dtype),
        torch.randn(b, h, m, d, dtype=dtype),
        torch.randn(b, h, m, dv, dtype=dtype),
    )


def test_check_qkv_returns_the_sizes():
    shape = check_qkv(*_qkv())
    assert tuple(shape) == (2, 3, 5, 7, 4, 3)
    assert shape.scores == (2, 3, 5, 7)


def test_check_qkv_names_the_argument_and_shapes():
    q, k, v = _qkv()
    with pytest.raises(ShapeError, match=r"same head dim D: q \(2, 3, 5, 4\).*k \(2, 3, 7, 6\)"):
        check_qkv(q, torch.randn(2, 3, 7, 6), v)
    with pytest.raises(ShapeError, match="v must be"):
        check_qkv(q, k, torch.randn(2, 3, 6, 3))
    with pytest.raises(ShapeError, match="k must have q's batch and heads"):
        check_qkv(q, torch.randn(2, 2, 7, 4), v)
    with pytest.raises(ShapeError, match="q must be 4-D"):
        check_qkv(q[0], k, v)
    with pytest.raises(ArgumentTypeError, match="share one dtype"):
        check_qkv(q, k.double(), v)
    with pytest.raises(ArgumentTypeError, match="floating point"):
        check_qkv(q.long(), k, v)
    with pytest.raises(ArgumentTypeError, match="q must be a torch.Tensor"):
        check_qkv([1], k, v)


def test_mask_checks():
    shape = (2, 3, 5, 7)
    assert check_mask(None, shape) is None
    for ok in ((5, 7), (2, 1, 5, 7), (1, 3, 1, 7), (7,)):
        check_mask(torch.ones(ok, dtype=torch.bool), shape)
    with pytest.raises(ShapeError, match=r"mask must broadcast to \(B, H, N, M\) = \(2, 3, 5, 7\)"):
        check_mask(torch.ones(5, 6, dtype=torch.bool), shape)
    with pytest.raises(ShapeError, match="got shape"):
        check_mask(torch.ones(1, 1, 1, 5, 7, dtype=torch.bool), shape)
    with pytest.raises(ArgumentTypeError, match="torch.bool.*bias="):
        check_mask(torch.zeros(5, 7), shape)
    with pytest.raises(ArgumentTypeError, match="boolean mask as mask="):
        check_bias(torch.ones(5, 7, dtype=torch.bool), shape)
    with pytest.raises(ShapeError, match="bias must broadcast"):
        check_bias(torch.zeros(3, 7), shape)


def test_key_padding_mask_checks():
    check_key_padding_mask(torch.zeros(2, 7, dtype=torch.bool), 2, 7)
    with pytest.raises(ShapeError, match=r"\(B, M\) = \(2, 7\), got \(2, 6\)"):
        check_key_padding_mask(torch.zeros(2, 6, dtype=torch.bool), 2, 7)
    with pytest.raises(ArgumentTypeError, match="True = padding"):
        check_key_padding_mask(torch.zeros(2, 7), 2, 7)


def test_check_sequence():
    assert check_sequence(torch.randn(2, 5, 8), 8) == (2, 5)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, N, C\) with C=8"):
        check_sequence(torch.randn(2, 5, 6), 8)


def test_causal_mask_is_bottom_right_and_offset_zero_is_top_left():
    n, m = 3, 6
    bottom_right = causal_mask(n, m)
    assert torch.equal(bottom_right, torch.ones(n, m, dtype=torch.bool).tril(m - n))
    assert bottom_right[-1].all()  # the last query sees every key (KV cache)
    assert torch.equal(causal_mask(n, m, offset=0), torch.ones(n, m, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())
    more_queries = causal_mask(5, 3)
    assert not more_queries[:2].any() and more_queries[2:].any(dim=-1).all()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 9), extra=st.integers(0, 5), window=st.integers(1, 12), causal=st.booleans()
)
def test_band_mask_matches_its_definition(n, extra, window, causal):
    m = n + extra
    mask = band_mask(n, m, window, causal=causal)
    for i in range(n):
        for j in range(m):
            dist = i + m - n - j
            want = abs(dist) < window and (dist >= 0 or not causal)
            assert bool(mask[i, j]) == want
    if causal and window >= m:
        assert torch.equal(mask, causal_mask(n, m))


def test_band_mask_rejects_bad_window():
    for w in (0, -1):
        with pytest.raises(ArgumentError, match="window must be >= 1"):
            band_mask(4, 4, w)


def test_attend_mask_combines_everything():
    b, h, n, m = 2, 1, 3, 5
    pad = torch.tensor([[False] * 4 + [True], [False] * 5])
    extra = torch.ones(n, m, dtype=torch.bool)
    extra[0, 0] = False
    got = attend_mask((b, h, n, m), mask=extra, causal=True, key_padding_mask=pad)
    want = extra & padding_to_mask(pad) & causal_mask(n, m)
    assert torch.equal(got, want)
    assert attend_mask((b, h, n, m)) is None
    assert combine_masks(None, None) is None


def test_heads_round_trip_and_accumulation_dtype():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(merge_heads(heads), x)
    assert accumulation_dtype(torch.bfloat16) == torch.float32
    assert accumulation_dtype(torch.float16) == torch.float32
    assert accumulation_dtype(torch.float64) == torch.float64
