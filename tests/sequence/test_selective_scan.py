"""The chunked selective scan (note C3): equal to the sequential loop and a float64 transcription
of the recurrence for every chunk size (dividing L or not), with an initial state and the final
state, in float64 (1e-12) and float32 (1e-5); gradients equal (gradcheck and against the loop);
the in-place no-grad path equals the autograd path and never writes into its inputs; memory
stays far below the (batch, dim, N, L) of all the states; the vectorised softplus equals
``F.softplus``; the chunked scan's pieces (read-out, scan over the chunks, step layout) equal
their plain forms, in place or not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity import assert_close
from test_mamba import scan_inputs, scan_loop_f64

from paperlab.errors import ArgumentError
from paperlab.memory import peak_bytes
from paperlab.sequence.selective_scan import (
    selective_scan_chunked,
    selective_scan_parallel,
    selective_scan_sequential,
    softplus,
)
from paperlab.sequence.selective_scan_parts import by_step, chunk_starts, from_steps, read_out

pytestmark = pytest.mark.note("C3", reference="sequential definition")


def _double(args, ex):
    return [a.double() for a in args], {k: v.double() for k, v in ex.items()}


def _state(b, d, n, dtype, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, n, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("length", [1, 5, 64, 100])
@pytest.mark.parametrize("chunk_size", [1, 3, 16, 64, None])
@pytest.mark.parametrize("selective", [True, False])
def test_chunked_equals_float64_loop(length, chunk_size, selective):
    args, ex = scan_inputs(b=2, d=6, length=length, n=4, selective=selective, seed=length)
    ref, ref_state = scan_loop_f64(*args, **ex, delta_softplus=True)
    kw = dict(delta_softplus=True, return_last_state=True, chunk_size=chunk_size)
    out, state = selective_scan_chunked(*args, **ex, **kw)
    assert out.dtype == torch.float32 and state.shape == (2, 6, 4)
    assert_close((out, state), (ref, ref_state), atol=1e-5, rtol=1e-5, what="float32")
    out64, state64 = selective_scan_chunked(*_double(args, ex)[0], **_double(args, ex)[1], **kw)
    assert out64.dtype == torch.float64
    assert_close((out64, state64), (ref, ref_state), atol=1e-12, rtol=1e-12, what="float64")


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 32])
def test_initial_state_and_last_state_match_the_loop(chunk_size):
    (args, ex), n = scan_inputs(b=3, d=5, length=30, n=3, seed=11), 3
    a64, e64 = _double(args, ex)
    s0 = _state(3, 5, n, torch.float64)
    kw = dict(delta_softplus=True, return_last_state=True, initial_state=s0)
    ref = selective_scan_sequential(*a64, **e64, **kw)
    assert_close(selective_scan_chunked(*a64, **e64, **kw, chunk_size=chunk_size), ref,
                 atol=1e-12, rtol=1e-12)
    # continuing from a mid-sequence state equals the unsplit scan
    full = selective_scan_chunked(*a64, **e64, **kw, chunk_size=chunk_size)
    u, delta, A, B, C = a64
    cut = 13
    first = selective_scan_chunked(
        u[..., :cut], delta[..., :cut], A, B[..., :cut], C[..., :cut], e64["D"],
        e64["z"][..., :cut], delta_bias=e64["delta_bias"], chunk_size=chunk_size, **kw,
    )  # fmt: skip
    second = selective_scan_chunked(
        u[..., cut:], delta[..., cut:], A, B[..., cut:], C[..., cut:], e64["D"],
        e64["z"][..., cut:], delta_bias=e64["delta_bias"], delta_softplus=True,
        return_last_state=True, initial_state=first[1], chunk_size=chunk_size,
    )  # fmt: skip
    assert_close(torch.cat((first[0], second[0]), -1), full[0], atol=1e-12, rtol=1e-12)
    assert_close(second[1], full[1], atol=1e-12, rtol=1e-12)


def test_long_sequence_float32_matches_float64_sequential():
    args, ex = scan_inputs(b=1, d=32, length=1000, n=16, seed=12)
    a64, e64 = _double(args, ex)
    ref = selective_scan_sequential(*a64, **e64, delta_softplus=True)
    with torch.no_grad():
        out = selective_scan_parallel(*args, **ex, delta_softplus=True)  # the default: chunked
        out64 = selective_scan_parallel(*a64, **e64, delta_softplus=True)
    assert_close(out, ref, atol=1e-4, rtol=1e-5, what="float32, L=1000")
    assert_close(out64, ref, atol=1e-12, rtol=1e-12, what="float64, L=1000")


@pytest.mark.parametrize("selective", [True, False])
def test_gradcheck_non_dividing_length_and_initial_state(selective):
    args, ex = scan_inputs(b=2, d=2, length=7, n=3, selective=selective, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (*args, ex["D"], ex["z"], ex["delta_bias"])]
    leaves.append(_state(2, 2, 3, torch.float64).requires_grad_())

    def f(u, delta, A, B, C, D, z, delta_bias, s0):
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias=delta_bias,
                                      delta_softplus=True, return_last_state=True,
                                      initial_state=s0, chunk_size=3)  # fmt: skip

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
def test_gradients_match_the_sequential_loop(dtype, tol):
    args, ex = scan_inputs(b=2, d=8, length=50, n=4, seed=13)
    g = torch.Generator().manual_seed(14)

    def grads(fn, dt, **kw):
        leaves = [t.to(dt).clone().requires_grad_()
                  for t in (*args, ex["D"], ex["z"], ex["delta_bias"], _state(2, 8, 4, dt))]
        out, last = fn(*leaves[:7], delta_bias=leaves[7], delta_softplus=True,
                       return_last_state=True, initial_state=leaves[8], **kw)  # fmt: skip
        torch.autograd.backward((out, last), (cot_out.to(dt), cot_last.to(dt)))
        return [t.grad.double() for t in leaves]

    cot_out = torch.randn(2, 8, 50, generator=g, dtype=torch.float64)
    cot_last = torch.randn(2, 8, 4, generator=g, dtype=torch.float64)
    ref = grads(selective_scan_sequential, torch.float64)
    ours = grads(selective_scan_chunked, dtype, chunk_size=16)  # 50 = 3 * 16 + 2
    assert_close(ours, ref, atol=tol, rtol=tol, what=f"gradients {dtype}")


def test_no_grad_in_place_path_equals_autograd_path_and_keeps_inputs():
    args, ex = scan_inputs(b=2, d=6, length=40, n=4, seed=15)
    s0 = _state(2, 6, 4, torch.float32)
    kw = dict(delta_softplus=True, return_last_state=True, initial_state=s0, chunk_size=6)
    given = [t.clone() for t in (*args, *ex.values(), s0)]
    with torch.no_grad():
        fast = selective_scan_chunked(*args, **ex, **kw)
    leaves = [t.clone().requires_grad_() for t in args]
    slow = selective_scan_chunked(*leaves, **ex, **kw)
    assert slow[0].requires_grad
    assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    for before, after in zip(given, (*args, *ex.values(), s0)):
        assert torch.equal(before, after), "an input was modified"
    # a single chunk and a single step, where reshapes could alias the input
    for length in (1, 4):
        u, delta = args[0][..., :length].contiguous(), args[1][..., :length].contiguous()
        keep = u.clone(), delta.clone()
        with torch.no_grad():
            selective_scan_chunked(u, delta, args[2], args[3][..., :length], args[4][..., :length],
                                   delta_bias=ex["delta_bias"], delta_softplus=True)  # fmt: skip
        assert torch.equal(u, keep[0]) and torch.equal(delta, keep[1])


def test_memory_stays_below_the_per_step_states():
    """No-grad peak memory ~ a few (batch, dim, L) inputs plus a few (batch, K, N, dim) chunk
    states, far below the (batch, dim, N, L) of all states that an unchunked scan keeps."""
    b, d, n, length = 1, 16, 32, 2048
    g = torch.Generator().manual_seed(16)
    u, delta = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    A = -torch.rand(d, n, generator=g) - 0.1
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    all_states = b * d * n * length * 4
    peaks = []
    for chunk in (16, 64, 256):
        with torch.no_grad():
            peak, _ = peak_bytes(
                lambda c=chunk: selective_scan_chunked(u, delta, A, B, C, delta_softplus=True,
                                                       chunk_size=c), "cpu")  # fmt: skip
        bound = 6 * 4 * (b * (d + n) * length + b * d * n * -(-length // chunk))
        assert peak <= bound, (chunk, peak, bound)
        if chunk >= 64:  # under a third of all the states: the inputs' copies dominate
            assert peak < all_states / 3, (chunk, peak, all_states)
        peaks.append(peak)
    assert peaks[0] > peaks[1] > peaks[2]  # fewer, longer chunks: smaller boundary states


def test_chunk_size_is_validated():
    args, _ = scan_inputs(length=5)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ArgumentError, match="chunk_size"):
            selective_scan_chunked(*args, chunk_size=bad)
    assert_close(selective_scan_chunked(*args, chunk_size=100), selective_scan_sequential(*args))


def test_softplus_matches_torch_and_its_gradient_is_sigmoid():
    x = torch.cat((torch.linspace(-60, 60, 2001, dtype=torch.float64), torch.zeros(1)))
    for dtype, atol in ((torch.float64, 1e-15), (torch.float32, 1e-6)):
        ref = F.softplus(x.to(dtype)).double()
        assert_close(softplus(x.to(dtype)), ref, atol=atol, rtol=1e-6, what=str(dtype))
        assert_close(softplus(x.to(dtype).clone(), inplace=True), ref, atol=atol, rtol=1e-6)
        scratch = torch.full_like(x, float("nan"), dtype=dtype)
        assert_close(softplus(x.to(dtype).clone(), inplace=True, scratch=scratch), ref,
                     atol=atol, rtol=1e-6)  # fmt: skip
    leaf = x.clone().requires_grad_()
    softplus(leaf).sum().backward()
    assert_close(leaf.grad, torch.sigmoid(x), atol=1e-15, rtol=1e-12)


def test_read_out_is_the_sum_over_the_states():
    g = torch.Generator().manual_seed(21)
    b, k, n, d = 2, 3, 4, 5
    h = torch.randn(b, k, n, d, generator=g, dtype=torch.float64)
    C_sel = torch.randn(b, k, n, generator=g, dtype=torch.float64)
    C_lti = torch.randn(n, d, generator=g, dtype=torch.float64)
    ref_sel, ref_lti = (h * C_sel[..., None]).sum(2), (h * C_lti).sum(2)
    assert_close(read_out(h, C_sel.view(b * k, 1, n), None), ref_sel, atol=1e-14, rtol=1e-14)
    assert_close(read_out(h, C_lti, None), ref_lti, atol=1e-14, rtol=1e-14)
    out = torch.empty(b, k, d, dtype=torch.float64)
    assert read_out(h, C_sel.view(b * k, 1, n), out).data_ptr() == out.data_ptr()
    assert_close(out, ref_sel, atol=1e-14, rtol=1e-14)


def test_chunk_starts_in_place_equals_the_loop():
    g = torch.Generator().manual_seed(22)
    b, k, n, d = 2, 5, 3, 4
    decay = torch.rand(b, k - 1, n, d, generator=g, dtype=torch.float64)
    local = torch.randn(b, k - 1, n, d, generator=g, dtype=torch.float64)
    for s0 in (None, torch.randn(b, n, d, generator=g, dtype=torch.float64)):
        s, ref = torch.zeros(b, n, d, dtype=torch.float64) if s0 is None else s0, []
        for i in range(k):
            ref.append(s)
            s = decay[:, i] * s + local[:, i] if i < k - 1 else s
        ref = torch.stack(ref, dim=1)
        assert_close(chunk_starts(decay, local, s0, None), ref, atol=1e-14, rtol=1e-14)
        out = torch.full((b, k, n, d), float("nan"), dtype=torch.float64)
        out[:, 1:] = local  # the local states where the scan then runs, as the scan keeps them
        assert_close(chunk_starts(decay, out[:, 1:], s0, out), ref, atol=1e-14, rtol=1e-14)


def test_by_step_and_from_steps_round_trip_into_given_buffers():
    g = torch.Generator().manual_seed(23)
    t = torch.randn(2, 3, 10, generator=g)
    rows = by_step(t, 4, 3)  # K = 4 chunks of C = 3: two padded steps
    assert rows.shape == (2, 4, 3, 3)
    assert torch.equal(rows.view(2, 12, 3)[:, 10:], torch.zeros(2, 2, 3))
    into = torch.full((2, 4, 3, 3), float("nan"))
    assert torch.equal(by_step(t, 4, 3, out=into), rows) and torch.equal(into, rows)
    assert torch.equal(from_steps(rows, 10), t)
    back = torch.empty(2, 3, 10)
    assert from_steps(rows, 10, out=back) is back and torch.equal(back, t)
