"""Import HF ``DetrForObjectDetection`` folders (non-timm ResNet backbone) into our ``DETR``.

``load_pretrained("detr", folder)``. The mapping is one rename per tensor: the backbone's
``embedder.embedder`` -> ``backbone.stem``, ``encoder.stages.S.layers.B.layer.I`` ->
``backbone.stages.S.B.convs.I`` (``convolution`` -> ``conv``, ``normalization`` -> ``norm``,
frozen batch norm buffers), ``shortcut`` -> ``shortcut``; the transformer's
``self_attn_layer_norm`` / ``encoder_attn_layer_norm`` / ``final_layer_norm`` -> ``norm1`` /
``norm2`` / ``norm2`` or ``norm3``, ``encoder_attn`` -> ``cross_attn``, ``o_proj`` (or
``out_proj``, transformers 4) -> ``out_proj``, ``mlp.fc1`` (or ``fc1``) -> ``ffn.fc1``;
``query_position_embeddings`` -> ``query_embed``, ``decoder.layernorm`` -> ``decoder_norm``,
``class_labels_classifier`` -> ``class_head``, ``bbox_predictor.layers`` -> ``box_head``. Both
layouts of the backbone prefix are read: ``model.backbone.model.`` (transformers 5) and
``model.backbone.conv_encoder.model.`` (4).

Refused with a ``ConfigError``: timm backbones (``use_timm_backbone=True``, the hub's
``facebook/detr-resnet-50`` checkpoints), learned position embeddings, dilation, a backbone
whose output is not its last stage, activations we do not have. ``auxiliary_loss=True`` in the
HF config sets ``renorm_intermediate`` (HF's decoder then feeds each layer the normed output of
the one before; ``detection/detr.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.detection.detr import DETR, DETRConfig
from paperlab.errors import ConfigError
from paperlab.hub.base import Rule, load_checked, register_importer, rename_state
from paperlab.hub.vit import activation_from_hf

_BB = r"model\.backbone\.(?:conv_encoder\.)?model\."
_BN = r"(weight|bias|running_mean|running_var)"
_W = r"(weight|bias)"


def _layer_rules(src: str, dst: str, names: dict[str, str]) -> list[Rule]:
    """Attention, FFN and norm renames of one stack (encoder or decoder)."""
    rules: list[Rule] = []
    for hf, ours in names.items():
        rules += [
            (rf"{src}\.(\d+)\.{hf}\.(q|k|v)_proj\.{_W}", rf"{dst}.\1.{ours}.\2_proj.\3"),
            (rf"{src}\.(\d+)\.{hf}\.(?:o|out)_proj\.{_W}", rf"{dst}.\1.{ours}.out_proj.\2"),
        ]
    return rules + [(rf"{src}\.(\d+)\.(?:mlp\.)?(fc1|fc2)\.{_W}", rf"{dst}.\1.ffn.\2.\3")]


DETR_RULES: list[Rule] = [
    (rf"{_BB}embedder\.embedder\.convolution\.weight", "backbone.stem.conv.weight"),
    (rf"{_BB}embedder\.embedder\.normalization\.{_BN}", r"backbone.stem.norm.\1"),
    (rf"{_BB}encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
     r"backbone.stages.\1.\2.shortcut.conv.weight"),
    (rf"{_BB}encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.{_BN}",
     r"backbone.stages.\1.\2.shortcut.norm.\3"),
    (rf"{_BB}encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight",
     r"backbone.stages.\1.\2.convs.\3.conv.weight"),
    (rf"{_BB}encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.{_BN}",
     r"backbone.stages.\1.\2.convs.\3.norm.\4"),
    (rf"model\.input_projection\.{_W}", r"input_projection.\1"),
    (r"model\.query_position_embeddings\.weight", "query_embed.weight"),
    *_layer_rules(r"model\.encoder\.layers", "encoder", {"self_attn": "self_attn"}),
    (rf"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.{_W}", r"encoder.\1.norm1.\2"),
    (rf"model\.encoder\.layers\.(\d+)\.final_layer_norm\.{_W}", r"encoder.\1.norm2.\2"),
    *_layer_rules(r"model\.decoder\.layers", "decoder",
                  {"self_attn": "self_attn", "encoder_attn": "cross_attn"}),
    (rf"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.{_W}", r"decoder.\1.norm1.\2"),
    (rf"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.{_W}", r"decoder.\1.norm2.\2"),
    (rf"model\.decoder\.layers\.(\d+)\.final_layer_norm\.{_W}", r"decoder.\1.norm3.\2"),
    (rf"model\.decoder\.layernorm\.{_W}", r"decoder_norm.\1"),
    (rf"class_labels_classifier\.{_W}", r"class_head.\1"),
    (rf"bbox_predictor\.layers\.(\d)\.{_W}", r"box_head.\1.\2"),
]
IGNORE = [r".*\.num_batches_tracked"]


def detr_config_from_hf(config: dict[str, Any], state: dict[str, torch.Tensor]) -> DETRConfig:
    """Our ``DETRConfig`` from an HF DETR ``config.json`` (classes from the classifier's rows)."""
    if config.get("use_timm_backbone", True):
        raise ConfigError("only HF ResNet backbones (use_timm_backbone=False) are supported; "
                          "timm backbones have other weights and layout")
    for key, want in (("position_embedding_type", "sine"), ("dilation", False)):
        if config.get(key, want) != want:
            raise ConfigError(f"{key}={config.get(key)!r} is not supported (only {want!r})")
    bb = config.get("backbone_config") or {}
    if bb.get("model_type") != "resnet":
        raise ConfigError(f"backbone_config must be a ResNetConfig, got model_type "
                          f"{bb.get('model_type')!r}")
    stages = bb.get("stage_names") or ["stem"] + [f"stage{i + 1}" for i in
                                                  range(len(bb["hidden_sizes"]))]
    out = bb.get("out_features") or [stages[-1]]
    if out[-1] != stages[-1]:
        raise ConfigError(f"the backbone's output must be its last stage {stages[-1]!r}, got "
                          f"out_features={out}")
    if bb.get("hidden_act", "relu") != "relu":
        raise ConfigError(f"backbone hidden_act must be 'relu', got {bb.get('hidden_act')!r}")
    return DETRConfig(
        num_classes=int(state["class_labels_classifier.weight"].shape[0]) - 1,
        num_queries=config["num_queries"],
        d_model=config["d_model"],
        encoder_layers=config["encoder_layers"],
        decoder_layers=config["decoder_layers"],
        encoder_heads=config["encoder_attention_heads"],
        decoder_heads=config["decoder_attention_heads"],
        encoder_ffn_dim=config["encoder_ffn_dim"],
        decoder_ffn_dim=config["decoder_ffn_dim"],
        dropout=config.get("dropout", 0.1),
        attention_dropout=config.get("attention_dropout", 0.0),
        activation=activation_from_hf(config.get("activation_function", "relu")),
        aux_loss=bool(config.get("auxiliary_loss", False)),
        renorm_intermediate=bool(config.get("auxiliary_loss", False)),
        in_channels=bb.get("num_channels", 3),
        embedding_size=bb["embedding_size"],
        hidden_sizes=tuple(bb["hidden_sizes"]),
        depths=tuple(bb["depths"]),
        layer_type=bb.get("layer_type", "bottleneck"),
        downsample_in_first_stage=bool(bb.get("downsample_in_first_stage", False)),
        downsample_in_bottleneck=bool(bb.get("downsample_in_bottleneck", False)),
        frozen_batchnorm=True,
    )


@register_importer("detr")
def import_detr(config: dict[str, Any], state: dict[str, torch.Tensor]) -> DETR:
    """(HF config dict, HF state) -> our ``DETR`` with every tensor checked."""
    model = DETR(detr_config_from_hf(config, state))
    load_checked(model, rename_state(state, DETR_RULES, IGNORE))
    return model.eval()


__all__ = ["DETR_RULES", "detr_config_from_hf", "import_detr"]
