"""Experiments for the sequence models (notes C1-C3).

RNN gradients, Transformer vs RNN, HiPPO, S4D, Mamba.
"""
