"""Benchmarks: ours against the fastest reference, same process, interleaved, median of repeats.

A benchmark is a function ``fn(ctx: BenchContext) -> list[BenchRow]`` registered with
``@export_benchmark(name, group=...)``; ``paperlab bench NAME`` runs every benchmark whose name
or group is NAME. Grouped like the library: one subpackage per family (``algorithms/``,
``attention/``, ``sequence/``, ...), one module per technique (``sequence/mamba.py``).
"""

from paperlab.benchmarks.base import BenchContext, BenchRow, compare

__all__ = ["BenchContext", "BenchRow", "compare"]
