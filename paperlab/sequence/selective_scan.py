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

- ``selective_scan_sequential``: the plain loop over t (mamba_ssm's ``selective_scan_ref``).
- ``selective_scan_parallel``: the recurrence is a scan under the associative operator
  ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``. Within a chunk of time steps it is evaluated
  by odd/even recursive doubling (the work-efficient Blelloch/Ladner-Fischer tree): pair
  neighbours, solve the half-length problem, fill the even positions in one step, O(L) work
  and O(log L) depth; across chunks the state is carried. It only multiplies decays in
  (0, 1], so it is as stable as the loop (no logs, no exp of differences of sums).

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

import torch
import torch.nn.functional as F

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

METHODS = ("parallel", "sequential")


# ----------------------------------------------------------------------------- checks


def _tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a real floating-point tensor, got {t.dtype}")
    return t


def _shape(name: str, t: torch.Tensor, expected: tuple[int, ...], meaning: str) -> None:
    if tuple(t.shape) != expected:
        raise ShapeError(f"{name} must have shape {meaning} = {expected}, got {tuple(t.shape)}")


def check_scan_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> None:
    """Raise a ``ShapeError``/``ArgumentTypeError`` naming the first argument that is wrong."""
    _tensor("u", u)
    if u.dim() != 3:
        raise ShapeError(f"u must have shape (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if length < 1:
        raise ShapeError(f"u must hold at least one time step, got shape {tuple(u.shape)}")
    _shape("delta", _tensor("delta", delta), (batch, dim, length), "(batch, dim, L)")
    if isinstance(A, torch.Tensor) and A.is_complex():
        raise ArgumentTypeError(f"A must be real (complex A is not supported), got {A.dtype}")
    _tensor("A", A)
    if A.dim() != 2 or A.shape[0] != dim:
        raise ShapeError(f"A must have shape (dim, N) with dim={dim}, got {tuple(A.shape)}")
    n = A.shape[1]
    if n < 1:
        raise ShapeError(f"A must have at least one state (N >= 1), got shape {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        _tensor(name, t)
        if t.dim() == 3:
            _shape(name, t, (batch, n, length), "(batch, N, L)")
        elif t.dim() == 2:
            _shape(name, t, (dim, n), "(dim, N)")
        else:
            raise ShapeError(
                f"{name} must have shape (batch, N, L) = {(batch, n, length)} (selective) "
                f"or (dim, N) = {(dim, n)} (time-invariant), got {tuple(t.shape)}"
            )
    if D is not None:
        _shape("D", _tensor("D", D), (dim,), "(dim,)")
    if z is not None:
        _shape("z", _tensor("z", z), (batch, dim, length), "(batch, dim, L)")
    if delta_bias is not None:
        _shape("delta_bias", _tensor("delta_bias", delta_bias), (dim,), "(dim,)")
    if initial_state is not None:
        _shape(
            "initial_state",
            _tensor("initial_state", initial_state),
            (batch, dim, n),
            "(batch, dim, N)",
        )


# ----------------------------------------------------------------------------- the pieces


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 otherwise (half precision is scanned in float32)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


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
        delta = F.softplus(delta)
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
) -> torch.Tensor:
    """out = (y + D u) * silu(z), cast to ``out_dtype`` (u's dtype)."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def linear_recurrence_parallel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_t = a_t x_{t-1} + b_t from x_{-1} = 0, by odd/even recursive doubling over dim -2.

    Pair the steps (2i, 2i+1): composing them gives one step from x_{2i-1} to x_{2i+1} with
    a' = a_{2i+1} a_{2i} and b' = a_{2i+1} b_{2i} + b_{2i+1}. Solve that half-length problem
    for the odd positions, then x_{2i} = a_{2i} x_{2i-1} + b_{2i}. Depth 2 log2 L, work O(L).
    """
    length = b.shape[-2]
    if length == 1:
        return b
    if length % 2:  # pad one neutral step (a = 1, b = 0) and drop it at the end
        a = torch.cat((a, torch.ones_like(a[..., :1, :])), dim=-2)
        b = torch.cat((b, torch.zeros_like(b[..., :1, :])), dim=-2)
    a_even, a_odd = a.unflatten(-2, (-1, 2)).unbind(-2)  # steps 0, 2, 4, ... and 1, 3, 5, ...
    b_even, b_odd = b.unflatten(-2, (-1, 2)).unbind(-2)
    x_odd = linear_recurrence_parallel(a_odd * a_even, a_odd * b_even + b_odd)
    carried = a_even[..., 1:, :] * x_odd[..., :-1, :]  # x_{2i} needs x_{2i-1}; x_{-1} = 0
    x_even = torch.cat((b_even[..., :1, :], b_even[..., 1:, :] + carried), dim=-2)
    x = torch.stack((x_even, x_odd), dim=-2).flatten(-3, -2)
    return x[..., :length, :]


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


def _parallel_chunk(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the parallel scan: discretise all its steps, recursive doubling, read out."""
    deltaA, deltaB_u = discretize(
        u, delta, A, B, delta_bias=delta_bias, delta_softplus=delta_softplus
    )
    if initial_state is not None:  # fold x_{-1} into the first input: b_0 += a_0 x_{-1}
        first = deltaB_u[..., :1, :] + deltaA[..., :1, :] * initial_state.to(deltaA)[..., None, :]
        deltaB_u = torch.cat((first, deltaB_u[..., 1:, :]), dim=-2)
    states = linear_recurrence_parallel(deltaA, deltaB_u)  # (batch, dim, L, N)
    y = (states * _per_step(C, states.dtype)).sum(-1)  # y_t = <x_t, C_t>
    return _finish(y, u.to(states.dtype), D, z, u.dtype), states[..., -1, :]


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
    chunk_size: int = 256,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan as a chunked parallel scan; equals ``selective_scan_sequential`` up
    to rounding.

    Time is cut into chunks of ``chunk_size`` steps. Inside a chunk all steps are discretised
    at once and the recurrence runs by recursive doubling (log depth); across chunks the last
    state is carried as the next chunk's initial state. The chunks bound the
    (batch, dim, chunk, N) working set, which keeps long sequences in cache.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ArgumentError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    length = u.shape[-1]
    outs, state = [], initial_state
    for start in range(0, length, chunk_size):
        t = slice(start, start + chunk_size)
        B_c = B[..., t] if B.dim() == 3 else B
        C_c = C[..., t] if C.dim() == 3 else C
        out, state = _parallel_chunk(
            u[..., t], delta[..., t], A, B_c, C_c, D, None if z is None else z[..., t],
            delta_bias, delta_softplus, state,
        )  # fmt: skip
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
    return (out, state) if return_last_state else out


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
    "selective_scan_sequential",
]
