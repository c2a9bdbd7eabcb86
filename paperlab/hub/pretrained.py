"""``load_pretrained(kind, folder)``: our model of that kind from a local HF-format folder."""

from __future__ import annotations

import importlib
from pathlib import Path

from torch import nn

from paperlab.errors import UnknownNameError
from paperlab.hub.base import IMPORTERS, read_hf_folder

# kind -> module of paperlab.hub that registers its importer
KIND_MODULES = {
    "bert": "bert",
    "vit": "vit",
    "vit-mae": "vit_mae",
    "clip": "clip",
    "siglip": "siglip",
    "blip": "blip",
    "detr": "detr",
    "diffusers-unet": "diffusers",
    "diffusers-autoencoder-kl": "diffusers",
}
# kinds whose folders are diffusers' (diffusion_pytorch_model.safetensors), not HF's
DIFFUSERS_KINDS = ("diffusers-unet", "diffusers-autoencoder-kl")


def load_pretrained(kind: str, folder: str | Path) -> nn.Module:
    """Our ``kind`` model ("bert", "vit", "vit-mae", "clip", "siglip", "blip",
    "detr", "diffusers-unet", "diffusers-autoencoder-kl") from ``folder``."""
    if kind not in KIND_MODULES:
        raise UnknownNameError(
            f"unknown model kind {kind!r} for load_pretrained; kinds are: "
            f"{', '.join(KIND_MODULES)}"
        )
    try:
        importlib.import_module(f"paperlab.hub.{KIND_MODULES[kind]}")
    except ModuleNotFoundError as exc:
        if exc.name != f"paperlab.hub.{KIND_MODULES[kind]}":
            raise
    if kind not in IMPORTERS:
        raise UnknownNameError(f"no importer for {kind!r} is available yet")
    if kind in DIFFUSERS_KINDS:
        from paperlab.hub.diffusers import read_diffusers_folder

        config, state = read_diffusers_folder(folder)
    else:
        config, state = read_hf_folder(folder)
    return IMPORTERS[kind](config, state)

