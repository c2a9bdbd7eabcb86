"""Activation checkpointing: same gradients as no checkpointing and as torch.utils.checkpoint,
less saved-activation memory, gradcheck, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint as torch_ckpt
from parity import assert_close
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.training.checkpointing import (
    CheckpointedSequential,
    SavedTensorMeter,
    checkpoint,
    checkpoint_sequential,
    segment_bounds,
    sqrt_segments,
)

pytestmark = pytest.mark.note("I2", reference="torch.utils.checkpoint")


def deep_mlp(depth: int, width: int, dropout: float = 0.2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    blocks = [
        nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Dropout(dropout))
        for _ in range(depth)
    ]
    return nn.Sequential(*blocks).double()


def grads_of(model: nn.Module, run, x_requires_grad: bool = True, seed: int = 7):
    """Run ``run(model, x)`` and backward under a fixed RNG seed; return the input's gradient,
    every parameter's gradient, and a draw from the RNG afterwards (which must not move)."""
    model.zero_grad(set_to_none=True)
    x = torch.randn(6, model[0][0].in_features, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1)).requires_grad_(x_requires_grad)
    torch.manual_seed(seed)
    out = run(model, x)
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=torch.float64)).sum().backward()
    after = torch.rand(3)
    return x.grad, [p.grad for p in model.parameters()], after, out.detach()


@pytest.mark.parametrize("segments", [1, 2, 3, 5, 12])
@pytest.mark.parametrize("x_requires_grad", [True, False])
def test_gradients_equal_plain_and_torch_checkpoint_with_dropout(segments, x_requires_grad):
    model = deep_mlp(12, 10)
    plain = grads_of(model, lambda m, x: m(x), x_requires_grad)
    ours = grads_of(model, lambda m, x: checkpoint_sequential(m, segments, x), x_requires_grad)
    ref = grads_of(
        model,
        lambda m, x: torch_ckpt.checkpoint_sequential(m, segments, x, use_reentrant=False),
        x_requires_grad,
    )
    for other, label in [(plain, "plain"), (ref, "torch.utils.checkpoint")]:
        assert_close(ours[3], other[3], atol=1e-13, rtol=0, what=f"output vs {label}")
        if x_requires_grad:
            assert_close(ours[0], other[0], atol=1e-13, rtol=0, what=f"input grad vs {label}")
        else:
            assert ours[0] is None
        assert all(g is not None for g in ours[1]), "every parameter must get a gradient"
        assert_close(ours[1], other[1], atol=1e-13, rtol=0, what=f"param grads vs {label}")
    # The recomputation must not disturb the caller's random stream.
    assert torch.equal(ours[2], plain[2])


def test_without_rng_preservation_dropout_masks_differ():
    model = deep_mlp(4, 10, dropout=0.5)
    plain = grads_of(model, lambda m, x: m(x))
    loose = grads_of(
        model, lambda m, x: checkpoint_sequential(m, 4, x, preserve_rng_state=False)
    )
    assert not torch.allclose(plain[0], loose[0])


def test_checkpoint_several_inputs_non_tensors_and_tuple_outputs():
    torch.manual_seed(0)
    lin = nn.Linear(4, 4).double()

    def fn(a, b, scale, c):
        h = lin(a) * b + scale * c
        return torch.tanh(h), h.sum(-1), "tag"

    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 4, dtype=torch.float64)  # does not require grad

    def loss(out):
        return (out[0] ** 2).sum() + out[1].pow(3).sum()

    loss(fn(a, b, 0.5, c)).backward()
    expected = [a.grad.clone(), b.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone()]
    a.grad = b.grad = lin.weight.grad = lin.bias.grad = None

    out = checkpoint(fn, a, b, 0.5, c)
    assert out[2] == "tag" and c.grad is None
    loss(out).backward()
    assert_close([a.grad, b.grad, lin.weight.grad, lin.bias.grad], expected, atol=1e-13, rtol=0)


def test_one_of_two_outputs_unused():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    first, _ = checkpoint(lambda t: (t.sin(), t.cos()), x)
    first.sum().backward()
    assert_close(x.grad, x.detach().cos())


def test_gradcheck():
    def fn(a, b, k):
        return (torch.sin(a) * b * k, (a * b).exp())

    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: checkpoint(fn, a, b, 2.0), (a, b))


def test_autograd_grad_leaves_parameters_untouched():
    lin = nn.Linear(3, 3).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(checkpoint(lin, x).sum(), x)
    assert_close(gx, lin.weight.sum(0).detach().expand(2, 3))
    assert lin.weight.grad is None


