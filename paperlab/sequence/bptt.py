"""Back-propagation through time written out by hand for the RNN, LSTM and GRU (note C1).

The idea
--------
``sequence/recurrent.py`` defines the recurrences through autograd, which records a dozen
nodes per step and walks them back one by one. Here each layer direction is one
``torch.autograd.Function``: ``forward`` runs the recurrence without a graph and keeps what
the backward needs (the gate activations and states of every step); ``backward`` runs BPTT:
the state gradient is carried back step by step, the gradients dA_t = dL/da_t of the
pre-activations a_t = W_ih x_t + W_hh h_{t-1} + b of every step fill one (T, B, G*H)
buffer, and the weight gradients are then ONE matmul over all T*B rows::

    [dW_ih | dW_hh] = sum_t dA_t^T [x_t | h_{t-1}] = dA^T [X | H_prev]
    dX = dA W_ih,   db = sum of dA over the rows

Only ``dh_{t-1} = dA_t W_hh`` ((B, G*H) @ (G*H, H)) stays in the loop. The factors that do
not depend on the incoming gradient (activation slopes, products of gates) are computed for
all steps at once before the loop, so a step is a handful of in-place ops.

The derivations (dh = dL/dh_t: the output's gradient plus what step t+1 sends back)
---------------------------------------------------------------------------------
RNN   h_t = f(a_t);  dA_t = dh * f'(a_t), f' = 1 - h_t^2 (tanh) or [h_t > 0] (relu);
      dh_{t-1} = dA_t W_hh

LSTM  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g); c_t = f c_{t-1} + i g;
      h_t = o tanh(c_t). With dc the gradient reaching c_t from step t+1:
      dc    += dh * o * (1 - tanh(c_t)^2)
      dA_i   = dc * g * i (1 - i)            dA_f = dc * c_{t-1} * f (1 - f)
      dA_g   = dc * i * (1 - g^2)            dA_o = dh * tanh(c_t) * o (1 - o)
      dc_{t-1} = dc * f,   dh_{t-1} = dA_t W_hh

GRU   r, z = sigmoid(ax_r + ah_r, ax_z + ah_z); n = tanh(ax_n + r * ah_n);
      h_t = (1 - z) n + z h_{t-1}, with ax = W_ih x + b_ih, ah = W_hh h_{t-1} + b_hh
      (torch's placement: the reset gate multiplies W_hn h + b_hn, after the matmul).
      With A = (1 - z)(1 - n^2), the slope of n's pre-activation:
      dAx_n = dh * A                         dAh_n = dh * A * r
      dA_r  = dh * A * ah_n * r (1 - r)      dA_z  = dh * (h_{t-1} - n) * z (1 - z)
      dh_{t-1} = dh * z + [dA_r, dA_z, dAh_n] W_hh
      The two halves differ in the n block only: dW_ih = [dA_r, dA_z, dAx_n]^T X and
      dW_hh = [dA_r, dA_z, dAh_n]^T H_prev.

Variable lengths (packed-sequence semantics, as ``recurrent.py`` defines them): ``bptt_layers``
sorts the batch longest first, as ``pack_padded_sequence`` does, so the sequences running at
time t are a prefix of ``counts[t]`` rows. A step updates that prefix and leaves the other
rows' state as it is: going forwards the finished rows keep their final state, going
backwards (t = T-1 ... 0) the rows not yet started keep h0 until their last valid step.
Outputs past a length are zero; an idle row's state gradient passes through unchanged.

CPU notes: tanh is computed as 2 sigmoid(2a) - 1 (the same function up to rounding, 3e-16
in float64), because torch's CPU tanh is many times slower than its vectorised sigmoid; the
LSTM's doubled g rows let one sigmoid serve all four gates.

Double backward is not supported: differentiating the backward raises torch's
``once_differentiable`` error.

Shapes: x (T, B, in); h0, c0 (B, H); W_ih (G*H, in); W_hh (G*H, H); biases (G*H,) or None;
counts: None, or T ints, counts[t] = rows still running at t (batch sorted longest first).
Returns output (T, B, H) and the final state(s) (B, H).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

Weights = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]


# ----------------------------------------------------------------------------- helpers


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """x @ w^T + b for 2-D x, optionally into ``out``."""
    return torch.mm(x, w.t(), out=out) if b is None else torch.addmm(b, x, w.t(), out=out)


def _dsigmoid(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad * y (1 - y): sigmoid's derivative written through its output y, in one pass."""
    return torch.ops.aten.sigmoid_backward(grad, y)


