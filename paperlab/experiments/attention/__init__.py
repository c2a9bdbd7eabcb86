"""Experiments for the attention variants (notes B1-B5).

Linear, local and low-rank attention, Performer, TransNormer, FLASH.
"""
