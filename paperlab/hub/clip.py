"""Import HF ``CLIPModel`` folders into our ``CLIP``: ``load_pretrained("clip", folder)``.

HF's CLIP is OpenAI's layout, so the mapping is one rename per tensor: the encoder layers'
``self_attn.{q,k,v,out}_proj`` keep their names, ``layer_norm1/2`` -> ``norm1/2``,
``mlp.fc1/2`` -> ``ffn.fc1/2``; the vision tower's ``pre_layrnorm`` (sic) -> ``pre_norm``,
``post_layernorm`` -> ``norm`` (a per-token LayerNorm, so normalising every token and reading
the class token equals HF's normalising the class token alone); ``class_embedding`` (d,) and
``position_embedding.weight`` (T, d) are reshaped to our (1, 1, d) and (1, T, d).

The text tower pools where HF does: the first ``eos_token_id`` of each row, or -- when the
config says ``eos_token_id == 2``, the value of configs saved before transformers PR #24773 --
the largest id of the row (``pool="argmax"``, OpenAI's original rule; also used when a config
has no ``eos_token_id``).

The text-tower and encoder-layer rules are shared with ``hub/siglip.py``.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ConfigError
from paperlab.hub.base import Rule, load_checked, register_importer, rename_state
from paperlab.hub.vit import activation_from_hf
from paperlab.multimodal.clip import CLIP, CLIPConfig, clip_text_config, clip_vision_config
from paperlab.multimodal.text import TextConfig

IGNORE = (r".*position_ids",)
W = r"\.(weight|bias)"


def encoder_rules(hf: str, ours: str) -> list[Rule]:
    """CLIP-style ``{hf}.encoder.layers.N.*`` -> our ``EncoderLayer`` names ``{ours}layers.N.*``."""
    layer = rf"{hf}\.encoder\.layers\.(\d+)\."
    return [
        (layer + r"self_attn\.(q|k|v|out)_proj" + W, rf"{ours}layers.\1.self_attn.\2_proj.\3"),
        (layer + r"layer_norm(1|2)" + W, rf"{ours}layers.\1.norm\2.\3"),
        (layer + r"mlp\.fc(1|2)" + W, rf"{ours}layers.\1.ffn.fc\2.\3"),
    ]


def text_rules(hf: str = r"text_model", ours: str = "text.") -> list[Rule]:
    """HF ``CLIPTextModel`` / ``SiglipTextModel`` -> our ``TextTransformer``."""
    return [
        (rf"{hf}\.embeddings\.token_embedding\.weight", f"{ours}token_embedding.weight"),
        (rf"{hf}\.embeddings\.position_embedding\.weight", f"{ours}position.weight"),
        *encoder_rules(hf, ours),
        (rf"{hf}\.final_layer_norm" + W, rf"{ours}final_norm.\1"),
        (rf"{hf}\.head" + W, rf"{ours}head.\1"),
    ]


def vision_rules(hf: str = r"vision_model", ours: str = "vision.") -> list[Rule]:
    """HF CLIP / SigLIP vision towers -> our ``VisionTransformer`` (SigLIP's head excluded)."""
    emb = rf"{hf}\.embeddings\."
    return [
        (emb + "class_embedding", f"{ours}cls_token"),
        (emb + r"patch_embedding" + W, rf"{ours}patch_embed.proj.\1"),
        (emb + r"position_embedding\.weight", f"{ours}position_embeddings"),
        (rf"{hf}\.pre_layrnorm" + W, rf"{ours}pre_norm.\1"),
        *encoder_rules(hf, ours),
        (rf"{hf}\.post_layernorm" + W, rf"{ours}norm.\1"),
    ]


def reshape_vision(
    state: dict[str, torch.Tensor], ours: str = "vision."
) -> dict[str, torch.Tensor]:
    """HF's (d,) class embedding and (T, d) position table as our (1, 1, d) and (1, T, d)."""
    out = dict(state)
    for key in (f"{ours}cls_token", f"{ours}position_embeddings"):
        if key in out and out[key].dim() < 3:
            t = out[key]
            out[key] = t.reshape(1, 1, -1) if t.dim() == 1 else t.unsqueeze(0)
    return out


def eos_of(text: dict[str, Any]) -> int | None:
    """The config's ``eos_token_id`` as one int (a list of several is refused)."""
    eos = text.get("eos_token_id")
    if isinstance(eos, list):
        if len(eos) != 1:
            raise ConfigError(f"text_config.eos_token_id must be one id, got {eos}")
        eos = eos[0]
    return eos


def text_common(text: dict[str, Any]) -> dict[str, Any]:
    """The ``TextConfig`` fields every CLIP-family HF text config gives."""
    return dict(
        vocab_size=text["vocab_size"],
        max_length=text.get("max_position_embeddings", 77),
        dim=text["hidden_size"],
        depth=text["num_hidden_layers"],
        num_heads=text["num_attention_heads"],
        mlp_dim=text["intermediate_size"],
        activation=activation_from_hf(text.get("hidden_act", "quick_gelu")),
    )


def vision_common(vision: dict[str, Any]) -> dict[str, Any]:
    """The ``ViTConfig`` fields every CLIP-family HF vision config gives."""
    return dict(
        image_size=vision.get("image_size", 224),
        patch_size=vision.get("patch_size", 32),
        in_channels=vision.get("num_channels", 3),
        dim=vision["hidden_size"],
        depth=vision["num_hidden_layers"],
        num_heads=vision["num_attention_heads"],
        mlp_dim=vision["intermediate_size"],
        activation=activation_from_hf(vision.get("hidden_act", "quick_gelu")),
    )


def sub_configs(config: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``text_config`` and ``vision_config`` of a two-tower config.json, or a clear error."""
    missing = [k for k in ("text_config", "vision_config") if not config.get(k)]
    if missing:
        raise ConfigError(
            f"a {kind} config.json needs {' and '.join(missing)} (is this a two-tower "
            f"{kind} model folder? model_type={config.get('model_type')!r})"
        )
    return config["text_config"], config["vision_config"]


def clip_config_from_hf(config: dict[str, Any]) -> CLIPConfig:
    """Our ``CLIPConfig`` from an HF ``CLIPModel`` config.json."""
    text, vision = sub_configs(config, "CLIP")
    eos = eos_of(text)
    text_cfg: TextConfig = clip_text_config(
        **text_common(text),
        norm_eps=text.get("layer_norm_eps", 1e-5),
        pool="argmax" if eos == 2 or eos is None else "eos",
        eos_token_id=eos,
    )
    vision_cfg = clip_vision_config(**vision_common(vision),
                                    norm_eps=vision.get("layer_norm_eps", 1e-5))
    return CLIPConfig(
        vision=vision_cfg, text=text_cfg, projection_dim=config.get("projection_dim", 512),
        logit_scale_init=config.get("logit_scale_init_value", 2.6592), max_logit_scale=None,
    )


CLIP_RULES: list[Rule] = [
    *text_rules(),
    *vision_rules(),
    (r"(visual|text)_projection\.weight", r"\1_projection.weight"),
    (r"logit_scale", "logit_scale"),
]


@register_importer("clip")
def import_clip(config: dict[str, Any], state: dict[str, torch.Tensor]) -> CLIP:
    """(HF config dict, HF state) -> our ``CLIP``, every tensor's name and shape checked.

    ``max_logit_scale`` is off (HF applies no clip), so the logits equal HF's.
    """
    model = CLIP(clip_config_from_hf(config))
    load_checked(model, reshape_vision(rename_state(state, CLIP_RULES, IGNORE)))
    return model.eval()


__all__ = [
    "CLIP_RULES",
    "clip_config_from_hf",
    "encoder_rules",
    "eos_of",
    "import_clip",
    "reshape_vision",
    "sub_configs",
    "text_common",
    "text_rules",
    "vision_common",
    "vision_rules",
]
