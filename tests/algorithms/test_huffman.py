"""D1 Huffman tree: prefix-free codes, optimal expected length (brute force), gensim's tree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import registry
from paperlab.algorithms.huffman import expected_code_length, huffman_tree
from paperlab.errors import ArgumentError, ArgumentTypeError

pytestmark = pytest.mark.note("D1", reference="gensim Huffman tree; brute-force optimal lengths")


def _prefix_free(codes):
    words = [tuple(c) for c in codes]
    for a, b in itertools.permutations(range(len(words)), 2):
        if words[b][: len(words[a])] == words[a]:
            return False
    return True


def _brute_force_optimum(counts):
    """The least sum(count * length) over all length vectors allowed by Kraft's inequality."""
    n = len(counts)
    if n == 1:
        return 0.0
    best = float("inf")
    for lengths in itertools.product(range(1, n), repeat=n):
        if sum(2.0 ** -length for length in lengths) <= 1.0 + 1e-12:
            best = min(best, sum(c * length for c, length in zip(counts, lengths, strict=True)))
    return best


def _gensim_tree(counts):
    gensim_kv = require("gensim.models.keyedvectors")
    word2vec = require("gensim.models.word2vec")
    kv = gensim_kv.KeyedVectors(2)
    kv.add_vectors([f"w{i}" for i in range(len(counts))], np.zeros((len(counts), 2)))
    for i, c in enumerate(counts):
        kv.set_vecattr(i, "count", c)
    word2vec._assign_binary_codes(kv)
    codes = [list(map(int, kv.get_vecattr(i, "code"))) for i in range(len(counts))]
    points = [list(map(int, kv.get_vecattr(i, "point"))) for i in range(len(counts))]
    return codes, points


def test_small_example_by_hand():
    # counts 5, 2, 1, 1: join (1,1) -> node 0 (count 2), join (2, node0) -> node 1, then root 2
    codes, points = huffman_tree([5, 2, 1, 1])
    assert [len(c) for c in codes] == [1, 2, 3, 3]
    assert all(p[0] == 2 for p in points)  # the root is inner node V - 2
    assert points[2] == points[3] == [2, 1, 0]
    assert codes[2][:2] == codes[3][:2] and codes[2][2] != codes[3][2]
    assert _prefix_free(codes)


def test_degenerate_sizes():
    assert huffman_tree([]) == ([], [])
    assert huffman_tree([7]) == ([[]], [[]])
    assert huffman_tree([3, 9]) in (([[0], [1]], [[0], [0]]), ([[1], [0]], [[0], [0]]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=6))
def test_prefix_free_and_optimal_against_brute_force(counts):
    codes, points = huffman_tree(counts)
    assert _prefix_free(codes)
    assert [len(c) for c in codes] == [len(p) for p in points]
    assert all(0 <= q < max(len(counts) - 1, 1) for p in points for q in p)
    assert expected_code_length(counts, codes) == _brute_force_optimum(counts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=300))
def test_same_tree_as_gensim(counts):
    counts = sorted(counts, reverse=True)  # vocabulary order: descending counts
    codes, points = huffman_tree(counts)
    g_codes, g_points = _gensim_tree(counts)
    assert expected_code_length(counts, codes) == expected_code_length(counts, g_codes)
    assert codes == g_codes and points == g_points  # same heap semantics: the same tree


def test_zipf_vocabulary_matches_gensim_and_is_short_for_frequent_words():
    counts = [int(100_000 / (r + 1)) + 1 for r in range(2000)]
    codes, _ = huffman_tree(counts)
    g_codes, _ = _gensim_tree(counts)
    assert expected_code_length(counts, codes) == expected_code_length(counts, g_codes)
    lengths = [len(c) for c in codes]
    assert lengths[0] < lengths[-1]
    assert _prefix_free(codes[:50] + codes[-50:])


def test_registered():
    table = registry._TABLE["algorithm"]
    assert table["huffman_tree"].obj is huffman_tree


def test_bad_input():
    with pytest.raises(ArgumentError, match=r"counts\[1\]"):
        huffman_tree([1, -2])
    with pytest.raises(ArgumentError, match=r"counts\[0\]"):
        huffman_tree([float("nan"), 1])
    with pytest.raises(ArgumentTypeError, match=r"counts\[0\]"):
        huffman_tree(["a", 1])
    with pytest.raises(ArgumentTypeError, match="counts"):
        huffman_tree("abc")
    with pytest.raises(ArgumentError, match="codes"):
        expected_code_length([1, 2], [[0]])
