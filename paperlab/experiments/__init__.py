"""Experiments: one module per note, each reproducing the note's central claim.

An experiment is a function ``fn(ctx: Context) -> Result`` registered with
``@export_experiment(name, note=..., title=..., tags=(...))``. ``base`` holds the protocol
(``Context``, ``Result``, ``Claim``); ``runner`` runs experiments and writes
``runs/<name>/<stamp>/result.json`` plus the PNG figures. The experiments are grouped like
the library, one subpackage per family (``attention/``, ``sequence/``, ``multimodal/``, ...),
one module per note (``attention/performer.py``).
"""

from paperlab.experiments.base import Claim, Context, Result

__all__ = ["Claim", "Context", "Result"]
