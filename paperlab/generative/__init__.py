"""Generative models (notes G1-G2): autoregressive binary models (FVSBN, NADE, MADE) and latent
diffusion.
"""

from paperlab.generative.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    DiagonalGaussian,
    autoencoder_loss,
)
from paperlab.generative.autoregressive import FVSBN, MADE, NADE
from paperlab.generative.latent_diffusion import ClassEmbedding, LatentDiffusion, PromptEncoder
from paperlab.generative.samplers import (
    DDIMSampler,
    DDPMSampler,
    StepOutput,
    ddpm_loss,
    drop_condition,
    guided_output,
)
from paperlab.generative.schedules import NoiseSchedule
from paperlab.generative.unet import UNet, UNetConfig

__all__ = [
    "AutoencoderConfig",
    "AutoencoderKL",
    "DiagonalGaussian",
    "autoencoder_loss",
    "ClassEmbedding",
    "LatentDiffusion",
    "PromptEncoder",
    "DDIMSampler",
    "DDPMSampler",
    "FVSBN",
    "MADE",
    "NADE",
    "NoiseSchedule",
    "StepOutput",
    "UNet",
    "UNetConfig",
    "ddpm_loss",
    "drop_condition",
    "guided_output",
]
