"""Synthetic data generators: small worlds whose ground truth is known exactly.

``shapes``: images of coloured shapes with captions from a grammar (CLIP/SigLIP/BLIP, and
boxes for detection), with held-out attribute combinations for zero-shot tests;
``noisy_captions``: seeded caption corruption (swapped or one attribute changed) for the
CapFilt experiment; ``corpus``: a sentence grammar for masked language modelling.
"""
