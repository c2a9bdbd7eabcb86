"""Shaw, Transformer-XL/XLNet and DeBERTa relative terms against direct loop transcriptions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close

from paperlab.errors import ShapeError
from paperlab.position.relative import (
    DebertaRelativePosition,
    ShawRelativePosition,
    XLRelativePosition,
    deberta_position_terms,
    rel_shift,
    shaw_scores,
    shaw_values,
    xl_relative_distances,
    xl_relative_scores,
)

pytestmark = pytest.mark.note("A1", reference="definition")

CASES = [(5, 5, None), (3, 8, None), (4, 9, 2), (6, 4, 0)]  # (N, M, offset)


def _qk(b, h, n, m, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, m, d, generator=g, dtype=torch.float64)
    return q, k


def _offset(n, m, offset):
    return m - n if offset is None else offset


# --- Shaw --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,m,offset", CASES)
def test_shaw_matches_a_loop(n, m, offset):
    b, h, d, kmax = 2, 3, 4, 2
    shaw = ShawRelativePosition(kmax, d, values=True).double()
    q, k = _qk(b, h, n, m, d)
    got = shaw(q, k, scale=0.5, offset=offset)
    w, wv = shaw.key_embeddings.weight.detach(), shaw.value_embeddings.weight.detach()
    off = _offset(n, m, offset)
    want = torch.empty(b, h, n, m, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                for j in range(m):
                    rel = max(-kmax, min(kmax, j - (off + i)))
                    want[bi, hi, i, j] = 0.5 * (q[bi, hi, i] @ w[rel + kmax])
    assert_close(got, want)
    # the value term: out_i = sum_j alpha_ij a^V_ij
    alpha = torch.rand(b, h, n, m, dtype=torch.float64)
    want_v = torch.zeros(b, h, n, d, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            rel = max(-kmax, min(kmax, j - (off + i)))
            want_v[:, :, i] += alpha[:, :, i, j, None] * wv[rel + kmax]
    table_v = shaw.table(n, m, offset=offset, values=True)
    assert_close(shaw_values(alpha, table_v), want_v)
    # Shaw's logit is q_i . (k_j + a_ij): the bias is the a_ij part
    table = shaw.table(n, m, offset=offset)
    full = torch.einsum("bhnd,bhnmd->bhnm", q, k[:, :, None] + table[None, None])
    assert_close(q @ k.transpose(-1, -2) + shaw_scores(q, table), full)


# --- Transformer-XL / XLNet --------------------------------------------------------------------


def _sinusoid(dist, dim, base=10000.0):
    return torch.tensor(
        [f(dist / base ** (2 * (t // 2) / dim)) for t in range(dim)
         for f in ([math.sin] if t % 2 == 0 else [math.cos])],
        dtype=torch.float64,
    )


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 7))
def test_rel_shift_reindexes_by_distance(n, m):
    length = n + m - 1
    x = torch.randn(2, n, length, dtype=torch.float64)
    out = rel_shift(x)
    for i in range(n):
        for j in range(m):
            assert out[1, i, j] == x[1, i, j + n - 1 - i]


@pytest.mark.parametrize("n,m,offset", CASES)
def test_xl_scores_match_a_loop(n, m, offset):
    b, h, d = 2, 2, 4
    xl = XLRelativePosition(h, d, dim=6).double()
    q, k = _qk(b, h, n, m, d, seed=1)
    off = _offset(n, m, offset)
    r = xl.relative_keys(n, m, off, q)
    u, v, w_r = xl.u.detach(), xl.v.detach(), xl.w_r.weight.detach()
    full = xl_relative_scores(q, k, r, u, v)
    want = torch.empty(b, h, n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            rel = (w_r @ _sinusoid(off + i - j, 6)).view(h, d)  # W_r R_{i-j}, per head
            for bi in range(b):
                for hi in range(h):
                    want[bi, hi, i, j] = (q[bi, hi, i] + u[hi]) @ k[bi, hi, j] + (
                        q[bi, hi, i] + v[hi]
                    ) @ rel[hi]
    assert_close(full.detach(), want)
    bias = xl(q, k, scale=0.25, offset=offset)
    assert_close(q @ k.transpose(-1, -2) * 0.25 + bias, want * 0.25)


def test_xl_distances_cover_every_pair():
    d = xl_relative_distances(3, 5, offset=2)
    assert d.tolist() == [4, 3, 2, 1, 0, -1, -2]


# --- DeBERTa -------------------------------------------------------------------------------------


def _delta(i, j, k):
    if i - j <= -k:
        return 0
    if i - j >= k:
        return 2 * k - 1
    return i - j + k


@pytest.mark.parametrize("n,m,offset", CASES)
@pytest.mark.parametrize("kmax", [1, 3])
def test_deberta_matches_a_loop(n, m, offset, kmax):
    b, h, d = 2, 2, 4
    deb = DebertaRelativePosition(h, d, kmax, dim=5).double()
    q, k = _qk(b, h, n, m, d, seed=2)
    off = _offset(n, m, offset)
    p = deb.rel_embeddings.detach()
    q_r = deb.query_proj(p).detach().view(2 * kmax, h, d)
    k_r = deb.key_proj(p).detach().view(2 * kmax, h, d)
    want = torch.empty(b, h, n, m, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                for j in range(m):
                    pi = off + i
                    c2c = q[bi, hi, i] @ k[bi, hi, j]
                    c2p = q[bi, hi, i] @ k_r[_delta(pi, j, kmax), hi]
                    p2c = k[bi, hi, j] @ q_r[_delta(j, pi, kmax), hi]
                    want[bi, hi, i, j] = (c2c + c2p + p2c) / math.sqrt(3 * d)
    scale = deb.default_scale(d)
    got = q @ k.transpose(-1, -2) * scale + deb(q, k, offset=offset)
    assert_close(got.detach(), want)
    terms = deberta_position_terms(q, k, q_r.transpose(0, 1), k_r.transpose(0, 1), kmax,
                                   offset=off)
    assert_close(terms * scale, deb(q, k, offset=offset).detach())


def test_modules_give_gradients_to_every_parameter():
    q, k = _qk(2, 2, 3, 5, 4)
    q, k = q.float(), k.float()
    modules = (
        ShawRelativePosition(2, 4), XLRelativePosition(2, 4), DebertaRelativePosition(2, 4, 3)
    )
    for pe in modules:
        pe(q, k).square().sum().backward()
        for name, prm in pe.named_parameters():
            assert prm.grad is not None and prm.grad.abs().sum() > 0, name
        assert pe.kind == "bias" and pe.content_dependent


def test_bad_input_names_the_argument():
    q, k = _qk(1, 2, 3, 5, 4)
    with pytest.raises(ShapeError, match="head dim"):
        ShawRelativePosition(2, 8).double()(q, k)
    with pytest.raises(ShapeError, match="H=3"):
        XLRelativePosition(3, 4).double()(q, k)
    with pytest.raises(ShapeError, match="r must be"):
        xl_relative_scores(q, k, torch.zeros(2, 5, 4, dtype=torch.float64),
                           torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ShapeError, match="q_r"):
        deberta_position_terms(q, k, torch.zeros(2, 3, 4), torch.zeros(2, 4, 4), 2)
    with pytest.raises(ShapeError, match="M >= N"):
        DebertaRelativePosition(2, 4).double()(k, q)
    with pytest.raises(ShapeError, match="k must be"):
        ShawRelativePosition(2, 4)(q, k[..., :3])
