"""Import HF ``SiglipModel`` folders into our ``SigLIP``: ``load_pretrained("siglip", folder)``.

The towers rename as CLIP's do (``hub/clip.py``: same encoder-layer names, a vision tower
without class token or ``pre_layrnorm``, a text tower with a ``head``). The MAP head
(``vision_model.head``) holds a ``torch.nn.MultiheadAttention``, whose packed
``in_proj_weight`` (3d, d) and ``in_proj_bias`` (3d,) are the stacked [q; k; v] projections:
they are split into our ``q_proj``, ``k_proj`` and ``v_proj``. ``layernorm`` -> ``norm``,
``mlp.fc1/2`` -> ``ffn.fc1/2``; ``logit_scale`` and ``logit_bias`` (shape (1,)) copy over.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ConfigError
from paperlab.hub.base import Rule, WeightImportError, load_checked, register_importer, rename_state
from paperlab.hub.clip import (
    IGNORE,
    W,
    reshape_vision,
    sub_configs,
    text_common,
    text_rules,
    vision_common,
    vision_rules,
)
from paperlab.multimodal.siglip import (
    SigLIP,
    SigLIPConfig,
    siglip_text_config,
    siglip_vision_config,
)

HEAD = r"vision_model\.head\."


def split_in_proj(
    state: dict[str, torch.Tensor], prefix: str, ours: str
) -> dict[str, torch.Tensor]:
    """Replace ``{prefix}in_proj_{weight,bias}`` by ``{ours}{q,k,v}_proj.{weight,bias}``."""
    out = dict(state)
    for kind in ("weight", "bias"):
        key = f"{prefix}in_proj_{kind}"
        if key not in out:
            continue
        packed = out.pop(key)
        if packed.shape[0] % 3:
            raise WeightImportError(
                f"{key} must stack q, k and v (first dim divisible by 3), got {tuple(packed.shape)}"
            )
        for name, part in zip("qkv", packed.chunk(3, dim=0)):
            out[f"{ours}{name}_proj.{kind}"] = part
    return out


def siglip_config_from_hf(config: dict[str, Any]) -> SigLIPConfig:
    """Our ``SigLIPConfig`` from an HF ``SiglipModel`` config.json."""
    text, vision = sub_configs(config, "SigLIP")
    if not vision.get("vision_use_head", True):
        raise ConfigError("vision_use_head=False checkpoints are not supported (no MAP head)")
    text_cfg = siglip_text_config(
        **text_common(text), norm_eps=text.get("layer_norm_eps", 1e-6),
        head_dim=text.get("projection_size") or text["hidden_size"],
    )
    vision_cfg = siglip_vision_config(
        **vision_common(vision), norm_eps=vision.get("layer_norm_eps", 1e-6)
    )
    return SigLIPConfig(vision=vision_cfg, text=text_cfg, map_mlp_dim=vision["intermediate_size"])


SIGLIP_RULES: list[Rule] = [
    *text_rules(),
    (HEAD + "probe", "head.probe"),
    (HEAD + r"attention\.(q|k|v|out)_proj" + W, r"head.attention.\1_proj.\2"),
    (HEAD + r"layernorm" + W, r"head.norm.\1"),
    (HEAD + r"mlp\.fc(1|2)" + W, r"head.ffn.fc\1.\2"),
    *vision_rules(),
    (r"logit_(scale|bias)", r"logit_\1"),
]


@register_importer("siglip")
def import_siglip(config: dict[str, Any], state: dict[str, torch.Tensor]) -> SigLIP:
    """(HF config dict, HF state) -> our ``SigLIP``, every tensor's name and shape checked."""
    model = SigLIP(siglip_config_from_hf(config))
    state = split_in_proj(state, "vision_model.head.attention.", "vision_model.head.attention.")
    load_checked(model, reshape_vision(rename_state(state, SIGLIP_RULES, IGNORE)))
    return model.eval()


__all__ = ["SIGLIP_RULES", "import_siglip", "siglip_config_from_hf", "split_in_proj"]
