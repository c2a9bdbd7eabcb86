"""Experiments: one module per note, each reproducing the note's central claim.

An experiment is a function ``fn(ctx: Context) -> Result`` registered with
``@export_experiment(name, note=..., title=..., tags=(...))``. ``base`` holds the protocol
(``Context``, ``Result``, ``Claim``); ``runner`` runs experiments and writes
``runs/<name>/<stamp>/result.json`` plus the PNG figures.
"""

from paperlab.experiments.base import Claim, Context, Result

__all__ = ["Claim", "Context", "Result"]
