"""``vit`` and ``mae``: a Vision Transformer and a masked autoencoder on scikit-learn's digits.

``paperlab train vit`` trains ``VisionTransformer`` (2 x 2 patches of the 8 x 8 digits, class
token, learned positions) with cross-entropy; evaluation: test accuracy.
``paperlab train mae`` pre-trains ``MaskedAutoencoder`` (mask ratio 0.75 by default) on the
training images without labels; evaluation: the masked-patch reconstruction MSE on the test
images (a fixed mask) and a linear probe (``linear_probe``: multinomial logistic regression
on the frozen encoder's mean-pooled features) -- test accuracy.
The masks are drawn from torch's global RNG, which the trainer re-seeds every step, so a
resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paperlab.data.digits import digits_split
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig
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


@dataclass
class ViTRecipeConfig(TrainConfig):
    """``vit`` settings: the shared training fields plus the model's size."""

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
    """ViT classifier on scikit-learn's digits; evaluation: test accuracy."""
    train_set, test_set = digits_split(seed=0)
    model = VisionTransformer(ViTConfig(
        image_size=8, patch_size=cfg.patch_size, in_channels=1, dim=cfg.dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, num_classes=10, dropout=cfg.dropout,
    ))
    test_x, test_y = test_set.tensors

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        images, labels = batch
        logits = model(images).logits
        ce = nn.functional.cross_entropy(logits.float(), labels)
        return ce, {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        logits = model(test_x.to(device)).logits
        return {"accuracy": (logits.argmax(-1).cpu() == test_y).float().mean().item()}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)


@dataclass
class MAERecipeConfig(TrainConfig):
    """``mae`` settings: the shared training fields plus the model and masking."""

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
    """The recipe's ``MaskedAutoencoder`` for 8 x 8 single-channel digits."""
    return MaskedAutoencoder(MAEConfig(
        image_size=8, patch_size=cfg.patch_size, in_channels=1, dim=cfg.dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, decoder_dim=cfg.decoder_dim,
        decoder_depth=cfg.decoder_depth, decoder_num_heads=cfg.decoder_num_heads,
        decoder_mlp_dim=cfg.decoder_mlp_dim, mask_ratio=cfg.mask_ratio,
        norm_pix_loss=cfg.norm_pix_loss,
    ))


@export_recipe("mae", config=MAERecipeConfig)
def mae_recipe(cfg: MAERecipeConfig) -> Task:
    """MAE pre-training on the digits' training images; evaluation: test reconstruction MSE
    on masked patches (fixed mask) and linear-probe test accuracy."""
    train_set, test_set = digits_split(seed=0)
    model = mae_model(cfg)
    train_x, train_y = train_set.tensors
    test_x, test_y = test_set.tensors

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        out = model(batch[0])  # labels unused: self-supervised
        return out.loss, {"masked_mse": out.loss.item()}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(12345)
        noise = torch.rand(len(test_x), model.encoder.config.num_patches, generator=g)
        rec = model(test_x.to(device), noise=noise.to(device)).loss.item()
        probe = linear_probe(model.features(train_x.to(device)).cpu(), train_y,
                             model.features(test_x.to(device)).cpu(), test_y)
        return {"reconstruction_mse": rec, "probe_accuracy": probe}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)


__all__ = [
    "MAERecipeConfig",
    "ViTRecipeConfig",
    "linear_probe",
    "mae_model",
    "mae_recipe",
    "vit_recipe",
]
