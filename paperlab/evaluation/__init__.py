"""Evaluation protocols (notes H1-H2): per-frame mAP, CircularEval and the MMBench format.
"""

from paperlab.evaluation.circular import circular_eval, extract_choice

__all__ = ["circular_eval", "extract_choice"]
