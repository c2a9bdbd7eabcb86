"""Import diffusers-format weights (``UNet2DConditionModel``, ``AutoencoderKL``) into ours.

A diffusers model folder (``save_pretrained``) holds ``config.json`` and
``diffusion_pytorch_model.safetensors``; ``read_diffusers_folder`` reads both, and
``unet_from_diffusers(config, state)`` builds our ``generative.unet.UNet`` from the config and
copies the tensors in, checked (``hub/base.py``: every tensor placed, every parameter filled,
shapes equal).

Names: diffusers' blocks become our levels (``down_blocks.i`` -> ``down.i``, ``up_blocks.i``
-> ``up.i``, ``down/upsamplers.0.conv`` -> ``resample``), the middle block's
``resnets.0/1`` and ``attentions.0`` -> ``mid_resnet_1/2`` and ``mid_attention``;
inside blocks ``time_emb_proj`` -> ``time_proj``, ``conv_shortcut`` -> ``shortcut``,
``transformer_blocks`` -> ``blocks``, ``attn1/attn2`` -> ``self_attn/cross_attn``,
``to_out.0`` -> ``to_out``, ``ff.net.0.proj`` / ``ff.net.2`` -> ``ff_proj`` / ``ff_out``,
``time_embedding.linear_1/2`` -> ``time_linear_1/2``, ``conv_norm_out`` -> ``norm_out``.

Supported configs: the SD-1 layout (``CrossAttnDownBlock2D`` / ``DownBlock2D`` down,
their mirror ``UpBlock2D`` / ``CrossAttnUpBlock2D`` up, ``UNetMidBlock2DCrossAttn``, SiLU,
sinusoidal time embedding with ``flip_sin_to_cos`` and ``freq_shift`` 0, 1x1-conv
projections); anything else raises ``ConfigError`` naming the config key.

``autoencoder_from_diffusers(config, state)`` does the same for ``AutoencoderKL`` (our
``generative.autoencoder.AutoencoderKL``): ``encoder.*`` -> ``enc_*``, ``decoder.*`` ->
``dec_*``, ``down_blocks`` / ``up_blocks`` -> ``enc_stages`` / ``dec_stages``, the middle
block's ``resnets.0/1`` and ``attentions.0`` (``group_norm``) -> ``resnet_1/2`` and
``attention`` (``norm``); supported: ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` blocks,
SiLU, both quant convs, the middle attention, no shift factor.

Registered importers: ``"diffusers-unet"``, ``"diffusers-autoencoder-kl"``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from paperlab.errors import ArgumentError, ConfigError
from paperlab.generative.autoencoder import AutoencoderConfig, AutoencoderKL
from paperlab.generative.unet import UNet, UNetConfig
from paperlab.hub.base import Rule, load_checked, register_importer, rename_state

DOWN_KINDS = {"CrossAttnDownBlock2D": "cross", "DownBlock2D": "plain"}
UP_KINDS = {"CrossAttnUpBlock2D": "cross", "UpBlock2D": "plain"}

# first pass: the block a tensor belongs to (anchored, first match wins)
UNET_RULES: list[Rule] = [
    (r"(down|up)_blocks\.(\d+)\.(?:down|up)samplers\.0\.conv\.(.+)", r"\1.\2.resample.\3"),
    (r"(down|up)_blocks\.(\d+)\.(.+)", r"\1.\2.\3"),
    (r"mid_block\.resnets\.0\.(.+)", r"mid_resnet_1.\1"),
    (r"mid_block\.resnets\.1\.(.+)", r"mid_resnet_2.\1"),
    (r"mid_block\.attentions\.0\.(.+)", r"mid_attention.\1"),
    (r"time_embedding\.linear_([12])\.(.+)", r"time_linear_\1.\2"),
    (r"conv_norm_out\.(.+)", r"norm_out.\1"),
    (r"(conv_in|conv_out)\.(.+)", r"\1.\2"),
]
# second pass: the parts inside a block (every one applies)
UNET_PARTS: list[Rule] = [
    (r"\.time_emb_proj\.", ".time_proj."),
    (r"\.conv_shortcut\.", ".shortcut."),
    (r"\.transformer_blocks\.", ".blocks."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.ff\.net\.0\.proj\.", ".ff_proj."),
    (r"\.ff\.net\.2\.", ".ff_out."),
]


def read_diffusers_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and ``diffusion_pytorch_model.safetensors`` of a diffusers folder."""
    from safetensors.torch import load_file

    path = Path(folder)
    cfg, weights = path / "config.json", path / "diffusion_pytorch_model.safetensors"
    if not path.is_dir():
        raise ArgumentError(f"model folder {str(path)!r} does not exist or is not a folder")
    for f in (cfg, weights):
        if not f.is_file():
            raise ArgumentError(
                f"{str(path)!r} has no {f.name} (a diffusers folder needs it; "
                "save with save_pretrained(..., safe_serialization=True))"
            )
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{cfg}: not valid JSON ({exc})") from None
    return config, load_file(str(weights))


