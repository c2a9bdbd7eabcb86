"""One helper for every parity test: ours vs an independent reference, with per-dtype tolerances.

``assert_close(ours, ref, dtype=...)`` compares tensors (or nested tuples/lists of them) and on
failure prints the max absolute and relative error and where it occurred.
``assert_parity(ours_fn, ref_fn, inputs, ...)`` runs both functions on the same inputs, compares
the outputs, then back-propagates the same random cotangent through both and compares the
gradients with respect to every floating-point input that requires grad.

While ``pytest --parity-report`` runs (``parity_report.py``), every comparison is also
recorded: the error reached, the tolerance and the dtype, for the running test, whose note
comes from its ``@pytest.mark.note("B1")`` marker or from ``assert_parity(..., note="B1",
reference="torch SDPA")``. A failing comparison is recorded before it raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

# (atol, rtol) per dtype: float64 ~1e-10, float32 ~1e-5, bf16/fp16 ~1e-2 (DESIGN.md).
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float16: (1e-2, 1e-2),
}


# The running test's record while a parity report is being written, else None
# (parity_report.py starts and collects it around each test).
CURRENT: dict[str, list[Any]] | None = None


def start_record() -> None:
    global CURRENT
    CURRENT = {"comparisons": [], "notes": [], "references": []}


def take_record() -> dict[str, list[Any]] | None:
    global CURRENT
    record, CURRENT = CURRENT, None
    return record


def declare(note: str | None = None, reference: str | None = None) -> None:
    """Name the running test's note and reference in the parity report (no-op otherwise)."""
    if CURRENT is not None:
        if note:
            CURRENT["notes"].append(note)
        if reference:
            CURRENT["references"].append(reference)


def _flatten(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _flatten(item)]
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _flatten(x[k])]
    raise TypeError(f"cannot compare object of type {type(x).__name__}")


def _real64(t: torch.Tensor) -> torch.Tensor:
    """float64 copy on the CPU; a complex tensor becomes (..., 2) real and imaginary parts."""
    t = t.detach().cpu()
    return torch.view_as_real(t.to(torch.complex128)) if t.is_complex() else t.double()


def assert_close(
    ours: Any,
    ref: Any,
    *,
    dtype: torch.dtype | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    what: str = "output",
) -> float:
    """Assert each tensor in ``ours`` equals its match in ``ref``; return the max abs error."""
    a_list, b_list = _flatten(ours), _flatten(ref)
    assert len(a_list) == len(b_list), f"{what}: {len(a_list)} tensors vs {len(b_list)}"
    worst = 0.0
    for i, (a, b) in enumerate(zip(a_list, b_list)):
        assert a.shape == b.shape, f"{what}[{i}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        d = dtype or a.dtype
        default_atol, default_rtol = TOLERANCES.get(d, (1e-5, 1e-5))
        at = default_atol if atol is None else atol
        rt = default_rtol if rtol is None else rtol
        a64, b64 = _real64(a), _real64(b)
        if a64.numel() == 0:
            continue
        err = (a64 - b64).abs()
        max_abs = err.max().item()
        rel = (err / b64.abs().clamp_min(1e-12)).max().item()
        worst = max(worst, max_abs)
        ok = bool((err <= at + rt * b64.abs()).all()) and not bool(torch.isnan(a64).any())
        if CURRENT is not None:  # the fraction of the tolerance used (> 1: failed)
            bound = at + rt * b64.abs()
            used = (err / bound).max().item() if bool((bound > 0).all()) else None
            CURRENT["comparisons"].append({
                "what": f"{what}[{i}]", "dtype": str(d).replace("torch.", ""),
                "max_abs": max_abs, "max_rel": rel, "atol": at, "rtol": rt,
                "used": used if used is not None and math.isfinite(used) else None,
                "passed": ok,
            })
        assert ok, (
            f"{what}[{i}] differs: max abs err {max_abs:.3e}, max rel err {rel:.3e} "
            f"(atol {at:g}, rtol {rt:g}, dtype {d}), worst at index "
            f"{tuple(int(j) for j in torch.unravel_index(err.argmax(), err.shape))}"
        )
    return worst


def assert_parity(
    ours_fn: Callable[..., Any],
    ref_fn: Callable[..., Any],
    inputs: Sequence[torch.Tensor],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    grad_atol: float | None = None,
    grad_rtol: float | None = None,
    check_grad: bool = True,
    seed: int = 0,
    note: str | None = None,
    reference: str | None = None,
) -> None:
    """Forward and backward parity of two functions on the same inputs.

    ``note`` and ``reference`` (e.g. ``"B1"``, ``"torch SDPA"``) name what is compared in the
    parity report; they do not change the comparison."""
    declare(note, reference)
    ours_in = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    ref_in = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    out_a, out_b = ours_fn(*ours_in), ref_fn(*ref_in)
    assert_close(out_a, out_b, atol=atol, rtol=rtol, what="forward")
    if not check_grad:
        return
    g = torch.Generator().manual_seed(seed)
    flat_a, flat_b = _flatten(out_a), _flatten(out_b)
    total_a = sum(
        (t * torch.randn(t.shape, generator=g).to(t)).sum() for t in flat_a if t.is_floating_point()
    )
    g = torch.Generator().manual_seed(seed)
    total_b = sum(
        (t * torch.randn(t.shape, generator=g).to(t)).sum() for t in flat_b if t.is_floating_point()
    )
    wants = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not wants:
        return
    grads_a = torch.autograd.grad(total_a, [ours_in[i] for i in wants], allow_unused=True)
    grads_b = torch.autograd.grad(total_b, [ref_in[i] for i in wants], allow_unused=True)
    for i, ga, gb in zip(wants, grads_a, grads_b):
        ga = torch.zeros_like(ours_in[i]) if ga is None else ga
        gb = torch.zeros_like(ref_in[i]) if gb is None else gb
        assert_close(
            ga,
            gb,
            atol=grad_atol if grad_atol is not None else atol,
            rtol=grad_rtol if grad_rtol is not None else rtol,
            what=f"grad of input {i}",
        )
