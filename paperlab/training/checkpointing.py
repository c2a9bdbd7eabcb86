"""Activation (gradient) checkpointing: keep a few activations, recompute the rest (note I2).

The idea
--------
Back-propagation through ``n`` layers needs every layer's saved activations, so memory grows
as ``O(n)``. Chen, Xu, Zhang & Guestrin ("Training Deep Nets with Sublinear Memory Cost",
2016) cut the chain into ``k`` segments and keep only each segment's *input*. The forward pass
runs the segments without recording; the backward pass re-runs one segment at a time with
recording on and back-propagates through it. Memory is then the ``k`` kept inputs plus one
segment's activations::

    memory(k) ~ k + n / k,   minimised at k = sqrt(n):  memory ~ 2 sqrt(n) = O(sqrt(n))

for the price of one extra forward pass (each segment's forward runs twice; the backward
itself is unchanged), about 4/3 of the plain cost when a backward costs two forwards.

How it is built here
--------------------
``checkpoint(fn, *args)`` is a ``torch.autograd.Function``: its forward calls ``fn`` under
``no_grad`` and saves only the tensor inputs; its backward restores the random-number state
of the forward (so dropout draws the same masks), re-runs ``fn`` on detached copies of the
inputs with recording on, and calls ``torch.autograd.backward`` on the recomputed outputs.
That inner backward also accumulates ``.grad`` of every parameter ``fn`` used (an
``nn.Module`` called inside it), which is how parameter gradients arrive: use
``loss.backward()``. (Under ``torch.autograd.grad`` the inner pass computes the gradients of
the checkpoint's tensor inputs only and leaves parameters untouched.) When no tensor input
requires grad (the first segment of a network fed raw data), a zero-size dummy that does is
passed along, so the output still joins the graph and the parameters still get gradients.

``checkpoint_sequential(blocks, segments, x)`` splits a chain of modules into ``segments``
contiguous pieces of near-equal length and checkpoints all but the last (whose activations
are needed at once by the backward, so recomputing them would buy nothing).
``sqrt_segments(n)`` is Chen et al.'s choice ``round(sqrt(n))``.

``SavedTensorMeter`` measures what the technique saves: with
``torch.autograd.graph.saved_tensors_hooks`` it counts the bytes of the distinct tensors that
autograd holds for the backward, live and at peak (including the peak of the recomputation),
deterministically on any device.

Shapes: ``fn`` takes any mix of tensors and other values and returns a tensor or a tuple;
each block of ``checkpoint_sequential`` maps one tensor to one tensor.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, check_int

# ---------------------------------------------------------------------------------------------
# Random-number and autocast state of the forward, replayed at recomputation
# ---------------------------------------------------------------------------------------------


class _ForwardState:
    """What the recomputation must see exactly as the forward did: RNG streams and autocast."""

    def __init__(self, tensors: Sequence[torch.Tensor], preserve_rng_state: bool) -> None:
        self.preserve_rng_state = preserve_rng_state
        self.cpu_rng = torch.get_rng_state() if preserve_rng_state else None
        self.cuda_devices: list[int] = []
        self.cuda_rng: list[torch.Tensor] = []
        # Read CUDA states only when CUDA is already in use; never initialise it by accident.
        if preserve_rng_state and torch.cuda.is_available() and torch.cuda.is_initialized():
            self.cuda_devices = sorted({t.get_device() for t in tensors if t.is_cuda})
            for d in self.cuda_devices:
                with torch.cuda.device(d):
                    self.cuda_rng.append(torch.cuda.get_rng_state())
        self.autocast = {
            dev: (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
            for dev in ("cpu", "cuda")
        }

    def replay(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        """``fn(*args)`` with recording on, under the forward's RNG and autocast state; the
        caller's RNG state is restored afterwards."""
        with torch.random.fork_rng(devices=self.cuda_devices, enabled=self.preserve_rng_state):
            if self.cpu_rng is not None:
                torch.set_rng_state(self.cpu_rng)
            for d, state in zip(self.cuda_devices, self.cuda_rng, strict=True):
                with torch.cuda.device(d):
                    torch.cuda.set_rng_state(state)
            (cpu_on, cpu_dtype), (cuda_on, cuda_dtype) = self.autocast["cpu"], self.autocast["cuda"]
            with (
                torch.enable_grad(),
                torch.autocast("cpu", enabled=cpu_on, dtype=cpu_dtype),
                torch.autocast("cuda", enabled=cuda_on and torch.cuda.is_available(),
                               dtype=cuda_dtype),
            ):
                return fn(*args)


