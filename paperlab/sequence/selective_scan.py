"""The selective scan of Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", Algorithm 2 "S6"; note C3).

A state space model maps an input channel u(t) through a hidden state x(t) in R^N::

    x'(t) = A x(t) + B u(t),    y(t) = C x(t) + D u(t)

Discretised with step Delta (zero-order hold on A, Euler on B, as mamba_ssm does)::

    deltaA_t   = exp(delta_t * A)              in (0, 1] because A < 0
    deltaB_u_t = delta_t * B_t * u_t
    x_t = deltaA_t * x_{t-1} + deltaB_u_t      (elementwise over the N states: A is diagonal)
    y_t = <x_t, C_t> + D * u_t,   out_t = y_t * silu(z_t)

S4 keeps delta, B and C fixed (a linear time-invariant system, so the whole map is one long
convolution). Mamba makes them functions of the input ("selective"): the model can decide per
token how much to remember (delta small: keep the state) or to overwrite (delta large: reset
to the new input). That breaks the convolution, so the model is computed as a recurrence.

Two ways to run the recurrence, proven equal by the tests:

- ``selective_scan_sequential``: the plain loop over t (mamba_ssm's ``selective_scan_ref``),
  the readable definition: L Python steps, each a handful of tiny (batch, dim, N) operations.
- ``selective_scan_chunked`` (what ``selective_scan_parallel``, ``selective_scan`` and the Mamba
  block use): time cut into K chunks of C steps; one pass runs the recurrence inside all chunks
  at once to get each chunk's own end state, a scan over the K chunks hands the true state
  from chunk to chunk (``s_{k+1} = exp(A sum_{chunk k} delta) s_k + local_k``), and a second
  pass reruns every chunk from its start state and reads out y. 2 C + K Python steps on
  (batch, K, N, dim) tensors instead of L, the loop's arithmetic done twice, memory
  O(batch dim N L / C + batch dim L). Only decays exp(delta A) in (0, 1] are ever formed.
  (``selective_scan_parts.linear_recurrence_parallel`` is the textbook alternative, odd/even
  recursive doubling over t: log depth, but O(batch dim N L) memory and slower on a CPU.)

Shapes (mamba_ssm's convention, channels before time)::

    u, delta, z    (batch, dim, L)        dim = d_inner (the expanded width)
    A              (dim, N)               real, negative for a stable system
    B, C           (batch, N, L)          selective (input-dependent), or
                   (dim, N)               time-invariant (the S4D-like case)
    D, delta_bias  (dim,)
    initial_state  (batch, dim, N)        our addition: start from a cached state
    out            (batch, dim, L) in u's dtype; last state (batch, dim, N) in the compute dtype

The compute dtype is float32, or float64 when u is float64 (the reference always uses
float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from paperlab.errors import ArgumentError
from paperlab.sequence.selective_scan_parts import (
    auto_chunk,
    by_step,
    check_scan_inputs,
    chunk_starts,
    from_steps,
    linear_recurrence_parallel,
    read_out,
)

METHODS = ("parallel", "sequential")
LOG2E = math.log2(math.e)


# ----------------------------------------------------------------------------- the pieces


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 otherwise (half precision is scanned in float32)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def softplus(
    x: torch.Tensor, *, inplace: bool = False, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) = (x + |x|) / 2 - log(sigmoid(|x|)).

    Equal to ``F.softplus`` to rounding (absolute error ~ eps; sigmoid(|x|) is in [1/2, 1), so
    nothing under- or overflows), but built from sigmoid and log, which run several times
    faster than float32 ``log1p`` on some CPU builds. (x + |x|) / 2 rather than relu keeps the
    gradient sigmoid(x) exact at x = 0 too. ``inplace`` overwrites x (no autograd; relu there),
    using ``scratch`` (like x) for its temporary if given.
    """
    a = x.abs() if scratch is None or not inplace else torch.abs(x, out=scratch)
    if inplace:
        return x.relu_().sub_(a.sigmoid_().log_())
    return (x + a) * 0.5 - torch.log(torch.sigmoid(a))


