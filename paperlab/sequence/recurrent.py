"""Recurrent networks: the Elman RNN, the LSTM and the GRU (notes C1 and C2).

The idea
--------
A recurrent network reads a sequence one step at a time and carries a hidden state ``h``
from step to step, so the output at step t can depend on every input before it::

    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)          (or relu)

Training unrolls the loop and back-propagates through it (BPTT). The gradient that reaches an
input k steps back is a product of k Jacobians ``diag(f') W_hh``; when their norms are below
one it shrinks geometrically with the distance (vanishing gradients, Bengio et al. 1994), above
one it explodes. The gated cells add a path along which the state is copied rather than
squashed, with gates that decide how much to keep:

    LSTM (Hochreiter & Schmidhuber 1997; the forget gate of Gers et al. 2000)
        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)          input gate
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)          forget gate
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)             candidate cell
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)          output gate
        c' = f * c + i * g
        h' = o * tanh(c')

    GRU (Cho et al. 2014)
        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)          reset gate
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)          update gate
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))       candidate (reset after the matmul)
        h' = (1 - z) * n + z * h

The single-step modules ``RNNCell``, ``LSTMCell`` and ``GRUCell`` (torch.nn's ``*Cell``
equivalents) are in ``sequence/recurrent_cells.py``; they call the cell functions here.

Compatibility with torch
------------------------
Parameter names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n), initialisation
(uniform in +-1/sqrt(hidden_size)) and the ``forward`` contract are those of
``torch.nn.RNN/LSTM/GRU`` and ``torch.nn.RNNCell/LSTMCell/GRUCell``: a torch module's
``state_dict`` loads into ours and both return the same values (the tests prove it to
float64 rounding). Layer ``k`` owns ``weight_ih_l{k}`` (G*H, in), ``weight_hh_l{k}`` (G*H, H),
``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*H,) with G = 1, 4, 3 gates; the backward direction of a
bidirectional layer adds the suffix ``_reverse``.

Variable lengths: ``forward(x, hx, lengths=...)`` does what a ``PackedSequence`` does in torch.
Outputs past a sequence's length are zero, the final state is the state after its last valid
step, and the backward direction starts at the sequence's own last valid step.

Shapes (torch's convention; T time, B batch, D = 2 if bidirectional else 1, L layers)::

    x       (T, B, input_size), or (B, T, input_size) with batch_first, or (T, input_size)
    h0, c0  (L * D, B, hidden_size)          (L * D, hidden_size) for an unbatched x
    output  (T, B, D * hidden_size)          (B, T, ...) with batch_first
    h_n     (L * D, B, hidden_size)          index layer * D + direction
    lengths (B,) ints in [1, T]

``backward="autograd"`` is the definition: a plain Python loop (the input half of the gates in
one matmul before it) that autograd differentiates step by step. ``backward="bptt"`` (default)
runs each layer direction as one autograd.Function with BPTT written out (``sequence/bptt.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_model
from paperlab.sequence.bptt import bptt_layers

State = tuple[torch.Tensor, ...]  # (h,) for RNN and GRU, (h, c) for LSTM
Update = Callable[[torch.Tensor, State, torch.Tensor, "torch.Tensor | None"], State]

NONLINEARITIES = ("tanh", "relu")


# ----------------------------------------------------------------------------- one step
# Each update takes gx = W_ih x + b_ih (the input half of the gates, precomputed) and the state.


def rnn_update(
    gx: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None,
    nonlinearity: str = "tanh",
) -> State:
    """Elman step: h' = f(gx + W_hh h + b_hh) with f = tanh or relu."""
    (h,) = state
    pre = gx + F.linear(h, w_hh, b_hh)
    return (torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre),)


