"""Margin softmax losses for face recognition (notes E2-E3): softmax, L-Softmax, SphereFace,
NormFace, CosFace, ArcFace and the combined margin.

The idea
--------
A face classifier trained with plain softmax (DeepFace, DeepID) separates the training
identities, but its features are only *separable*, not *discriminative*: nothing pushes a class
away from its neighbours once it wins. The margin losses make the target class win by a
margin in angle. Write the logit of class j as |W_j| |x| cos(theta_j); normalise W (and x) so
only the angle theta_j between the feature and the class centre is left, scale by s, and
penalise the target angle theta_y::

    target logit   s * (cos(m1 * theta_y + m2) - m3)        others   s * cos(theta_j)

    m1 > 1           multiplicative angular margin   (SphereFace / A-Softmax, Liu et al. 2017)
    m2 > 0           additive angular margin          (ArcFace, Deng et al. 2019)
    m3 > 0           additive cosine margin           (CosFace / AM-Softmax, Wang et al. 2018)
    m1=1, m2=m3=0    NormFace (Wang et al. 2017): normalised softmax with scale s

``margin_logits`` is that one formula, shared by the family. It is written so that the
gradients are the true ones: theta = atan2(sqrt(1 - cos^2), cos) (equal to arccos(cos) after
clamping cos to [-1, 1], with a derivative that stays finite at cos = +-1, where arccos's is
infinite and the insightface users' NaN comes from; the square root's gradient is masked at
sin = 0, the one point where it is undefined). Where m1 * theta + m2 > pi the target logit
would turn back up (cos is not monotone past pi), so it falls back to insightface's
``cos - m2 * sin(m2)`` (their ``th`` / ``mm``), which keeps it decreasing in theta (for m1 > 1
SphereFace's psi continues it instead, see ``margin_target``). fp16 and
bf16 inputs are computed in float32 and give float32 logits (s = 64 times a cosine is fine in
fp16, but the exponentials of the softmax are not).

L-Softmax (Liu et al. 2016, "Large-Margin Softmax Loss for Convolutional Neural Networks")
keeps the norms: the target logit is |W_y| |x| psi(theta_y) with

    psi(theta) = (-1)^k cos(m theta) - 2k,   theta in [k pi / m, (k + 1) pi / m],

cos(m theta) from the multiple-angle formula sum_n (-1)^n C(m, 2n) cos^(m-2n) (1 - cos^2)^n, so
psi is a polynomial in cos (no arccos in the gradient). Training starts near plain softmax and
anneals towards the margin: the target logit is (lambda |W||x| cos + |W||x| psi) / (1 + lambda)
with lambda = max(lambda_min, base * (1 + gamma * iteration)^(-power)) (the Caffe
implementations' schedule). SphereFace is the same psi with normalised W.

Differences from insightface
----------------------------
insightface's current ``ArcFace`` / ``CombinedMarginLoss`` (recognition/arcface_torch/losses.py)
applies the margin to the logits *inside* ``torch.no_grad`` and in place, so the forward values
are the margin ones but the backward sees only ``logits * s``: its gradient is the
plain-softmax (NormFace) one, evaluated at the margin logits. Ours differentiates the margin
itself (d cos(theta + m) / d cos = sin(theta + m) / sin(theta)); ``tests/face/test_margin.py``
shows the forward values agree and the gradients differ. insightface's ``CombinedMarginLoss``
also does not combine: with m3 > 0 it applies m3 alone (m1 and m2 are ignored), and with
m1 != 1 and m3 = 0 it raises; ``margin_logits`` applies all three together.

Reference conventions (``pytorch-metric-learning`` 2.9, the parity reference): its W is
(dim, num_classes), ours (num_classes, dim) like ``nn.Linear``; its ArcFace margin is in
degrees (28.6 ~ 0.5 rad), ours in radians; its ``NormalizedSoftmaxLoss`` takes a temperature,
s = 1 / temperature.

Shapes: cos (B, C), labels (B,) int64 in [0, C) (-1: no target in this row, used by Partial
FC); embeddings (B, dim); W (C, dim); the losses return the mean cross-entropy, a 0-dim tensor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_loss

_HALF = (torch.float16, torch.bfloat16)

# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _check_cos_labels(cos: Any, labels: Any) -> None:
    if not isinstance(cos, torch.Tensor) or not cos.is_floating_point():
        raise ArgumentTypeError(f"cos must be a floating-point tensor, got {type(cos).__name__}"
                                + (f" of dtype {cos.dtype}" if isinstance(cos, torch.Tensor)
                                   else ""))
    if cos.dim() != 2:
        raise ShapeError(f"cos must be (batch, num_classes), got shape {tuple(cos.shape)}")
    _check_labels(labels, cos.shape[0], cos.shape[1])


def _check_labels(labels: Any, batch: int, num_classes: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        raise ArgumentTypeError(
            "labels must be an int64 (or int32) tensor, got "
            + (f"dtype {labels.dtype}" if isinstance(labels, torch.Tensor)
               else type(labels).__name__))
    if labels.shape != (batch,):
        raise ShapeError(f"labels must be ({batch},) to match the batch, got shape "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= num_classes):
        raise ArgumentError(f"labels must lie in [0, {num_classes}) (or be -1 for no target), "
                            f"got values in [{int(labels.min())}, {int(labels.max())}]")


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or math.isinf(value):
        raise ArgumentError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _check_margins(m1: Any, m2: Any, m3: Any) -> tuple[float, float, float]:
    for name, v in (("m1", m1), ("m2", m2), ("m3", m3)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ArgumentTypeError(f"{name} must be a finite number, got {v!r}")
    if m1 < 1:
        raise ArgumentError(f"m1 (multiplicative angular margin) must be >= 1, got {m1}")
    if not 0 <= m2 < math.pi / 2:
        raise ArgumentError(f"m2 (additive angular margin, radians) must be in [0, pi/2), "
                            f"got {m2}")
    if m3 < 0:
        raise ArgumentError(f"m3 (additive cosine margin) must be >= 0, got {m3}")
    return float(m1), float(m2), float(m3)


def _check_embeddings(embeddings: Any, dim: int) -> None:
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        raise ArgumentTypeError("embeddings must be a floating-point tensor, got "
                                f"{type(embeddings).__name__}")
    if embeddings.dim() != 2 or embeddings.shape[1] != dim:
        raise ShapeError(f"embeddings must be (batch, {dim}), got shape "
                         f"{tuple(embeddings.shape)}")


# ---------------------------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------------------------


def _safe_sin(cos: torch.Tensor) -> torch.Tensor:
    """sin(theta) = sqrt(1 - cos^2) for cos in [-1, 1], with the square root's gradient masked
    where 1 - cos^2 = 0 (its derivative there is infinite; the true derivative of what uses it,
    sin * sin(m2) or the atan2 below, has a finite limit)."""
    one_minus = 1.0 - cos * cos
    inside = one_minus > 0
    return torch.where(inside, torch.where(inside, one_minus, 1.0).sqrt(), 0.0)


def angles(cos: torch.Tensor) -> torch.Tensor:
    """theta = arccos(cos) in [0, pi] after clamping cos to [-1, 1], computed as
    atan2(sqrt(1 - cos^2), cos) so that its gradient is finite at cos = +-1 (there it is 0)."""
    c = cos.clamp(-1.0, 1.0)
    return torch.atan2(_safe_sin(c), c)


def margin_target(
    cos_target: torch.Tensor,
    *,
    m1: float = 1.0,
    m2: float = 0.0,
    m3: float = 0.0,
    easy_margin: bool = False,
) -> torch.Tensor:
    """cos(m1 * theta + m2) - m3 of the target cosines (any shape), kept decreasing in theta
    past m1 * theta + m2 = pi: for m1 = 1 by insightface's fallback cos - m2 * sin(m2) - m3,
    for m1 > 1 by SphereFace's psi, (-1)^k cos(m1 theta + m2) - 2k with
    k = floor((m1 theta + m2) / pi) (continuous, and L-Softmax's psi at m2 = 0).
    ``easy_margin`` (insightface's ArcFace option) applies the margin only where cos > 0 and
    leaves the others as cos."""
    c = cos_target.clamp(-1.0, 1.0)
    if m1 == 1.0:
        # cos(theta + m2) = cos cos(m2) - sin sin(m2): exact, and no angle needed
        body = c * math.cos(m2) - _safe_sin(c) * math.sin(m2) if m2 else c
        if m2:  # insightface's th / mm: theta + m2 >= pi
            body = torch.where(c <= math.cos(math.pi - m2), c - m2 * math.sin(m2), body)
    else:
        # SphereFace's psi, extended to m2: (-1)^k cos(m1 theta + m2) - 2k, k = floor(./pi)
        phi = m1 * angles(c) + m2
        with torch.no_grad():
            k = torch.floor(phi / math.pi)
        body = (1.0 - 2.0 * torch.remainder(k, 2)) * torch.cos(phi) - 2.0 * k
    if easy_margin:
        body = torch.where(c > 0, body, c)
    return body - m3 if m3 else body


def _apply_target(logits: torch.Tensor, labels: torch.Tensor,
                  new_target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``logits`` with logits[rows, labels[rows]] replaced by ``new_target`` (out of place)."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[rows, labels[rows]] = True
    full = torch.zeros_like(logits).index_put((rows, labels[rows]), new_target)
    return torch.where(mask, full, logits)


def margin_logits(
    cos: torch.Tensor,
    labels: torch.Tensor,
    *,
    s: float,
    m1: float = 1.0,
    m2: float = 0.0,
    m3: float = 0.0,
) -> torch.Tensor:
    """Logits of the margin family from cosines: s * (cos(m1 theta_y + m2) - m3) at each row's
    label, s * cos elsewhere.

    ``cos`` (B, C) cosines between features and class centres; ``labels`` (B,) in [0, C), or
    -1 for a row without a target here (Partial FC's rows whose class lives on another rank).
    fp16 / bf16 ``cos`` is computed in float32 and the logits are float32; otherwise the
    logits have ``cos``'s dtype. Gradients are the true derivatives of the formula.
    """
    _check_cos_labels(cos, labels)
    s = _check_positive("s", s)
    m1, m2, m3 = _check_margins(m1, m2, m3)
    c = cos.float() if cos.dtype in _HALF else cos
    if m1 == 1.0 and m2 == 0.0 and m3 == 0.0:
        return c * s
    rows = torch.nonzero(labels >= 0).flatten()
    target = margin_target(c[rows, labels[rows]], m1=m1, m2=m2, m3=m3)
    return _apply_target(c, labels.long(), target, rows) * s


def multiple_angle_cos(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m theta) as a polynomial of cos(theta) (the multiple-angle formula):
    sum_{n=0}^{m // 2} (-1)^n C(m, 2n) cos^(m - 2n) (1 - cos^2)^n."""
    m = check_int("m", m, minimum=1)
    sin2 = 1.0 - cos * cos
    out = torch.zeros_like(cos)
    for n in range(m // 2 + 1):
        out = out + ((-1) ** n) * math.comb(m, 2 * n) * cos ** (m - 2 * n) * sin2**n
    return out


def lsoftmax_psi(cos: torch.Tensor, m: int) -> torch.Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k with k = floor(m theta / pi) (Liu et al. 2016):
    monotone decreasing on [0, pi], equal to cos at m = 1. k is piecewise constant, so the
    gradient is that of cos(m theta), a polynomial in cos."""
    m = check_int("m", m, minimum=1)
    c = cos.clamp(-1.0, 1.0)
    with torch.no_grad():
        k = torch.floor(torch.acos(c) * m / math.pi).clamp(max=m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * multiple_angle_cos(c, m) - 2.0 * k


def lambda_schedule(iteration: int, *, base: float, gamma: float, power: float,
                    minimum: float) -> float:
    """L-Softmax / SphereFace annealing: max(minimum, base * (1 + gamma * iteration)^-power)."""
    return max(minimum, base * (1.0 + gamma * iteration) ** (-power))


# ---------------------------------------------------------------------------------------------
# The modules: each holds the class centres W (num_classes, dim)
# ---------------------------------------------------------------------------------------------


class _ClassCentres(nn.Module):
    """Holds W (num_classes, dim), initialised N(0, 0.01^2) like insightface's FC."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.dim = check_int("dim", dim, minimum=1)
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)

    def _inputs(self, embeddings: torch.Tensor, labels: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_embeddings(embeddings, self.dim)
        if labels is not None:
            _check_labels(labels, embeddings.shape[0], self.num_classes)
        x = embeddings.float() if embeddings.dtype in _HALF else embeddings
        return x, self.weight.to(x.dtype)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, C) cosines between the features and the class centres (float32 for half)."""
        x, w = self._inputs(embeddings, None)
        return F.normalize(x, dim=1) @ F.normalize(w, dim=1).T

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits."""
        logits = self.logits(embeddings, labels)
        return F.cross_entropy(logits, labels.long())

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}"


@export_loss("softmax", note="E2", paper="Taigman et al. 2014 (DeepFace); Sun et al. 2014")
class SoftmaxLoss(_ClassCentres):
    """Plain softmax over identities, logits x W^T + b (DeepFace, DeepID): the baseline."""

    def __init__(self, num_classes: int, dim: int, *, bias: bool = True) -> None:
        super().__init__(num_classes, dim)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None
               ) -> torch.Tensor:
        x, w = self._inputs(embeddings, labels)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)


