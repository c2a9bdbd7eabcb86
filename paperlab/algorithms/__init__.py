"""Pure-Python algorithms from the notes (J2-J6): each file reads like its note.

- ``sliding_window``: sliding-window maximum with a monotonic deque, O(n) (J2)
- ``max_gap``: maximum gap of the sorted order with buckets, O(n) (J3)
- ``combination_sum``: combination sum I and II, ordered backtracking with pruning (J4)
- ``knapsack``: 0/1 knapsack, 2-D table and 1-D reverse-iteration DP (J5)
- ``heap``: ``heapq``'s binary heap: sifts, O(n) heapify, nsmallest/nlargest (J6)
- ``huffman``: the Huffman tree of word2vec's hierarchical softmax, on ``heap`` (D1)

This package imports nothing of paperlab but ``paperlab.errors`` and ``paperlab.registry``.
"""

from paperlab.algorithms.combination_sum import (
    SearchResult,
    combination_search,
    combination_sum,
    combination_sum2,
)
from paperlab.algorithms.heap import (
    heapify,
    heappop,
    heappush,
    heappushpop,
    heapreplace,
    nlargest,
    nsmallest,
)
from paperlab.algorithms.huffman import expected_code_length, huffman_tree
from paperlab.algorithms.knapsack import knapsack_01, knapsack_01_1d, knapsack_01_table
from paperlab.algorithms.max_gap import max_gap
from paperlab.algorithms.sliding_window import sliding_window_max

__all__ = [
    "SearchResult",
    "combination_search",
    "combination_sum",
    "combination_sum2",
    "expected_code_length",
    "heapify",
    "heappop",
    "heappush",
    "heappushpop",
    "heapreplace",
    "huffman_tree",
    "knapsack_01",
    "knapsack_01_1d",
    "knapsack_01_table",
    "max_gap",
    "nlargest",
    "nsmallest",
    "sliding_window_max",
]