# ---------------------------------------------------------------------------------------------
# checkpoint: the autograd.Function
# ---------------------------------------------------------------------------------------------


class _Checkpoint(torch.autograd.Function):
    """Forward without recording, keep the inputs; backward recomputes and back-propagates."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, fn: Callable[..., Any], preserve_rng_state: bool, dummy: Any, *args: Any
    ) -> Any:
        tensor_slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        tensors = [args[i] for i in tensor_slots]
        ctx.fn = fn
        ctx.state = _ForwardState(tensors, preserve_rng_state)
        ctx.tensor_slots = tensor_slots
        ctx.others = [None if isinstance(a, torch.Tensor) else a for a in args]
        ctx.save_for_backward(*tensors)
        with torch.no_grad():  # autograd.Function.forward already runs so; say it anyway
            outputs = fn(*args)
        ctx.single = isinstance(outputs, torch.Tensor)
        return outputs

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        args = list(ctx.others)
        inputs = []
        for slot, saved in zip(ctx.tensor_slots, ctx.saved_tensors, strict=True):
            leaf = saved.detach().requires_grad_(saved.requires_grad)
            args[slot] = leaf
            inputs.append(leaf)
        outputs = ctx.state.replay(ctx.fn, args)
        if ctx.single:
            outputs = (outputs,)
        pairs = [
            (out, grad)
            for out, grad in zip(outputs, grad_outputs, strict=True)
            if isinstance(out, torch.Tensor) and out.requires_grad and grad is not None
        ]
        wanted = [leaf for leaf in inputs if leaf.requires_grad]
        input_grads: dict[int, torch.Tensor | None] = {}
        if pairs:
            outs, grads = zip(*pairs, strict=True)
            if torch.autograd._is_checkpoint_valid():
                # Called from .backward(): accumulate into every leaf, parameters included.
                torch.autograd.backward(outs, grads)
                input_grads = {id(leaf): leaf.grad for leaf in wanted}
            elif wanted:
                # Called from autograd.grad(): return the inputs' gradients, touch nothing else.
                found = torch.autograd.grad(outs, wanted, grads, allow_unused=True)
                input_grads = {id(leaf): g for leaf, g in zip(wanted, found, strict=True)}
        grads_by_slot: list[torch.Tensor | None] = [None] * len(ctx.others)
        for slot, leaf in zip(ctx.tensor_slots, inputs, strict=True):
            grads_by_slot[slot] = input_grads.get(id(leaf))
        return (None, None, None, *grads_by_slot)


def checkpoint(fn: Callable[..., Any], *args: Any, preserve_rng_state: bool = True) -> Any:
    """``fn(*args)`` without keeping its activations; they are recomputed during backward.

    ``args`` may mix tensors (requiring grad or not) and other values; ``fn`` may call
    ``nn.Module``s, whose parameters receive gradients on ``loss.backward()``, and may return a
    tensor or a tuple. With ``preserve_rng_state`` (default) the recomputation replays the
    forward's CPU and CUDA random streams, so dropout masks match. Without recording
    (``torch.no_grad()``) this is just ``fn(*args)``.
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be callable, got {type(fn).__name__}")
    if not torch.is_grad_enabled():
        return fn(*args)
    needs_dummy = not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    dummy = torch.empty(0, requires_grad=True) if needs_dummy else None
    return _Checkpoint.apply(fn, bool(preserve_rng_state), dummy, *args)


# ---------------------------------------------------------------------------------------------
# checkpoint_sequential and the sqrt(n) rule
# ---------------------------------------------------------------------------------------------


def sqrt_segments(n: int) -> int:
    """Chen et al.'s segment count for ``n`` layers: ``round(sqrt(n))``, at least 1."""
    check_int("n", n, minimum=0)
    return max(1, round(math.sqrt(n)))