def _prepare(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u, delta, A in the compute dtype, with delta_bias added and softplus applied to delta."""
    dt = compute_dtype(u)
    u, delta, A = u.to(dt), delta.to(dt), A.to(dt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dt)[:, None]
    if delta_softplus:
        delta = softplus(delta)
    return u, delta, A


def _per_step(M: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """B or C as a tensor that broadcasts over (batch, dim, L, N): selective (batch, N, L) ->
    (batch, 1, L, N); time-invariant (dim, N) -> (1, dim, 1, N)."""
    M = M.to(dtype)
    return M.transpose(1, 2)[:, None] if M.dim() == 3 else M[None, :, None, :]


def _steps(M: torch.Tensor, length: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """B or C per step: selective (batch, N, L) -> L tensors (batch, 1, N); time-invariant
    (dim, N) -> the same (dim, N) tensor L times."""
    M = M.to(dtype)
    return [m[:, None] for m in M.unbind(-1)] if M.dim() == 3 else [M] * length


def discretize(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """deltaA = exp(delta A) and deltaB_u = delta B u for every step, both (batch, dim, L, N).

    ``delta_bias`` is added to delta and ``softplus`` applied first (how Mamba keeps delta > 0).
    Everything is computed in ``compute_dtype(u)``.
    """
    u, delta, A = _prepare(u, delta, A, delta_bias, delta_softplus)
    deltaA = (delta[..., None] * A[:, None, :]).exp_()
    deltaB_u = (delta * u)[..., None] * _per_step(B, u.dtype)
    return deltaA, deltaB_u


def _finish(
    y: torch.Tensor,
    u: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    out_dtype: torch.dtype,
    *,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """out = (y + D u) * silu(z), cast to ``out_dtype`` (u's dtype). With ``scratch`` (a
    tensor of y's dtype with at least y.numel() elements) it works in place in y (no autograd)
    and computes silu(z) into scratch's memory."""
    if D is not None:
        D = D.to(y.dtype)[:, None]
        y = y.addcmul_(u, D) if scratch is not None else y + u * D
    if z is not None:
        z = z.to(y.dtype)
        if scratch is None:
            y = y * F.silu(z)
        else:  # silu(z) = z sigmoid(z)
            gate = torch.sigmoid(z, out=scratch.view(-1)[: z.numel()].view(z.shape))
            y = y.mul_(gate.mul_(z))
    return y.to(out_dtype)


# ----------------------------------------------------------------------------- the scans


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan as a plain loop over time (mamba_ssm's ``selective_scan_ref``).

    Each step is discretised when it is reached, so memory stays O(batch dim N) per step, as
    in Mamba's fused kernel: the (batch, dim, L, N) expansion is never built. See the module
    docstring for shapes; returns out (batch, dim, L) and, with ``return_last_state``, the
    final state (batch, dim, N).
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    u_, delta, A = _prepare(u, delta, A, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    x = u_.new_zeros(batch, dim, A.shape[1]) if initial_state is None else initial_state.to(A)
    # per-step views by unbind (one backward node, not L slices); B_t, C_t (b, 1, N) or (d, N)
    B_steps, C_steps = _steps(B, length, A.dtype), _steps(C, length, A.dtype)
    ys = []
    for delta_t, u_t, B_t, C_t in zip(delta.unbind(-1), u_.unbind(-1), B_steps, C_steps):
        delta_t = delta_t[..., None]  # (batch, dim, 1)
        x = torch.exp(delta_t * A) * x + (delta_t * u_t[..., None]) * B_t  # x_t
        ys.append((x * C_t).sum(-1))  # y_t = <x_t, C_t>
    out = _finish(torch.stack(ys, dim=-1), u_, D, z, u.dtype)
    return (out, x) if return_last_state else out


def _advance(
    h: torch.Tensor | None,
    delta_j: torch.Tensor,
    x_j: torch.Tensor,
    B_j: torch.Tensor,
    log2_A: torch.Tensor,
    buf: torch.Tensor | None,
) -> torch.Tensor:
    """One step in every chunk at once: h <- exp(delta_t A) h + x_t B_t (h None: zero state).

    h (batch, K, N, dim); delta_j, x_j (batch, K, 1, dim); B_j (batch, K, N, 1) or (N, dim);
    log2_A (N, dim). With a buffer ``buf`` like h the step runs in place (no autograd), else
    it returns a new tensor.
    """
    if h is None:
        return x_j * B_j
    if buf is None:
        return torch.addcmul(x_j * B_j, h, torch.exp2(delta_j * log2_A))
    torch.mul(delta_j, log2_A, out=buf).exp2_()
    return h.mul_(buf).addcmul_(x_j, B_j)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan as a chunked two-level scan; equals ``selective_scan_sequential`` up
    to rounding, in 2 C + K vectorised steps instead of L (same arguments, plus ``chunk_size``).

    Time is cut into K = ceil(L / C) chunks of C = ``chunk_size`` steps (``None``: chosen from
    the sizes, see ``auto_chunk``; a short last chunk is padded with delta = 0, u = 0 steps,
    which leave the state unchanged). With step j of *every* chunk one slice:

    1. local pass: the recurrence inside chunks 0..K-2 at once from zero, j = 0..C-1, gives
       each chunk's own contribution ``local_k`` to its end state;
    2. chunk scan: ``s_{k+1} = exp(A * sum_{t in chunk k} delta_t) * s_k + local_k`` from
       s_0 = ``initial_state`` (one exp of a sum of delta A <= 0 per chunk);
    3. output pass: the recurrence inside all chunks from their start states s_k, reading out
       ``y_t = <x_t, C_t>``; the last chunk's end state is the final state.

    Each step is 4 operations on (batch, K, N, dim) tensors (exponent, exp2, decay, add
    x_t B_t), plus the read-out ``y_t = C_t h_t`` in the output pass, one (1, N) x (N, dim)
    matrix product per chunk (``read_out``). Without autograd all of it runs in place in a few
    buffers allocated once per call (the local states are written where the scan then runs,
    the output takes the memory of the delta buffer): fresh memory costs a page fault per 4 kB.
    Memory O(batch dim N L / C + batch dim L): states only at chunk boundaries and for the
    current step, never the (batch, dim, N, L) of all of them. exp(delta A) is computed as
    exp2(delta A log2 e): torch vectorises exp2 on every CPU (float32 exp is scalar on some).

    Why not Mamba-2's matmul ("SSD") form: there the decay is one scalar per head and step, so
    ``exp(segsum)`` (C, C) factors out of the sum over the N states and a chunk is
    ``(C_t . B_s) exp(segsum)[t, s]`` matmuls. Mamba-1's A is (dim, N): the intra-chunk kernel
    ``sum_n C_tn B_sn exp(A_dn (cs_t - cs_s))`` has dim N C^2 entries per chunk, each an exp,
    C times the loop's work. The two-level scan keeps the loop's one exp per state and step.
    The local end state also has a closed form without Python steps, the stable segment sum
    ``local_k = sum_s exp(A (cs_end - cs_s)) x_s B_s`` (exponent <= 0), but it still takes
    one exp per state and step, and on a CPU it measured 1.6x slower than the local pass.
    Why the output pass recomputes exp(delta_t A) rather than reusing the local pass's: the
    decays of all steps are the (batch, dim, N, L) this scan avoids, and kept anyway (32 MB at
    L = 4096, dim 128, N 16) they made the scan 1.4x (L = 4096) to 2x (L = 8192) slower, the
    memory traffic costing more than the exp2 it saves; blocks of chunks small enough to keep
    their decays in cache leave too few numbers per step to pay for the Python steps.

    Where the time goes (issue 10 §2: batch 1, dim 128, N 16, float32, L = 4096, C = 64, 1
    thread, process time on a shared 2-core machine): 13-17 ms a call against 120-185 ms for the
    loop, a ratio of 0.08-0.11 from run to run (both move with the machine's load; the
    benchmark's wall-clock medians read 0.08-0.11 too). One step on a (1, 64, 16, 128) state
    costs exponent 13 us, exp2 21-33 us, decay and input 28 us; the 127 steps of both passes
    ~9.5 ms, the read-outs ~1 ms, softplus, the two transposes in and one out, D and the gate ~3
    ms, dispatch ~2 ms (a dim 1, N 1 call takes 2.3 ms). The exp2 of every state and step is
    done twice (local and output pass); that is the floor of this design in eager torch. Also
    measured and rejected: decays kept per block of chunks and reused by the block's output pass
    while in L3 (C = 8, 16, 32 with 128, 64, 32 chunks a block, an 8 MB store): 0-10% slower
    (the store's traffic and the longer chunk scan cost what the exp2 saves); chunk sizes 32 and
    128 again (64 best); a faster transpose than ``copy_`` (row or column blocks, numpy): 1.3-4x
    slower. Not built, since it saves nothing on paper: reading out ``<C_t, h_loc_t>`` in the
    local pass and adding ``<C_t, exp(A cs_t) s_k>`` in a recurrence-free output pass (one state
    update fewer, one read-out more). In this CPU build only exp2, sigmoid and log among the
    unary ops are fast: exp is 4x exp2; log1p, softplus, logsigmoid and logaddexp ~12x log; pow
    10x exp2, which rules out the log1p, softplus and pow forms. Inlining the hot loops on the
    no-grad path gave 2-5%. Also measured (a later session, same machine): softplus, and
    x = delta u, in the input layout before the transposes (reads the cold inputs
    sequentially): no faster (new buffers); a two-level scan over the chunks: no faster (the
    loop of K - 1 addcmuls is ~0.24 ms); the exponent and exp2 of two steps in one
    operation: 2-7% slower. Per step of the local pass exp2 is ~45% of the time (45 of 95
    us); the cumulative-decay forms that would compute one exp2 per state and step for both
    passes divide by exp(A cs_t), which overflows float32 within a chunk for large delta.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ArgumentError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    given = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    fast = not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in given)
    dt = compute_dtype(u)
    batch, dim, length = u.shape
    n = A.shape[1]
    chunk = min(chunk_size or auto_chunk(batch, dim, n, length), length)
    chunks = -(-length // chunk)
    # delta, x = delta u, B and C by chunk and step, (batch, K, C, .); [:, :, j] is step j.
    # Without autograd every big buffer is reused: xs is softplus's scratch before it holds u
    # (then x, then y), and deltas' memory takes the output (fresh memory costs page faults).
    deltas = by_step(delta.to(dt), chunks, chunk)
    xs = torch.empty_like(deltas) if fast else None
    if delta_bias is not None:
        bias = delta_bias.to(dt)
        deltas = deltas.add_(bias) if fast else deltas + bias
    if delta_softplus:
        deltas = softplus(deltas, inplace=fast, scratch=xs)
    if chunks * chunk > length:  # padded steps: delta = 0 (and u = 0) keep the state
        deltas[:, -1, length - (chunks - 1) * chunk :] = 0
    xs = by_step(u.to(dt), chunks, chunk, out=xs)
    xs = xs.mul_(deltas) if fast else xs * deltas
    Bs, Cs = (by_step(M.to(dt), chunks, chunk) if M.dim() == 3 else M.to(dt).t() for M in (B, C))
    log2_A = (A.to(dt) * LOG2E).t().contiguous()  # (N, dim); exp(dA) = exp2(dA log2 e)
    s0 = None if initial_state is None else initial_state.to(dt).transpose(1, 2)  # (b, N, dim)

    def steps(k: slice) -> zip:
        """Step j of the chunks k, by unbind (C views at once): delta_t, x_t (b, k, 1, dim),
        B_t (b, k, N, 1) selective or (N, dim) time-invariant."""
        B_k = Bs[:, k, :, :, None].unbind(2) if B.dim() == 3 else [Bs] * chunk
        return zip(deltas[:, k, :, None].unbind(2), xs[:, k, :, None].unbind(2), B_k)

    buf = deltas.new_empty(batch, chunks, n, dim) if fast else None  # exp(delta_t A), in place
    if chunks == 1:
        state = None if s0 is None else s0.clone(memory_format=torch.contiguous_format)[:, None]
    else:  # 1. the local pass over chunks 0..K-2, then 2. the scan over the chunks
        # without autograd local_k lives in state[:, k + 1] and the scan runs in place there
        state = deltas.new_empty(batch, chunks, n, dim) if fast else None
        local = None if state is None else state[:, 1:]
        buf_local = None if buf is None else buf[:, :-1]
        local_steps = steps(slice(None, -1))
        _, x_j, B_j = next(local_steps)  # step 0 from the zero state
        local = torch.mul(x_j, B_j, out=local)
        for delta_j, x_j, B_j in local_steps:
            if fast:  # the hot loop, inlined: 4 ops a step
                local.mul_(torch.mul(delta_j, log2_A, out=buf_local).exp2_()).addcmul_(x_j, B_j)
            else:
                local = _advance(local, delta_j, x_j, B_j, log2_A, None)
        # decay_k = exp(A sum_{chunk k} delta), (batch, K-1, N, dim), into the free buffer
        sums = deltas[:, :-1].sum(2)[:, :, None]
        decay = torch.mul(sums, log2_A, out=buf_local)
        decay = decay.exp2_() if fast else decay.exp2()
        state = chunk_starts(decay, local, s0, out=state)
    # 3. the output pass from the true start states, reading out y_t = <x_t, C_t>
    C_steps = Cs.view(batch * chunks, chunk, 1, n).unbind(1) if C.dim() == 3 else [Cs] * chunk
    y_j = deltas.new_empty(batch, chunks, dim) if fast else None
    ys = xs.unbind(2) if fast else []  # fast: y_t goes where x_t was (x_t is used up)
    if fast and state is not None and C.dim() == 3:  # the hot loop, inlined: 6 ops a step
        h_rows, y_rows = state.view(batch * chunks, n, dim), y_j.view(batch * chunks, 1, dim)
        for (delta_j, x_j, B_j), C_j, y_t in zip(steps(slice(None)), C_steps, ys):
            state.mul_(torch.mul(delta_j, log2_A, out=buf).exp2_()).addcmul_(x_j, B_j)
            y_t.copy_(torch.bmm(C_j, h_rows, out=y_rows).view(batch, chunks, dim))
    else:
        for j, ((delta_j, x_j, B_j), C_j) in enumerate(zip(steps(slice(None)), C_steps)):
            state = _advance(state, delta_j, x_j, B_j, log2_A, buf)
            if fast:
                ys[j].copy_(read_out(state, C_j, y_j))
            else:
                ys.append(read_out(state, C_j, None))
    if fast:  # y (batch, dim, L) in deltas' memory; xs, read, is _finish's scratch
        y = from_steps(xs, length, out=deltas.view(-1)[: batch * dim * length].view(u.shape))
    else:
        y = from_steps(torch.stack(ys, dim=2), length)
    out = _finish(y, u.to(dt), D, z, u.dtype, scratch=xs if fast else None)
    if not return_last_state:
        return out
    return out, state[:, -1].transpose(1, 2).contiguous()


def selective_scan_parallel(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The parallel selective scan: ``selective_scan_chunked`` (same arguments)."""
    return selective_scan_chunked(
        u, delta, A, B, C, D, z,
        delta_bias=delta_bias, delta_softplus=delta_softplus,
        return_last_state=return_last_state, initial_state=initial_state, chunk_size=chunk_size,
    )  # fmt: skip


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    method: str = "parallel",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba's selective scan with mamba_ssm's ``selective_scan_ref`` signature.

    u, delta, z (batch, dim, L); A (dim, N); B, C (batch, N, L) or (dim, N); D, delta_bias
    (dim,). Returns out (batch, dim, L) and, with ``return_last_state``, (batch, dim, N).
    ``method`` is ``"parallel"`` (default) or ``"sequential"``.
    """
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fn = selective_scan_parallel if method == "parallel" else selective_scan_sequential
    return fn(
        u, delta, A, B, C, D, z,
        delta_bias=delta_bias, delta_softplus=delta_softplus,
        return_last_state=return_last_state, initial_state=initial_state,
    )  # fmt: skip


__all__ = [
    "METHODS",
    "check_scan_inputs",
    "compute_dtype",
    "discretize",
    "linear_recurrence_parallel",
    "selective_scan",
    "selective_scan_parallel",
    "selective_scan_chunked",
    "selective_scan_sequential",
    "softplus",
]
