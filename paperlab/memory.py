"""Peak memory of a block of tensor work, on CUDA and on the CPU.

``peak_bytes(fn, device)`` runs ``fn()`` and returns (peak bytes alive at once, result).
On CUDA it is ``torch.cuda.max_memory_allocated`` above what was allocated before. The CPU
keeps no allocator statistics, so a ``TorchDispatchMode`` sees every aten operation of the
block (autograd runs CPU backward ops on the calling thread, inside the mode), records each
output whose storage is new (not a view of, or written into, an input) and drops it when a
weak-reference finaliser reports the storage freed; the peak of the live sum is what
``max_memory_allocated`` reports on a GPU, before the caching allocator's rounding. Tensors
created before the block are not counted. ``tests/multimodal/test_losses.py`` checks it
against torch.profiler's allocator events.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _AllocationTracker(TorchDispatchMode):
    """Live and peak bytes of the storages that operations allocate inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in inputs or key in self.sizes:
                continue
            self.sizes[key] = storage.nbytes()
            self.live += self.sizes[key]
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key)
        return out

    def _freed(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)


def peak_bytes(fn: Callable[[], Any], device: str) -> tuple[int, Any]:
    """Peak bytes of tensors allocated by ``fn()`` and alive at once; returns (peak, result)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, result
    with _AllocationTracker() as tracker:
        result = fn()
    return tracker.peak, result


__all__ = ["peak_bytes"]
