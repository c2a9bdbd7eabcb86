"""Data: synthetic generators, readers for real formats, and data sets shipped in packages.

Nothing here downloads. ``digits`` wraps scikit-learn's bundled 8x8 digits; ``synthetic/``
holds generators whose ground truth is known (coloured shapes with captions and boxes, noisy
captions, a sentence grammar); ``formats/`` reads the user's own files (image-text CSV/TSV/
JSONL, ImageFolder, plain text) with errors that name the file and line.
"""