def _require(config: dict[str, Any], key: str, allowed: tuple, default: Any) -> None:
    value = config.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"diffusers UNet config {key} = {value!r} is not supported "
            f"(supported: {', '.join(map(repr, allowed))})"
        )


def unet_config_from_diffusers(config: dict[str, Any]) -> UNetConfig:
    """Our ``UNetConfig`` from a ``UNet2DConditionModel`` config dict."""
    down = list(config.get("down_block_types", ()))
    up = list(config.get("up_block_types", ()))
    for key, names, kinds in (
        ("down_block_types", down, DOWN_KINDS),
        ("up_block_types", up, UP_KINDS),
    ):
        for name in names:
            if name not in kinds:
                raise ConfigError(
                    f"diffusers UNet config {key} entry {name!r} is not supported "
                    f"(supported: {', '.join(kinds)})"
                )
    levels = [DOWN_KINDS[n] for n in down]
    if [UP_KINDS[n] for n in up] != levels[::-1]:
        raise ConfigError(f"up_block_types {up} must mirror down_block_types {down}")
    _require(config, "mid_block_type", ("UNetMidBlock2DCrossAttn",), "UNetMidBlock2DCrossAttn")
    _require(config, "act_fn", ("silu",), "silu")
    _require(config, "flip_sin_to_cos", (True,), True)
    _require(config, "freq_shift", (0,), 0)
    _require(config, "use_linear_projection", (False,), False)
    _require(config, "class_embed_type", (None,), None)
    _require(config, "addition_embed_type", (None,), None)
    _require(config, "encoder_hid_dim", (None,), None)
    _require(config, "time_cond_proj_dim", (None,), None)
    _require(config, "resnet_time_scale_shift", ("default",), "default")
    _require(config, "only_cross_attention", (False,), False)
    _require(config, "dual_cross_attention", (False,), False)
    _require(config, "center_input_sample", (False,), False)
    _require(config, "conv_in_kernel", (3,), 3)
    _require(config, "conv_out_kernel", (3,), 3)
    _require(config, "mid_block_scale_factor", (1, 1.0), 1)
    _require(config, "downsample_padding", (1,), 1)
    _require(config, "time_embedding_type", ("positional",), "positional")
    _require(config, "timestep_post_act", (None,), None)
    # diffusers' attention_head_dim is the head count when num_attention_heads is unset
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    layers = config.get("layers_per_block", 2)
    depth = config.get("transformer_layers_per_block", 1)
    cross = config.get("cross_attention_dim", 1280)
    for key, value in (
        ("attention_head_dim", heads),
        ("layers_per_block", layers),
        ("transformer_layers_per_block", depth),
        ("cross_attention_dim", cross),
    ):
        if not isinstance(value, int):
            raise ConfigError(f"diffusers UNet config {key} must be one int here, got {value!r}")
    return UNetConfig(
        in_channels=config.get("in_channels", 4),
        out_channels=config.get("out_channels", 4),
        block_out_channels=tuple(config["block_out_channels"]),
        levels=tuple(levels),
        layers_per_block=layers,
        cross_attention_dim=cross,
        num_heads=heads,
        norm_num_groups=config.get("norm_num_groups", 32),
        norm_eps=config.get("norm_eps", 1e-5),
        transformer_layers=depth,
    )