def segment_bounds(n: int, segments: int) -> list[tuple[int, int]]:
    """``segments`` contiguous ``[start, stop)`` ranges covering ``range(n)``, lengths within 1."""
    check_int("n", n, minimum=1)
    check_int("segments", segments, minimum=1)
    if segments > n:
        raise ArgumentError(f"segments must be <= the number of blocks ({n}), got {segments}")
    size, extra = divmod(n, segments)
    bounds, start = [], 0
    for s in range(segments):
        stop = start + size + (1 if s < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _run_blocks(blocks: Sequence[Callable[[Any], Any]], start: int, stop: int) -> Callable:
    def run(x: Any) -> Any:
        for block in blocks[start:stop]:
            x = block(x)
        return x

    return run


def checkpoint_sequential(
    blocks: nn.Sequential | Sequence[Callable[[Any], Any]],
    segments: int,
    x: torch.Tensor,
    *,
    preserve_rng_state: bool = True,
) -> torch.Tensor:
    """Run ``blocks`` on ``x`` in ``segments`` pieces, checkpointing all pieces but the last.

    ``blocks``: an ``nn.Sequential`` or a list of modules/callables, each mapping one tensor to
    one tensor. ``segments`` must lie in ``[1, len(blocks)]``; ``sqrt_segments(len(blocks))``
    gives the O(sqrt(n)) memory of Chen et al. ``segments=1`` runs everything plainly.
    """
    if isinstance(blocks, nn.Module) and not isinstance(blocks, nn.Sequential):
        raise ArgumentTypeError(
            f"blocks must be an nn.Sequential or a list of modules, got {type(blocks).__name__}"
        )
    if not isinstance(blocks, (nn.Sequential, list, tuple, nn.ModuleList)):
        raise ArgumentTypeError(
            f"blocks must be an nn.Sequential or a list of modules, got {type(blocks).__name__}"
        )
    blocks = list(blocks)
    if not blocks:
        raise ArgumentError("blocks must hold at least one block, got an empty sequence")
    bounds = segment_bounds(len(blocks), segments)
    for start, stop in bounds[:-1]:
        x = checkpoint(_run_blocks(blocks, start, stop), x, preserve_rng_state=preserve_rng_state)
    start, stop = bounds[-1]
    return _run_blocks(blocks, start, stop)(x)


# ---------------------------------------------------------------------------------------------
# Measuring saved-activation memory
# ---------------------------------------------------------------------------------------------


class _Held:
    """The meter's handle for one saved tensor; when autograd drops it, the bytes are freed."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorMeter:
    """Context manager counting bytes of the distinct tensors autograd saves for backward.

    Inside ``with SavedTensorMeter(exclude=model.parameters()) as meter:`` every tensor that an
    operation saves for its backward passes through a pack hook; storages are counted once
    however many operations share them, and excluded tensors (parameters, which exist anyway)
    not at all. ``meter.live`` is the count now, ``meter.peak`` the maximum seen, ``meter.total``
    the sum of every storage ever saved. Run forward *and* backward inside the block so the
    recomputation of checkpointed segments is seen too.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {_storage_key(t) for t in exclude}
        self._refs: dict[tuple[str, int], int] = {}
        self._sizes: dict[tuple[str, int], int] = {}
        self.live = 0
        self.peak = 0
        self.total = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> Any:
        key = _storage_key(tensor)
        if key in self._excluded or key[1] == 0:
            return tensor
        held = _Held(tensor)
        if key not in self._refs:
            size = tensor.untyped_storage().nbytes()
            self._refs[key] = 0
            self._sizes[key] = size
            self.live += size
            self.total += size
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        weakref.finalize(held, self._release, key)
        return held

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed

    def _release(self, key: tuple[str, int]) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= self._sizes.pop(key)


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------


class CheckpointedSequential(nn.Sequential):
    """An ``nn.Sequential`` that trains with ``checkpoint_sequential`` over ``segments`` pieces
    (default ``sqrt_segments(len(self))``); in eval mode or without grad it runs plainly."""

    def __init__(self, *blocks: nn.Module, segments: int | None = None) -> None:
        super().__init__(*blocks)
        if segments is not None:
            segment_bounds(len(self), segments)  # validates the count
        self.segments = segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        segments = self.segments if self.segments is not None else sqrt_segments(len(self))
        return checkpoint_sequential(self, segments, x)
