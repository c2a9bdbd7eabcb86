"""Hand-written BPTT (note C1, ``sequence/bptt.py``): gradcheck, and equality with autograd.

The autograd loop of ``sequence/recurrent.py`` is the definition; ``backward="bptt"`` must
give the same outputs, final states and gradients (float64, 1e-10) for every option: one or
two layers, uni- and bidirectional, ``lengths``, batch_first, initial states, bias on/off.
``test_recurrent.py`` checks the default (bptt) modules against ``torch.nn`` as well.
"""

from __future__ import annotations

import pytest
import torch
from parity import assert_close
from torch.func import functional_call

from paperlab.errors import ArgumentError
from paperlab.sequence.bptt import gru_bptt, lstm_bptt, rnn_bptt
from paperlab.sequence.recurrent import GRU, LSTM, RNN

pytestmark = pytest.mark.note("C1", reference="autograd definition and torch.nn.RNN/LSTM/GRU")

KINDS = {
    "rnn-tanh": (RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
}
IN, HID, T, B = 3, 4, 5, 3
LENGTHS = torch.tensor([3, 5, 1])  # unsorted, one full, one of length 1


def _module(kind: str, backward: str, **kw):
    cls, extra = KINDS[kind]
    torch.manual_seed(0)
    return cls(IN, HID, **extra, **kw, backward=backward).double()


def _inputs(kind: str, count: int, batch_first: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, IN) if batch_first else (T, B, IN), generator=g, dtype=torch.float64)
    states = [torch.randn(count, B, HID, generator=g, dtype=torch.float64)
              for _ in range(2 if kind == "lstm" else 1)]
    return [t.requires_grad_(True) for t in [x, *states]]


def _call(module, kind: str, ins, lengths=None):
    hx = (ins[1], ins[2]) if kind == "lstm" else ins[1]
    out, state = module(ins[0], hx, lengths=lengths)
    return [out, *(state if kind == "lstm" else (state,))]


CASES = [(2, bi, bf, lens, True) for bi in (False, True) for bf in (False, True)
         for lens in (False, True)]
CASES += [(2, True, False, True, False), (1, False, True, False, False)]  # no bias


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(
    [f"L{c[0]}", "bi" if c[1] else "uni", "bf" if c[2] else "sf", "lengths" if c[3] else "full",
     "bias" if c[4] else "nobias"]))
@pytest.mark.parametrize("kind", list(KINDS))
def test_bptt_equals_autograd(kind, case):
    layers, bidirectional, batch_first, with_lengths, bias = case
    kw = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": batch_first,
          "bias": bias}
    fast, slow = _module(kind, "bptt", **kw), _module(kind, "autograd", **kw)
    count = layers * (2 if bidirectional else 1)
    ins_f = _inputs(kind, count, batch_first)
    ins_s = [t.detach().clone().requires_grad_(True) for t in ins_f]
    lengths = LENGTHS if with_lengths else None
    out_f, out_s = _call(fast, kind, ins_f, lengths), _call(slow, kind, ins_s, lengths)
    assert_close(out_f, out_s, what="forward")
    g = torch.Generator().manual_seed(5)
    cotangents = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in out_f]
    torch.autograd.backward(out_f, cotangents)
    torch.autograd.backward(out_s, cotangents)
    for i, (a, b) in enumerate(zip(ins_f, ins_s)):
        assert_close(a.grad, b.grad, what=f"grad of input {i}")
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert_close(p.grad, q.grad, what=f"grad of {name}")


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradcheck_modules(kind, bidirectional, with_lengths):
    """gradcheck of a whole module (input, initial states and every weight) in float64."""
    module = _module(kind, "bptt", num_layers=2, bidirectional=bidirectional)
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    ins = _inputs(kind, 2 * (2 if bidirectional else 1), batch_first=False)
    lengths = LENGTHS if with_lengths else None

    def fn(*tensors):
        weights = dict(zip(names, tensors[: len(names)]))
        rest = list(tensors[len(names):])
        hx = (rest[1], rest[2]) if kind == "lstm" else rest[1]
        out, state = functional_call(module, weights, (rest[0], hx), {"lengths": lengths})
        return (out, *(state if kind == "lstm" else (state,)))

    assert torch.autograd.gradcheck(fn, (*params, *ins), fast_mode=True)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", ["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_gradcheck_one_direction_full_jacobian(kind, reverse):
    """Full (slow-mode) gradcheck of one layer direction, with sequences that end early."""
    g = torch.Generator().manual_seed(3)
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)

    def rand(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_(True)

    x, h0, c0 = rand(T, B, 2), rand(B, HID), rand(B, HID)
    w_ih, w_hh, b_ih, b_hh = rand(gates * HID, 2), rand(gates * HID, HID), rand(gates * HID), \
        rand(gates * HID)
    counts = [3, 3, 2, 1, 1]  # rows running at each step, batch sorted longest first

    if kind == "lstm":
        def fn(*a):
            return lstm_bptt(a[0], a[1], c0, *a[2:], counts=counts, reverse=reverse)
    elif kind == "gru":
        def fn(*a):
            return gru_bptt(*a, counts=counts, reverse=reverse)
    else:
        def fn(*a):
            return rnn_bptt(*a, counts=counts, reverse=reverse,
                            nonlinearity=kind.removeprefix("rnn-"))
    assert torch.autograd.gradcheck(fn, (x, h0, w_ih, w_hh, b_ih, b_hh))


def test_double_backward_is_refused():
    lstm = _module("lstm", "bptt")
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(lstm(x)[0].pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


def test_backward_option():
    with pytest.raises(ArgumentError, match="backward must be 'bptt' or 'autograd'"):
        GRU(IN, HID, backward="manual")
    assert "backward='autograd'" not in repr(GRU(IN, HID))
    assert "backward=autograd" in repr(LSTM(IN, HID, backward="autograd"))
    # inference without a graph, and the unbatched form, go through the same Function
    rnn = _module("rnn-tanh", "bptt", num_layers=2, bidirectional=True)
    ref = _module("rnn-tanh", "autograd", num_layers=2, bidirectional=True)
    x = torch.randn(T, IN, dtype=torch.float64)
    with torch.no_grad():
        assert_close(list(rnn(x)), list(ref(x)), what="unbatched, no_grad")
