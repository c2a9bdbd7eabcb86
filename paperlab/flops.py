"""Counted cost: the FLOPs of a call, by ``torch.utils.flop_counter.FlopCounterMode``.

A verdict about cost must not depend on the machine's load, so experiments count instead of
timing (time stays in their figures and metrics); ``memory.peak_bytes`` counts bytes.
``count_flops(fn)`` runs ``fn()`` once under ``FlopCounterMode`` and returns the FLOPs of its
matrix products (2 per multiply-add; elementwise work is not counted) plus the result.

torch's counter knows the CUDA kernels of ``F.scaled_dot_product_attention`` but not the CPU
one (``_scaled_dot_product_flash_attention_for_cpu``, counted as 0); it is mapped here to
torch's own SDPA formulas (4 N M D forward, the matching backward). Like torch's formula it
counts a causal call as a full one: the counted work of the fused kernel, not the half it may
skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter


def _sdpa_forward(q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(q_shape, k_shape, v_shape)


def _sdpa_backward(grad_shape: Any, q_shape: Any, k_shape: Any, v_shape: Any, *args: Any,
                   **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


_aten = torch.ops.aten
_CPU_SDPA = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward,
}


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(FLOPs of the matrix products in ``fn()``, its result); forward and any backward run
    inside ``fn`` are both counted."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter:
        result = fn()
    return int(counter.get_total_flops()), result


__all__ = ["count_flops"]
