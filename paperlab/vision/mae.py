"""Masked autoencoders, MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners"; note D4).

The idea: hide most of an image and learn by filling it in. Cut the image into N patches,
keep a random subset of N_keep = int(N (1 - r)) (r = 0.75 in the paper), run the ViT encoder
on the **visible patches only** (so the encoder costs ~(1 - r) of a full pass), then a light
decoder sees the encoded visible tokens plus a shared learned mask token at every hidden
position and predicts each patch's p*p*C pixels. The loss is the MSE on the **masked
patches only**, optionally against per-patch normalised pixels::

    noise ~ U(0, 1)^N per sample;  ids_shuffle = argsort(noise);  keep ids_shuffle[:N_keep]
    mask_n = 1 if patch n is removed;  ids_restore = argsort(ids_shuffle)   (unshuffle)
    t_n = (x_n - mean(x_n)) / sqrt(var(x_n) + 1e-6)     (norm_pix_loss; var unbiased)
    L = sum_n mask_n * mean_k (pred_nk - t_nk)^2 / sum_n mask_n

Positions: fixed 2-D sine-cosine tables in encoder and decoder (``sincos_2d_positions``, the
released MAE/HF layout), a zero row for the class token. Masking is by sorted noise, so a given
``noise`` (B, N) fixes the mask exactly (HF ``ViTMAEForPreTraining`` takes the same argument).

Shapes: images (B, C, H, W); patches (B, N, p*p*C); mask and ids_restore (B, N); the latent
(B, 1 + N_keep, d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.registry import export_model
from paperlab.sequence.transformer_layers import EncoderLayer
from paperlab.vision.vit import (
    VisionTransformer,
    ViTConfig,
    build_config,
    patchify,
    sincos_2d_positions,
    unpatchify,
)

# --- the functions ---------------------------------------------------------------------------


def random_masking(
    x: torch.Tensor,
    mask_ratio: float,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random N_keep = int(N (1 - mask_ratio)) of each sample's N tokens.

    x (B, N, d); ``noise`` (B, N) decides (lowest noise kept), else U(0, 1) from
    ``generator``. Returns kept (B, N_keep, d) in shuffled order, mask (B, N) in x's dtype
    (1 = removed) and ids_restore (B, N) (``kept`` + mask tokens gathered by it is back in
    patch order).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ShapeError(f"x must be (B, N, d), got {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(mask_ratio, (int, float)) or not 0.0 <= mask_ratio < 1.0:
        raise ArgumentError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}")
    b, n, d = x.shape
    keep = int(n * (1 - mask_ratio))
    if keep < 1:
        raise ArgumentError(f"mask_ratio={mask_ratio} keeps no patch of N={n}")
    if noise is None:
        noise = torch.rand(b, n, generator=generator, device=x.device)
    elif not isinstance(noise, torch.Tensor) or tuple(noise.shape) != (b, n):
        raise ShapeError(f"noise must be (B, N) = ({b}, {n}), got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise.to(x.device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, n, dtype=x.dtype, device=x.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, ids_restore), ids_restore


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch (x - mean) / sqrt(var + eps) over the last axis (var unbiased, as HF/MAE)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def mae_loss(
    pred: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor,
    norm_pix_loss: bool = False,
) -> torch.Tensor:
    """MSE per patch, averaged over the masked patches only: a scalar.

    pred, target_patches (B, N, P); mask (B, N), 1 = masked (counted). A mask with no
    masked patch gives 0 (HF's formula would divide 0 by 0).
    """
    if pred.shape != target_patches.shape or pred.dim() != 3:
        raise ShapeError(
            f"pred and target_patches must be one (B, N, P) shape, got {tuple(pred.shape)} "
            f"and {tuple(target_patches.shape)}"
        )
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ShapeError(f"mask must be (B, N) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    target = normalize_patches(target_patches) if norm_pix_loss else target_patches
    per_patch = (pred - target).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def paste_reconstruction(
    images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int,
    norm_pix_loss: bool = False,
) -> torch.Tensor:
    """The image with its masked patches replaced by the prediction: (B, C, H, W).

    With ``norm_pix_loss`` the prediction is in normalised units; it is mapped back with each
    true patch's own mean and std (as the MAE demo does).
    """
    target = patchify(images, patch_size)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1).to(pred.dtype)
    mixed = target * (1 - m) + pred * m
    return unpatchify(mixed, patch_size, tuple(images.shape[-2:]), images.shape[1])


# --- the model -------------------------------------------------------------------------------


@dataclass
class MAEConfig(Config):
    """A masked autoencoder: a ViT encoder (class token, fixed or learned positions) and a
    light decoder (``decoder_*``). Defaults: a small model for 8x8 digits with 2x2 patches."""

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 128
    activation: str = "gelu"
    norm_eps: float = 1e-6
    position: str = "sincos-2d"
    decoder_dim: int = 32
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    decoder_mlp_dim: int = 64
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    dropout: float = 0.0
    attention_dropout: float = 0.0

    def encoder_config(self) -> ViTConfig:
        """The encoder as a ``ViTConfig`` (class token, final norm, no pooling, no head)."""
        return ViTConfig(
            image_size=self.image_size, patch_size=self.patch_size,
            in_channels=self.in_channels, dim=self.dim, depth=self.depth,
            num_heads=self.num_heads, mlp_dim=self.mlp_dim, activation=self.activation,
            norm_eps=self.norm_eps, class_token=True, position=self.position, pool="none",
            dropout=self.dropout, attention_dropout=self.attention_dropout,
        )

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad field."""
        self.encoder_config().check()
        if self.position not in ("sincos-2d", "learned"):
            raise ConfigError(
                f"MAE position must be 'sincos-2d' or 'learned' (positions are added before "
                f"masking), got {self.position!r}"
            )
        for name in ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if self.decoder_dim % self.decoder_num_heads or self.decoder_dim % 4:
            raise ConfigError(
                f"decoder_dim={self.decoder_dim} must be divisible by decoder_num_heads="
                f"{self.decoder_num_heads} and by 4 (sin-cos positions)"
            )
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {self.mask_ratio!r}")


class MAEOutput(NamedTuple):
    """loss (scalar); pred (B, N, p*p*C); mask (B, N) 1 = removed; ids_restore (B, N);
    latent (B, 1 + N_keep, d): the encoder's output on the visible patches."""

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor
    latent: torch.Tensor


@export_model("mae", note="D4", paper="He et al. 2022")
class MaskedAutoencoder(nn.Module):
    """ViT encoder on the visible patches, light decoder over all positions, masked MSE.

    ``MaskedAutoencoder(config)`` or ``MaskedAutoencoder(**fields)``. Submodules:
    ``encoder`` (``VisionTransformer``), ``decoder_embed``, ``mask_token`` (1, 1, d_dec),
    ``decoder_pos_embed`` (buffer, 1, 1 + N, d_dec), ``decoder_layers``, ``decoder_norm``,
    ``decoder_pred`` (d_dec -> p*p*C).
    ``forward(images, *, noise=None, generator=None, mask_ratio=None) -> MAEOutput``.
    """

    def __init__(self, config: MAEConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, MAEConfig, fields)
        self.encoder = VisionTransformer(c.encoder_config())
        grid = self.encoder.config.grid
        self.decoder_embed = nn.Linear(c.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        table = sincos_2d_positions(grid, c.decoder_dim, class_token=True)
        self.register_buffer("decoder_pos_embed", table.unsqueeze(0))
        self.decoder_layers = nn.ModuleList(
            EncoderLayer(
                c.decoder_dim, c.decoder_num_heads, c.decoder_mlp_dim, dropout=c.dropout,
                attention_dropout=c.attention_dropout, activation=c.activation,
                norm_eps=c.norm_eps, norm_first=True,
            )
            for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_dim, eps=c.norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_dim, c.patch_size**2 * c.in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE's init: Xavier-uniform Linear weights (the patch conv as a Linear), zero
        biases, class and mask tokens ~ N(0, 0.02^2)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def encode_visible(
        self,
        images: torch.Tensor,
        mask_ratio: float,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder on the visible patches: (latent (B, 1 + N_keep, d), mask, ids_restore)."""
        x = self.encoder.embed_patches(images)
        kept, mask, ids_restore = random_masking(x, mask_ratio, noise=noise, generator=generator)
        return self.encoder.encode(self.encoder.add_prefix(kept)), mask, ids_restore

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N_keep, d) and ids_restore (B, N) -> pixel predictions (B, N, p*p*C)."""
        h = self.decoder_embed(latent)
        b, t, dd = h.shape
        n = ids_restore.shape[1]
        if tuple(ids_restore.shape) != (b, n) or t - 1 > n:
            raise ShapeError(
                f"ids_restore must be (B={b}, N >= {t - 1}), got {tuple(ids_restore.shape)}"
            )
        filler = self.mask_token.to(h.dtype).expand(b, n + 1 - t, dd)
        seq = torch.cat((h[:, 1:], filler), dim=1)
        seq = torch.gather(seq, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dd))
        h = torch.cat((h[:, :1], seq), dim=1) + self.decoder_pos_embed.to(h.dtype)
        for layer in self.decoder_layers:
            h = layer(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:]

    def forward(
        self,
        images: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        mask_ratio: float | None = None,
    ) -> MAEOutput:
        """Mask, encode, decode, and the loss on the masked patches."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.encode_visible(
            images, ratio, noise=noise, generator=generator
        )
        pred = self.decode(latent, ids_restore)
        target = patchify(images, self.config.patch_size)
        loss = mae_loss(pred, target, mask, self.config.norm_pix_loss)
        return MAEOutput(loss, pred, mask, ids_restore, latent)

    def features(self, images: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Encoder features of the whole (unmasked) image, (B, d): the mean of the patch
        tokens (``"mean"``) or the class token (``"cls"``) -- for linear probing."""
        if pool not in ("mean", "cls"):
            raise ArgumentError(f"pool must be 'mean' or 'cls', got {pool!r}")
        if not isinstance(images, torch.Tensor):
            raise ArgumentTypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        hidden = self.encoder.encode(self.encoder.embed(images))
        return hidden[:, 0] if pool == "cls" else hidden[:, 1:].mean(dim=1)


__all__ = [
    "MAEConfig",
    "MAEOutput",
    "MaskedAutoencoder",
    "mae_loss",
    "normalize_patches",
    "paste_reconstruction",
    "random_masking",
]
