"""T5 bucketed relative bias: exact buckets and bias parity with HF ``T5Attention``."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ShapeError
from paperlab.position.t5 import T5RelativeBias, t5_relative_bucket

pytestmark = pytest.mark.note("A1")

BUCKET_CASES = [(True, 32, 128), (False, 32, 128), (True, 16, 20), (False, 8, 100), (True, 6, 9)]


@pytest.mark.parametrize("bidirectional,num_buckets,max_distance", BUCKET_CASES)
def test_buckets_equal_hf_exactly(bidirectional, num_buckets, max_distance):
    require("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-1000, 1001)
    ours = t5_relative_bucket(rel, bidirectional, num_buckets, max_distance)
    ref = T5Attention._relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, ref)
    assert int(ours.min()) >= 0 and int(ours.max()) < num_buckets


def test_bucket_structure():
    rel = torch.arange(-200, 201)
    b = t5_relative_bucket(rel, True, 32, 128)
    # keys before the query, distances 0..7: exact buckets 0..7
    assert torch.equal(b[torch.arange(200, 192, -1)], torch.arange(8))
    assert torch.equal(b[201:209], torch.arange(17, 25))  # keys after: the upper half
    assert int(b[0]) == 15 and int(b[-1]) == 31  # far distances share the last bucket
    causal = t5_relative_bucket(rel, False, 32, 128)
    assert torch.equal(causal[200:], torch.zeros(201, dtype=torch.long))  # future: bucket 0


def _hf_bias(attn, n, m, offset):
    params = inspect.signature(attn.compute_bias).parameters
    if "past_seen_tokens" in params:
        return attn.compute_bias(n, m, past_seen_tokens=offset)
    if "cache_position" in params:
        return attn.compute_bias(n, m, cache_position=torch.arange(offset, offset + n))
    return attn.compute_bias(n + offset, m)[:, :, offset:]


@pytest.mark.parametrize("is_decoder", [False, True])
def test_bias_matches_hf_compute_bias(is_decoder):
    transformers = require("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    cfg = transformers.T5Config(
        d_model=16, d_kv=4, num_heads=4, d_ff=32, num_layers=1, vocab_size=32,
        relative_attention_num_buckets=16, relative_attention_max_distance=24,
        is_decoder=is_decoder,
    )
    hf = T5Attention(cfg, has_relative_attention_bias=True)
    g = torch.Generator().manual_seed(0)
    torch.nn.init.normal_(hf.relative_attention_bias.weight, generator=g)
    ours = T5RelativeBias(4, 16, 24, bidirectional=not is_decoder)
    with torch.no_grad():
        ours.relative_attention_bias.weight.copy_(hf.relative_attention_bias.weight)
    for n, m, offset in [(30, 30, 0), (1, 41, 40), (5, 45, 40)]:
        with torch.no_grad():
            ref = _hf_bias(hf, n, m, offset)
            got = ours.bias(n, m, offset=offset)
        assert got.shape == (1, 4, n, m)
        assert_close(got, ref)


def test_offset_equals_slicing_and_forward_uses_shapes_only():
    t5 = T5RelativeBias(2, 8, 16, bidirectional=False)
    full = t5.bias(20, 20, offset=0)
    assert torch.equal(t5.bias(4, 20), full[:, :, 16:])  # default offset M - N
    assert torch.equal(t5.bias(4, 20, offset=3), full[:, :, 3:7])
    q, k = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 20, 5)
    assert torch.equal(t5(q, k), full[:, :, 16:])
    assert t5.default_scale(64) == 1.0 and t5.kind == "bias" and not t5.content_dependent


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="num_buckets"):
        t5_relative_bucket(torch.arange(3), True, 2, 10)
    with pytest.raises(ArgumentError, match="max_distance"):
        T5RelativeBias(2, 32, 8)
    t5 = T5RelativeBias(2, 8, 16)
    with pytest.raises(ShapeError, match="M >= N"):
        t5.bias(5, 3)
    with pytest.raises(ArgumentError, match="offset"):
        t5.bias(2, 3, offset=-1)
    with pytest.raises(ShapeError, match="H=2"):
        t5(torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5))
    with pytest.raises(ShapeError, match="k must be"):
        t5(torch.randn(1, 2, 4, 5), torch.randn(1, 2, 4, 6))
