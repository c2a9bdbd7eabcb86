"""Experiments for the language models (notes D1-D2): BERT's masked language modelling."""
