"""Noisy captions for CapFilt experiments: exact fraction, always wrong, deterministic."""

from __future__ import annotations

import pytest
import torch

from paperlab.data.synthetic.noisy_captions import corrupt_captions
from paperlab.data.synthetic.shapes import make_shapes, parse_caption
from paperlab.errors import ArgumentError, ArgumentTypeError


@pytest.mark.parametrize("mode", ["swap", "attribute"])
def test_exact_fraction_corrupted_each_differs_and_clean_ones_untouched(mode):
    data = make_shapes(50, seed=0, objects=2, split="all")
    captions, noisy = corrupt_captions(data, 0.3, seed=1, mode=mode)
    assert noisy.dtype == torch.bool and int(noisy.sum()) == 15
    for caption, original, bad in zip(captions, data.captions, noisy.tolist()):
        assert (caption != original) == bad
    if mode == "swap":
        assert all(c in data.captions for c in captions)
    else:  # one attribute of one object changed; still grammatical
        for caption, objs, bad in zip(captions, data.attributes, noisy.tolist()):
            new = parse_caption(caption)
            diffs = sum(a[k] != b[k] for a, b in zip(new, objs) for k in a)
            assert diffs == int(bad)
            assert len({o["position"] for o in new}) == len(new)
    again = corrupt_captions(data, 0.3, seed=1, mode=mode)
    assert again[0] == captions and torch.equal(again[1], noisy)
    assert corrupt_captions(data, 0.3, seed=2, mode=mode)[0] != captions


def test_bad_arguments_are_named():
    data = make_shapes(4, seed=0)
    with pytest.raises(ArgumentError, match="fraction must be in"):
        corrupt_captions(data, 1.5, seed=0)
    with pytest.raises(ArgumentError, match="mode must be one of"):
        corrupt_captions(data, 0.5, seed=0, mode="shuffle")
    with pytest.raises(ArgumentTypeError, match="ShapesData"):
        corrupt_captions(data.captions, 0.5, seed=0)
    one = make_shapes(1, seed=0)
    with pytest.raises(ArgumentError, match="at least two different captions"):
        corrupt_captions(one, 1.0, seed=0)
    assert corrupt_captions(one, 1.0, seed=0, mode="attribute")[1].tolist() == [True]
