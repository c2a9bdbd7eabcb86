"""Experiments for evaluation protocols (notes H1-H2): per-frame mAP, CircularEval and the MMBench
format.
"""
