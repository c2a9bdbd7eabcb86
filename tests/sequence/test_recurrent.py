"""RNN, LSTM and GRU (notes C1, C2): parity with torch.nn.RNN/LSTM/GRU and their cells.

torch's modules are the independent reference: their state_dict is loaded into ours and the
outputs, final states and the gradients of the input, the initial states and every weight must
agree (float64 to 1e-10, float32 to 1e-5). Variable lengths are checked against
``pack_padded_sequence(enforce_sorted=False)``. The modules run their default hand-written BPTT
(``sequence/bptt.py``); the autograd definition is checked against torch too where marked,
and against BPTT option by option in ``test_bptt.py``.
"""

from __future__ import annotations

import pytest
import torch
from parity import assert_close

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.sequence.recurrent import GRU, LSTM, RNN
from paperlab.sequence.recurrent_cells import GRUCell, LSTMCell, RNNCell

pytestmark = pytest.mark.note("C1", "C2", reference="torch.nn.RNN/LSTM/GRU")

KINDS = {
    "rnn-tanh": (RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "gru": (GRU, torch.nn.GRU, {}),
}
CELLS = {
    "rnn-tanh": (RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn-relu": (RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (GRUCell, torch.nn.GRUCell, {}),
}
IN, HID, T, B = 5, 6, 7, 3


def _pair(kind: str, dtype: torch.dtype, backward: str = "bptt", **kw):
    ours_cls, ref_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = ref_cls(IN, HID, **extra, **kw).to(dtype)
    ours = ours_cls(IN, HID, **extra, **kw, backward=backward).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _leaves(x):
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for item in x for t in _leaves(item)]


def _states(kind: str, count: int, dtype: torch.dtype, g: torch.Generator):
    h0 = torch.randn(count, B, HID, generator=g, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        c0 = torch.randn(count, B, HID, generator=g, dtype=dtype, requires_grad=True)
        return (h0, c0), [h0, c0]
    return h0, [h0]


def _backward(outputs, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    total = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in outputs)
    total.backward()


def _compare_grads(ours, ref, inputs_ours, inputs_ref) -> None:
    for i, (a, b) in enumerate(zip(inputs_ours, inputs_ref)):
        assert_close(a.grad, b.grad, what=f"grad of input {i}")
    ref_params = dict(ref.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert sorted(names) == sorted(ref_params)
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_params[name].grad, what=f"grad of {name}")


# Every option combination in float64; float32 on the widest configuration of each kind.
GRID = [
    (layers, bi, bf, state, torch.float64)
    for layers in (1, 2) for bi in (False, True) for bf in (False, True) for state in (False, True)
] + [(2, True, bf, True, torch.float32) for bf in (False, True)]


def _grid_id(case) -> str:
    layers, bi, bf, state, dtype = case
    return "-".join([f"L{layers}", "bi" if bi else "uni", "bf" if bf else "sf",
                     "h0" if state else "zero", "f64" if dtype == torch.float64 else "f32"])


@pytest.mark.parametrize("case", GRID, ids=[_grid_id(c) for c in GRID])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_with_torch(kind, case):
    num_layers, bidirectional, batch_first, with_state, dtype = case
    ours, ref = _pair(kind, dtype, num_layers=num_layers, bidirectional=bidirectional,
                      batch_first=batch_first)
    g = torch.Generator().manual_seed(2)
    shape = (B, T, IN) if batch_first else (T, B, IN)
    x = torch.randn(shape, generator=g, dtype=dtype)
    count = num_layers * (2 if bidirectional else 1)
    inputs = [x.clone().requires_grad_(True)]
    hx = None
    if with_state:
        hx, extra = _states(kind, count, dtype, g)
        inputs += extra
    inputs_ref = [t.detach().clone().requires_grad_(True) for t in inputs]

    def call(module, ins):
        if not with_state:
            return module(ins[0])
        return module(ins[0], (ins[1], ins[2]) if kind == "lstm" else ins[1])

    out_ours, out_ref = call(ours, inputs), call(ref, inputs_ref)
    assert_close(_leaves(out_ours), _leaves(out_ref), what="forward")
    _backward(_leaves(out_ours))
    _backward(_leaves(out_ref))
    _compare_grads(ours, ref, inputs, inputs_ref)


@pytest.mark.parametrize("backward", ["bptt", "autograd"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq-first", "batch-first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_lengths_match_packed_sequences(kind, bidirectional, batch_first, backward):
    dtype = torch.float64
    ours, ref = _pair(kind, dtype, backward, num_layers=2, bidirectional=bidirectional,
                      batch_first=batch_first)
    g = torch.Generator().manual_seed(3)
    batch = 4
    lengths = torch.tensor([4, T, 1, 5])  # unsorted, one full, one of length 1
    x = torch.randn((batch, T, IN) if batch_first else (T, batch, IN), generator=g, dtype=dtype)
    count = 2 * (2 if bidirectional else 1)
    h0 = torch.randn(count, batch, HID, generator=g, dtype=dtype)
    hx = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    xo, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)

    out, state = ours(xo, hx, lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xr, lengths, batch_first=batch_first,
                                                     enforce_sorted=False)
    ref_packed, ref_state = ref(packed, hx)
    ref_out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_packed, batch_first=batch_first,
                                                        total_length=T)
    assert_close([out, *_leaves(state)], [ref_out, *_leaves(ref_state)], what="forward")
    _backward([out, *_leaves(state)])
    _backward([ref_out, *_leaves(ref_state)])
    _compare_grads(ours, ref, [xo], [xr])
    # Past its length a sequence's outputs are exactly zero.
    time_dim = 1 if batch_first else 0
    steps = torch.arange(T).unsqueeze(1 - time_dim)
    pad = (steps >= lengths.unsqueeze(time_dim)).unsqueeze(-1).expand_as(out)
    assert bool((out[pad] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cells_match_torch_cells(kind, bias, dtype):
    ours_cls, ref_cls, extra = CELLS[kind]
    torch.manual_seed(0)
    ref = ref_cls(IN, HID, bias=bias, **extra).to(dtype)
    ours = ours_cls(IN, HID, bias=bias, **extra).to(dtype)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, IN, generator=g, dtype=dtype)
    h = torch.randn(B, HID, generator=g, dtype=dtype)
    c = torch.randn(B, HID, generator=g, dtype=dtype)
    ins = [x, h, c] if kind == "lstm" else [x, h]
    ins_o = [t.clone().requires_grad_(True) for t in ins]
    ins_r = [t.clone().requires_grad_(True) for t in ins]

    def call(cell, i):
        return cell(i[0], (i[1], i[2])) if kind == "lstm" else cell(i[0], i[1])

    a, b = call(ours, ins_o), call(ref, ins_r)
    assert_close(_leaves(a), _leaves(b), what="forward")
    _backward(_leaves(a))
    _backward(_leaves(b))
    _compare_grads(ours, ref, ins_o, ins_r)
    # Unbatched input and the default zero state behave like torch's too.
    a1, b1 = ours(x[0].detach()), ref(x[0].detach())
    assert_close(_leaves(a1), _leaves(b1), what="unbatched")


@pytest.mark.parametrize("backward", ["bptt", "autograd"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input_and_no_bias(kind, backward):
    ours, ref = _pair(kind, torch.float64, backward, num_layers=2, bidirectional=True, bias=False)
    x = torch.randn(T, IN, dtype=torch.float64)
    assert_close(_leaves(ours(x)), _leaves(ref(x)), what="unbatched")
    assert "bias_ih_l0" not in dict(ours.named_parameters())


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    lstm = LSTM(IN, HID, num_layers=2, dropout=0.5)
    x = torch.randn(T, B, IN)
    lstm.eval()
    a, b = lstm(x)[0], lstm(x)[0]
    assert torch.equal(a, b)
    lstm.train()
    torch.manual_seed(1)
    c = lstm(x)[0]
    assert not torch.allclose(a, c)
    single = LSTM(IN, HID, num_layers=1, dropout=0.5).train()  # no layer to drop between
    assert torch.equal(single(x)[0], single(x)[0])


def test_state_dict_round_trip_into_torch():
    ours = GRU(IN, HID, num_layers=2, bidirectional=True)
    ref = torch.nn.GRU(IN, HID, num_layers=2, bidirectional=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, IN)
    assert_close(_leaves(ours(x)), _leaves(ref(x)))


def test_bad_input_raises_clear_errors():
    rnn = RNN(IN, HID, num_layers=2)
    x = torch.randn(T, B, IN)
    with pytest.raises(ShapeError, match="last dimension 5"):
        rnn(torch.randn(T, B, IN + 1))
    with pytest.raises(ShapeError, match="2-D or 3-D"):
        rnn(torch.randn(T, B, 1, IN))
    with pytest.raises(ArgumentTypeError, match="floating-point"):
        rnn(torch.ones(T, B, IN, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"h0 must have shape .* \(2, 3, 6\)"):
        rnn(x, torch.zeros(1, B, HID))
    with pytest.raises(ArgumentError, match=r"lengths must lie in \[1, T\] = \[1, 7\]"):
        rnn(x, lengths=[3, 8, 2])
    with pytest.raises(ArgumentError, match="got min 0"):
        rnn(x, lengths=torch.tensor([3, 0, 2]))
    with pytest.raises(ShapeError, match=r"lengths must have shape \(batch,\) = \(3,\)"):
        rnn(x, lengths=[3, 2])
    with pytest.raises(ArgumentTypeError, match="integers"):
        rnn(x, lengths=torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ShapeError, match="at least one time step"):
        rnn(torch.randn(0, B, IN))
    with pytest.raises(ArgumentTypeError, match=r"hx must be a pair"):
        LSTM(IN, HID)(x, torch.zeros(1, B, HID))
    with pytest.raises(ShapeError, match=r"c0 must have shape"):
        LSTM(IN, HID)(x, (torch.zeros(1, B, HID), torch.zeros(1, B, HID + 1)))
    with pytest.raises(ShapeError, match=r"hx must have shape \(3, 6\)"):
        GRUCell(IN, HID)(torch.randn(B, IN), torch.zeros(B + 1, HID))
    with pytest.raises(ArgumentError, match="hidden_size must be >= 1"):
        LSTM(IN, 0)
    with pytest.raises(ArgumentError, match="num_layers must be >= 1"):
        GRU(IN, HID, num_layers=0)
    with pytest.raises(ArgumentError, match="nonlinearity"):
        RNN(IN, HID, nonlinearity="sigmoid")
    with pytest.raises(ArgumentError, match="dropout"):
        RNN(IN, HID, dropout=1.5)