@export_loss("lsoftmax", note="E3", paper="Liu et al. 2016")
class LSoftmaxLoss(_ClassCentres):
    """L-Softmax: target logit |W_y||x| psi(theta_y) (blended with lambda |W_y||x| cos while
    lambda anneals), others |W_j||x| cos, all times ``scale``.

    lambda = max(lambda_min, lambda_base * (1 + lambda_gamma * iteration)^-lambda_power);
    ``iteration`` counts the forward passes in training mode. lambda_base = 0 (the default)
    is the loss without annealing (pytorch-metric-learning's ``LargeMarginSoftmaxLoss``).
    """

    normalize_weights = False

    def __init__(self, num_classes: int, dim: int, *, margin: int = 4, scale: float = 1.0,
                 lambda_base: float = 0.0, lambda_gamma: float = 0.12,
                 lambda_power: float = 1.0, lambda_min: float = 0.0) -> None:
        super().__init__(num_classes, dim)
        self.margin = check_int("margin", margin, minimum=1)
        self.scale = _check_positive("scale", scale)
        for name, v in (("lambda_base", lambda_base), ("lambda_gamma", lambda_gamma),
                        ("lambda_power", lambda_power), ("lambda_min", lambda_min)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ArgumentError(f"{name} must be a number >= 0, got {v!r}")
        self.lambda_base, self.lambda_gamma = float(lambda_base), float(lambda_gamma)
        self.lambda_power, self.lambda_min = float(lambda_power), float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    @property
    def lam(self) -> float:
        """lambda at the current iteration."""
        return lambda_schedule(int(self.iteration), base=self.lambda_base,
                               gamma=self.lambda_gamma, power=self.lambda_power,
                               minimum=self.lambda_min)

    def _norms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, C) product of norms that multiplies the cosines."""
        w_norm = torch.ones_like(w[:, 0]) if self.normalize_weights else w.norm(dim=1)
        return x.norm(dim=1, keepdim=True) * w_norm[None, :]

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x, w = self._inputs(embeddings, labels)
        if labels is None:
            raise ArgumentError("labels are required for the margin logits")
        cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
        lam = self.lam
        rows = torch.arange(x.shape[0], device=x.device)
        labels = labels.long()
        c_t = cos[rows, labels]
        target = (lam * c_t + lsoftmax_psi(c_t, self.margin)) / (1.0 + lam)
        return _apply_target(cos, labels, target, rows) * self._norms(x, w) * self.scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(embeddings, labels)
        if self.training:
            self.iteration += 1
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, scale={self.scale}"


@export_loss("sphereface", note="E3", paper="Liu et al. 2017")
class SphereFaceLoss(LSoftmaxLoss):
    """SphereFace (A-Softmax): L-Softmax's psi with normalised W, logits |x| psi / |x| cos."""

    normalize_weights = True


