"""``vit`` and ``mae``: a Vision Transformer and a masked autoencoder on scikit-learn's digits.

``paperlab train vit`` trains ``VisionTransformer`` (2 x 2 patches of the 8 x 8 digits, class
token, learned positions) with cross-entropy; evaluation: test accuracy.
``paperlab train mae`` pre-trains ``MaskedAutoencoder`` (mask ratio 0.75 by default) on the
training images without labels; evaluation: the masked-patch reconstruction MSE on the test
images (a fixed mask) and a linear probe (``linear_probe``: multinomial logistic regression
on the frozen encoder's mean-pooled features) -- test accuracy.
The masks are drawn from torch's global RNG, which the trainer re-seeds every step, so a
resumed run repeats an uninterrupted one.

Your own images: ``--set data=ROOT`` trains either recipe on an ImageFolder
(``ROOT/<class>/<image>``; ``recipes/data_sources.py``), images resized to ``image_size``
(``patch_size`` must divide it) and, with ``in_channels=1``, converted to grayscale. A seeded
``eval_fraction`` of each class is held out and takes the digits' test set's place: ViT's
``accuracy`` over the folder's classes, MAE's ``reconstruction_mse`` and ``probe_accuracy``
(the probe is fitted on the training part's features, labelled by folder). Both also report
``skipped_rows`` (unreadable images dropped with ``--set skip_bad=true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from paperlab.data.digits import digits_split
from paperlab.recipes.data_sources import FolderDataConfig, load_folder
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task
from paperlab.vision.mae import MAEConfig, MaskedAutoencoder
from paperlab.vision.vit import VisionTransformer, ViTConfig


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    l2: float = 1e-3,
    iterations: int = 100,
) -> float:
    """Test accuracy of a logistic-regression probe on frozen features (B, d).

    Features are standardised with the training statistics; the probe (a Linear to the
    classes, L2 penalty ``l2`` on the weight) is fitted by L-BFGS from zeros: deterministic.
    """
    a, b = train_features.detach().double(), test_features.detach().double()
    mean, std = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mean) / std, (b - mean) / std
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    probe = nn.Linear(a.shape[1], classes).double()
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=iterations,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = nn.functional.cross_entropy(probe(a), train_labels)
            loss = loss + l2 * probe.weight.pow(2).sum()
            loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((probe(b).argmax(-1) == test_labels).float().mean())


def vision_data(recipe: str, cfg: FolderDataConfig) -> tuple[Any, Any, int, dict[str, float]]:
    """(train set, (held-out images, labels), number of classes, extra evaluation numbers):
    the digits' fixed split, or ``cfg.data``'s ImageFolder split per class."""
    if not cfg.data:
        train_set, test_set = digits_split(seed=0)
        return train_set, test_set.tensors, 10, {}
    source = load_folder(recipe, cfg)
    return (source.train_set, source.tensors("held"), source.num_classes,
            {"skipped_rows": float(len(source.dataset.skipped))})


def _stack(train_set: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a training set: a ``TensorDataset``'s tensors, else read item by
    item (an ImageFolder subset, for the linear probe)."""
    if isinstance(train_set, TensorDataset):
        return train_set.tensors
    items = [train_set[i] for i in range(len(train_set))]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@dataclass
class ViTRecipeConfig(FolderDataConfig):
    """``vit`` settings: the shared training fields, the data (``FolderDataConfig``: ``data``,
    ``image_size``, ``in_channels``, ``eval_fraction``, ``skip_bad``) and the model's size."""

    steps: int = 400
    batch_size: int = 96
    lr: float = 2e-3
    weight_decay: float = 0.05
    patch_size: int = 2
    dim: int = 48
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 96
    dropout: float = 0.0


@export_recipe("vit", config=ViTRecipeConfig)
def vit_recipe(cfg: ViTRecipeConfig) -> Task:
    """ViT classifier on scikit-learn's digits (or ``data=ROOT``); evaluation: test accuracy."""
    train_set, (test_x, test_y), classes, extra = vision_data("vit", cfg)
    model = VisionTransformer(ViTConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
        dim=cfg.dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim,
        num_classes=classes, dropout=cfg.dropout,
    ))

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        images, labels = batch
        logits = model(images).logits
        ce = nn.functional.cross_entropy(logits.float(), labels)
        return ce, {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        logits = model(test_x.to(device)).logits
        return {"accuracy": (logits.argmax(-1).cpu() == test_y).float().mean().item(), **extra}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)


@dataclass
class MAERecipeConfig(FolderDataConfig):
    """``mae`` settings: the shared training fields, the data (``FolderDataConfig``) and the
    model and masking."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    patch_size: int = 2
    dim: int = 32
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 64
    decoder_dim: int = 32
    decoder_depth: int = 1
    decoder_num_heads: int = 4
    decoder_mlp_dim: int = 64


def mae_model(cfg: MAERecipeConfig) -> MaskedAutoencoder:
    """The recipe's ``MaskedAutoencoder`` (8 x 8 single-channel digits by default)."""
    return MaskedAutoencoder(MAEConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
        dim=cfg.dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, decoder_dim=cfg.decoder_dim,
        decoder_depth=cfg.decoder_depth, decoder_num_heads=cfg.decoder_num_heads,
        decoder_mlp_dim=cfg.decoder_mlp_dim, mask_ratio=cfg.mask_ratio,
        norm_pix_loss=cfg.norm_pix_loss,
    ))


@export_recipe("mae", config=MAERecipeConfig)
def mae_recipe(cfg: MAERecipeConfig) -> Task:
    """MAE pre-training on the digits' (or ``data=ROOT``'s) training images; evaluation: test
    reconstruction MSE on masked patches (fixed mask) and linear-probe test accuracy."""
    train_set, (test_x, test_y), _, extra = vision_data("mae", cfg)
    model = mae_model(cfg)
    probe_data: list[tuple[torch.Tensor, torch.Tensor]] = []  # the training images, read once

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        out = model(batch[0])  # labels unused: self-supervised
        return out.loss, {"masked_mse": out.loss.item()}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(12345)
        noise = torch.rand(len(test_x), model.encoder.config.num_patches, generator=g)
        rec = model(test_x.to(device), noise=noise.to(device)).loss.item()
        if not probe_data:
            probe_data.append(_stack(train_set))
        train_x, train_y = probe_data[0]
        probe = linear_probe(model.features(train_x.to(device)).cpu(), train_y,
                             model.features(test_x.to(device)).cpu(), test_y)
        return {"reconstruction_mse": rec, "probe_accuracy": probe, **extra}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)


__all__ = [
    "MAERecipeConfig",
    "ViTRecipeConfig",
    "linear_probe",
    "vision_data",
    "mae_model",
    "mae_recipe",
    "vit_recipe",
]
