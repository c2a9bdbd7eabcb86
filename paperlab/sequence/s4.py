"""S4D: a diagonal state space layer, computed as a long convolution or as a recurrence (note C3).

The idea (Gu, Gupta, Goel, Re 2022, "On the Parameterization and Initialization of Diagonal
State Space Models"; S4 is Gu, Goel, Re 2022, "Efficiently Modeling Long Sequences with
Structured State Spaces")
-----------------------------------------------------------------------------------------
Each of H channels runs its own linear state space model with a diagonal complex A::

    x'(t) = A x(t) + B u(t),        y(t) = Re(C x(t)) + D u(t)        x in C^M

Discretised with a per-channel step dt (zero-order hold, or bilinear)::

    zoh       dA = exp(dt A)                   dB = (exp(dt A) - 1) / A * B
    bilinear  dA = (1 + dt A / 2) / (1 - dt A / 2)        dB = dt B / (1 - dt A / 2)

the system is a linear recurrence (``s4d_recurrence``, one ``s4d_step`` per token)::

    x_t = dA * x_{t-1} + dB * u_t,          y_t = Re(C x_t)        (elementwise over M)

and, being time-invariant, also a causal convolution y = K * u with the kernel

    K_l = Re(sum_m C_m dB_m dA_m^l),   l = 0 .. L-1

which for a diagonal A is a Vandermonde product: the matrix V_ml = dA_m^l = exp(l log dA_m)
(for zoh simply exp(l dt A_m)) times the vector C dB (``s4d_kernel``; ``vandermonde_product``
evaluates it as a matrix product without building V). The convolution runs
in O(L log L) by FFT (``fft_conv``): training sees the whole sequence at once, while
generation steps the recurrence with an O(M) state. The tests prove the two equal.

Complex modes come in conjugate pairs, so a real SSM of state size N needs only M = N/2 modes
and K = 2 Re(...) (``conjugate=True``). Initialisations of A (``s4d_init``), n = 0 .. M-1:

    S4D-Lin   A_n = -1/2 + i pi n
    S4D-Inv   A_n = -1/2 + i (N/pi) (N/(2n+1) - 1)      N = 2M
    S4D-Real  A_n = -(n + 1)                             (real modes, M = N, no conjugates)

``S4DLayer`` follows the S4D reference (state-spaces/s4, ``models/s4/s4d.py``): A stored as
``log_A_real``/``A_imag`` (so Re A stays negative), B fixed to 1 (folded into the trained C),
per-channel ``log_dt`` drawn log-uniformly in [dt_min, dt_max], a skip ``D``, then GELU,
dropout and a position-wise linear to 2H channels followed by a GLU. ``S4DBlock`` wraps it
with a LayerNorm, dropout and a residual connection, ready to stack.

Shapes: functions use channels before time (the reference's layout); modules take batch
first, channels last::

    A, B, C (H, M) complex    dt (H,) real    K (H, L) real
    u (..., H, L) for fft_conv / s4d_recurrence; state (..., H, M) complex
    S4DLayer / S4DBlock: x (B, L, H) -> (B, L, H); step: x_t (B, H), state (B, H, M)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_model

INITS = ("lin", "inv", "real")
DISCRETIZATIONS = ("zoh", "bilinear")
MODES = ("conv", "recurrent")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ArgumentError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- initialisation


def s4d_init(modes: int, init: str = "lin", dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """The diagonal of A (modes,) for S4D-Lin, S4D-Inv or S4D-Real (see the module doc)."""
    check_int("modes", modes, minimum=1)
    _check_choice("init", init, INITS)
    n = torch.arange(modes, dtype=torch.float64)
    if init == "real":
        return torch.complex(-(n + 1), torch.zeros_like(n)).to(dtype)
    if init == "lin":
        imag = math.pi * n
    else:
        N = 2 * modes  # the real state size the conjugate pairs stand for
        imag = N / math.pi * (N / (2 * n + 1) - 1)
    return torch.complex(torch.full_like(n, -0.5), imag).to(dtype)


# ----------------------------------------------------------------------------- discretisation


def discretize_diagonal(
    A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str = "zoh"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dA, dB) elementwise for diagonal A, B (H, M) and steps dt (H,)."""
    _check_choice("method", method, DISCRETIZATIONS)
    dtA = dt.unsqueeze(-1) * A
    if method == "zoh":
        dA = torch.exp(dtA)
        return dA, (dA - 1) / A * B
    half = 1 - dtA / 2
    return (1 + dtA / 2) / half, dt.unsqueeze(-1) * B / half


