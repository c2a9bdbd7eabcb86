"""Import HF ``ViTModel`` / ``ViTForImageClassification`` folders into our ``VisionTransformer``.

``load_pretrained("vit", folder)``. HF's ViT is the paper's pre-LN encoder: the mapping is
one rename per tensor (``layernorm_before`` -> ``norm1``, ``attention.attention.query`` ->
``self_attn.q_proj``, ``intermediate.dense`` -> ``ffn.fc1``, ...). Both HF layouts are read:
the saved one (``encoder.layer.N.attention.attention.query``) and the in-memory one of
transformers >= 5 (``layers.N.attention.q_proj``, ``mlp.fc1``). HF ``ViTModel``'s pooler
(Linear + tanh on the class token) becomes ``pool_projection=True`` (our ``pooler``); a
classification checkpoint's ``classifier`` becomes ``head`` (applied to the class token, as
HF does, since such checkpoints have no pooler).
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ConfigError
from paperlab.hub.base import Rule, load_checked, register_importer, rename_state
from paperlab.vision.vit import VisionTransformer, ViTConfig

HF_ACTIVATIONS = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "relu": "relu",
}


def activation_from_hf(name: str) -> str:
    """HF ``hidden_act`` -> our ``ACTIVATIONS`` name (``ConfigError`` for others)."""
    if name not in HF_ACTIVATIONS:
        raise ConfigError(
            f"hidden_act {name!r} is not supported; supported: {', '.join(HF_ACTIVATIONS)}"
        )
    return HF_ACTIVATIONS[name]


def encoder_layer_rules(src: str, dst: str) -> list[Rule]:
    """Rename rules of HF ViT-style layers under regex prefix ``src`` to ours under ``dst``.

    ``src`` matches up to and including the layer index group, e.g.
    ``r"(?:vit\\.)?encoder\\.layer\\.(\\d+)"``; ``dst`` is e.g. ``r"layers.\\1"``.
    """
    w = r"\.(weight|bias)"
    pairs = [
        (r"attention\.attention\.query", "self_attn.q_proj"),
        (r"attention\.attention\.key", "self_attn.k_proj"),
        (r"attention\.attention\.value", "self_attn.v_proj"),
        (r"attention\.output\.dense", "self_attn.out_proj"),
        (r"intermediate\.dense", "ffn.fc1"),
        (r"output\.dense", "ffn.fc2"),
        (r"attention\.q_proj", "self_attn.q_proj"),
        (r"attention\.k_proj", "self_attn.k_proj"),
        (r"attention\.v_proj", "self_attn.v_proj"),
        (r"attention\.o_proj", "self_attn.out_proj"),
        (r"mlp\.fc1", "ffn.fc1"),
        (r"mlp\.fc2", "ffn.fc2"),
        (r"layernorm_before", "norm1"),
        (r"layernorm_after", "norm2"),
    ]
    return [(rf"{src}\.{a}{w}", rf"{dst}.{b}.\2") for a, b in pairs]


def check_hf_encoder(config: dict[str, Any], width_key: str = "hidden_size") -> None:
    """Refuse HF options our layers do not have (no qkv bias, a pooler of another width)."""
    if not config.get("qkv_bias", True):
        raise ConfigError("qkv_bias=False checkpoints are not supported (our q/k/v have biases)")
    pooled = config.get("pooler_output_size")
    if pooled is not None and pooled != config[width_key]:
        raise ConfigError(
            f"pooler_output_size={pooled} differs from {width_key}={config[width_key]}; "
            f"only a square pooler is supported"
        )
    if config.get("pooler_act", "tanh") != "tanh":
        raise ConfigError(f"pooler_act must be 'tanh', got {config.get('pooler_act')!r}")


def vit_config_from_hf(config: dict[str, Any], state: dict[str, torch.Tensor]) -> ViTConfig:
    """Our ``ViTConfig`` from an HF ViT ``config.json`` (and which optional tensors exist)."""
    check_hf_encoder(config)
    has_pooler = any(k.endswith("pooler.dense.weight") for k in state)
    num_classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 0
    return ViTConfig(
        image_size=config.get("image_size", 224),
        patch_size=config.get("patch_size", 16),
        in_channels=config.get("num_channels", 3),
        dim=config["hidden_size"],
        depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        mlp_dim=config["intermediate_size"],
        activation=activation_from_hf(config.get("hidden_act", "gelu")),
        norm_eps=config.get("layer_norm_eps", 1e-12),
        position="learned",
        pool="cls",
        pool_projection=has_pooler,
        num_classes=num_classes,
        dropout=config.get("hidden_dropout_prob", 0.0),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
    )


VIT_RULES: list[Rule] = [
    (r"(vit\.)?embeddings\.cls_token", "cls_token"),
    (r"(vit\.)?embeddings\.position_embeddings", "position_embeddings"),
    (r"(vit\.)?embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\2"),
    *encoder_layer_rules(r"(?:vit\.)?(?:encoder\.layer|layers)\.(\d+)", r"layers.\1"),
    (r"(vit\.)?layernorm\.(weight|bias)", r"norm.\2"),
    (r"(vit\.)?pooler\.dense\.(weight|bias)", r"pooler.\2"),
    (r"classifier\.(weight|bias)", r"head.\1"),
]


@register_importer("vit")
def import_vit(config: dict[str, Any], state: dict[str, torch.Tensor]) -> VisionTransformer:
    """(HF config dict, HF state) -> our ``VisionTransformer`` with every tensor checked."""
    model = VisionTransformer(vit_config_from_hf(config, state))
    load_checked(model, rename_state(state, VIT_RULES))
    return model.eval()


__all__ = [
    "HF_ACTIVATIONS",
    "VIT_RULES",
    "activation_from_hf",
    "check_hf_encoder",
    "encoder_layer_rules",
    "import_vit",
    "vit_config_from_hf",
]
