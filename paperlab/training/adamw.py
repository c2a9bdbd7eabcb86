"""Adam and AdamW written out, and the parameter groups that exempt biases from decay (note I1).

The idea
--------
Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015) keeps two running
averages per parameter, the gradient ``m`` and its square ``v``, and moves each coordinate by
the bias-corrected ratio ``m_hat / (sqrt(v_hat) + eps)``: a step of about ``lr`` whatever the
gradient's scale. Step ``t`` for a parameter ``w`` with gradient ``g``::

    m   <- beta1 * m + (1 - beta1) * g            (stored as m.lerp_(g, 1 - beta1))
    v   <- beta2 * v + (1 - beta2) * g * g
    v*  <- max(v*, v)                             (AMSGrad, Reddi et al. 2018: v* replaces v)
    w   <- w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

``eps`` sits outside the square root and after the bias correction of ``v``, exactly where
``torch.optim.Adam`` puts it, so the two agree to rounding.

Weight decay can enter in two places, and the difference is the note's point (Loshchilov &
Hutter, "Decoupled Weight Decay Regularization", ICLR 2019):

- ``Adam(weight_decay=wd)`` is L2 regularisation: ``g <- g + wd * w`` before the moments. The
  decay term is then divided by ``sqrt(v)`` like the rest of the gradient, so a coordinate
  with large gradients is barely decayed and one with tiny gradients is decayed hard.
- ``AdamW(weight_decay=wd)`` decouples it: ``w <- w * (1 - lr * wd)`` first (as
  ``torch.optim.AdamW`` does), then the plain Adam step on the raw gradient. Every coordinate
  shrinks by the same factor per step, whatever its gradient scale.

Two code paths compute the same step: ``adam_step_loop`` (one parameter at a time, easy to
read) and ``adam_step_foreach`` (``torch._foreach_*`` multi-tensor ops, a few kernel launches
per device and dtype for the whole model). Complex parameters are updated as their real views.

Shapes: every state tensor (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) has its
parameter's shape, dtype and device; ``step`` is a 0-d float tensor. The state dict uses
``torch.optim.Adam``'s keys, so state dicts move between ours and torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.registry import export_optimizer

Tensors = Sequence[torch.Tensor]

# Modules whose weights are scales of a normalisation: never decayed.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


# ---------------------------------------------------------------------------------------------
# The step, two ways
# ---------------------------------------------------------------------------------------------


def adam_step_loop(
    params: Tensors,
    grads: Tensors,
    exp_avgs: Tensors,
    exp_avg_sqs: Tensors,
    max_exp_avg_sqs: Tensors,
    steps: Tensors,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    """One Adam(W) step, parameter by parameter, in place. ``max_exp_avg_sqs`` may be empty
    unless ``amsgrad``. ``decoupled`` selects AdamW's decay, else L2 (``g + wd * w``)."""
    for i, w in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        m, v, step = exp_avgs[i], exp_avg_sqs[i], steps[i]
        step += 1
        if weight_decay != 0:
            if decoupled:
                w.mul_(1 - lr * weight_decay)
            else:
                g = g.add(w, alpha=weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        t = step.item()
        step_size = lr / (1 - beta1**t)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
        w.addcdiv_(m, denom, value=-step_size)


def adam_step_foreach(
    params: Tensors,
    grads: Tensors,
    exp_avgs: Tensors,
    exp_avg_sqs: Tensors,
    max_exp_avg_sqs: Tensors,
    steps: Tensors,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    """The same step as ``adam_step_loop`` with multi-tensor ops, one batch per device/dtype."""
    batches: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, w in enumerate(params):
        batches.setdefault((w.device, w.dtype), []).append(i)
    one = torch.tensor(1.0)  # one CPU scalar for all the (CPU) step counters
    for idx in batches.values():
        w = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        st = [steps[i] for i in idx]
        if maximize:
            g = torch._foreach_neg(g)
        if st[0].is_cpu:
            torch._foreach_add_(st, one, alpha=1.0)
        else:
            torch._foreach_add_(st, 1)
        if weight_decay != 0:
            if decoupled:
                torch._foreach_mul_(w, 1 - lr * weight_decay)
            else:
                g = torch._foreach_add(g, w, alpha=weight_decay)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)
        del g
        if amsgrad:
            mx = [max_exp_avg_sqs[i] for i in idx]
            torch._foreach_maximum_(mx, v)
            denom = torch._foreach_sqrt(mx)
        else:
            denom = torch._foreach_sqrt(v)
        ts = [s.item() for s in st]
        if all(t == ts[0] for t in ts):  # the usual case: one scalar for the whole batch
            torch._foreach_div_(denom, (1 - beta2 ** ts[0]) ** 0.5)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(w, m, denom, -(lr / (1 - beta1 ** ts[0])))
        else:
            torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in ts])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(w, m, denom, [-(lr / (1 - beta1**t)) for t in ts])


