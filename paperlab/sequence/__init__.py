"""Sequence models (note C): recurrent networks, the Transformer, and state space models."""
