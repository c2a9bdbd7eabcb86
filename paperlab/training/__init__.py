"""Training blocks (notes I1-I3): optimizers, schedules, activation checkpointing, DDP, trainer.

``adamw`` holds our Adam/AdamW and ``param_groups_weight_decay``; ``schedules`` the warmup +
cosine/linear learning-rate multipliers; ``checkpointing`` activation checkpointing with the
sqrt(n) segment rule. This package knows no model: it works on any ``nn.Module``.
"""

from paperlab.training.adamw import Adam, AdamW, param_groups_weight_decay
from paperlab.training.checkpointing import (
    CheckpointedSequential,
    SavedTensorMeter,
    checkpoint,
    checkpoint_sequential,
    sqrt_segments,
)
from paperlab.training.schedules import WarmupCosine, WarmupLinear, warmup_cosine, warmup_linear

__all__ = [
    "Adam",
    "AdamW",
    "CheckpointedSequential",
    "SavedTensorMeter",
    "WarmupCosine",
    "WarmupLinear",
    "checkpoint",
    "checkpoint_sequential",
    "param_groups_weight_decay",
    "sqrt_segments",
    "warmup_cosine",
    "warmup_linear",
]