def unet_state_from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers tensor names -> ours (module docstring)."""
    out = {}
    for name, tensor in rename_state(state, UNET_RULES).items():
        for pattern, repl in UNET_PARTS:
            name = re.sub(pattern, repl, name)
        out[name] = tensor
    return out


@register_importer("diffusers-unet")
def unet_from_diffusers(config: dict[str, Any], state: dict[str, torch.Tensor]) -> UNet:
    """Our UNet with a diffusers ``UNet2DConditionModel``'s config and weights."""
    model = UNet(unet_config_from_diffusers(config))
    return load_checked(model, unet_state_from_diffusers(state))


AUTOENCODER_RULES: list[Rule] = [
    (
        r"(enc|dec)oder\.(?:down|up)_blocks\.(\d+)\.(?:down|up)samplers\.0\.conv\.(.+)",
        r"\1_stages.\2.resample.\3",
    ),
    (r"(enc|dec)oder\.(?:down|up)_blocks\.(\d+)\.(.+)", r"\1_stages.\2.\3"),
    (r"(enc|dec)oder\.mid_block\.resnets\.0\.(.+)", r"\1_mid.resnet_1.\2"),
    (r"(enc|dec)oder\.mid_block\.resnets\.1\.(.+)", r"\1_mid.resnet_2.\2"),
    (r"(enc|dec)oder\.mid_block\.attentions\.0\.(.+)", r"\1_mid.attention.\2"),
    (r"(enc|dec)oder\.conv_norm_out\.(.+)", r"\1_norm_out.\2"),
    (r"(enc|dec)oder\.(conv_in|conv_out)\.(.+)", r"\1_\2.\3"),
    (r"(quant_conv|post_quant_conv)\.(.+)", r"\1.\2"),
]
AUTOENCODER_PARTS: list[Rule] = [
    (r"\.conv_shortcut\.", ".shortcut."),
    (r"\.group_norm\.", ".norm."),
    (r"\.to_out\.0\.", ".to_out."),
]


def autoencoder_config_from_diffusers(config: dict[str, Any]) -> AutoencoderConfig:
    """Our ``AutoencoderConfig`` from an ``AutoencoderKL`` config dict."""
    chans = tuple(config.get("block_out_channels", (64,)))
    for key, kind in (
        ("down_block_types", "DownEncoderBlock2D"),
        ("up_block_types", "UpDecoderBlock2D"),
    ):
        names = list(config.get(key, [kind] * len(chans)))
        if names != [kind] * len(chans):
            raise ConfigError(
                f"diffusers AutoencoderKL config {key} = {names} is not supported "
                f"(supported: {kind} at every level)"
            )
    _require(config, "act_fn", ("silu",), "silu")
    _require(config, "use_quant_conv", (True,), True)
    _require(config, "use_post_quant_conv", (True,), True)
    _require(config, "mid_block_add_attention", (True,), True)
    _require(config, "shift_factor", (None,), None)
    return AutoencoderConfig(
        in_channels=config.get("in_channels", 3),
        out_channels=config.get("out_channels", 3),
        block_out_channels=chans,
        layers_per_block=config.get("layers_per_block", 1),
        latent_channels=config.get("latent_channels", 4),
        norm_num_groups=config.get("norm_num_groups", 32),
        scaling_factor=config.get("scaling_factor", 0.18215),
    )


def autoencoder_state_from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` tensor names -> ours."""
    out = {}
    for name, tensor in rename_state(state, AUTOENCODER_RULES).items():
        for pattern, repl in AUTOENCODER_PARTS:
            name = re.sub(pattern, repl, name)
        out[name] = tensor
    return out


@register_importer("diffusers-autoencoder-kl")
def autoencoder_from_diffusers(
    config: dict[str, Any], state: dict[str, torch.Tensor]
) -> AutoencoderKL:
    """Our AutoencoderKL with a diffusers ``AutoencoderKL``'s config and weights."""
    model = AutoencoderKL(autoencoder_config_from_diffusers(config))
    return load_checked(model, autoencoder_state_from_diffusers(state))
