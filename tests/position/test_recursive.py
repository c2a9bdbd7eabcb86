"""Recursive position encoding (FLOATER-style): the recurrence, its sinusoidal special case,
extrapolation by rolling further, offsets, gradients and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.position.recursive import (
    RecursivePositionalEncoding,
    roll_recurrence,
    rotate_pairs,
)
from paperlab.position.sinusoidal import sinusoidal_table

pytestmark = pytest.mark.note("A1", reference="definition")


def _loop_reference(pe: RecursivePositionalEncoding, n: int) -> list[list[float]]:
    """p_0 = r start / |start|, p_{k+1} = r u / |u| with u = R(w) p_k + h (W_2 tanh(W_1 p_k
    + b_1) + b_2) and r = sqrt(d / 2), in Python floats."""

    def onto_sphere(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(t * t for t in v))
        return [t * math.sqrt(len(v) / 2) / norm for t in v]

    start = onto_sphere(pe.start.detach().double().tolist())
    w = pe.angles.detach().double().tolist()
    w1, b1 = pe.up.weight.detach().double().tolist(), pe.up.bias.detach().double().tolist()
    w2, b2 = pe.down.weight.detach().double().tolist(), pe.down.bias.detach().double().tolist()
    d, h = len(start), len(b1)
    rows, p = [], start
    for _ in range(n):
        rows.append(p)
        nxt = [0.0] * d
        for i in range(d // 2):
            s, c = p[2 * i], p[2 * i + 1]
            nxt[2 * i] = s * math.cos(w[i]) + c * math.sin(w[i])
            nxt[2 * i + 1] = c * math.cos(w[i]) - s * math.sin(w[i])
        hidden = [math.tanh(sum(w1[j][t] * p[t] for t in range(d)) + b1[j]) for j in range(h)]
        for t in range(d):
            nxt[t] += pe.step_size * (sum(w2[t][j] * hidden[j] for j in range(h)) + b2[t])
        p = onto_sphere(nxt)
    return rows


def _randomised(dim: int = 8, hidden: int = 5, seed: int = 0) -> RecursivePositionalEncoding:
    torch.manual_seed(seed)
    pe = RecursivePositionalEncoding(dim, hidden=hidden, step_size=0.7).double()
    with torch.no_grad():
        for p in pe.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return pe


def test_table_equals_the_recurrence_written_out():
    pe = _randomised()
    ours = pe.table(12)
    ref = torch.tensor(_loop_reference(pe, 12), dtype=torch.float64)
    assert ours.shape == (12, 8)
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-12, atol=1e-12)


def test_each_row_is_the_step_of_the_previous_one():
    pe = _randomised(seed=1)
    t = pe.table(20).detach()
    for k in range(19):
        torch.testing.assert_close(pe.step(t[k]).detach(), t[k + 1], rtol=0, atol=1e-14)


def test_without_the_correction_it_is_the_sinusoidal_encoding():
    """p_k = R^k PE(0) = PE(k): the sinusoidal table is the linear special case (FLOATER)."""
    pe = RecursivePositionalEncoding(16).double()
    pe.reset_parameters()  # the angles from float64, not rounded to float32 first
    with torch.no_grad():
        pe.down.weight.zero_()
    table = pe.table(500).detach()
    ref = sinusoidal_table(500, 16, dtype=torch.float64)
    torch.testing.assert_close(table, ref, rtol=0, atol=1e-10)


def test_rotate_pairs_shifts_the_phase():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    a = torch.tensor([0.3, 1.7], dtype=torch.float64)
    p = torch.stack((x[:, None].sin() * torch.ones(2), x[:, None].cos() * torch.ones(2)), -1)
    out = rotate_pairs(p.flatten(-2), a).view(7, 2, 2)
    torch.testing.assert_close(out[..., 0], (x[:, None] + a).sin())
    torch.testing.assert_close(out[..., 1], (x[:, None] + a).cos())


def test_positions_stay_on_the_sphere_however_far_they_roll():
    pe = _randomised(seed=3)
    norms = pe.table(2000).detach().norm(dim=-1)
    torch.testing.assert_close(norms, torch.full((2000,), 2.0, dtype=torch.float64))


def test_roll_recurrence_of_a_counter():
    t = roll_recurrence(torch.zeros(3), lambda p: p + 1, 5)
    assert torch.equal(t, torch.arange(5.0)[:, None].expand(5, 3))
    assert roll_recurrence(torch.zeros(3), lambda p: p + 1, 0).shape == (0, 3)


def test_extrapolates_by_rolling_the_recurrence_further():
    """Trained at length 8 (one step fitting a target), used at 32 = 4L: the first 8 rows are
    unchanged, the rest come from the same step, all finite; no table runs out."""
    torch.manual_seed(0)
    pe = RecursivePositionalEncoding(8)
    opt = torch.optim.Adam(pe.parameters(), lr=1e-2)
    for _ in range(5):
        loss = pe(torch.randn(4, 8, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    short, long = pe.encoding(8).detach(), pe.encoding(32).detach()
    assert long.shape == (32, 8) and torch.isfinite(long).all()
    torch.testing.assert_close(long[:8], short, rtol=0, atol=0)
    for k in range(8, 31):
        torch.testing.assert_close(pe.step(long[k]).detach(), long[k + 1])
    x = torch.randn(2, 8, 8)
    assert torch.equal(pe(x, offset=1000).detach(), x + pe.encoding(1008).detach()[1000:])


def test_offset_and_position_ids_select_rows_of_the_table():
    pe = _randomised(seed=2)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    t = pe.table(30).detach()
    assert torch.allclose(pe(x).detach(), x + t[:6], rtol=0, atol=1e-15)
    assert torch.allclose(pe(x, offset=20).detach(), x + t[20:26], rtol=0, atol=1e-15)
    ids = torch.tensor([[5, 4, 3, 2, 1, 0], [0, 0, 1, 1, 29, 2]])
    out = pe(x, position_ids=ids).detach()
    assert out.shape == (2, 6, 8)
    assert torch.allclose(out, x + t[ids], rtol=0, atol=1e-15)
    assert pe.encoding(0).shape == (0, 8)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    pe = RecursivePositionalEncoding(8, hidden=4)
    (pe(torch.randn(2, 10, 8)) * torch.randn(2, 10, 8)).sum().backward()
    for name, p in pe.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="dim must be even"):
        RecursivePositionalEncoding(7)
    with pytest.raises(ArgumentError, match="dim must be >= 2"):
        RecursivePositionalEncoding(0)
    with pytest.raises(ArgumentTypeError, match="dim must be an int"):
        RecursivePositionalEncoding(8.0)
    with pytest.raises(ArgumentError, match="hidden must be >= 1"):
        RecursivePositionalEncoding(8, hidden=0)
    with pytest.raises(ArgumentError, match="base must be > 0"):
        RecursivePositionalEncoding(8, base=0.0)
    with pytest.raises(ArgumentError, match="step_size must be > 0"):
        RecursivePositionalEncoding(8, step_size=0.0)
    pe = RecursivePositionalEncoding(8)
    with pytest.raises(ShapeError, match=r"x must be \(B, N, C=8\)"):
        pe(torch.randn(2, 5, 6))
    with pytest.raises(ShapeError, match="x must be"):
        pe(torch.randn(5, 8))
    with pytest.raises(ArgumentError, match="offset"):
        pe(torch.randn(1, 5, 8), offset=-1)
    with pytest.raises(ArgumentError, match="position_ids must be >= 0"):
        pe(torch.randn(1, 3, 8), position_ids=torch.tensor([0, -1, 2]))
    with pytest.raises(ShapeError, match="start must be"):
        roll_recurrence(torch.zeros(2, 3), lambda p: p, 3)
    with pytest.raises(ArgumentTypeError, match="step must be callable"):
        roll_recurrence(torch.zeros(3), 3, 3)
    with pytest.raises(ArgumentError, match="n must be >= 0"):
        roll_recurrence(torch.zeros(3), lambda p: p, -1)
