"""``digits-mlp``: an MLP classifier on scikit-learn's 8x8 digits, the training stack's smoke test.

Small enough to train in seconds on a CPU, real enough to show a learning curve (test accuracy
about 0.95-0.97 after a few hundred steps), and deep enough (``depth`` residual-free blocks) for
activation checkpointing to have something to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paperlab.data.digits import digits_split
from paperlab.registry import export_recipe
from paperlab.training.checkpointing import checkpoint_sequential, sqrt_segments
from paperlab.training.trainer import Task, TrainConfig


@dataclass
class DigitsConfig(TrainConfig):
    """``digits-mlp`` settings: the shared training fields plus the model's size."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    hidden: int = 128
    depth: int = 2
    dropout: float = 0.1


class DigitsMLP(nn.Module):
    """Flatten (1, 8, 8) -> ``depth`` x [Linear, GELU, Dropout] -> Linear to 10 classes."""

    def __init__(
        self,
        hidden: int = 128,
        depth: int = 2,
        dropout: float = 0.1,
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        dims = [64] + [hidden] * depth
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout))
                for a, b in zip(dims[:-1], dims[1:])
            ]
        )
        self.head = nn.Linear(dims[-1], 10)
        self.activation_checkpointing = activation_checkpointing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, 8, 8) -> logits (B, 10)."""
        x = images.flatten(1)
        if self.activation_checkpointing and self.training and len(self.blocks) > 1:
            x = checkpoint_sequential(self.blocks, sqrt_segments(len(self.blocks)), x)
        else:
            x = self.blocks(x)
        return self.head(x)


@export_recipe("digits-mlp", config=DigitsConfig)
def digits_mlp(cfg: DigitsConfig) -> Task:
    """MLP classifier on scikit-learn's digits; evaluation: test accuracy."""
    train_set, test_set = digits_split(seed=0)
    model = DigitsMLP(cfg.hidden, cfg.depth, cfg.dropout, cfg.activation_checkpointing)
    test_x, test_y = test_set.tensors

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        images, labels = batch
        logits = model(images)
        ce = nn.functional.cross_entropy(logits.float(), labels)
        return ce, {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        logits = model(test_x.to(device))
        return {"accuracy": (logits.argmax(-1).cpu() == test_y).float().mean().item()}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)
