"""HiPPO: online projection of a signal's history onto Legendre polynomials (note C3).

The idea (Gu, Dao, Ermon, Rudra, Re 2020, "HiPPO: Recurrent Memory with Optimal Polynomial
Projections")
------------------------------------------------------------------------------------------
To remember a whole input history f(x), x <= t, in a fixed-size state, keep the coefficients
c(t) in R^N of its best approximation by N orthonormal polynomials under a measure mu_t on the
past. For the right measures, c(t) obeys a linear ODE, so the memory is updated online, step by
step, like an RNN state. With the orthonormal (scaled) Legendre basis on [0, 1]

    g_n(s) = sqrt(2n + 1) P_n(2s - 1),        f(x) ~ sum_n c_n(t) g_n(s(x))

two measures give:

- LegS (scaled, uniform on [0, t], s = x / t): the memory covers the whole history, however
  long, at uniform resolution::

      c'(t) = (1/t) A c(t) + (1/t) B f(t)
      A_nk = -sqrt(2n+1) sqrt(2k+1)   if n > k
             -(n + 1)                 if n = k
             0                        if n < k
      B_n  =  sqrt(2n+1)

  The ODE is time-invariant in log-time u = log t (dc/du = A c + B f), so the memory is
  timescale-invariant.

- LegT (translated, uniform on the window [t - theta, t], s = (x - t + theta) / theta)::

      c'(t) = A c(t) + B f(t)
      A_nk = -(1/theta) sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k))
      B_n  =  (1/theta) sqrt(2n+1)

Discretisation. An LTI system x' = A x + B u with step dt (``discretize``):

    forward   Ad = I + dt A                           Bd = dt B
    backward  Ad = (I - dt A)^-1                      Bd = (I - dt A)^-1 dt B
    bilinear  Ad = (I - dt/2 A)^-1 (I + dt/2 A)       Bd = (I - dt/2 A)^-1 dt B
    zoh       Ad = exp(dt A)                          Bd = A^-1 (exp(dt A) - I) B

LegS is time-varying: sample f_k (k = 0, 1, ...) is held on [k, k+1], and step k uses its own
matrices (``legs_step_matrices``). forward/backward/bilinear use the paper's A/(k+1), B/(k+1)
with dt = 1 (HiPPO eq. (9) and its generalised-bilinear variant); ``zoh`` is exact for a
piecewise-constant signal by integrating in log-time from t = k to k + 1:
Ad = exp(A log((k+1)/k)), Bd = A^-1 (Ad - I) B, which at k = 0 gives Ad = 0, Bd = e_0 (the
history is then the constant f_0, whose only coefficient is c_0 = f_0).

``reconstruct(c, s)`` evaluates sum_n c_n g_n(s) at relative times s in [0, 1] (0 the oldest
point the memory covers, 1 now).

Shapes: A (N, N), B (N,); a signal f (..., L) gives states (..., L, N) (the state after each
step), a state c (..., N) and points s (M,) reconstruct to (..., M). Computations default to
float64: A's entries grow like N and the triangular solves lose digits in float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int

MEASURES = ("legs", "legt")
METHODS = ("bilinear", "zoh", "forward", "backward")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or math.isinf(value):
        raise ArgumentError(f"{name} must be a positive finite number, got {value}")
    return float(value)


# ----------------------------------------------------------------------------- matrices


def legs_matrices(N: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS (A, B): A (N, N) lower triangular with diagonal -(n+1), B_n = sqrt(2n+1)."""
    check_int("N", N, minimum=1)
    q = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(q + 1)
    return A.to(dtype), r.to(dtype)


