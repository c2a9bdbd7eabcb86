"""Pieces of the selective scan (note C3) kept out of ``selective_scan.py``: the input checks
shared by every scan; the step-major layout of the chunked scan (``by_step``, ``from_steps``,
``auto_chunk``), its read-out and its scan over the chunks (``read_out``, ``chunk_starts``);
and the odd/even recursive-doubling solver of a linear recurrence (the
classic parallel scan under ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``; O(L) work, O(log L)
depth), which ``selective_scan.py`` re-exports. Shapes as in ``selective_scan.py``."""

from __future__ import annotations

import torch

from paperlab.errors import ArgumentTypeError, ShapeError


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


def by_step(
    t: torch.Tensor, chunks: int, chunk: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, c, L) -> a new (batch, K, C, c) tensor (or ``out``, contiguous, of that shape),
    time zero-padded to K * C steps.

    ``[:, :, j]`` is step j of every chunk, (batch, K, c) with c contiguous, which broadcasts
    against the state layout (batch, K, N, dim). One 2-d transpose (c, L) -> (L, c) per
    sequence (torch's fast copy path); no other copy."""
    b, c, length = t.shape
    rows = t.new_empty(b, chunks * chunk, c) if out is None else out.view(b, chunks * chunk, c)
    if chunks * chunk > length:
        rows[:, length:] = 0
    for i in range(b):  # indexing, not unbind: the copies must stay visible to autograd
        rows[i, :length].copy_(t[i].t())
    return rows.view(b, chunks, chunk, c)


def from_steps(y: torch.Tensor, length: int, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse of ``by_step``: (batch, K, C, c) -> (batch, c, L), cut to ``length``, in a
    new tensor or in ``out`` (batch, c, L)."""
    b, chunks, chunk, c = y.shape
    rows = y.reshape(b, chunks * chunk, c)
    out = y.new_empty(b, c, length) if out is None else out
    for i in range(b):
        out[i].copy_(rows[i, :length].t())
    return out


def auto_chunk(batch: int, dim: int, n: int, length: int) -> int:
    """The chunk length C for ``chunk_size=None``: about 2^17 numbers per state tensor
    (N * batch * dim * K, half a megabyte in float32: it stays in the core's cache), and
    C >= 16 so that short sequences are not cut into chunks of a few steps."""
    chunks = max(1, (1 << 17) // (batch * dim * n))
    return max(min(16, length), -(-length // chunks))


def read_out(h: torch.Tensor, C_j: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """y_t = <h_t, C_t> over the N states: h (batch, K, N, dim) -> (batch, K, dim), with C_j
    (batch K, 1, N) selective or (N, dim) time-invariant. Selective C is a batch of
    (1, N) x (N, dim) matrix products (one GEMV per chunk, twice as fast as a multiply and a
    sum); ``out`` (batch, K, dim), contiguous, takes the result."""
    if C_j.dim() == 2:
        return torch.linalg.vecdot(h, C_j, dim=2, out=out)
    b, k, n, dim = h.shape
    y = torch.bmm(C_j, h.view(b * k, n, dim), out=None if out is None else out.view(b * k, 1, dim))
    return y.view(b, k, dim)


def chunk_starts(
    decay: torch.Tensor, local: torch.Tensor, s0: torch.Tensor | None, out: torch.Tensor | None
) -> torch.Tensor:
    """The state at the start of every chunk, (batch, K, N, dim), from the decay
    exp(A * sum of delta) and the local end state of chunks 0..K-2 (both (batch, K-1, N, dim))
    and the initial state s0 (batch, N, dim) or None (zeros): the scan over the chunks
    ``s_{k+1} = decay_k * s_k + local_k``, a short loop on (batch, N, dim) tensors. With
    ``out`` (batch, K, N, dim) the starts are written there (no autograd); local may be
    ``out[:, 1:]`` itself, so that the scan runs in place."""
    if out is not None:
        starts = out.unbind(1)
        starts[0].zero_() if s0 is None else starts[0].copy_(s0)
        for k, (decay_k, local_k) in enumerate(zip(decay.unbind(1), local.unbind(1))):
            torch.addcmul(local_k, decay_k, starts[k], out=starts[k + 1])
        return out
    s = torch.zeros_like(local[:, 0]) if s0 is None else s0
    starts = [s]
    for decay_k, local_k in zip(decay.unbind(1), local.unbind(1)):
        s = torch.addcmul(local_k, decay_k, s)
        starts.append(s)
    return torch.stack(starts, dim=1)


__all__ = [
    "auto_chunk",
    "by_step",
    "check_scan_inputs",
    "chunk_starts",
    "from_steps",
    "linear_recurrence_parallel",
    "read_out",
]
