"""Experiments for the vision models (notes D3-D4): ViT on digits, MAE's mask ratio."""
