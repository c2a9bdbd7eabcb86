"""Margin softmax losses: parity with pytorch-metric-learning 2.9, float64 transcriptions of
the combined margin and of L-Softmax's lambda annealing, insightface's no_grad margin (same
forward, different gradient), finite fp16/bf16 at cos = +-1 and s = 64, monotone targets,
gradcheck, registry, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import require
from parity import assert_close

from paperlab import create
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.face.margin import (
    ArcFaceLoss,
    CombinedMarginLoss,
    CosFaceLoss,
    LSoftmaxLoss,
    NormFaceLoss,
    SphereFaceLoss,
    lsoftmax_psi,
    margin_logits,
    margin_target,
)

pytestmark = pytest.mark.note("E3")

B, C, DIM = 12, 7, 5
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _data(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, DIM, generator=g, dtype=dtype)
    w = torch.randn(C, DIM, generator=g, dtype=dtype)
    y = torch.randint(0, C, (B,), generator=g)
    return x, w, y


def _loss_and_grads(module, x, y):
    x = x.detach().clone().requires_grad_()
    loss = module(x, y)
    gx, gw = torch.autograd.grad(loss, [x, module.weight])
    return loss.detach(), gx, gw


def _pml_case(pml, name, dtype):
    """(ours, theirs) with the same weights; pml's W is (dim, num_classes)."""
    losses = pml.losses
    if name == "arcface":
        ours = ArcFaceLoss(C, DIM, s=64.0, m=0.5)
        ref = losses.ArcFaceLoss(C, DIM, margin=math.degrees(0.5), scale=64)
    elif name == "cosface":
        ours, ref = CosFaceLoss(C, DIM, s=64.0, m=0.35), losses.CosFaceLoss(C, DIM, margin=0.35,
                                                                            scale=64)
    elif name == "sphereface":
        ours = SphereFaceLoss(C, DIM, margin=4, scale=1.0)
        ref = losses.SphereFaceLoss(C, DIM, margin=4, scale=1)
    elif name == "lsoftmax":
        ours = LSoftmaxLoss(C, DIM, margin=3, scale=1.0)
        ref = losses.LargeMarginSoftmaxLoss(C, DIM, margin=3, scale=1)
    else:
        ours = NormFaceLoss(C, DIM, s=20.0)
        ref = losses.NormalizedSoftmaxLoss(C, DIM, temperature=0.05)
    return ours.to(dtype), ref.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface", "lsoftmax", "normface"])
def test_parity_with_pytorch_metric_learning(name, dtype):
    pml = require("pytorch_metric_learning")
    import pytorch_metric_learning.losses  # noqa: F401

    ours, ref = _pml_case(pml, name, dtype)
    x, w, y = _data(dtype)
    with torch.no_grad():
        ours.weight.copy_(w)
        ref.W.copy_(w.T)
    loss, gx, gw = _loss_and_grads(ours, x, y)
    xr = x.detach().clone().requires_grad_()
    loss_r = ref(xr, y)
    gxr, gwr = torch.autograd.grad(loss_r, [xr, ref.W])
    tol = TOL[dtype]
    assert_close(loss, loss_r.detach(), atol=tol, rtol=tol, what=f"{name} loss")
    assert_close(gx, gxr, atol=tol, rtol=tol, what=f"{name} d loss / d x")
    assert_close(gw, gwr.T, atol=tol, rtol=tol, what=f"{name} d loss / d W")
    assert gx.abs().max() > 1e-4  # the comparison is not between zeros


def _target_transcription(c: torch.Tensor, m1: float, m2: float, m3: float) -> torch.Tensor:
    """One scalar cosine, float64: arccos, the margins, the fallbacks, written out."""
    theta = torch.acos(c)
    phi = m1 * theta + m2
    if m1 == 1.0:
        if float(theta.detach()) + m2 >= math.pi:
            return c - m2 * math.sin(m2) - m3
        return torch.cos(phi) - m3
    k = math.floor(float(phi.detach()) / math.pi)
    return (-1) ** k * torch.cos(phi) - 2 * k - m3


def _combined_loss_transcription(x, w, y, s, m1, m2, m3):
    total = 0.0
    for i in range(x.shape[0]):
        row = []
        for j in range(w.shape[0]):
            c = (x[i] @ w[j]) / (x[i].norm() * w[j].norm())
            row.append(s * (_target_transcription(c, m1, m2, m3) if j == int(y[i]) else c))
        row = torch.stack(row)
        total = total + torch.logsumexp(row, 0) - row[int(y[i])]
    return total / x.shape[0]


@pytest.mark.parametrize("m", [(1.0, 0.3, 0.2), (1.35, 0.25, 0.1), (2.0, 0.0, 0.0),
                               (1.0, 0.5, 0.0)])
