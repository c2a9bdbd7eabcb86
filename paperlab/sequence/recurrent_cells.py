"""Single-step recurrent cells with ``torch.nn.RNNCell/LSTMCell/GRUCell``'s parameters.

One step of the recurrences of ``sequence/recurrent.py`` (the equations are there)::

    RNNCell   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    LSTMCell  (h', c') from the i, f, g, o gates
    GRUCell   h' = (1 - z) * n + z * h, the reset gate applied after the hidden matmul

Parameters ``weight_ih`` (G*H, in), ``weight_hh`` (G*H, H), ``bias_ih``, ``bias_hh`` (G*H,),
G = 1, 4, 3, initialised uniform in +-1/sqrt(H) like torch, so a torch cell's
``state_dict`` loads as is. Shapes: x (B, in) or unbatched (in,); states (B, H) or (H,).
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.sequence.recurrent import (
    NONLINEARITIES,
    check_input,
    gru_cell,
    lstm_cell,
    rnn_cell,
    uniform_init,
)


class _CellBase(nn.Module):
    """Parameters ``weight_ih`` (G*H, in), ``weight_hh`` (G*H, H), ``bias_ih``, ``bias_hh``."""

    gates = 1

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.bias = bool(bias)
        kw = {"device": device, "dtype": dtype}
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(g, **kw))
            self.bias_hh = nn.Parameter(torch.empty(g, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_init(self)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def _input(self, x: object) -> tuple[torch.Tensor, bool]:
        """x as (B, in), and whether it came unbatched as (in,)."""
        x = check_input("input", x, (1, 2), self.input_size)
        return (x.unsqueeze(0), True) if x.dim() == 1 else (x, False)

    def _state(self, name: str, s: object, x: torch.Tensor, unbatched: bool) -> torch.Tensor:
        """A state tensor as (B, H): zeros when None, else checked against x's batch."""
        if s is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        want = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != want:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ShapeError(f"{name} must have shape {want}, got {got}")
        return s.unsqueeze(0) if unbatched else s


class RNNCell(_CellBase):
    """One Elman RNN step with torch.nn.RNNCell's parameters: forward(x (B, in), h (B, H))."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True,
        nonlinearity: str = "tanh", device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ArgumentError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, unbatched = self._input(x)
        h = self._state("hx", hx, x, unbatched)
        out = rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                       self.nonlinearity)
        return out.squeeze(0) if unbatched else out


class LSTMCell(_CellBase):
    """One LSTM step with torch.nn.LSTMCell's parameters: forward(x, (h, c)) -> (h', c')."""

    gates = 4

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ArgumentTypeError("hx must be a pair (h, c) of tensors or None")
        x, unbatched = self._input(x)
        h = self._state("hx[0] (h)", None if hx is None else hx[0], x, unbatched)
        c = self._state("hx[1] (c)", None if hx is None else hx[1], x, unbatched)
        h, c = lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(_CellBase):
    """One GRU step with torch.nn.GRUCell's parameters: forward(x (B, in), h (B, H))."""

    gates = 3

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, unbatched = self._input(x)
        h = self._state("hx", hx, x, unbatched)
        out = gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return out.squeeze(0) if unbatched else out


__all__ = ["GRUCell", "LSTMCell", "RNNCell"]
