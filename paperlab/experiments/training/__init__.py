"""Experiments for the training techniques (notes I1-I3): AdamW, gradient checkpointing, DDP."""