# ---------------------------------------------------------------------------------------------
# Hyper-parameter checks and parameter groups
# ---------------------------------------------------------------------------------------------


def _real_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a real number, got {type(value).__name__} "
                                f"{value!r}")
    if math.isnan(value):
        raise ArgumentError(f"{name} must not be NaN")
    return float(value)


def check_adam_hyperparameters(
    lr: Any, betas: Any, eps: Any, weight_decay: Any
) -> tuple[float, tuple[float, float], float, float]:
    """Validate Adam's hyper-parameters; raise naming the argument, the range and the value."""
    lr = _real_number("lr", lr)
    if lr < 0:
        raise ArgumentError(f"lr must be >= 0, got {lr}")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ArgumentTypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b = tuple(_real_number(f"betas[{i}]", x) for i, x in enumerate(betas))
    for i, x in enumerate(b):
        if not 0.0 <= x < 1.0:
            raise ArgumentError(f"betas[{i}] must be in [0, 1), got {x}")
    eps = _real_number("eps", eps)
    if eps < 0:
        raise ArgumentError(f"eps must be >= 0, got {eps}")
    weight_decay = _real_number("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ArgumentError(f"weight_decay must be >= 0, got {weight_decay}")
    return lr, (b[0], b[1]), eps, weight_decay


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, skip: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Two parameter groups: decayed weights, and the exempt rest with ``weight_decay=0``.

    Exempt: biases, every parameter with ``ndim <= 1`` (gains, scales, vectors), every weight of
    a normalisation layer (``NORM_LAYERS``), and every parameter whose name is in ``skip`` or
    ends with ``"." + s`` for an ``s`` in ``skip`` (``skip=("pos_embed",)``). Parameters with
    ``requires_grad=False`` are left out. Pass the result to ``AdamW``.
    """
    weight_decay = _real_number("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ArgumentError(f"weight_decay must be >= 0, got {weight_decay}")
    if isinstance(skip, str):
        raise ArgumentTypeError(f"skip must be a collection of names, not the string {skip!r}")
    skip = tuple(skip)
    norm_params = {
        id(p) for mod in model.modules() if isinstance(mod, NORM_LAYERS) for p in mod.parameters()
    }
    decay: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skipped = any(name == s or name.endswith("." + s) for s in skip)
        is_bias = name == "bias" or name.endswith(".bias")
        if skipped or is_bias or p.ndim <= 1 or id(p) in norm_params:
            exempt.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if torch.is_complex(t) else t


# ---------------------------------------------------------------------------------------------
# The optimizers
# ---------------------------------------------------------------------------------------------


@export_optimizer("adam", paper="Kingma & Ba 2015", note="I1 AdamW vs Adam")
class Adam(torch.optim.Optimizer):
    """Adam with L2 weight decay (``g + wd * w``), AMSGrad and ``maximize``; our own step.

    ``foreach=True`` uses the multi-tensor path, ``False`` the per-parameter loop, ``None``
    (default) the multi-tensor path when every parameter is on an accelerator, as torch does.
    """

    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        lr, betas, eps, weight_decay = check_adam_hyperparameters(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=bool(amsgrad), maximize=bool(maximize), foreach=foreach)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["lr"], group["betas"], group["eps"], group["weight_decay"] = (
            check_adam_hyperparameters(
                group["lr"], group["betas"], group["eps"], group["weight_decay"]
            )
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(float(p_state["step"]), dtype=_scalar_dtype())

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], ...]:
        """The tensors of one group's parameters that have a gradient; state made on first use."""
        params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ArgumentError(f"{type(self).__name__} does not support sparse gradients; "
                                    "use torch.optim.SparseAdam")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
            params.append(_real(p))
            grads.append(_real(p.grad))
            exp_avgs.append(_real(state["exp_avg"]))
            exp_avg_sqs.append(_real(state["exp_avg_sq"]))
            if group["amsgrad"]:
                max_sqs.append(_real(state["max_exp_avg_sq"]))
            steps.append(state["step"])
        return params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            tensors = self._gather(group)
            if not tensors[0]:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(not p.is_cpu for p in tensors[0])
            update = adam_step_foreach if foreach else adam_step_loop
            beta1, beta2 = group["betas"]
            update(
                *tensors,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                decoupled=self.decoupled_weight_decay,
                amsgrad=group["amsgrad"],
                maximize=group["maximize"],
            )
        return loss


@export_optimizer("adamw", paper="Loshchilov & Hutter 2019", note="I1 AdamW vs Adam")
class AdamW(Adam):
    """Adam with decoupled weight decay: ``w <- w * (1 - lr * wd)`` before each Adam step."""

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         maximize=maximize, foreach=foreach)