def _check_ssm(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor) -> None:
    for name, t in (("A", A), ("B", B), ("C", C), ("dt", dt)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if A.dim() != 2:
        raise ShapeError(f"A must have shape (H, M), got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != tuple(A.shape):
            raise ShapeError(f"{name} must have A's shape (H, M) = {tuple(A.shape)}, "
                             f"got {tuple(t.shape)}")
    if tuple(dt.shape) != (A.shape[0],) or dt.is_complex():
        raise ShapeError(f"dt must be real with shape (H,) = ({A.shape[0]},), "
                         f"got {tuple(dt.shape)} {dt.dtype}")


# ----------------------------------------------------------------------------- convolution mode


def vandermonde_product(w: torch.Tensor, log_z: torch.Tensor, L: int) -> torch.Tensor:
    """sum_m w_m z_m^l for l = 0 .. L-1, with z = exp(log_z): w, log_z (H, M) -> (H, L) complex.

    The Vandermonde matrix z_m^l is never built whole. With l = c j + i (c = ceil(sqrt(L)),
    0 <= i < c), z^l = (z^c)^j z^i, so the sum is one matrix product per channel::

        out[c j + i] = sum_m (w_m z_m^(c j)) z_m^i      (J x M) @ (M x c)

    which needs only M (J + c) ~ 2 M sqrt(L) complex exponentials instead of M L.
    """
    c = math.isqrt(L - 1) + 1
    J = -(-L // c)
    steps = torch.arange(c, device=log_z.device, dtype=log_z.real.dtype)  # J <= c
    inner = torch.exp(log_z.unsqueeze(-1) * steps)  # (H, M, c): z^i
    outer = torch.exp(log_z.unsqueeze(-1) * (c * steps[:J]))  # (H, M, J): z^(c j)
    blocks = (w.unsqueeze(-1) * outer).transpose(-1, -2) @ inner  # (H, J, c)
    return blocks.reshape(w.shape[0], J * c)[:, :L]


def s4d_kernel(
    A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, L: int,
    method: str = "zoh", conjugate: bool = True,
) -> torch.Tensor:
    """The SSM's convolution kernel K (H, L): K_l = Re(sum_m C_m dB_m dA_m^l), x2 if conjugate.

    The powers dA^l = exp(l log dA) form a Vandermonde matrix (``vandermonde_product``); for
    zoh log dA = dt A exactly.
    """
    _check_ssm(A, B, C, dt)
    check_int("L", L, minimum=1)
    dA, dB = discretize_diagonal(A, B, dt, method)
    log_dA = dt.unsqueeze(-1) * A if method == "zoh" else torch.log(dA)
    K = vandermonde_product(C * dB, log_dA, L).real
    return 2 * K if conjugate else K


def fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution y_t = sum_{l<=t} K_l u_{t-l} by FFT: u (..., H, L), K (H, L).

    Both are zero-padded to 2L so the circular FFT product has no wrap-around.
    """
    if not isinstance(u, torch.Tensor) or not isinstance(K, torch.Tensor):
        raise ArgumentTypeError("u and K must be torch.Tensors")
    if u.dim() < 2 or K.dim() != 2 or tuple(u.shape[-2:]) != tuple(K.shape):
        raise ShapeError(
            f"u must be (..., H, L) and K (H, L) with the same H and L, got u {tuple(u.shape)} "
            f"and K {tuple(K.shape)}"
        )
    n = 2 * u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)
    return y[..., : u.shape[-1]]


# ----------------------------------------------------------------------------- recurrent mode


def s4d_step(
    state: torch.Tensor, u_t: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor,
    conjugate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: x' = dA x + dB u_t, y_t = Re(C x') (x2 if conjugate).

    state (..., H, M) complex, u_t (..., H) -> y_t (..., H), state (..., H, M).
    """
    state = dA * state + dB * u_t.unsqueeze(-1)
    y = (C * state).sum(-1).real
    return (2 * y if conjugate else y), state


def s4d_recurrence(
    u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor,
    method: str = "zoh", conjugate: bool = True, state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the SSM token by token: u (..., H, L) -> y (..., H, L) and the final state."""
    _check_ssm(A, B, C, dt)
    if u.dim() < 2 or u.shape[-2] != A.shape[0]:
        raise ShapeError(f"u must be (..., H, L) with H = {A.shape[0]}, got {tuple(u.shape)}")
    dA, dB = discretize_diagonal(A, B, dt, method)
    if state is None:
        state = torch.zeros(*u.shape[:-1], A.shape[1], dtype=dA.dtype, device=u.device)
    ys = []
    for t in range(u.shape[-1]):
        y, state = s4d_step(state, u[..., t], dA, dB, C, conjugate)
        ys.append(y)
    return torch.stack(ys, dim=-1), state


# ----------------------------------------------------------------------------- modules


@export_model("s4d")
class S4DLayer(nn.Module):
    """S4D layer: H independent diagonal SSMs, skip D, GELU, then a linear + GLU over channels.

    forward(x (B, L, H), mode="conv"|"recurrent") -> (B, L, H); step(x_t (B, H), state).
    """

    def __init__(
        self, d_model: int, d_state: int = 64, init: str = "lin", dt_min: float = 1e-3,
        dt_max: float = 1e-1, discretization: str = "zoh", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = H = check_int("d_model", d_model, minimum=1)
        self.d_state = check_int("d_state", d_state, minimum=1)
        self.init = _check_choice("init", init, INITS)
        self.discretization = _check_choice("discretization", discretization, DISCRETIZATIONS)
        self.conjugate = init != "real"
        if self.conjugate and d_state % 2:
            raise ArgumentError(
                f"d_state must be even for the complex init {init!r} (conjugate pairs), "
                f"got {d_state}"
            )
        if not 0 < dt_min <= dt_max:
            raise ArgumentError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.modes = M = d_state // 2 if self.conjugate else d_state

        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        A = s4d_init(M, init).expand(H, M)
        self.log_A_real = nn.Parameter(torch.log(-A.real).clone())
        if self.conjugate:
            self.A_imag = nn.Parameter(A.imag.clone())
            self.C = nn.Parameter(torch.view_as_real(torch.randn(H, M, dtype=torch.cfloat)))
        else:
            self.register_parameter("A_imag", None)
            self.C = nn.Parameter(torch.randn(H, M))
        self.D = nn.Parameter(torch.randn(H))
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(H, 2 * H)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}, "
                f"discretization={self.discretization!r}")

    def ssm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The current (A, B, C, dt): A, B, C (H, M) complex, dt (H,)."""
        real = -torch.exp(self.log_A_real)
        if self.conjugate:
            A = torch.complex(real, self.A_imag)
            C = torch.view_as_complex(self.C)
        else:
            A = torch.complex(real, torch.zeros_like(real))
            C = torch.complex(self.C, torch.zeros_like(self.C))
        return A, torch.ones_like(A), C, torch.exp(self.log_dt)

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L)."""
        A, B, C, dt = self.ssm()
        return s4d_kernel(A, B, C, dt, L, self.discretization, self.conjugate)

    def _check_x(self, x: object, dims: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ArgumentTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != dims or x.shape[-1] != self.d_model or (dims == 3 and x.shape[1] == 0):
            raise ShapeError(f"x must have shape {what} with H = {self.d_model}, "
                             f"got {tuple(x.shape)}")
        return x

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        """Position-wise tail: dropout(GELU(y)), then Linear(H, 2H) and a GLU. y (..., H)."""
        return F.glu(self.output_linear(self.dropout(F.gelu(y))), dim=-1)

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        """x (B, L, H) -> (B, L, H), by FFT convolution or by stepping the recurrence."""
        _check_choice("mode", mode, MODES)
        u = self._check_x(x, 3, "(B, L, H)").transpose(1, 2)  # (B, H, L)
        if mode == "conv":
            y = fft_conv(u, self.kernel(u.shape[-1]))
        else:
            A, B, C, dt = self.ssm()
            y, _ = s4d_recurrence(u, A, B, C, dt, self.discretization, self.conjugate)
        y = y + self.D.unsqueeze(-1) * u
        return self._output(y.transpose(1, 2))

    def initial_state(self, batch: int) -> torch.Tensor:
        """A zero state (batch, H, M) in the complex dtype of the parameters."""
        dtype = torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, self.d_model, self.modes, dtype=dtype,
                           device=self.log_dt.device)

    def step(
        self, x_t: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, H), state (B, H, M) complex -> (y_t (B, H), new state)."""
        x_t = self._check_x(x_t, 2, "(B, H)")
        if state is None:
            state = self.initial_state(x_t.shape[0])
        elif tuple(state.shape) != (want := (x_t.shape[0], self.d_model, self.modes)):
            raise ShapeError(f"state must have shape (B, H, M) = {want}, "
                             f"got {tuple(state.shape)}")
        A, B, C, dt = self.ssm()
        dA, dB = discretize_diagonal(A, B, dt, self.discretization)
        y, state = s4d_step(state, x_t, dA, dB, C, self.conjugate)
        return self._output(y + self.D * x_t), state


class S4DBlock(nn.Module):
    """Residual S4D block: x + dropout(S4DLayer(LayerNorm(x))) (prenorm), or the postnorm order.

    forward(x (B, L, H), mode) -> (B, L, H); step(x_t (B, H), state) for generation.
    """

    def __init__(self, d_model: int, d_state: int = 64, dropout: float = 0.0,
                 prenorm: bool = True, **layer_kwargs: object) -> None:
        super().__init__()
        self.prenorm = bool(prenorm)
        self.norm = nn.LayerNorm(d_model)
        self.layer = S4DLayer(d_model, d_state, dropout=dropout, **layer_kwargs)  # type: ignore[arg-type]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        if self.prenorm:
            return x + self.dropout(self.layer(self.norm(x), mode))
        return self.norm(x + self.dropout(self.layer(x, mode)))

    def step(
        self, x_t: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prenorm:
            y, state = self.layer.step(self.norm(x_t), state)
            return x_t + self.dropout(y), state
        y, state = self.layer.step(x_t, state)
        return self.norm(x_t + self.dropout(y)), state
