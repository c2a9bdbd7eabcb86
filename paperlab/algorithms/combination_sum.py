"""Combination sum I and II by ordered backtracking with pruning (note J4, LeetCode 39/40).

The problems
------------
*I (reuse allowed)*: given distinct positive ``candidates`` and a ``target``, list every
combination of candidates summing to ``target``, where a candidate may be used any number of
times. ``[2, 3, 6, 7]``, target 7 gives ``[[2, 2, 3], [7]]``.

*II (each used at most once)*: ``candidates`` may contain repeated values; each position may
be used at most once, and the answer must not contain the same combination twice.
``[10, 1, 2, 7, 6, 1, 5]``, target 8 gives ``[[1, 1, 6], [1, 2, 5], [1, 7], [2, 6]]``.

The idea
--------
Draw the search as a tree: a node is a partial combination and its remaining target; a child
appends one more candidate. Searched naively, the tree holds every ordering of a combination
(``[2, 2, 3]``, ``[2, 3, 2]``, ``[3, 2, 2]``), so the note's first point is to *search in
order*: each node records the index it may start from, and a child only uses candidates at or
after that index. Then every combination is produced exactly once, in non-decreasing order.

- I: the child of ``candidates[i]`` starts again at ``i`` (the same number may repeat).
- II: the child starts at ``i + 1`` (each position once), and among siblings a value equal to
  the previous sibling's is skipped (``i > start and c[i] == c[i - 1]``): the first copy's
  subtree already contains every combination the second copy could start.

*Pruning*: with the candidates sorted ascending, once ``c[i] > remaining`` no later sibling can
fit either, so the loop stops there instead of descending into children that overshoot. The
unpruned search has to enter each overshooting child to find out (a node with a negative
remainder). The experiment counts nodes of both searches.

Because the candidates are sorted and searched in order, combinations come out in
lexicographic order, each one sorted: the result is a sorted list of sorted lists, with no
duplicates. Target 0 has exactly one combination, the empty one.

Rules: candidates must be positive ints (with a zero or a negative number the set of
combinations could be infinite); target a non-negative int. Duplicate values in the input of
I are merged, as reusing a number already covers every copy of it.

The search keeps its own stack instead of recursing, so deep trees (a target far larger
than the smallest candidate) do not hit Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paperlab.errors import ArgumentError, check_int, check_int_list
from paperlab.registry import export_algorithm

__all__ = ["SearchResult", "combination_search", "combination_sum", "combination_sum2"]


@dataclass(frozen=True)
class SearchResult:
    """The combinations found and the number of search-tree nodes visited (root included)."""

    combinations: list[list[int]]
    nodes: int


def _check(candidates: Sequence[int], target: int) -> list[int]:
    values = check_int_list("candidates", candidates)
    for i, v in enumerate(values):
        if v <= 0:
            raise ArgumentError(f"candidates[{i}] must be a positive int, got {v}")
    check_int("target", target, minimum=0)
    return values


@export_algorithm("combination-search", note="J4 combination sum: instrumented backtracking")
def combination_search(
    candidates: Sequence[int], target: int, *, reuse: bool, prune: bool = True
) -> SearchResult:
    """Ordered backtracking search for combinations summing to ``target``, counting nodes.

    ``reuse=True`` is combination sum I, ``reuse=False`` combination sum II. ``prune=False``
    turns off the ``c[i] > remaining`` cut (children that overshoot are entered and rejected),
    to measure what pruning saves; the combinations found are the same either way.
    """
    values = _check(candidates, target)
    cands = sorted(set(values)) if reuse else sorted(values)
    m = len(cands)
    found: list[list[int]] = []
    path: list[int] = []
    # One frame per open node on the current path: [start index, next index to try, remaining].
    frames: list[list[int]] = []
    nodes = 0

    def enter(start: int, remaining: int) -> None:
        nonlocal nodes
        nodes += 1
        if remaining == 0:
            found.append(path.copy())
        elif remaining > 0:
            frames.append([start, start, remaining])

    enter(0, target)
    while frames:
        frame = frames[-1]
        start, i, remaining = frame
        if not reuse:  # among siblings, skip values equal to the previous sibling's
            while start < i < m and cands[i] == cands[i - 1]:
                i += 1
        if i >= m or (prune and cands[i] > remaining):
            frames.pop()  # this node is done: climb back to its parent
            if path:
                path.pop()
            continue
        frame[1] = i + 1
        path.append(cands[i])
        depth = len(frames)
        enter(i if reuse else i + 1, remaining - cands[i])
        if len(frames) == depth:  # the child was a leaf (hit or overshoot): undo its step
            path.pop()
    return SearchResult(found, nodes)


@export_algorithm("combination-sum", note="J4 combination sum I (reuse allowed)")
def combination_sum(candidates: Sequence[int], target: int) -> list[list[int]]:
    """Every combination of ``candidates`` (each usable any number of times) summing to ``target``.

    Returns a sorted list of sorted combinations, without duplicates.
    """
    return combination_search(candidates, target, reuse=True).combinations


@export_algorithm("combination-sum2", note="J4 combination sum II (each candidate once)")
def combination_sum2(candidates: Sequence[int], target: int) -> list[list[int]]:
    """Every combination of ``candidates`` (each position used at most once) summing to ``target``.

    Repeated values in ``candidates`` never produce the same combination twice. Returns a sorted
    list of sorted combinations.
    """
    return combination_search(candidates, target, reuse=False).combinations
