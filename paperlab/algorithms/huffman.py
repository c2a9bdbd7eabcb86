"""The Huffman tree of word2vec's hierarchical softmax (note D1), built on ``heap``.

The idea
--------
Hierarchical softmax replaces the V-way softmax over the vocabulary by a walk down a binary
tree whose V leaves are the words: the probability of a word is the product, over the inner
nodes on its path, of ``sigmoid(+-h . v_node)``, one binary decision per node. Training a
word then costs its code length, not V. Mikolov et al. (2013, "Distributed Representations
of Words and Phrases") use a Huffman tree, which gives frequent words short paths: the
expected path length ``sum_w count_w * len(code_w) / sum_w count_w`` is the smallest any
binary prefix code can have (Huffman 1952).

The construction
----------------
Put every word in a min-heap keyed by its count. Pop the two smallest, join them under a new
inner node whose count is their sum, push it back; V - 1 joins leave one tree. Inner node
``i`` (0-based, in order of creation) is the ``i``-th join, so the root is inner node
``V - 2``. Reading the tree from the root, the left child (the first popped, smaller) adds a
``0`` bit and the right child a ``1`` bit.

This follows gensim 4.4 (``gensim.models.word2vec._build_heap`` / ``_assign_binary_codes``):
heap items compare by count alone, and ``paperlab.algorithms.heap`` has ``heapq``'s exact
semantics, so ties break the same way and the codes are gensim's bit for bit. word2vec.c
builds the same kind of tree with two pointers over the sorted counts; ties may break
differently there, but every Huffman tree has the same (optimal) expected length.

Output, per word in vocabulary order (``counts[i]`` is word ``i``'s count):

- ``codes[i]``: the bits from the root down to the leaf, a list of 0/1 of length L_i;
- ``points[i]``: the inner-node indices on that path, root first, also of length L_i
  (``points[i][d]`` is the node whose decision is ``codes[i][d]``).

A one-word vocabulary has no inner node: its code and path are empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from paperlab.algorithms.heap import heapify, heappop, heappush
from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.registry import export_algorithm

__all__ = ["expected_code_length", "huffman_tree"]


class _Node:
    """A heap item ordered by ``count`` only (as gensim's ``Heapitem``): heapq's tie order."""

    __slots__ = ("count", "index", "left", "right")

    def __init__(self, count: float, index: int, left: _Node | None, right: _Node | None) -> None:
        self.count, self.index, self.left, self.right = count, index, left, right

    def __lt__(self, other: _Node) -> bool:
        return self.count < other.count


def _check_counts(counts: Sequence[float]) -> list[float]:
    if isinstance(counts, (str, bytes)) or not hasattr(counts, "__len__"):
        got = type(counts).__name__
        raise ArgumentTypeError(f"counts must be a sequence of numbers, got {got}")
    values = list(counts)
    for i, c in enumerate(values):
        if isinstance(c, bool) or not isinstance(c, (int, float)) and not hasattr(c, "__float__"):
            raise ArgumentTypeError(f"counts[{i}] must be a number, got {type(c).__name__}")
        if not float(c) >= 0:  # also catches NaN
            raise ArgumentError(f"counts[{i}] must be >= 0, got {c!r}")
    return values


@export_algorithm("huffman_tree", note="J6/D1 Huffman tree of word2vec's hierarchical softmax")
def huffman_tree(counts: Sequence[float]) -> tuple[list[list[int]], list[list[int]]]:
    """Huffman codes and inner-node paths for words with these counts (vocabulary order).

    Returns ``(codes, points)``: for word ``i``, ``codes[i]`` is its list of bits from the
    root down and ``points[i]`` the inner-node indices (0 .. V-2) on that path, root first.
    """
    values = _check_counts(counts)
    n = len(values)
    if n == 0:
        return [], []
    heap = [_Node(c, i, None, None) for i, c in enumerate(values)]
    heapify(heap)
    for i in range(n - 1):
        smaller, larger = heappop(heap), heappop(heap)
        heappush(heap, _Node(smaller.count + larger.count, n + i, smaller, larger))

    codes: list[list[int]] = [[] for _ in range(n)]
    points: list[list[int]] = [[] for _ in range(n)]
    stack: list[tuple[_Node, list[int], list[int]]] = [(heap[0], [], [])]
    while stack:  # depth first from the root, carrying the path so far
        node, code, path = stack.pop()
        if node.index < n:  # a leaf: a word
            codes[node.index], points[node.index] = code, path
            continue
        path = [*path, node.index - n]
        assert node.left is not None and node.right is not None
        stack.append((node.left, [*code, 0], path))
        stack.append((node.right, [*code, 1], path))
    return codes, points


@export_algorithm("expected_code_length", note="J6/D1 sum of count x code length")
def expected_code_length(counts: Sequence[float], codes: Sequence[Sequence[int]]) -> float:
    """``sum_i counts[i] * len(codes[i])``: the total path length the tree costs a corpus."""
    values = _check_counts(counts)
    if len(codes) != len(values):
        raise ArgumentError(f"codes has {len(codes)} entries for {len(values)} counts")
    return float(sum(c * len(code) for c, code in zip(values, codes, strict=True)))