def test_combined_margin_equals_float64_transcription(m):
    m1, m2, m3 = m
    x, w, y = _data(torch.float64, seed=3)
    near_pi = -w[y[:3]] * 2.0 + 0.1 * torch.randn(3, DIM, dtype=torch.float64,
                                                 generator=torch.Generator().manual_seed(4))
    x = torch.cat([x, near_pi])  # rows with theta near pi: the fallback branches
    y = torch.cat([y, y[:3]])
    ours = CombinedMarginLoss(C, DIM, s=16.0, m1=m1, m2=m2, m3=m3).double()
    with torch.no_grad():
        ours.weight.copy_(w)
    xs = x.detach().clone().requires_grad_()
    loss = ours(xs, y)
    gx, gw = torch.autograd.grad(loss, [xs, ours.weight])
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = _combined_loss_transcription(xr, wr, y, 16.0, m1, m2, m3)
    gxr, gwr = torch.autograd.grad(ref, [xr, wr])
    assert_close(loss.detach(), ref.detach(), atol=1e-12, rtol=1e-12, what="loss")
    assert_close(gx, gxr, atol=1e-12, rtol=1e-12, what="d loss / d x")
    assert_close(gw, gwr, atol=1e-12, rtol=1e-12, what="d loss / d W")


def test_lsoftmax_lambda_annealing_equals_float64_transcription():
    m, base, gamma, power, lmin = 4, 1000.0, 0.12, 1.0, 5.0
    ours = LSoftmaxLoss(C, DIM, margin=m, lambda_base=base, lambda_gamma=gamma,
                        lambda_power=power, lambda_min=lmin).double()
    x, w, y = _data(torch.float64, seed=5)
    with torch.no_grad():
        ours.weight.copy_(w * 3.0)
    lams = []
    for it in [0, 1, 2, 3, 500, 5000]:
        ours.iteration.fill_(it)
        lam = max(lmin, base * (1 + gamma * it) ** (-power))
        lams.append(lam)
        loss = ours(x, y)
        total = 0.0
        for i in range(B):
            logits = []
            for j in range(C):
                wn, xn = float(w[j].norm()) * 3.0, float(x[i].norm())
                c = float(x[i] @ w[j]) * 3.0 / (wn * xn)
                if j == int(y[i]):
                    theta = math.acos(c)
                    k = math.floor(theta * m / math.pi)
                    psi = (-1) ** k * math.cos(m * theta) - 2 * k
                    logits.append(wn * xn * (lam * c + psi) / (1 + lam))
                else:
                    logits.append(wn * xn * c)
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            total += lse - logits[int(y[i])]
        assert abs(float(loss.detach()) - total / B) < 1e-12 * max(1.0, abs(total / B)), (it, lam)
    assert int(ours.iteration) == 5001  # training-mode forwards count iterations
    assert lams[0] == 1000.0 and lams[-1] == 5.0


def _insightface_arcface_logits(cos: torch.Tensor, labels: torch.Tensor, s: float, m: float):
    """A transcription of insightface's arcface_torch ``ArcFace.forward``: the margin is applied
    in place under no_grad, so the backward sees only ``logits * s``."""
    logits = cos.clone()
    index = torch.where(labels != -1)[0]
    target_logit = logits[index, labels[index].view(-1)]
    with torch.no_grad():
        target_logit.arccos_()
        logits.arccos_()
        final_target_logit = target_logit + m
        logits[index, labels[index].view(-1)] = final_target_logit
        logits.cos_()
    return logits * s


def test_insightface_no_grad_margin_same_forward_different_gradient():
    g = torch.Generator().manual_seed(1)
    cos = (torch.rand(B, C, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    y = torch.randint(0, C, (B,), generator=g)
    ours = margin_logits(cos, y, s=64.0, m2=0.5)
    theirs = _insightface_arcface_logits(cos, y, 64.0, 0.5)
    assert_close(ours, theirs, atol=1e-12, rtol=1e-12, what="forward logits")
    g_ours, = torch.autograd.grad(F.cross_entropy(ours, y), cos)
    g_theirs, = torch.autograd.grad(F.cross_entropy(theirs, y), cos)
    rows = torch.arange(B)
    # off-target entries agree; at the target ours carries d cos(theta+m)/d cos
    mask = torch.ones(B, C, dtype=torch.bool)
    mask[rows, y] = False
    assert_close(g_ours[mask], g_theirs[mask], atol=1e-12, rtol=1e-12, what="off-target grad")
    c = cos.detach()[rows, y]
    factor = torch.sin(torch.acos(c) + 0.5) / torch.sin(torch.acos(c))
    assert_close(g_ours[rows, y], g_theirs[rows, y] * factor, atol=1e-12, rtol=1e-10,
                 what="target grad = insightface's * sin(theta + m) / sin(theta)")
    assert (g_ours[rows, y] - g_theirs[rows, y]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4), (1.0, 0.3, 0.2),
                               (1.35, 0.25, 0.1), (4.0, 0.0, 0.0)])
