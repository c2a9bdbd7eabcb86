"""Data: synthetic generators, readers for real formats, and data sets shipped in packages.

Nothing here downloads. ``digits`` wraps scikit-learn's bundled 8x8 digits.
"""
