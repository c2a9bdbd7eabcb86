"""0/1 knapsack by dynamic programming: the 2-D table and the 1-D reverse-iteration form (note J5).

The problem
-----------
N items; item ``i`` has volume ``v[i]`` and value ``w[i]``. Choose a subset whose total
volume is at most the capacity ``V`` and whose total value is as large as possible; each item
is taken at most once (0/1).

2-D dynamic programming
-----------------------
``f[i][j]`` = the best value using only the first ``i`` items with total volume at most
``j``. Item ``i`` is either left out or put in:

    f[i][j] = max(f[i-1][j],  f[i-1][j - v[i]] + w[i])      (the second only if j >= v[i])

with ``f[0][j] = 0`` for every ``j`` (nothing chosen, any spare room), so the answer is
``f[N][V]``. (The note starts from ``f[0][0] = 0`` and reads ``max(f[N][0..V])`` at the end;
starting every ``f[0][j]`` at 0 makes ``f[N][V]`` that maximum directly.) The table has
``(N + 1)(V + 1)`` cells: O(N V) time and O(N V) memory. Walking back from ``f[N][V]``
recovers the chosen items: item ``i`` was taken exactly when ``f[i][j] != f[i-1][j]``.

1-D dynamic programming
-----------------------
Row ``i`` only reads row ``i - 1``, so one array ``f[0..V]`` can hold both: before item ``i``
is processed it is row ``i - 1``, afterwards row ``i``. Updating ``f[j]`` reads ``f[j - v]``,
which must still be the *old* row's value, so ``j`` runs from ``V`` *down* to ``v[i]``: the
cells it reads (to its left) have not been overwritten yet. (Running ``j`` upwards would let
an item be used again: the unbounded knapsack.) Same O(N V) time, O(V) memory.

Reconstructing the items
------------------------
The value alone needs only the O(V) array. The chosen items need to know, for every item and
every ``j``, whether taking the item won; the 1-D form keeps that as one byte per cell
(``keep``, a ``bytearray`` of ``N (V + 1)`` bytes). That is still O(N V) memory, but one byte
per cell instead of the 2-D table's 8-byte list slot per cell (plus the int objects it points
to): about an 8x or larger saving, not an asymptotic one. (An O(V)-memory reconstruction exists
-- Hirschberg-style divide and conquer that recomputes halves -- at roughly twice the time; it is
not implemented here.) With ``return_items=False`` no keep table is allocated.

Both forms take an item only when doing so is strictly better, so they return the same value
and the same items.

Shapes: ``volumes``, ``values`` sequences of N non-negative ints; ``capacity`` a non-negative
int. Result: the best value, or ``(value, sorted list of chosen item indices)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

from paperlab.errors import ArgumentError, ShapeError, check_int, check_int_list
from paperlab.registry import export_algorithm

__all__ = ["knapsack_01", "knapsack_01_1d", "knapsack_01_table"]

Method = Literal["1d", "2d"]


def _check(
    volumes: Sequence[int], values: Sequence[int], capacity: int
) -> tuple[list[int], list[int], int]:
    vols = check_int_list("volumes", volumes)
    vals = check_int_list("values", values)
    if len(vols) != len(vals):
        raise ShapeError(
            f"volumes and values must have the same length, got {len(vols)} and {len(vals)}"
        )
    for name, seq in (("volumes", vols), ("values", vals)):
        for i, x in enumerate(seq):
            if x < 0:
                raise ArgumentError(f"{name}[{i}] must be >= 0, got {x}")
    check_int("capacity", capacity, minimum=0)
    return vols, vals, capacity


@export_algorithm("knapsack-01-table", note="J5 0/1 knapsack, 2-D DP table")
def knapsack_01_table(
    volumes: Sequence[int], values: Sequence[int], capacity: int, *, return_items: bool = False
) -> int | tuple[int, list[int]]:
    """0/1 knapsack with the full ``(N + 1) x (V + 1)`` table ``f[i][j]``: O(N V) memory."""
    vols, vals, cap = _check(volumes, values, capacity)
    f = [[0] * (cap + 1)]
    for v, w in zip(vols, vals, strict=True):
        prev = f[-1]
        row = prev.copy()  # leaving the item out: f[i][j] = f[i-1][j]
        for j in range(v, cap + 1):
            taken = prev[j - v] + w
            if taken > row[j]:
                row[j] = taken
        f.append(row)
    best = f[-1][cap]
    if not return_items:
        return best
    items: list[int] = []
    j = cap
    for i in range(len(vols), 0, -1):
        if f[i][j] != f[i - 1][j]:  # item i - 1 (0-based) was taken
            items.append(i - 1)
            j -= vols[i - 1]
    return best, items[::-1]


@export_algorithm("knapsack-01-1d", note="J5 0/1 knapsack, 1-D DP with reverse iteration")
def knapsack_01_1d(
    volumes: Sequence[int], values: Sequence[int], capacity: int, *, return_items: bool = False
) -> int | tuple[int, list[int]]:
    """0/1 knapsack with one array ``f[0..V]`` updated right to left: O(V) memory for the value.

    ``return_items=True`` also keeps one byte per (item, volume) cell to walk the choices back.
    """
    vols, vals, cap = _check(volumes, values, capacity)
    width = cap + 1
    f = [0] * width
    keep = bytearray(len(vols) * width) if return_items else None
    for i, (v, w) in enumerate(zip(vols, vals, strict=True)):
        base = i * width
        for j in range(cap, v - 1, -1):  # right to left: f[j - v] still holds row i - 1
            taken = f[j - v] + w
            if taken > f[j]:
                f[j] = taken
                if keep is not None:
                    keep[base + j] = 1
    best = f[cap]
    if keep is None:
        return best
    items: list[int] = []
    j = cap
    for i in range(len(vols) - 1, -1, -1):
        if keep[i * width + j]:
            items.append(i)
            j -= vols[i]
    return best, items[::-1]


@overload
def knapsack_01(
    volumes: Sequence[int],
    values: Sequence[int],
    capacity: int,
    *,
    return_items: Literal[False] = ...,
    method: Method = ...,
) -> int: ...
@overload
def knapsack_01(
    volumes: Sequence[int],
    values: Sequence[int],
    capacity: int,
    *,
    return_items: Literal[True],
    method: Method = ...,
) -> tuple[int, list[int]]: ...
@export_algorithm("knapsack-01", note="J5 0/1 knapsack (2-D table or 1-D reverse iteration)")
def knapsack_01(
    volumes: Sequence[int],
    values: Sequence[int],
    capacity: int,
    *,
    return_items: bool = False,
    method: Method = "1d",
) -> int | tuple[int, list[int]]:
    """Best total value of items fitting in ``capacity`` (each item at most once).

    ``method="1d"`` (default) uses the O(V)-memory array, ``"2d"`` the full table; both give
    the same value and, with ``return_items=True``, the same ``(value, item indices)``.
    """
    if method == "1d":
        return knapsack_01_1d(volumes, values, capacity, return_items=return_items)
    if method == "2d":
        return knapsack_01_table(volumes, values, capacity, return_items=return_items)
    raise ArgumentError(f"method must be '1d' or '2d', got {method!r}")