class _CosineMarginLoss(_ClassCentres):
    """Normalised features and centres; logits ``margin_logits(cos, labels, s, m1, m2, m3)``."""

    m1, m2, m3 = 1.0, 0.0, 0.0

    def __init__(self, num_classes: int, dim: int, *, s: float) -> None:
        super().__init__(num_classes, dim)
        self.s = _check_positive("s", s)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_embeddings(embeddings, self.dim)
        return margin_logits(self.cosines(embeddings), labels, s=self.s, m1=self.m1,
                             m2=self.m2, m3=self.m3)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, s={self.s}, m1={self.m1}, m2={self.m2}, "
                f"m3={self.m3}")


@export_loss("normface", note="E3", paper="Wang et al. 2017")
class NormFaceLoss(_CosineMarginLoss):
    """NormFace: softmax of s * cos (no margin)."""

    def __init__(self, num_classes: int, dim: int, *, s: float = 20.0) -> None:
        super().__init__(num_classes, dim, s=s)


@export_loss("cosface", note="E3", paper="Wang et al. 2018 (CosFace); Wang et al. 2018 (AM)")
class CosFaceLoss(_CosineMarginLoss):
    """CosFace / AM-Softmax: target s * (cos - m)."""

    def __init__(self, num_classes: int, dim: int, *, s: float = 64.0, m: float = 0.35) -> None:
        super().__init__(num_classes, dim, s=s)
        self.m3 = _check_margins(1.0, 0.0, m)[2]