def _dtanh(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad * (1 - y^2): tanh's derivative written through its output y, in one pass."""
    return torch.ops.aten.tanh_backward(grad, y)


def _tanh_of_doubled_(y: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """In place: y = 2a becomes tanh(a) = 2 sigmoid(2a) - 1; ``one`` a 0-dim tensor 1."""
    y.sigmoid_()
    return y.add_(y).sub_(one)


def _steps(steps: int, reverse: bool) -> list[tuple[int, int, int]]:
    """(t, prev, new) per step in processing order, indexing a (T+1)-row state buffer S.

    Forwards S[0] = h0 and S[t+1] = cell(S[t]); backwards S[T] = h0 and S[t] = cell(S[t+1]).
    """
    if reverse:
        return [(t, t + 1, t) for t in range(steps - 1, -1, -1)]
    return [(t, t, t + 1) for t in range(steps)]


def _split(states: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The state buffer S (T+1, B, H) as (previous states, new states), each (T, B, H)."""
    return (states[1:], states[:-1]) if reverse else (states[:-1], states[1:])


def _final(states: torch.Tensor, reverse: bool) -> torch.Tensor:
    return states[0 if reverse else -1].clone()


def _output(new_states: torch.Tensor, counts: list[int] | None) -> torch.Tensor:
    """Outputs (T, B, H): the new states, zero where a sequence has ended (``counts``)."""
    if counts is None:
        return new_states
    rows = torch.arange(new_states.shape[1], device=new_states.device)
    running = rows < torch.tensor(counts, device=new_states.device).unsqueeze(1)  # (T, B)
    return new_states * running.unsqueeze(-1)


def _weight_grads(need: list[bool], d_in: torch.Tensor, d_hid: torch.Tensor,
                  x: torch.Tensor, h_prev: torch.Tensor, w_ih: torch.Tensor) -> tuple:
    """(dx, dW_ih, dW_hh, db_ih, db_hh), each ONE matmul or sum over all T*B rows.

    need: whether each of the five is wanted; d_in, d_hid (T, B, G*H): gradients of the input
    and hidden pre-activations (the same tensor for the RNN and LSTM); x (T, B, in);
    h_prev (T, B, H), the state each step started from.
    """
    rows, size = x.shape[0] * x.shape[1], x.shape[2]
    d_in2, d_hid2 = d_in.reshape(rows, -1), d_hid.reshape(rows, -1)
    x2, h2 = x.reshape(rows, -1), h_prev.reshape(rows, -1)
    d_x = torch.mm(d_in2, w_ih).view_as(x) if need[0] else None
    d_w_ih = d_w_hh = d_b_ih = d_b_hh = None
    if d_in is d_hid and need[1] and need[2]:  # [dW_ih | dW_hh] = dA^T [X | H_prev]
        both = torch.mm(d_in2.t(), torch.cat([x2, h2], dim=1))
        d_w_ih, d_w_hh = both[:, :size].contiguous(), both[:, size:].contiguous()
    else:
        d_w_ih = torch.mm(d_in2.t(), x2) if need[1] else None
        d_w_hh = torch.mm(d_hid2.t(), h2) if need[2] else None
    if need[3] or need[4]:
        d_b_ih = d_in2.sum(0)
        d_b_hh = d_b_ih.clone() if d_in is d_hid else d_hid2.sum(0)
    return d_x, d_w_ih, d_w_hh, d_b_ih, d_b_hh


def _carried(grad: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous copy of an incoming state gradient, updated in place by the loop."""
    return grad.clone(memory_format=torch.contiguous_format)


def _new_buffer(like: torch.Tensor, shape: tuple[int, ...], counts: list[int] | None):
    """Zeros when some rows sit idle at some steps (their entries must stay zero), else empty."""
    return like.new_zeros(shape) if counts is not None else like.new_empty(shape)


# ----------------------------------------------------------------------------- Elman RNN
# The loops index nothing: every buffer is split into its per-step views once (``unbind``),
# and a step narrows them to the running rows only when some sequences have ended.


def _rows(n: int, views: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The first n rows (the sequences still running) of each per-step view."""
    return tuple(v[:n] for v in views)


class RNNFunction(torch.autograd.Function):
    """One direction of an Elman RNN layer (tanh or relu) with hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, counts, reverse, nonlinearity):
        steps, batch, _ = x.shape
        k = 2.0 if nonlinearity == "tanh" else 1.0  # tanh(a) from sigmoid(2a): weights doubled
        bias = None if b_ih is None else b_ih + b_hh
        pre = _affine(x.reshape(steps * batch, -1), k * w_ih, None if bias is None else k * bias)
        pre_t = pre.view(steps, batch, -1).unbind(0)  # k (W_ih x_t + b) for all t: one matmul
        s = x.new_empty(steps + 1, batch, h0.shape[-1])
        s[-1 if reverse else 0] = h0
        s_t, w_hh_t, one = s.unbind(0), (k * w_hh).t(), x.new_ones(())
        for t, prev, new in _steps(steps, reverse):
            n = batch if counts is None else counts[t]
            step = (pre_t[t], s_t[prev], s_t[new])
            a, h, h_new = step if n == batch else _rows(n, step)
            torch.addmm(a, h, w_hh_t, out=h_new)
            if nonlinearity == "tanh":
                _tanh_of_doubled_(h_new, one)
            else:
                h_new.relu_()
            if n < batch:
                s_t[new][n:] = s_t[prev][n:]
        ctx.save_for_backward(x, w_ih, w_hh, s)
        ctx.counts, ctx.reverse, ctx.nonlinearity = counts, reverse, nonlinearity
        return _output(_split(s, reverse)[1], counts), _final(s, reverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        x, w_ih, w_hh, s = ctx.saved_tensors
        counts, reverse = ctx.counts, ctx.reverse
        steps, batch, _ = x.shape
        h_prev, h_new = _split(s, reverse)
        # f'(a_t) for all steps at once, written through the output h_t = f(a_t)
        tanh = ctx.nonlinearity == "tanh"
        slope = _dtanh(torch.ones_like(h_new), h_new) if tanh else (h_new > 0).to(x.dtype)
        d_pre = _new_buffer(x, tuple(h_new.shape), counts)
        dh = _carried(d_hn)
        d_out_t, slope_t, d_pre_t = d_out.unbind(0), slope.unbind(0), d_pre.unbind(0)
        for t, _, _ in reversed(_steps(steps, reverse)):
            n = batch if counts is None else counts[t]
            step = (dh, d_out_t[t], slope_t[t], d_pre_t[t])
            dh_n, d_o, f_slope, d_a = step if n == batch else _rows(n, step)
            dh_n.add_(d_o)
            torch.mul(dh_n, f_slope, out=d_a)
            torch.mm(d_a, w_hh, out=dh_n)
        d_x, d_w_ih, d_w_hh, d_b_ih, d_b_hh = _weight_grads(
            [ctx.needs_input_grad[i] for i in (0, 2, 3, 4, 5)], d_pre, d_pre, x, h_prev, w_ih)
        return d_x, dh, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None, None


# ----------------------------------------------------------------------------- LSTM


class LSTMFunction(torch.autograd.Function):
    """One direction of an LSTM layer (gates i, f, g, o) with hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, counts, reverse):
        steps, batch, _ = x.shape
        hid = h0.shape[-1]
        # gates (T, B, 4H): W_ih x + b for all steps, then W_hh h added and activated in place.
        # The g rows are doubled, so that ONE sigmoid serves all four gates: g = 2 sigmoid(2a) - 1
        k = torch.ones(4 * hid, 1, dtype=x.dtype, device=x.device)
        k[2 * hid : 3 * hid] = 2
        bias = None if b_ih is None else b_ih + b_hh
        gates = _affine(x.reshape(steps * batch, -1), k * w_ih,
                        None if bias is None else k[:, 0] * bias).view(steps, batch, 4 * hid)
        s = x.new_empty(steps + 1, batch, hid)  # h states
        c = x.new_empty(steps + 1, batch, hid)  # cell states
        tanh_c = _new_buffer(x, (steps, batch, hid), counts)  # tanh(c_t)
        s[-1 if reverse else 0], c[-1 if reverse else 0] = h0, c0
        a_t, i_t, f_t, g_t, o_t = (v.unbind(0) for v in (gates, *gates.chunk(4, -1)))
        s_t, c_t, tc_t, w_hh_t = s.unbind(0), c.unbind(0), tanh_c.unbind(0), (k * w_hh).t()
        one = x.new_ones(())
        for t, prev, new in _steps(steps, reverse):
            n = batch if counts is None else counts[t]
            step = (a_t[t], i_t[t], f_t[t], g_t[t], o_t[t], s_t[prev], c_t[prev], s_t[new],
                    c_t[new], tc_t[t])
            a, i, f, g, o, h, c_old, h_new, c_new, tc = step if n == batch else _rows(n, step)
            a.addmm_(h, w_hh_t).sigmoid_()  # one (B, 4H) matmul and one sigmoid, all gates
            g.add_(g).sub_(one)  # 2 sigmoid(2a_g) - 1 = tanh(a_g)
            torch.mul(f, c_old, out=c_new).addcmul_(i, g)
            torch.mul(o, _tanh_of_doubled_(torch.add(c_new, c_new, out=tc), one), out=h_new)
            if n < batch:
                s_t[new][n:] = s_t[prev][n:]
                c_t[new][n:] = c_t[prev][n:]
        ctx.save_for_backward(x, w_ih, w_hh, gates, s, c, tanh_c)
        ctx.counts, ctx.reverse = counts, reverse
        return _output(_split(s, reverse)[1], counts), _final(s, reverse), _final(c, reverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        x, w_ih, w_hh, gates, s, c, tanh_c = ctx.saved_tensors
        counts, reverse = ctx.counts, ctx.reverse
        steps, batch, _ = x.shape
        hid = s.shape[-1]
        i, f, g, o = gates.chunk(4, -1)
        h_prev = _split(s, reverse)[0]
        c_prev = _split(c, reverse)[0]
        # per unit dc: dA_i, dA_f, dA_g as one (T, B, 3, H) factor; per unit dh: dA_o and dc
        p_c = torch.stack([_dsigmoid(g, i), _dsigmoid(c_prev, f), _dtanh(i, g)], dim=2)
        p_o = _dsigmoid(tanh_c, o)  # tanh(c) o (1 - o)
        p_dc = _dtanh(o, tanh_c)  # o (1 - tanh(c)^2)
        d_gates = _new_buffer(x, tuple(gates.shape), counts)
        d_ifg = d_gates[..., : 3 * hid].view(steps, batch, 3, hid)
        dh, dc = _carried(d_hn), _carried(d_cn)
        dc_3 = dc.unsqueeze(1)  # (B, 1, H) view of dc, broadcast over the three gates
        d_out_t, p_c_t, p_o_t, p_dc_t, f_t, d_a_t, d_ifg_t, d_o_t = (
            v.unbind(0) for v in (d_out, p_c, p_o, p_dc, f, d_gates, d_ifg,
                                  d_gates[..., 3 * hid :]))
        for t, _, _ in reversed(_steps(steps, reverse)):
            n = batch if counts is None else counts[t]
            step = (dh, dc, dc_3, d_out_t[t], p_c_t[t], p_o_t[t], p_dc_t[t], f_t[t], d_a_t[t],
                    d_ifg_t[t], d_o_t[t])
            dh_n, dc_n, dc3, d_y, pc, po, pdc, f_n, d_a, d_ifg_n, d_o = (
                step if n == batch else _rows(n, step))
            dh_n.add_(d_y)
            dc_n.addcmul_(dh_n, pdc)
            torch.mul(dc3, pc, out=d_ifg_n)
            torch.mul(dh_n, po, out=d_o)
            dc_n.mul_(f_n)
            torch.mm(d_a, w_hh, out=dh_n)
        d_x, d_w_ih, d_w_hh, d_b_ih, d_b_hh = _weight_grads(
            [ctx.needs_input_grad[i] for i in (0, 3, 4, 5, 6)], d_gates, d_gates, x, h_prev, w_ih)
        return d_x, dh, dc, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None


# ----------------------------------------------------------------------------- GRU


class GRUFunction(torch.autograd.Function):
    """One direction of a GRU layer (gates r, z, n; torch's reset placement), hand-written BPTT."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, counts, reverse):
        steps, batch, _ = x.shape
        hid = h0.shape[-1]
        ax = _affine(x.reshape(steps * batch, -1), w_ih, b_ih).view(steps, batch, 3 * hid)
        ax[..., 2 * hid :] *= 2  # n = tanh(a) from sigmoid(2a)
        ah = _new_buffer(x, (steps, batch, 3 * hid), counts)  # W_hh h_{t-1} + b_hh
        rz = _new_buffer(x, (steps, batch, 2 * hid), counts)  # reset and update gates
        cand = _new_buffer(x, (steps, batch, hid), counts)  # candidate n
        s = x.new_empty(steps + 1, batch, hid)
        s[-1 if reverse else 0], one = h0, x.new_ones(())
        ax_rz, ax_n, ah_t, ah_rz, ah_n, rz_t, r_t, z_t, cand_t, s_t = (
            v.unbind(0) for v in (ax[..., : 2 * hid], ax[..., 2 * hid :], ah, ah[..., : 2 * hid],
                                  ah[..., 2 * hid :], rz, rz[..., :hid], rz[..., hid:], cand, s))
        for t, prev, new in _steps(steps, reverse):
            n = batch if counts is None else counts[t]
            step = (ax_rz[t], ax_n[t], ah_t[t], ah_rz[t], ah_n[t], rz_t[t], r_t[t], z_t[t],
                    cand_t[t], s_t[prev], s_t[new])
            x_rz, x_n, a_h, h_rz, h_n, gate, r, z, cand_n, h, h_new = (
                step if n == batch else _rows(n, step))
            _affine(h, w_hh, b_hh, out=a_h)  # W_hh h + b_hh: one (B, 3H) matmul
            torch.add(x_rz, h_rz, out=gate).sigmoid_()
            _tanh_of_doubled_(torch.addcmul(x_n, r, h_n, value=2, out=cand_n), one)
            torch.lerp(cand_n, h, z, out=h_new)  # n + z (h - n)
            if n < batch:
                s_t[new][n:] = s_t[prev][n:]
        ctx.save_for_backward(x, w_ih, w_hh, ah, rz, cand, s)
        ctx.counts, ctx.reverse = counts, reverse
        return _output(_split(s, reverse)[1], counts), _final(s, reverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn):
        x, w_ih, w_hh, ah, rz, cand, s = ctx.saved_tensors
        counts, reverse = ctx.counts, ctx.reverse
        steps, batch, _ = x.shape
        hid = s.shape[-1]
        r, z = rz.chunk(2, -1)
        h_prev = _split(s, reverse)[0]
        # per unit dh: the n pre-activation (A), and the three blocks of dAh as (T, B, 3, H)
        a = _dtanh(1 - z, cand)  # (1 - z)(1 - n^2)
        p_h = torch.stack([_dsigmoid(a * ah[..., 2 * hid :], r), _dsigmoid(h_prev - cand, z),
                           a * r], dim=2)
        d_ah = _new_buffer(x, tuple(ah.shape), counts)  # [dA_r, dA_z, dAh_n]
        d_xn = _new_buffer(x, tuple(cand.shape), counts)  # dAx_n
        dh = _carried(d_hn)
        dh_3 = dh.unsqueeze(1)  # (B, 1, H) view of dh, broadcast over the three blocks
        d_out_t, p_h_t, a_t, z_t, d_ah_t, d_ah3_t, d_xn_t = (
            v.unbind(0) for v in (d_out, p_h, a, z, d_ah, d_ah.view(steps, batch, 3, hid), d_xn))
        for t, _, _ in reversed(_steps(steps, reverse)):
            n = batch if counts is None else counts[t]
            step = (dh, dh_3, d_out_t[t], p_h_t[t], a_t[t], z_t[t], d_ah_t[t], d_ah3_t[t],
                    d_xn_t[t])
            dh_n, dh3, d_y, ph, a_n, z_n, d_a, d_a3, d_x_n = step if n == batch else _rows(n, step)
            dh_n.add_(d_y)
            torch.mul(dh3, ph, out=d_a3)
            torch.mul(dh_n, a_n, out=d_x_n)
            dh_n.mul_(z_n).addmm_(d_a, w_hh)
        d_ax = torch.cat([d_ah[..., : 2 * hid], d_xn], dim=-1)
        d_x, d_w_ih, d_w_hh, d_b_ih, d_b_hh = _weight_grads(
            [ctx.needs_input_grad[i] for i in (0, 2, 3, 4, 5)], d_ax, d_ah, x, h_prev, w_ih)
        return d_x, dh, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None, None


# ----------------------------------------------------------------------------- functions


def rnn_bptt(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, counts=None, reverse=False,
             nonlinearity="tanh"):
    """One Elman RNN direction with hand-written BPTT: x (T, B, in), h0 (B, H) -> (out, h_n)."""
    return RNNFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, counts, reverse, nonlinearity)


def lstm_bptt(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, counts=None, reverse=False):
    """One LSTM direction with hand-written BPTT -> (out (T, B, H), h_n, c_n)."""
    return LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, counts, reverse)


def gru_bptt(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, counts=None, reverse=False):
    """One GRU direction with hand-written BPTT: x (T, B, in), h0 (B, H) -> (out, h_n)."""
    return GRUFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, counts, reverse)


DIRECTIONS = {"rnn_tanh": rnn_bptt, "rnn_relu": partial(rnn_bptt, nonlinearity="relu"),
              "lstm": lstm_bptt, "gru": gru_bptt}


def bptt_layers(
    cell: str, x: torch.Tensor, initial: tuple[torch.Tensor, ...], weights: list[Weights],
    lengths: torch.Tensor | None, num_directions: int, dropout: float = 0.0,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Stacked, optionally bidirectional layers of hand-written-BPTT directions.

    cell: "rnn_tanh", "rnn_relu", "lstm" or "gru"; x (T, B, in); initial: (h0,) or (h0, c0),
    each (L*D, B, H); weights: L*D tuples (W_ih, W_hh, b_ih, b_hh), index layer * D +
    direction; lengths (B,) or None; dropout: probability applied to the input of every layer
    after the first (pass 0 when not training; with ``lengths`` its mask is drawn in the
    sorted batch order). Returns output (T, B, D*H) and the final states (L*D, B, H), like
    the autograd loop of ``recurrent.py``.
    """
    steps = x.shape[0]
    counts = order = None
    if lengths is not None and int(lengths.min()) < steps:  # sort longest first, as packing does
        order = torch.argsort(lengths, descending=True, stable=True)
        times = torch.arange(steps, device=lengths.device).unsqueeze(1)
        counts = (lengths[order].unsqueeze(0) > times).sum(1).tolist()
        x = x.index_select(1, order)
        initial = tuple(s.index_select(1, order) for s in initial)
    run, finals = DIRECTIONS[cell], [[] for _ in initial]
    layer_input = x
    for layer in range(len(weights) // num_directions):
        if layer > 0 and dropout > 0:
            layer_input = F.dropout(layer_input, dropout, training=True)
        outputs = []
        for direction in range(num_directions):
            index = layer * num_directions + direction
            out, *state = run(layer_input, *(s[index] for s in initial), *weights[index],
                              counts=counts, reverse=direction == 1)
            outputs.append(out)
            for k, s in enumerate(state):
                finals[k].append(s)
        layer_input = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
    output, final = layer_input, tuple(torch.stack(f) for f in finals)
    if order is not None:  # back to the caller's batch order
        inverse = torch.argsort(order)
        output = output.index_select(1, inverse)
        final = tuple(f.index_select(1, inverse) for f in final)
    return output, final


__all__ = ["GRUFunction", "LSTMFunction", "RNNFunction", "bptt_layers", "gru_bptt",
           "lstm_bptt", "rnn_bptt"]
