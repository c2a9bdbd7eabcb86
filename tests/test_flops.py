"""``paperlab.flops.count_flops``: counted FLOPs, the cost measure of the experiments' claims."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperlab.flops import count_flops


def test_matmul_counts_two_per_multiply_add():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    flops, out = count_flops(lambda: a @ b)
    assert flops == 2 * 8 * 16 * 4
    assert torch.equal(out, a @ b)


def test_cpu_sdpa_is_counted_like_torchs_formula():
    """torch counts its CPU flash kernel as 0; ours maps it to 4 N M D per head."""
    b, h, n, d = 2, 3, 32, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    forward, out = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert forward == 4 * b * h * n * n * d
    both, _ = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert both > 2 * forward  # the backward does about twice the forward's work
    written_out = (q @ k.transpose(-1, -2) / d**0.5).softmax(-1) @ v
    torch.testing.assert_close(out, written_out)