def legt_matrices(
    N: int, theta: float = 1.0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegT (A, B) for a window of length ``theta`` (in the signal's time units)."""
    check_int("N", N, minimum=1)
    theta = _check_positive("theta", theta)
    q = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    n, k = q[:, None], q[None, :]
    sign = torch.where(n >= k, torch.ones(()), (-1.0) ** (n - k))
    A = -(r[:, None] * sign * r[None, :]) / theta
    return A.to(dtype), (r / theta).to(dtype)


# ----------------------------------------------------------------------------- discretisation


def discretize(
    A: torch.Tensor, B: torch.Tensor, dt: float, method: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ad, Bd) of x' = A x + B u for one step ``dt`` by ``method`` (see the module doc).

    A (..., N, N) and B (..., N): a batch of systems is discretised at once.
    """
    _check_method(method)
    dt = _check_positive("dt", dt)
    if A.dim() < 2 or A.shape[-1] != A.shape[-2] or B.shape != A.shape[:-1]:
        raise ShapeError(
            f"A must be (..., N, N) and B (..., N), got A {tuple(A.shape)} and B {tuple(B.shape)}"
        )
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    Bc = B.unsqueeze(-1)
    if method == "forward":
        return eye + dt * A, dt * B
    if method == "backward":
        lhs = eye - dt * A
        return torch.linalg.solve(lhs, eye.expand_as(A)), torch.linalg.solve(lhs, dt * Bc)[..., 0]
    if method == "bilinear":
        lhs = eye - dt / 2 * A
        return (torch.linalg.solve(lhs, eye + dt / 2 * A),
                torch.linalg.solve(lhs, dt * Bc)[..., 0])
    Ad = torch.linalg.matrix_exp(dt * A)
    return Ad, torch.linalg.solve(A, (Ad - eye) @ Bc)[..., 0]


def legs_step_matrices(
    A: torch.Tensor, B: torch.Tensor, k: int | torch.Tensor, method: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ad, Bd) of LegS step k = 0, 1, ...: consume sample f_k, held on time [k, k+1].

    ``k`` an int gives (N, N) and (N,); a 1-D tensor of steps gives (K, N, N) and (K, N).
    """
    _check_method(method)
    if isinstance(k, int) and not isinstance(k, bool):
        check_int("k", k, minimum=0)
        Ad, Bd = legs_step_matrices(A, B, torch.tensor([k]), method)
        return Ad[0], Bd[0]
    if not isinstance(k, torch.Tensor) or k.dim() != 1 or k.is_floating_point():
        raise ArgumentTypeError("k must be an int or a 1-D integer tensor of steps")
    if len(k) and int(k.min()) < 0:
        raise ArgumentError(f"steps k must be >= 0, got {int(k.min())}")
    k = k.to(device=A.device, dtype=A.dtype)[:, None, None]
    if method != "zoh":
        return discretize(A / (k + 1), B / (k[..., 0] + 1), 1.0, method)
    # exp(A log((k+1)/k)); at k = 0 the limit is 0: the memory restarts from f_0 alone.
    u = torch.log((k + 1) / k.clamp_min(1))
    Ad = torch.where(k > 0, torch.linalg.matrix_exp(A * u), torch.zeros_like(A))
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    Bd = torch.linalg.solve(A, (Ad - eye) @ B.unsqueeze(-1))[..., 0]
    return Ad, Bd


# ----------------------------------------------------------------------------- reconstruction


def legendre(N: int, x: torch.Tensor) -> torch.Tensor:
    """Legendre polynomials P_0..P_{N-1} at x (M,) -> (N, M), by Bonnet's recurrence.

    (n + 1) P_{n+1}(x) = (2n + 1) x P_n(x) - n P_{n-1}(x)
    """
    check_int("N", N, minimum=1)
    rows = [torch.ones_like(x)]
    if N > 1:
        rows.append(x.clone())
    for n in range(1, N - 1):
        rows.append(((2 * n + 1) * x * rows[n] - n * rows[n - 1]) / (n + 1))
    return torch.stack(rows)


def reconstruct(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """sum_n c_n sqrt(2n+1) P_n(2s - 1): c (..., N), relative times s (M,) in [0, 1] -> (..., M).

    For LegS s = x / t (0 = the first input, 1 = now); for LegT s = (x - t + theta) / theta.
    """
    if not isinstance(c, torch.Tensor) or c.dim() < 1 or c.shape[-1] < 1:
        got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ShapeError(f"c must be a tensor (..., N) with N >= 1, got {got}")
    if not isinstance(s, torch.Tensor) or s.dim() != 1:
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise ShapeError(f"s must be a 1-D tensor of relative times in [0, 1], got {got}")
    N = c.shape[-1]
    scale = torch.sqrt(2 * torch.arange(N, dtype=c.dtype, device=c.device) + 1)
    basis = scale[:, None] * legendre(N, 2 * s.to(c) - 1)  # (N, M)
    return c @ basis


# ----------------------------------------------------------------------------- online memory


class HiPPO(nn.Module):
    """Online HiPPO memory: feed a signal step by step, keep its Legendre coefficients.

    ``step(c, f_k, k)`` consumes sample k; ``forward(f)`` runs the whole signal (..., L) and
    returns every state (..., L, N). ``reconstruct(c, s)`` reads the history back.
    """

    def __init__(
        self, N: int, measure: str = "legs", method: str = "bilinear", theta: float = 1.0,
        dt: float = 1.0, dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.N = check_int("N", N, minimum=1)
        if measure not in MEASURES:
            raise ArgumentError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        self.measure = measure
        self.method = _check_method(method)
        self.theta = _check_positive("theta", theta)
        self.dt = _check_positive("dt", dt)
        if measure == "legs":
            A, B = legs_matrices(N, dtype)
        else:
            A, B = legt_matrices(N, theta, dtype)
        self.register_buffer("A", A)
        self.register_buffer("B", B)
        if measure == "legt":
            Ad, Bd = discretize(A, B, dt, method)
            self.register_buffer("Ad", Ad)
            self.register_buffer("Bd", Bd)

    def extra_repr(self) -> str:
        s = f"N={self.N}, measure={self.measure!r}, method={self.method!r}"
        return s + (f", theta={self.theta}, dt={self.dt}" if self.measure == "legt" else "")

    def step_matrices(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ad, Bd) used for sample k (the same for every k under LegT)."""
        if self.measure == "legt":
            return self.Ad, self.Bd
        return legs_step_matrices(self.A, self.B, k, self.method)

    def step(self, c: torch.Tensor, f_k: torch.Tensor, k: int) -> torch.Tensor:
        """c_{k+1} = Ad(k) c_k + Bd(k) f_k: c (..., N), f_k (...) -> (..., N)."""
        if c.shape[-1] != self.N or tuple(c.shape[:-1]) != tuple(f_k.shape):
            raise ShapeError(
                f"c must be (..., N={self.N}) and f_k (...) with the same leading shape, got "
                f"c {tuple(c.shape)} and f_k {tuple(f_k.shape)}"
            )
        Ad, Bd = self.step_matrices(k)
        return c @ Ad.T.to(c) + f_k.unsqueeze(-1).to(c) * Bd.to(c)

    def forward(self, f: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
        """Feed f (..., L) one sample at a time; return the states after each step (..., L, N)."""
        if not isinstance(f, torch.Tensor) or f.dim() < 1 or f.shape[-1] < 1:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ShapeError(f"f must be a tensor (..., L) with L >= 1, got {got}")
        if not f.is_floating_point():
            f = f.to(self.A.dtype)
        steps = f.shape[-1]
        if self.measure == "legs":  # every step's matrices at once (one batched solve / exp)
            Ads, Bds = legs_step_matrices(self.A, self.B, torch.arange(steps), self.method)
        else:
            Ads, Bds = self.Ad.expand(steps, -1, -1), self.Bd.expand(steps, -1)
        Ads, Bds = Ads.to(f), Bds.to(f)
        c = f.new_zeros(*f.shape[:-1], self.N) if c0 is None else c0
        states = []
        for k in range(steps):
            c = c @ Ads[k].T + f[..., k, None] * Bds[k]
            states.append(c)
        return torch.stack(states, dim=-2)

    def reconstruct(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The history encoded by state c at relative times s in [0, 1]."""
        return reconstruct(c, s)
