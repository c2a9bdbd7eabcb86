"""The KL-regularised autoencoder of latent diffusion (note G1): images <-> latents.

Latent diffusion (Rombach et al. 2022) runs the diffusion in the latent space of an
autoencoder trained once: an image x (B, 3, H, W) is encoded to a diagonal Gaussian
q(z | x) = N(mu(x), diag sigma^2(x)) over latents z (B, c, H / f, W / f), f = 2^(levels - 1),
and decoded back. Training (``autoencoder_loss``) minimises the reconstruction error plus a
small KL term to N(0, I),

    L = |x - D(z)|^2 + w KL(q(z | x) || N(0, I)),   z = mu + sigma eps,
    KL = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2),

which keeps the latent space smooth without forcing it to be a prior (w ~ 1e-6 .. 1e-4).
The diffusion model sees ``scaling_factor * z`` so that its latents have unit variance
(``estimate_scaling_factor``: 1 / std of training latents; Stable Diffusion's is 0.18215).

Architecture (diffusers' ``AutoencoderKL``, which ``paperlab.hub.diffusers`` imports):
encoder: conv -> per level ``layers_per_block`` ResBlocks (GroupNorm, SiLU, eps 1e-6) and a
stride-2 conv (padded right/bottom by one, not at the last level) -> middle ResBlock,
single-head self-attention over pixels (GroupNorm first, residual), ResBlock -> GN, SiLU,
conv to 2 c channels -> 1x1 conv -> (mu, log sigma^2) (the log-variance clamped to
[-30, 20]); decoder: 1x1 conv -> conv -> the same middle -> per level, coarse first,
``layers_per_block + 1`` ResBlocks and nearest x2 upsampling + conv (not at the last) ->
GN, SiLU, conv.

Shapes: ``encode(x)`` x (B, C, H, W), H and W divisible by f -> ``DiagonalGaussian`` with
``mean``, ``logvar`` (B, c, H / f, W / f); ``decode(z)`` -> (B, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.attention import scaled_dot_product_attention
from paperlab.errors import ConfigError, ShapeError
from paperlab.generative.unet import ResBlock


@dataclass
class DiagonalGaussian:
    """q(z | x) = N(mean, diag exp(logvar)) per latent element."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * eps (eps from ``generator``)."""
        dev = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=dev)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample (B,): 1/2 sum(mean^2 + var - 1 - logvar)."""
        dims = list(range(1, self.mean.dim()))
        return 0.5 * torch.sum(self.mean**2 + self.logvar.exp() - 1.0 - self.logvar, dim=dims)


def autoencoder_loss(
    x: torch.Tensor, reconstruction: torch.Tensor, posterior: DiagonalGaussian, kl_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """mean squared reconstruction error + kl_weight * mean KL per element of the image;
    returns (loss, {"reconstruction": .., "kl": ..})."""
    if reconstruction.shape != x.shape:
        raise ShapeError(
            f"reconstruction must have x's shape {tuple(x.shape)}, "
            f"got {tuple(reconstruction.shape)}"
        )
    rec = F.mse_loss(reconstruction, x)
    kl = posterior.kl().mean() / x[0].numel()
    return rec + kl_weight * kl, {"reconstruction": float(rec.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def estimate_scaling_factor(latents: torch.Tensor) -> float:
    """1 / std of a batch of latents: the factor that gives the diffusion unit-variance inputs."""
    return float(1.0 / latents.float().std())


@dataclass
class AutoencoderConfig:
    """Channels per level (top first), ResBlocks per level, latent channels, GroupNorm groups."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    scaling_factor: float = 0.18215

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ConfigError(
                    f"block_out_channels {c} must be divisible by norm_num_groups "
                    f"({self.norm_num_groups})"
                )


class PixelAttention(nn.Module):
    """Single-head self-attention over the H W pixels: x + out(attn(GN(x))), (B, C, H, W)."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)[:, None]  # (B, 1, H W, C): one head
        out = scaled_dot_product_attention(self.to_q(h), self.to_k(h), self.to_v(h))
        return x + self.to_out(out[:, 0]).transpose(1, 2).reshape(B, C, H, W)


class Middle(nn.Module):
    """ResBlock, pixel self-attention, ResBlock."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.resnet_1 = ResBlock(dim, dim, None, groups, 1e-6)
        self.attention = PixelAttention(dim, groups)
        self.resnet_2 = ResBlock(dim, dim, None, groups, 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet_2(self.attention(self.resnet_1(x)))


class Stage(nn.Module):
    """One level: ResBlocks and an optional resampling conv."""

    def __init__(self, resnets: list[ResBlock], resample: nn.Conv2d | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.resample = resample


class AutoencoderKL(nn.Module):
    """Encoder to a diagonal-Gaussian latent and decoder back (module docstring)."""

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or AutoencoderConfig()
        chans, g, n = cfg.block_out_channels, cfg.norm_num_groups, len(cfg.block_out_channels)
        self.factor = 2 ** (n - 1)
        self.enc_conv_in = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.enc_stages = nn.ModuleList()
        cin = chans[0]
        for i, c in enumerate(chans):
            resnets = []
            for _ in range(cfg.layers_per_block):
                resnets.append(ResBlock(cin, c, None, g, 1e-6))
                cin = c
            down = nn.Conv2d(c, c, 3, stride=2) if i < n - 1 else None
            self.enc_stages.append(Stage(resnets, down))
        self.enc_mid = Middle(chans[-1], g)
        self.enc_norm_out = nn.GroupNorm(g, chans[-1], eps=1e-6)
        self.enc_conv_out = nn.Conv2d(chans[-1], 2 * cfg.latent_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)

        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.dec_conv_in = nn.Conv2d(cfg.latent_channels, chans[-1], 3, padding=1)
        self.dec_mid = Middle(chans[-1], g)
        self.dec_stages = nn.ModuleList()
        cin = chans[-1]
        for i, c in enumerate(reversed(chans)):
            resnets = []
            for _ in range(cfg.layers_per_block + 1):
                resnets.append(ResBlock(cin, c, None, g, 1e-6))
                cin = c
            up = nn.Conv2d(c, c, 3, padding=1) if i < n - 1 else None
            self.dec_stages.append(Stage(resnets, up))
        self.dec_norm_out = nn.GroupNorm(g, chans[0], eps=1e-6)
        self.dec_conv_out = nn.Conv2d(chans[0], cfg.out_channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z | x) for images x (B, C, H, W)."""
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != cfg.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"x must have shape (B, {cfg.in_channels}, H, W), got {got}")
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ShapeError(
                f"x's height and width must be divisible by {self.factor}, got {tuple(x.shape[2:])}"
            )
        h = self.enc_conv_in(x)
        for stage in self.enc_stages:
            for res in stage.resnets:
                h = res(h)
            if stage.resample is not None:
                h = stage.resample(F.pad(h, (0, 1, 0, 1)))
        h = self.enc_conv_out(F.silu(self.enc_norm_out(self.enc_mid(h))))
        mean, logvar = self.quant_conv(h).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from latents z (B, c, H / f, W / f) (unscaled)."""
        c = self.config.latent_channels
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != c:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ShapeError(f"z must have shape (B, {c}, h, w) (latent_channels = {c}), got {got}")
        h = self.dec_mid(self.dec_conv_in(self.post_quant_conv(z)))
        for stage in self.dec_stages:
            for res in stage.resnets:
                h = res(h)
            if stage.resample is not None:
                h = stage.resample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.dec_conv_out(F.silu(self.dec_norm_out(h)))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """(reconstruction, posterior): decode a sample (or the mean) of q(z | x)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z), posterior
