"""S4D (note C3): convolution mode == recurrent mode, and the kernel against independent forms.

References: the kernel by repeated multiplication with dA (no Vandermonde matrix); the kernel
of the equivalent dense *real* SSM (2x2 rotation blocks per conjugate pair) discretised with
scipy's matrix exponential; a direct causal convolution; ``torch.autograd.gradcheck`` on the
kernel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from parity import assert_close

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.sequence.s4 import (
    DISCRETIZATIONS,
    INITS,
    S4DBlock,
    S4DLayer,
    discretize_diagonal,
    fft_conv,
    s4d_init,
    s4d_kernel,
    s4d_recurrence,
    vandermonde_product,
)

pytestmark = pytest.mark.note("C3", reference="definition")


def _random_ssm(H: int, M: int, init: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # the init's diagonal, with the real parts spread a little per channel
    A = s4d_init(M, init, torch.complex128) - 0.1 * torch.rand(H, M, generator=g,
                                                               dtype=torch.float64)
    B = torch.randn(H, M, generator=g, dtype=torch.complex128)
    C = torch.randn(H, M, generator=g, dtype=torch.complex128)
    if init == "real":
        B, C = B.real.to(torch.complex128), C.real.to(torch.complex128)
    log_dt = torch.rand(H, generator=g, dtype=torch.float64) * math.log(100) + math.log(1e-3)
    dt = torch.exp(log_dt)  # log-uniform in [1e-3, 1e-1]
    return A, B, C, dt


@pytest.mark.parametrize("method", DISCRETIZATIONS)
@pytest.mark.parametrize("init", INITS)
def test_conv_mode_equals_recurrent_mode(init, method):
    H, M, L = 3, 4, 64
    A, B, C, dt = _random_ssm(H, M, init)
    conj = init != "real"
    u = torch.randn(2, H, L, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y_conv = fft_conv(u, s4d_kernel(A, B, C, dt, L, method, conj))
    y_rec, _ = s4d_recurrence(u, A, B, C, dt, method, conj)
    assert_close(y_conv, y_rec)


@pytest.mark.parametrize("method", DISCRETIZATIONS)
@pytest.mark.parametrize("init", INITS)
def test_vandermonde_kernel_equals_repeated_powers(init, method):
    H, M, L = 2, 5, 40
    A, B, C, dt = _random_ssm(H, M, init, seed=2)
    dA, dB = discretize_diagonal(A, B, dt, method)
    x, rows = dB.clone(), []
    for _ in range(L):
        rows.append((C * x).sum(-1).real)
        x = dA * x
    K_ref = torch.stack(rows, dim=-1)
    K_ref = 2 * K_ref if init != "real" else K_ref
    assert_close(s4d_kernel(A, B, C, dt, L, method, init != "real"), K_ref)


@pytest.mark.parametrize("L", [1, 2, 5, 16, 17, 130])
def test_factorised_vandermonde_equals_the_full_matrix(L):
    g = torch.Generator().manual_seed(L)
    w = torch.randn(3, 4, generator=g, dtype=torch.complex128)
    log_z = torch.complex(-0.05 * torch.rand(3, 4, generator=g, dtype=torch.float64),
                          torch.randn(3, 4, generator=g, dtype=torch.float64))
    V = torch.exp(log_z.unsqueeze(-1) * torch.arange(L, dtype=torch.float64))  # (H, M, L)
    ours, ref = vandermonde_product(w, log_z, L), torch.einsum("hm,hml->hl", w, V)
    assert_close(torch.view_as_real(ours), torch.view_as_real(ref))  # real and imaginary parts


def test_zoh_kernel_equals_dense_real_ssm_by_scipy_expm():
    """Each conjugate pair as a real 2x2 block; discretise [[A, B], [0, 0]] with expm."""
    H, M, L = 2, 3, 30
    A, B, C, dt = _random_ssm(H, M, "inv", seed=3)
    K = s4d_kernel(A, B, C, dt, L, "zoh")
    for h in range(H):
        a, b = A[h].real.numpy(), A[h].imag.numpy()
        dense = np.zeros((2 * M + 1, 2 * M + 1))
        c_row = np.zeros(2 * M)
        for m in range(M):
            i = 2 * m
            dense[i:i + 2, i:i + 2] = [[a[m], -b[m]], [b[m], a[m]]]
            dense[i, -1], dense[i + 1, -1] = B[h, m].real.item(), B[h, m].imag.item()
            c_row[i], c_row[i + 1] = 2 * C[h, m].real.item(), -2 * C[h, m].imag.item()
        E = scipy.linalg.expm(dense * dt[h].item())
        Ad, Bd = E[:-1, :-1], E[:-1, -1]
        ref, x = [], Bd
        for _ in range(L):
            ref.append(c_row @ x)
            x = Ad @ x
        assert_close(K[h], torch.tensor(ref), what=f"channel {h}")


def test_fft_conv_equals_direct_causal_convolution():
    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, 3, 17, generator=g, dtype=torch.float64)
    K = torch.randn(3, 17, generator=g, dtype=torch.float64)
    ref = torch.zeros_like(u)
    for t in range(17):
        for j in range(t + 1):
            ref[..., t] += K[:, j] * u[..., t - j]
    assert_close(fft_conv(u, K), ref)


@pytest.mark.parametrize("method", DISCRETIZATIONS)
def test_kernel_gradcheck(method):
    A, B, C, dt = _random_ssm(2, 3, "lin", seed=5)
    inputs = [t.clone().requires_grad_(True) for t in (A, B, C, dt)]
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: s4d_kernel(a, b, c, d, 6, method), inputs, eps=1e-6, atol=1e-7
    )


def test_init_values():
    lin = s4d_init(4, "lin", torch.complex128)
    assert_close((lin.real, lin.imag), (torch.full((4,), -0.5, dtype=torch.float64),
                                        math.pi * torch.arange(4, dtype=torch.float64)))
    inv = s4d_init(4, "inv", torch.complex128)
    N = 8
    ref = torch.tensor([N / math.pi * (N / (2 * n + 1) - 1) for n in range(4)],
                       dtype=torch.float64)
    assert_close(inv.imag, ref)
    real = s4d_init(3, "real", torch.complex128)
    assert_close(real.real, -torch.arange(1.0, 4.0, dtype=torch.float64))
    assert bool((real.imag == 0).all())


@pytest.mark.parametrize("init", INITS)
def test_layer_conv_recurrent_and_step_agree(init):
    torch.manual_seed(0)
    layer = S4DLayer(4, 8, init=init).double()
    x = torch.randn(2, 30, 4, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 30, 4)
    assert_close(layer(x, mode="recurrent"), y)
    state, steps = None, []
    for t in range(30):
        y_t, state = layer.step(x[:, t], state)
        steps.append(y_t)
    assert state.shape == (2, 4, layer.modes) and state.is_complex()
    assert_close(torch.stack(steps, dim=1), y)


@pytest.mark.parametrize("prenorm", [True, False])
def test_block_shapes_gradients_and_step(prenorm):
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(S4DBlock(6, 8, prenorm=prenorm) for _ in range(2)).double()
    x = torch.randn(3, 20, 6, dtype=torch.float64, requires_grad=True)
    y = x
    for b in blocks:
        y = b(y)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    for name, p in blocks.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().sum() > 0, name
    # Stepping the stack token by token gives the same outputs.
    states: list = [None, None]
    outs = []
    for t in range(20):
        h = x[:, t].detach()
        for i, b in enumerate(blocks):
            h, states[i] = b.step(h, states[i])
        outs.append(h)
    assert_close(torch.stack(outs, dim=1), y.detach())


def test_float32_layer_is_close_to_float64():
    torch.manual_seed(0)
    layer = S4DLayer(4, 16)
    x = torch.randn(2, 50, 4)
    y32 = layer(x)
    y64 = layer.double()(x.double())
    assert_close(y32, y64, dtype=torch.float32, atol=1e-4, rtol=1e-4)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ArgumentError, match="d_state must be >= 1, got 0"):
        S4DLayer(4, 0)
    with pytest.raises(ArgumentError, match="d_model must be >= 1"):
        S4DLayer(-1, 8)
    with pytest.raises(ArgumentError, match="d_state must be even"):
        S4DLayer(4, 7)
    S4DLayer(4, 7, init="real")  # real modes need no pairs
    with pytest.raises(ArgumentError, match="init must be one of"):
        S4DLayer(4, 8, init="legs")
    with pytest.raises(ArgumentError, match="dt_min"):
        S4DLayer(4, 8, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ArgumentError, match="modes must be >= 1"):
        s4d_init(0)
    layer = S4DLayer(4, 8)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, L, H\) with H = 4"):
        layer(torch.randn(2, 10, 5))
    with pytest.raises(ShapeError, match=r"x must have shape \(B, L, H\)"):
        layer(torch.randn(10, 4))
    with pytest.raises(ArgumentError, match="mode must be one of"):
        layer(torch.randn(2, 10, 4), mode="scan")
    with pytest.raises(ShapeError, match=r"state must have shape \(B, H, M\) = \(2, 4, 4\)"):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4, 3, dtype=torch.cfloat))
    A, B, C, dt = _random_ssm(2, 3, "lin")
    with pytest.raises(ArgumentError, match="L must be >= 1, got 0"):
        s4d_kernel(A, B, C, dt, 0)
    with pytest.raises(ShapeError, match="C must have A's shape"):
        s4d_kernel(A, B, C[:, :2], dt, 5)
    with pytest.raises(ShapeError, match=r"dt must be real with shape \(H,\)"):
        s4d_kernel(A, B, C, dt[:1], 5)
    with pytest.raises(ShapeError, match="same H and L"):
        fft_conv(torch.randn(2, 3, 10), torch.randn(3, 9))
    with pytest.raises(ArgumentTypeError, match="must be torch.Tensors"):
        fft_conv([1.0], torch.randn(3, 9))  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="method must be one of"):
        s4d_kernel(A, B, C, dt, 5, method="euler")