def rnn_relu_update(
    gx: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """Elman step with relu."""
    return rnn_update(gx, state, w_hh, b_hh, "relu")


def lstm_update(
    gx: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """LSTM step: gates i, f, g, o from gx + W_hh h + b_hh; c' = f c + i g; h' = o tanh(c')."""
    h, c = state
    i, f, g, o = (gx + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def gru_update(
    gx: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """GRU step: r, z from both halves; n = tanh(x_n + r * (W_hn h + b_hn)); h' = (1-z) n + z h."""
    (h,) = state
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def rnn_cell(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None, b_hh: torch.Tensor | None = None,
    nonlinearity: str = "tanh",
) -> torch.Tensor:
    """One Elman RNN step: x (B, in), h (B, H) -> h' (B, H)."""
    return rnn_update(F.linear(x, w_ih, b_ih), (h,), w_hh, b_hh, nonlinearity)[0]


def lstm_cell(
    x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_ih: torch.Tensor,
    w_hh: torch.Tensor, b_ih: torch.Tensor | None = None, b_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: x (B, in), (h, c) each (B, H) -> (h', c')."""
    return lstm_update(F.linear(x, w_ih, b_ih), state, w_hh, b_hh)  # type: ignore[return-value]


def gru_cell(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None, b_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One GRU step: x (B, in), h (B, H) -> h' (B, H)."""
    return gru_update(F.linear(x, w_ih, b_ih), (h,), w_hh, b_hh)[0]


# ----------------------------------------------------------------------------- the time loop


def recurrent_direction(
    update: Update,
    gx: torch.Tensor,
    state: State,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
    lengths: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, State]:
    """Run one layer in one direction over time.

    gx: (T, B, G*H), the precomputed input half of the gates; state: tensors of (B, H);
    lengths: (B,) or None. Returns the outputs (T, B, H) and the final state.

    With ``lengths``, a step t >= length leaves that sequence's state unchanged and writes a
    zero output, so the forward direction ends on the last valid step and the reverse
    direction (t = T-1 ... 0) starts on it.
    """
    steps = range(gx.shape[0] - 1, -1, -1) if reverse else range(gx.shape[0])
    outputs: list[torch.Tensor] = [gx.new_empty(0)] * gx.shape[0]
    for t in steps:
        new = update(gx[t], state, w_hh, b_hh)
        if lengths is None:
            state = new
            outputs[t] = new[0]
        else:
            valid = (t < lengths).unsqueeze(-1)  # (B, 1)
            state = tuple(torch.where(valid, n, s) for n, s in zip(new, state))
            outputs[t] = torch.where(valid, new[0], torch.zeros_like(new[0]))
    return torch.stack(outputs), state


# ----------------------------------------------------------------------------- input checks


def check_lengths(lengths: object, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    if isinstance(lengths, torch.Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ArgumentTypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        out = lengths.to(device=device, dtype=torch.long)
    elif isinstance(lengths, Sequence) and not isinstance(lengths, (str, bytes)):
        for i, v in enumerate(lengths):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ArgumentTypeError(f"lengths[{i}] must be an int, got {type(v).__name__}")
        out = torch.tensor(list(lengths), dtype=torch.long, device=device)
    else:
        raise ArgumentTypeError(f"lengths must be a tensor or a sequence of ints, "
                                f"got {type(lengths).__name__}")
    if tuple(out.shape) != (batch,):
        raise ShapeError(f"lengths must have shape (batch,) = ({batch},), got {tuple(out.shape)}")
    if batch and (int(out.min()) < 1 or int(out.max()) > steps):
        raise ArgumentError(f"lengths must lie in [1, T] = [1, {steps}], got min "
                            f"{int(out.min())} and max {int(out.max())}")
    return out


def check_input(name: str, x: object, dims: tuple[int, ...], last: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in dims or x.shape[-1] != last:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ShapeError(f"{name} must be {want} with last dimension {last}, "
                         f"got shape {tuple(x.shape)}")
    return x


# ----------------------------------------------------------------------------- init


def uniform_init(module: nn.Module) -> None:
    """Every weight and bias uniform in +-1/sqrt(hidden_size), as torch initialises RNNs."""
    bound = 1.0 / math.sqrt(module.hidden_size)  # type: ignore[arg-type]
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


# ----------------------------------------------------------------------------- layers


class _RecurrentBase(nn.Module):
    """Stacked, optionally bidirectional recurrent layers with torch's parameter names."""

    gates, cell = 1, "rnn_tanh"

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        *, backward: str = "bptt",
    ) -> None:
        super().__init__()
        if backward not in ("bptt", "autograd"):
            raise ArgumentError(f"backward must be 'bptt' or 'autograd', got {backward!r}")
        self.backward = backward
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ArgumentTypeError(f"dropout must be a number, got {type(dropout).__name__}")
        if not 0.0 <= dropout <= 1.0:
            raise ArgumentError(f"dropout must be in [0, 1], got {dropout}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        g = self.gates * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight_ih{suffix}",
                                        nn.Parameter(torch.empty(g, layer_in, **kw)))
                self.register_parameter(f"weight_hh{suffix}",
                                        nn.Parameter(torch.empty(g, hidden_size, **kw)))
                if bias:
                    self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(g, **kw)))
                    self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(g, **kw)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def reset_parameters(self) -> None:
        uniform_init(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for key, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                             ("bidirectional", False), ("backward", "bptt")):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        return s

    def _update(self) -> Update:
        raise NotImplementedError

    def _weights(self, suffix: str) -> tuple[torch.Tensor, ...]:
        b_ih = getattr(self, f"bias_ih{suffix}") if self.bias else None
        b_hh = getattr(self, f"bias_hh{suffix}") if self.bias else None
        return getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}"), b_ih, b_hh

    def _run(
        self, x: object, states: tuple[torch.Tensor | None, ...], lengths: object
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Check the inputs, run every layer and direction, return output and final states."""
        x = check_input("input", x, (2, 3), self.input_size)
        unbatched = x.dim() == 2
        if unbatched:
            if lengths is not None:
                raise ArgumentError("lengths needs a batched input (3-D), got an unbatched 2-D x")
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise ShapeError("input must have at least one time step, got T = 0")
        lens = None if lengths is None else check_lengths(lengths, batch, steps, x.device)

        count = self.num_layers * self.num_directions
        initial = []
        for k, s in enumerate(states):
            if s is None:
                initial.append(x.new_zeros(count, batch, self.hidden_size))
                continue
            want = (count, self.hidden_size) if unbatched else (count, batch, self.hidden_size)
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != want:
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ShapeError(f"{('h0', 'c0')[k]} must have shape (num_layers * num_directions, "
                                 f"batch, hidden_size) = {want}, got {got}")
            initial.append(s.unsqueeze(1) if unbatched else s)

        if self.backward == "bptt":  # hand-written BPTT, sequence/bptt.py
            weights = [self._weights(s) for k in range(self.num_layers) for s in self._suffixes(k)]
            output, final = bptt_layers(self.cell, x, tuple(initial), weights, lens,
                                        self.num_directions, self.dropout * self.training)
        else:  # the definition: autograd through every step
            update = self._update()
            finals: list[list[torch.Tensor]] = [[] for _ in states]
            layer_input = x
            for layer in range(self.num_layers):
                if layer > 0 and self.dropout > 0 and self.training:
                    layer_input = F.dropout(layer_input, self.dropout, training=True)
                outputs = []
                for direction, suffix in enumerate(self._suffixes(layer)):
                    w_ih, w_hh, b_ih, b_hh = self._weights(suffix)
                    state = tuple(s[layer * self.num_directions + direction] for s in initial)
                    gx = F.linear(layer_input, w_ih, b_ih)  # (T, B, G*H) for all steps at once
                    out, state = recurrent_direction(update, gx, state, w_hh, b_hh, lens,
                                                     reverse=direction == 1)
                    outputs.append(out)
                    for k, s in enumerate(state):
                        finals[k].append(s)
                layer_input = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            output, final = layer_input, tuple(torch.stack(f) for f in finals)
        if unbatched:
            return output.squeeze(1), tuple(f.squeeze(1) for f in final)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, final


@export_model("rnn")
class RNN(_RecurrentBase):
    """Multi-layer Elman RNN, a drop-in for torch.nn.RNN: forward(x, h0, lengths) -> (out, h_n)."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1,
        nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        *, backward: str = "bptt",
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ArgumentError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity, self.cell = nonlinearity, f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backward=backward)

    def _update(self) -> Update:
        return rnn_update if self.nonlinearity == "tanh" else rnn_relu_update

    def forward(
        self, x: torch.Tensor, hx: torch.Tensor | None = None, lengths: object = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output, (h_n,) = self._run(x, (hx,), lengths)
        return output, h_n


@export_model("lstm")
class LSTM(_RecurrentBase):
    """Multi-layer LSTM, a drop-in for torch.nn.LSTM: forward(x, (h0, c0)) -> (out, (h_n, c_n))."""

    gates, cell = 4, "lstm"

    def _update(self) -> Update:
        return lstm_update

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths: object = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if hx is None:
            hx = (None, None)  # type: ignore[assignment]
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ArgumentTypeError(f"hx must be a pair (h0, c0) or None, got {type(hx).__name__}")
        return self._run(x, tuple(hx), lengths)  # type: ignore[arg-type,return-value]


@export_model("gru")
class GRU(_RecurrentBase):
    """Multi-layer GRU, a drop-in for torch.nn.GRU: forward(x, h0, lengths) -> (out, h_n)."""

    gates, cell = 3, "gru"

    def _update(self) -> Update:
        return gru_update

    def forward(
        self, x: torch.Tensor, hx: torch.Tensor | None = None, lengths: object = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output, (h_n,) = self._run(x, (hx,), lengths)
        return output, h_n