def test_no_grad_and_nested_checkpoints():
    model = deep_mlp(4, 6)
    x = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        model.eval()
        assert_close(checkpoint_sequential(model, 2, x), model(x))
    model.train()
    plain = grads_of(model, lambda m, x: m(x))

    def nested(m, x):
        inner = lambda t: checkpoint(m[1], checkpoint(m[0], t))  # noqa: E731
        return m[3](m[2](checkpoint(inner, x)))

    assert_close(grads_of(model, nested)[1], plain[1], atol=1e-13, rtol=0)


def test_checkpointed_sequential_module():
    model = deep_mlp(9, 8)
    wrapped = CheckpointedSequential(*model)
    assert_close(grads_of(wrapped, lambda m, x: m(x))[1], grads_of(model, lambda m, x: m(x))[1],
                 atol=1e-13, rtol=0)
    x = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    with SavedTensorMeter(exclude=model.parameters()) as plain:
        model(x).sum().backward()
    with SavedTensorMeter(exclude=model.parameters()) as ckpt:
        wrapped(x).sum().backward()
    assert ckpt.peak < plain.peak
    with pytest.raises(ArgumentError, match="segments"):
        CheckpointedSequential(*model, segments=10)


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def saved_peak(depth: int, width: int, segments: int | None) -> tuple[int, int]:
    """Peak saved-activation bytes of forward+backward: plain (None) or checkpointed."""
    model = deep_mlp(depth, width, dropout=0.1)
    x = torch.randn(16, width, dtype=torch.float64)
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        out = model(x) if segments is None else checkpoint_sequential(model, segments, x)
        out.sum().backward()
    assert meter.live == 0  # everything was released after backward
    return meter.peak, meter.total


def test_saved_memory_falls_with_sqrt_segments():
    depth, width = 16, 64
    plain, plain_total = saved_peak(depth, width, None)
    ckpt, ckpt_total = saved_peak(depth, width, sqrt_segments(depth))
    assert ckpt < 0.45 * plain, (ckpt, plain)
    # Recomputation saves the same activations again, one segment at a time.
    assert ckpt_total == plain_total
    # Peak ~ (k - 1) boundaries + (n / k) layers of ~3 saved tensors each, so the exact optimum
    # is k ~ sqrt(3n) ~ 7; sqrt(n) = 4 is within a small factor of it, and k = 1 is plain.
    by_k = {k: saved_peak(depth, width, k)[0] for k in (1, 2, 4, 8, 16)}
    assert by_k[1] == plain
    assert by_k[4] < 1.25 * min(by_k.values())
    assert by_k[4] < by_k[2] and by_k[4] < by_k[16]


def test_saved_memory_grows_like_sqrt_depth():
    from paperlab.timing import fit_power_law

    depths = [4, 16, 64]
    ckpt = [saved_peak(d, 32, sqrt_segments(d))[0] for d in depths]
    plain = [saved_peak(d, 32, None)[0] for d in depths]
    assert fit_power_law(depths, plain) > 0.95
    assert fit_power_law(depths, ckpt) < 0.65


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one intra-op thread is faster and steady on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# Segments and errors
# ---------------------------------------------------------------------------------------------


def test_sqrt_segments_and_bounds():
    assert [sqrt_segments(n) for n in (0, 1, 2, 3, 4, 10, 16, 100)] == [1, 1, 1, 2, 2, 3, 4, 10]
    assert segment_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert segment_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize(
    "segments,error,match",
    [
        (0, ArgumentError, "segments must be >= 1"),
        (-2, ArgumentError, "segments must be >= 1"),
        (5, ArgumentError, r"segments must be <= the number of blocks \(4\), got 5"),
        (2.0, ArgumentTypeError, "segments must be an int"),
    ],
)
def test_bad_segments(segments, error, match):
    with pytest.raises(error, match=match):
        checkpoint_sequential(deep_mlp(4, 3), segments, torch.randn(1, 3, dtype=torch.float64))


def test_bad_blocks_and_fn():
    x = torch.randn(1, 3)
    with pytest.raises(ArgumentError, match="at least one block"):
        checkpoint_sequential([], 1, x)
    with pytest.raises(ArgumentTypeError, match="blocks must be"):
        checkpoint_sequential(nn.Linear(3, 3), 1, x)
    with pytest.raises(ArgumentTypeError, match="fn must be callable"):
        checkpoint(3, x)
    with pytest.raises(ArgumentError, match="n must be >= 0"):
        sqrt_segments(-1)
