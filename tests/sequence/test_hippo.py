"""HiPPO (note C3): the LegS/LegT matrices, discretisation, online projection, reconstruction.

References: loop transcriptions of the paper's formulas, scipy's matrix exponential, and the
exact Legendre projection of a piecewise-constant signal (integrals of Legendre polynomials
in closed form), which the zero-order-hold LegS update must reproduce to float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from parity import assert_close

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.sequence.hippo import (
    METHODS,
    HiPPO,
    discretize,
    legendre,
    legs_matrices,
    legs_step_matrices,
    legt_matrices,
    reconstruct,
)

pytestmark = pytest.mark.note("C3", reference="definition")


def _legs_loop(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(N, N, dtype=torch.float64)
    B = torch.zeros(N, dtype=torch.float64)
    for n in range(N):
        B[n] = math.sqrt(2 * n + 1)
        for k in range(N):
            if n > k:
                A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A, B


def _legt_loop(N: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(N, N, dtype=torch.float64)
    B = torch.zeros(N, dtype=torch.float64)
    for n in range(N):
        B[n] = math.sqrt(2 * n + 1) / theta
        for k in range(N):
            sign = 1.0 if n >= k else (-1.0) ** (n - k)
            A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1) * sign / theta
    return A, B


@pytest.mark.parametrize("N", [1, 2, 5, 33])
def test_legs_matrices_equal_the_formula(N):
    A, B = legs_matrices(N)
    A_ref, B_ref = _legs_loop(N)
    assert_close((A, B), (A_ref, B_ref), atol=0, rtol=1e-15)
    # -A^{-1} B = e_0: the constant signal's coefficients are (1, 0, 0, ...).
    assert_close(-torch.linalg.solve(A, B), torch.eye(N, dtype=torch.float64)[0])


@pytest.mark.parametrize("N,theta", [(1, 1.0), (6, 2.5), (17, 0.3)])
def test_legt_matrices_equal_the_formula(N, theta):
    A, B = legt_matrices(N, theta)
    A_ref, B_ref = _legt_loop(N, theta)
    assert_close((A, B), (A_ref, B_ref))


def test_discretize_methods_match_their_formulas():
    A, B = legt_matrices(8, theta=2.0)
    dt = 0.05
    eye = np.eye(8)
    a, b = A.numpy(), B.numpy()
    expm = scipy.linalg.expm(dt * a)
    refs = {
        "forward": (eye + dt * a, dt * b),
        "backward": (np.linalg.inv(eye - dt * a), np.linalg.inv(eye - dt * a) @ (dt * b)),
        "bilinear": (np.linalg.inv(eye - dt / 2 * a) @ (eye + dt / 2 * a),
                     np.linalg.inv(eye - dt / 2 * a) @ (dt * b)),
        "zoh": (expm, np.linalg.inv(a) @ (expm - eye) @ b),
    }
    for method, (Ad_ref, Bd_ref) in refs.items():
        Ad, Bd = discretize(A, B, dt, method)
        assert_close((Ad, Bd), (torch.from_numpy(Ad_ref), torch.from_numpy(Bd_ref)), what=method)


def test_legs_step_matrices_batched_equals_single_steps():
    A, B = legs_matrices(6)
    for method in METHODS:
        Ads, Bds = legs_step_matrices(A, B, torch.arange(5), method)
        for k in range(5):
            Ad, Bd = legs_step_matrices(A, B, k, method)
            assert_close((Ads[k], Bds[k]), (Ad, Bd), what=f"{method} k={k}")
    Ad0, Bd0 = legs_step_matrices(A, B, 0, "zoh")  # the memory restarts from f_0 alone
    assert_close((Ad0, Bd0), (torch.zeros(6, 6, dtype=torch.float64),
                              torch.eye(6, dtype=torch.float64)[0]))


def _staircase_projection(f: torch.Tensor, N: int) -> torch.Tensor:
    """Exact LegS coefficients of f_i held on [i, i+1], at t = L (closed-form integrals)."""
    L = len(f)
    edges = 2 * torch.arange(L + 1, dtype=torch.float64) / L - 1  # [0, L] mapped to [-1, 1]
    P = legendre(N + 1, edges)  # (N+1, L+1)
    c = torch.zeros(N, dtype=torch.float64)
    for n in range(N):
        # integral of P_n: x for n = 0, (P_{n+1} - P_{n-1}) / (2n + 1) otherwise
        antider = edges if n == 0 else (P[n + 1] - P[n - 1]) / (2 * n + 1)
        pieces = antider[1:] - antider[:-1]
        c[n] = math.sqrt(2 * n + 1) / 2 * (f * pieces).sum()
    return c


@pytest.mark.parametrize("N", [4, 16])
def test_legs_zoh_is_the_exact_projection_of_a_staircase(N):
    g = torch.Generator().manual_seed(0)
    f = torch.randn(40, generator=g, dtype=torch.float64)
    states = HiPPO(N, "legs", "zoh")(f)
    for L in (1, 7, 40):
        assert_close(states[L - 1], _staircase_projection(f[:L], N), atol=1e-10, rtol=1e-9,
                     what=f"L={L}")


def test_step_by_step_equals_forward_and_batches():
    for measure in ("legs", "legt"):
        h = HiPPO(8, measure, "bilinear", theta=3.0, dt=0.1)
        f = torch.randn(3, 25, dtype=torch.float64)
        states = h(f)
        c = torch.zeros(3, 8, dtype=torch.float64)
        for k in range(25):
            c = h.step(c, f[:, k], k)
        assert_close(c, states[:, -1], what=measure)
        assert_close(h(f[1]), states[1], what=f"{measure} unbatched")


def _smooth(s: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * 3 * s) + 0.5 * torch.cos(2 * math.pi * 5 * s + 0.3) + 0.3 * s


def test_legs_reconstruction_error_falls_with_N():
    L = 300
    s = (torch.arange(L, dtype=torch.float64) + 0.5) / L  # sample i held on [i, i+1]
    f = _smooth(s)
    errors = []
    for N in (8, 16, 32, 64):
        h = HiPPO(N, "legs", "zoh")
        c = h(f)[-1]
        errors.append(((h.reconstruct(c, s) - f) ** 2).mean().sqrt().item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 100 and errors[-1] < 1e-3, errors


def test_legt_remembers_the_last_window():
    dt, L = 1 / 200, 500
    t = (torch.arange(L, dtype=torch.float64) + 0.5) * dt
    f = torch.sin(2 * math.pi * 0.7 * t) + 0.4 * torch.cos(2 * math.pi * 1.3 * t)
    window = t >= L * dt - 1.0
    s = t[window] - (L * dt - 1.0)
    errors = []
    for N in (4, 16):
        h = HiPPO(N, "legt", "bilinear", theta=1.0, dt=dt)
        r = h.reconstruct(h(f)[-1], s)
        errors.append(((r - f[window]) ** 2).mean().sqrt().item())
    assert errors[1] < errors[0] / 100 and errors[1] < 1e-3, errors


def test_legendre_matches_numpy():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    P = legendre(7, x)
    for n in range(7):
        coef = np.zeros(n + 1)
        coef[n] = 1
        assert_close(P[n], torch.from_numpy(np.polynomial.legendre.legval(x.numpy(), coef)))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ArgumentError, match="N must be >= 1, got 0"):
        legs_matrices(0)
    with pytest.raises(ArgumentError, match="N must be >= 1, got -3"):
        HiPPO(-3)
    with pytest.raises(ArgumentTypeError, match="N must be an int"):
        legt_matrices(2.5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="theta must be a positive"):
        legt_matrices(4, theta=0.0)
    with pytest.raises(ArgumentError, match="method must be one of"):
        HiPPO(4, method="euler")
    with pytest.raises(ArgumentError, match="measure must be one of"):
        HiPPO(4, measure="lagt")
    with pytest.raises(ArgumentError, match="dt must be a positive"):
        discretize(*legs_matrices(3), dt=-1.0)
    with pytest.raises(ShapeError, match="A must be"):
        discretize(torch.zeros(3, 4), torch.zeros(3), 0.1)
    with pytest.raises(ShapeError, match=r"f must be a tensor \(..., L\) with L >= 1"):
        HiPPO(4)(torch.zeros(2, 0))
    with pytest.raises(ShapeError, match="c must be"):
        HiPPO(4).step(torch.zeros(2, 5), torch.zeros(2), 0)
    with pytest.raises(ShapeError, match="s must be a 1-D"):
        reconstruct(torch.zeros(4), torch.zeros(2, 2))
    with pytest.raises(ArgumentError, match="k must be >= 0"):
        legs_step_matrices(*legs_matrices(3), k=-1)
