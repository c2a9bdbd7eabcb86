"""Experiments for the classic algorithms (notes J2-J6): growth rates by counted comparisons."""