def test_half_precision_finite_at_cos_plus_minus_one(dtype, m):
    m1, m2, m3 = m
    cos = torch.tensor([[1.0, -1.0, 0.3], [-1.0, 1.0, -1.0], [0.5, 1.0, 1.0],
                        [1.0, 1.0, -1.0]], dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 0, 2, 1])
    logits = margin_logits(cos, y, s=64.0, m1=m1, m2=m2, m3=m3)
    assert logits.dtype == torch.float32
    loss = F.cross_entropy(logits, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cos.grad.float()).all()
    assert cos.grad.float().abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["arcface", "cosface", "combined-margin", "sphereface",
                                  "normface"])
def test_half_precision_modules_with_features_on_the_centres(name, dtype):
    torch.manual_seed(0)
    loss_fn = create("loss", name, num_classes=C, dim=DIM)
    x = loss_fn.weight.detach()[[0, 1, 2, 3]].to(dtype)  # cos = 1 at the target (and -1:)
    x = torch.cat([x, -x]).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss = loss_fn(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad.float()).all() and torch.isfinite(loss_fn.weight.grad).all()


@pytest.mark.parametrize("m", [(1.0, 0.5, 0.0), (1.0, 1.2, 0.0), (1.0, 0.3, 0.2),
                               (1.35, 0.25, 0.0), (4.0, 0.0, 0.0)])
def test_target_logit_is_monotone_decreasing_in_theta(m):
    m1, m2, m3 = m
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    t = margin_target(torch.cos(theta), m1=m1, m2=m2, m3=m3)
    assert (t[1:] - t[:-1] <= 1e-12).all()
    assert t[0] == pytest.approx(math.cos(m2) - m3)


def test_lsoftmax_psi_monotone_and_equals_cos_at_m1():
    theta = torch.linspace(0, math.pi, 5001, dtype=torch.float64)
    for m in (2, 3, 4):
        p = lsoftmax_psi(torch.cos(theta), m)
        assert (p[1:] - p[:-1] <= 1e-12).all()
    assert_close(lsoftmax_psi(torch.cos(theta), 1), torch.cos(theta), dtype=torch.float64)


def test_gradcheck_margin_logits():
    g = torch.Generator().manual_seed(2)
    cos = (torch.rand(6, 4, generator=g, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    y = torch.tensor([0, 3, 1, 2, -1, 0])
    for m in [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (1.35, 0.25, 0.1), (1.0, 0.0, 0.35)]:
        assert torch.autograd.gradcheck(
            lambda c, m=m: margin_logits(c, y, s=4.0, m1=m[0], m2=m[1], m3=m[2]), (cos,))
    # a row without a target (-1) is s * cos
    out = margin_logits(cos, y, s=4.0, m2=0.5)
    assert_close(out[4], 4.0 * cos[4], dtype=torch.float64)


def test_easy_margin_leaves_negative_cosines_alone():
    loss_fn = ArcFaceLoss(C, DIM, s=2.0, m=0.5, easy_margin=True).double()
    x, _, y = _data(torch.float64)
    cos = loss_fn.cosines(x)
    rows = torch.arange(B)
    logits = loss_fn.logits(x, y)
    c = cos[rows, y]
    expected = torch.where(c > 0, torch.cos(torch.acos(c) + 0.5), c) * 2.0
    assert_close(logits[rows, y], expected, dtype=torch.float64)
    assert (c < 0).any() and (c > 0).any()


def test_softmax_has_bias_and_is_plain_cross_entropy():
    loss_fn = create("loss", "softmax", num_classes=C, dim=DIM)
    x, _, y = _data(torch.float32)
    with torch.no_grad():
        loss_fn.bias.normal_()
    expected = F.cross_entropy(x @ loss_fn.weight.T + loss_fn.bias, y)
    assert_close(loss_fn(x, y), expected, dtype=torch.float32)


def test_bad_inputs_are_named():
    cos = torch.zeros(3, 4)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ShapeError, match="cos"):
        margin_logits(cos[0], y, s=1.0)
    with pytest.raises(ShapeError, match="labels"):
        margin_logits(cos, y[:2], s=1.0)
    with pytest.raises(ArgumentError, match="labels"):
        margin_logits(cos, torch.tensor([0, 1, 4]), s=1.0)
    with pytest.raises(ArgumentTypeError, match="labels"):
        margin_logits(cos, y.float(), s=1.0)
    with pytest.raises(ArgumentError, match="s must"):
        margin_logits(cos, y, s=0.0)
    with pytest.raises(ArgumentError, match="m2"):
        margin_logits(cos, y, s=1.0, m2=2.0)
    with pytest.raises(ArgumentError, match="m1"):
        margin_logits(cos, y, s=1.0, m1=0.5)
    with pytest.raises(ShapeError, match="embeddings"):
        ArcFaceLoss(C, DIM)(torch.zeros(3, DIM + 1), y)
