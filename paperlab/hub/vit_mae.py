"""Import HF ``ViTMAEForPreTraining`` folders into our ``MaskedAutoencoder``.

``load_pretrained("vit-mae", folder)``. The encoder layers rename as HF ViT's
(``hub/vit.py``); the decoder keeps HF's names (``decoder_embed``, ``mask_token``,
``decoder_pos_embed``, ``decoder_layers``, ``decoder_norm``, ``decoder_pred``). HF stores the
fixed sin-cos position tables as tensors; they load into our buffers (and a test checks our
tables equal HF's). ``mask_ratio`` and ``norm_pix_loss`` come from ``config.json``.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ConfigError
from paperlab.hub.base import Rule, load_checked, register_importer, rename_state
from paperlab.hub.vit import activation_from_hf, check_hf_encoder, encoder_layer_rules
from paperlab.vision.mae import MAEConfig, MaskedAutoencoder


def mae_config_from_hf(config: dict[str, Any]) -> MAEConfig:
    """Our ``MAEConfig`` from an HF ViTMAE ``config.json``."""
    check_hf_encoder(config)
    size = config.get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ConfigError(f"only square images are supported, got image_size={size}")
        size = size[0]
    return MAEConfig(
        image_size=size,
        patch_size=config.get("patch_size", 16),
        in_channels=config.get("num_channels", 3),
        dim=config["hidden_size"],
        depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        mlp_dim=config["intermediate_size"],
        activation=activation_from_hf(config.get("hidden_act", "gelu")),
        norm_eps=config.get("layer_norm_eps", 1e-12),
        position="sincos-2d",
        decoder_dim=config.get("decoder_hidden_size", 512),
        decoder_depth=config.get("decoder_num_hidden_layers", 8),
        decoder_num_heads=config.get("decoder_num_attention_heads", 16),
        decoder_mlp_dim=config.get("decoder_intermediate_size", 2048),
        mask_ratio=config.get("mask_ratio", 0.75),
        norm_pix_loss=bool(config.get("norm_pix_loss", False)),
        dropout=config.get("hidden_dropout_prob", 0.0),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
    )


MAE_RULES: list[Rule] = [
    (r"vit\.embeddings\.cls_token", "encoder.cls_token"),
    (r"vit\.embeddings\.position_embeddings", "encoder.position_embeddings"),
    (r"vit\.embeddings\.patch_embeddings\.projection\.(weight|bias)",
     r"encoder.patch_embed.proj.\1"),
    *encoder_layer_rules(r"vit\.(?:encoder\.layer|layers)\.(\d+)", r"encoder.layers.\1"),
    (r"vit\.layernorm\.(weight|bias)", r"encoder.norm.\1"),
    (r"decoder\.(decoder_embed|decoder_norm|decoder_pred)\.(weight|bias)", r"\1.\2"),
    (r"decoder\.(mask_token|decoder_pos_embed)", r"\1"),
    *encoder_layer_rules(
        r"decoder\.(?:decoder_encoder\.layer|decoder_layers)\.(\d+)", r"decoder_layers.\1"
    ),
]


@register_importer("vit-mae")
def import_vit_mae(config: dict[str, Any], state: dict[str, torch.Tensor]) -> MaskedAutoencoder:
    """(HF config dict, HF state) -> our ``MaskedAutoencoder`` with every tensor checked."""
    model = MaskedAutoencoder(mae_config_from_hf(config))
    load_checked(model, rename_state(state, MAE_RULES))
    return model.eval()


__all__ = ["MAE_RULES", "import_vit_mae", "mae_config_from_hf"]
