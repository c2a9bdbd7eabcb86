"""Our Adam/AdamW against torch.optim.Adam/AdamW, step for step; groups, state dicts, errors."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
from conftest import require
from parity import assert_close
from torch import nn

from paperlab import create
from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.training.adamw import Adam, AdamW, param_groups_weight_decay
from paperlab.training.schedules import (
    WarmupCosine,
    WarmupLinear,
    warmup_cosine,
    warmup_cosine_factor,
    warmup_linear,
)

pytestmark = pytest.mark.note("I1", reference="torch.optim.AdamW")

PAIRS = {"adam": (Adam, torch.optim.Adam), "adamw": (AdamW, torch.optim.AdamW)}
TOL = {torch.float64: 1e-12, torch.float32: 1e-6}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one intra-op thread is faster and steady on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def groups(model: nn.Module, wd: float, split: bool) -> list[dict] | list[nn.Parameter]:
    """One group, or three with different lr and weight decay."""
    if not split:
        return list(model.parameters())
    first, _, last = model
    return [
        {"params": [first.weight], "lr": 3e-3, "weight_decay": wd},
        {"params": [first.bias, last.bias], "lr": 1e-2, "weight_decay": 0.0},
        {"params": [last.weight], "weight_decay": 2 * wd},
    ]


def train(
    model: nn.Module, opt: torch.optim.Optimizer, start: int, stop: int
) -> list[torch.Tensor]:
    """Steps ``start..stop-1``; the data of step s depends only on s (so runs can resume)."""
    dtype = next(model.parameters()).dtype
    snapshots = []
    for s in range(start, stop):
        g = torch.Generator().manual_seed(1000 + s)
        x = torch.randn(12, 6, generator=g, dtype=torch.float64).to(dtype)
        y = torch.randn(12, 3, generator=g, dtype=torch.float64).to(dtype)
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        if (s + 1) % 50 == 0:
            snapshots.append(flat(model))
    return snapshots


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# Every option combination in float64; float32 with the three parameter groups only (a superset
# of the one-group case) to keep the default suite short.
PARITY_CASES = [
    (n, wd, a, f, s, dtype)
    for dtype in (torch.float64, torch.float32)
    for n, wd, a, f, s in itertools.product(
        PAIRS, [0.0, 0.1], [False, True], [False, True], [False, True]
    )
    if dtype == torch.float64 or s
]


@pytest.mark.parametrize(
    "name,wd,amsgrad,foreach,split,dtype",
    PARITY_CASES,
    ids=[f"{n}-wd{wd}-ams{int(a)}-foreach{int(f)}-{'groups' if s else 'one'}-{str(d)[6:]}"
         for n, wd, a, f, s, d in PARITY_CASES],
)
def test_parity_with_torch(name, wd, amsgrad, foreach, split, dtype):
    ours_cls, ref_cls = PAIRS[name]
    m_ours, m_ref = make_model(dtype), make_model(dtype)
    kw = dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=wd, amsgrad=amsgrad,
              foreach=foreach)
    opt_ours = ours_cls(groups(m_ours, wd, split), **kw)
    opt_ref = ref_cls(groups(m_ref, wd, split), **kw)
    snaps_ours = train(m_ours, opt_ours, 0, 200)
    snaps_ref = train(m_ref, opt_ref, 0, 200)
    assert not torch.equal(snaps_ours[0], snaps_ours[-1])  # it really trained
    for i, (a, b) in enumerate(zip(snaps_ours, snaps_ref, strict=True)):
        assert_close(a, b, atol=TOL[dtype], rtol=0, what=f"params after {50 * (i + 1)} steps")


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("foreach", [False, True])
def test_maximize_matches_torch(name, foreach):
    ours_cls, ref_cls = PAIRS[name]
    m_ours, m_ref = make_model(torch.float64), make_model(torch.float64)
    kw = dict(lr=1e-3, weight_decay=0.05, maximize=True, foreach=foreach)
    train(m_ours, ours_cls(m_ours.parameters(), **kw), 0, 60)
    train(m_ref, ref_cls(m_ref.parameters(), **kw), 0, 60)
    assert_close(flat(m_ours), flat(m_ref), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(PAIRS))
def test_foreach_equals_loop_with_mixed_dtypes_and_missing_grads(name):
    """Mixed dtypes make several foreach batches; parameters that miss some gradients get
    different step counts, which takes the per-tensor bias-correction branch."""
    ours_cls, ref_cls = PAIRS[name]
    torch.manual_seed(3)
    init = [torch.randn(5, 4, dtype=torch.float64), torch.randn(7, dtype=torch.float32),
            torch.randn(3, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float32)]

    def run(cls, foreach):
        params = [nn.Parameter(t.clone()) for t in init]
        opt = cls(params, lr=1e-2, weight_decay=0.1, amsgrad=True, foreach=foreach)
        for s in range(40):
            g = torch.Generator().manual_seed(s)
            for i, p in enumerate(params):
                skip = (s + i) % 3 == 0  # some parameters have no gradient this step
                p.grad = None if skip else torch.randn(p.shape, generator=g, dtype=p.dtype)
            opt.step()
        return params

    loop, multi, ref = run(ours_cls, False), run(ours_cls, True), run(ref_cls, True)
    for a, b, c in zip(loop, multi, ref, strict=True):
        assert torch.equal(a, b)
        assert_close(a, c, atol=1e-12 if a.dtype == torch.float64 else 1e-6, rtol=0)


def test_complex_parameters_match_torch():
    torch.manual_seed(0)
    init = torch.randn(4, 3, dtype=torch.complex128)
    results = []
    for cls, foreach in [(AdamW, False), (AdamW, True), (torch.optim.AdamW, False)]:
        p = nn.Parameter(init.clone())
        opt = cls([p], lr=1e-2, weight_decay=0.1, foreach=foreach)
        for s in range(20):
            p.grad = torch.randn(4, 3, dtype=torch.complex128,
                                 generator=torch.Generator().manual_seed(s))
            opt.step()
        results.append(torch.view_as_real(p.detach()))
    assert_close(results[0], results[2], atol=1e-12, rtol=0)
    assert_close(results[1], results[2], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("amsgrad", [False, True])
def test_state_dict_round_trip(name, amsgrad):
    ours_cls, _ = PAIRS[name]
    kw = dict(lr=5e-3, weight_decay=0.1, amsgrad=amsgrad)
    whole = make_model(torch.float64)
    train(whole, ours_cls(groups(whole, 0.1, True), **kw), 0, 200)

    first = make_model(torch.float64)
    opt = ours_cls(groups(first, 0.1, True), **kw)
    train(first, opt, 0, 100)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    second = make_model(torch.float64)
    second.load_state_dict(saved["model"])
    opt2 = ours_cls(groups(second, 0.1, True), **kw)
    opt2.load_state_dict(saved["opt"])
    train(second, opt2, 100, 200)
    assert torch.equal(flat(second), flat(whole))

    keys = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    assert all(set(s) == keys for s in saved["opt"]["state"].values())


@pytest.mark.parametrize("direction", ["ours->torch", "torch->ours"])
def test_state_dict_is_compatible_with_torch(direction):
    kw = dict(lr=5e-3, weight_decay=0.1, amsgrad=True)
    whole = make_model(torch.float64)
    train(whole, AdamW(whole.parameters(), **kw), 0, 120)

    src_cls, dst_cls = (AdamW, torch.optim.AdamW)
    if direction == "torch->ours":
        src_cls, dst_cls = dst_cls, src_cls
    first = make_model(torch.float64)
    opt = src_cls(first.parameters(), **kw)
    train(first, opt, 0, 60)
    opt2 = dst_cls(first.parameters(), **kw)
    opt2.load_state_dict(opt.state_dict())
    train(first, opt2, 60, 120)
    assert_close(flat(first), flat(whole), atol=1e-12, rtol=0)


def test_adam_and_adamw_differ_only_by_where_decay_enters():
    """With weight decay 0 they are the same optimizer; with decay they are not."""
    a, b = make_model(torch.float64), make_model(torch.float64)
    train(a, Adam(a.parameters(), lr=1e-2), 0, 50)
    train(b, AdamW(b.parameters(), lr=1e-2, weight_decay=0.0), 0, 50)
    assert torch.equal(flat(a), flat(b))
    c, d = make_model(torch.float64), make_model(torch.float64)
    train(c, Adam(c.parameters(), lr=1e-2, weight_decay=0.1), 0, 50)
    train(d, AdamW(d.parameters(), lr=1e-2, weight_decay=0.1), 0, 50)
    assert not torch.allclose(flat(c), flat(d))


def test_decoupled_decay_with_zero_gradient_is_exact_shrinkage():
    p = nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(5):
        p.grad = torch.zeros_like(p)
        opt.step()
    assert_close(p.detach(), torch.full((3,), 2.0 * (1 - 0.05) ** 5, dtype=torch.float64))


def test_closure_and_parameters_without_grad():
    model = make_model(torch.float64)
    frozen = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = AdamW([*model.parameters(), frozen], lr=1e-2)
    x = torch.randn(4, 6, dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    assert frozen not in opt.state and torch.equal(frozen.detach(), torch.ones(3).double())


def test_registry_builds_both():
    model = make_model(torch.float32)
    assert isinstance(create("optimizer", "adamw", params=model.parameters(), lr=1e-3), AdamW)
    opt = create("optimizer", "adam", params=model.parameters())
    assert type(opt) is Adam and opt.defaults["weight_decay"] == 0.0
    assert AdamW(model.parameters()).defaults["weight_decay"] == 1e-2  # torch's default too


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lr=-1e-3), "lr must be >= 0"),
        (dict(betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\)"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\)"),
        (dict(betas=(0.9, 1.5)), r"betas\[1\] must be in \[0, 1\)"),
        (dict(eps=-1e-8), "eps must be >= 0"),
        (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
        (dict(lr=float("nan")), "lr must not be NaN"),
    ],
)
@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_bad_hyperparameters_name_the_argument(cls, kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        cls(make_model(torch.float32).parameters(), **kwargs)


def test_bad_hyperparameter_types_and_groups():
    params = list(make_model(torch.float32).parameters())
    with pytest.raises(ArgumentTypeError, match="lr must be a real number"):
        AdamW(params, lr="0.1")
    with pytest.raises(ArgumentTypeError, match="betas must be a pair"):
        AdamW(params, betas=(0.9,))
    with pytest.raises(ArgumentError, match="weight_decay must be >= 0"):
        AdamW([{"params": params[:2]}, {"params": params[2:], "weight_decay": -1.0}])
    opt = AdamW(params[:2])
    with pytest.raises(ArgumentError, match="lr must be >= 0"):
        opt.add_param_group({"params": params[2:], "lr": -0.5})


def test_sparse_gradients_are_refused():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ArgumentError, match="sparse"):
        opt.step()


# ---------------------------------------------------------------------------------------------
# Parameter groups for weight decay
# ---------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.pos_embed = nn.Parameter(torch.zeros(4, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.gain = nn.Parameter(torch.ones(8))
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


def test_param_groups_weight_decay_exempts_biases_vectors_norms_and_skipped():
    net = _Net()
    decay, exempt = param_groups_weight_decay(net, 0.05, skip=("pos_embed",))
    names = {id(p): n for n, p in net.named_parameters()}
    assert decay["weight_decay"] == 0.05 and exempt["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == ["conv.weight", "embed.weight",
                                                             "proj.weight"]
    assert sorted(names[id(p)] for p in exempt["params"]) == [
        "bn.bias", "bn.weight", "conv.bias", "gain", "norm.bias", "norm.weight", "pos_embed",
        "proj.bias",
    ]
    opt = AdamW(param_groups_weight_decay(net, 0.05))  # usable as is
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    with pytest.raises(ArgumentTypeError, match="skip"):
        param_groups_weight_decay(net, 0.05, skip="pos_embed")
    with pytest.raises(ArgumentError, match="weight_decay"):
        param_groups_weight_decay(net, -1.0)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


def test_schedule_values():
    cos = WarmupCosine(10, 110, min_ratio=0.1)
    lin = WarmupLinear(10, 110)
    assert cos(0) == 0.0 and cos(5) == 0.5 and cos(10) == 1.0
    assert math.isclose(cos(60), 0.1 + 0.9 * 0.5)
    assert math.isclose(cos(110), 0.1) and math.isclose(cos(500), 0.1)
    assert lin(5) == 0.5 and lin(10) == 1.0 and math.isclose(lin(60), 0.5) and lin(200) == 0.0
    assert WarmupCosine(0, 10)(0) == 1.0


def test_warmup_cosine_factor_values():
    # warm-up (s + 1) / W: the first step already trains; then half a cosine from 1 to 0
    values = [warmup_cosine_factor(s, 10, 4) for s in range(11)]
    expected = [0.25, 0.5, 0.75, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(7)]
    assert values == pytest.approx(expected, abs=1e-12)
    assert values[-1] == pytest.approx(0.0, abs=1e-12)


def test_schedulers_drive_our_optimizer_and_survive_state_dict():
    model = make_model(torch.float32)
    opt = AdamW(model.parameters(), lr=1.0)
    sched = warmup_cosine(opt, 4, 20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == [0.0, 0.25, 0.5, 0.75, 1.0] and lrs[-1] < 0.01
    assert max(lrs) == 1.0 and all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    state = sched.state_dict()
    sched2 = warmup_linear(AdamW(model.parameters(), lr=1.0), 4, 20)
    sched2.load_state_dict(state)  # restores the cosine multiplier's settings and the step
    assert sched2.last_epoch == 20 and sched2.lr_lambdas[0].warmup_steps == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(warmup_steps=-1, total_steps=10), "warmup_steps must be >= 0"),
        (dict(warmup_steps=20, total_steps=10), "warmup_steps must be <= total_steps"),
        (dict(warmup_steps=0, total_steps=0), "total_steps must be >= 1"),
        (dict(warmup_steps=1, total_steps=10, min_ratio=1.5), "min_ratio"),
    ],
)
def test_schedule_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupCosine(**kwargs)


def test_schedules_match_hugging_face():
    transformers = require("transformers")
    for ours, theirs in [
        (warmup_cosine, transformers.get_cosine_schedule_with_warmup),
        (warmup_linear, transformers.get_linear_schedule_with_warmup),
    ]:
        a = ours(AdamW([nn.Parameter(torch.zeros(1))], lr=1.0), 7, 50)
        b = theirs(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0), 7, 50)
        for step in range(51):
            assert math.isclose(a.lr_lambdas[0](step), b.lr_lambdas[0](step), abs_tol=1e-12)