@export_loss("arcface", note="E3", paper="Deng et al. 2019")
class ArcFaceLoss(_CosineMarginLoss):
    """ArcFace: target s * cos(theta + m) (m in radians), insightface's fallback past pi;
    ``easy_margin`` applies the margin only where cos > 0."""

    def __init__(self, num_classes: int, dim: int, *, s: float = 64.0, m: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__(num_classes, dim, s=s)
        self.m2 = _check_margins(1.0, m, 0.0)[1]
        self.easy_margin = bool(easy_margin)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.easy_margin:
            return super().logits(embeddings, labels)
        cos = self.cosines(embeddings)
        _check_labels(labels, cos.shape[0], cos.shape[1])
        rows = torch.nonzero(labels >= 0).flatten()
        labels = labels.long()
        target = margin_target(cos[rows, labels[rows]], m2=self.m2, easy_margin=True)
        return _apply_target(cos, labels, target, rows) * self.s


@export_loss("combined-margin", note="E3", paper="Deng et al. 2019 (section 3.3)")
class CombinedMarginLoss(_CosineMarginLoss):
    """All three margins together: target s * (cos(m1 theta + m2) - m3)."""

    def __init__(self, num_classes: int, dim: int, *, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.3, m3: float = 0.2) -> None:
        super().__init__(num_classes, dim, s=s)
        self.m1, self.m2, self.m3 = _check_margins(m1, m2, m3)
