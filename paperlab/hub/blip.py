"""Import HF BLIP folders into our ``BLIP``: ``load_pretrained("blip", folder)``.

One importer reads both HF checkpoint types and builds the part each one holds:

- ``BlipForImageTextRetrieval`` (``text_encoder.*``, ``vision_proj``, ``text_proj``,
  ``itm_head``) -> ``BLIP(encoder=True, decoder=False)``;
- ``BlipForConditionalGeneration`` (``text_decoder.*``) -> ``BLIP(encoder=False,
  decoder=True)``;
- a state holding both prefixes (a merged folder) -> both parts.

The part is read off the tensors present, not off ``architectures``, so every tensor is still
checked by name and shape (``hub/base.py``). The mapping:

- vision: ``embeddings.class_embedding`` -> ``cls_token``, ``patch_embedding`` ->
  ``patch_embed.proj``, ``position_embedding`` -> ``position_embeddings``; each layer's fused
  ``self_attn.qkv`` (rows [q; k; v]) is split into our ``q_proj``, ``k_proj``, ``v_proj``,
  ``self_attn.projection`` -> ``out_proj``, ``layer_norm1/2`` -> ``norm1/2``,
  ``mlp.fc1/2`` -> ``ffn.fc1/2``; ``post_layernorm`` -> ``norm`` (HF normalises every token,
  so does ours; HF's ``pooler_output`` normalises the class token a second time, but BLIP's
  heads read ``last_hidden_state[:, 0]``, so nothing here uses it);
- text (BERT names): ``attention.self.{query,key,value}`` -> ``self_attn.{q,k,v}_proj``,
  ``attention.output.dense`` / ``LayerNorm`` -> ``self_attn.out_proj`` / ``norm1``, the same
  under ``crossattention`` -> ``cross_attn`` / ``norm2``, ``intermediate.dense`` ->
  ``ffn.fc1``, ``output.dense`` / ``LayerNorm`` -> ``ffn.fc2`` / ``norm3``;
- the decoder's ``cls.predictions.transform.{dense,LayerNorm}`` and ``bias`` -> ``lm_head``;
  its ``decoder.weight`` is the word embedding matrix (tied), so a stored copy must equal it.

HF's retrieval model keeps no ITC temperature (BLIP's ``temp`` is not converted), so ``temp``
is set to ``BLIPConfig.temperature_init`` (0.07); the cosine similarities HF returns with
``use_itm_head=False`` do not depend on it.
"""

from __future__ import annotations

from typing import Any

import torch

from paperlab.errors import ConfigError
from paperlab.hub.base import (
    Rule,
    WeightImportError,
    load_checked,
    register_importer,
    rename_state,
)
from paperlab.hub.clip import sub_configs
from paperlab.hub.vit import activation_from_hf
from paperlab.multimodal.blip import BLIP, BLIPConfig, BLIPTextConfig, blip_vision_config

W = r"\.(weight|bias)"
IGNORE = (r".*position_ids",)


def text_rules(hf: str, ours: str) -> list[Rule]:
    """HF ``BlipTextModel`` tensors under ``hf`` -> our ``BLIPTextTransformer`` under ``ours``."""
    layer = rf"{hf}\.encoder\.layer\.(\d+)\."
    emb = rf"{hf}\.embeddings\."
    rules: list[Rule] = [
        (emb + r"word_embeddings\.weight", f"{ours}.word_embeddings.weight"),
        (emb + r"position_embeddings\.weight", f"{ours}.position_embeddings.weight"),
        (emb + r"LayerNorm" + W, rf"{ours}.norm.\1"),
    ]
    for hf_attn, our_attn, norm in (("attention", "self_attn", "norm1"),
                                    ("crossattention", "cross_attn", "norm2")):
        rules += [
            (layer + rf"{hf_attn}\.self\.query" + W, rf"{ours}.layers.\1.{our_attn}.q_proj.\2"),
            (layer + rf"{hf_attn}\.self\.key" + W, rf"{ours}.layers.\1.{our_attn}.k_proj.\2"),
            (layer + rf"{hf_attn}\.self\.value" + W, rf"{ours}.layers.\1.{our_attn}.v_proj.\2"),
            (layer + rf"{hf_attn}\.output\.dense" + W, rf"{ours}.layers.\1.{our_attn}.out_proj.\2"),
            (layer + rf"{hf_attn}\.output\.LayerNorm" + W, rf"{ours}.layers.\1.{norm}.\2"),
        ]
    rules += [
        (layer + r"intermediate\.dense" + W, rf"{ours}.layers.\1.ffn.fc1.\2"),
        (layer + r"output\.dense" + W, rf"{ours}.layers.\1.ffn.fc2.\2"),
        (layer + r"output\.LayerNorm" + W, rf"{ours}.layers.\1.norm3.\2"),
    ]
    return rules


VISION_LAYER = r"vision_model\.encoder\.layers\.(\d+)\."
BLIP_RULES: list[Rule] = [
    (r"vision_model\.embeddings\.class_embedding", "vision.cls_token"),
    (r"vision_model\.embeddings\.patch_embedding" + W, r"vision.patch_embed.proj.\1"),
    (r"vision_model\.embeddings\.position_embedding", "vision.position_embeddings"),
    (VISION_LAYER + r"self_attn\.qkv" + W, r"vision.layers.\1.self_attn.qkv.\2"),  # split below
    (VISION_LAYER + r"self_attn\.projection" + W, r"vision.layers.\1.self_attn.out_proj.\2"),
    (VISION_LAYER + r"layer_norm(1|2)" + W, r"vision.layers.\1.norm\2.\3"),
    (VISION_LAYER + r"mlp\.fc(1|2)" + W, r"vision.layers.\1.ffn.fc\2.\3"),
    (r"vision_model\.post_layernorm" + W, r"vision.norm.\1"),
    *text_rules(r"text_encoder", "text_encoder"),
    (r"(vision_proj|text_proj|itm_head)" + W, r"\1.\2"),
    *text_rules(r"text_decoder\.bert", "text_decoder"),
    (r"text_decoder\.cls\.predictions\.transform\.dense" + W, r"lm_head.dense.\1"),
    (r"text_decoder\.cls\.predictions\.transform\.LayerNorm" + W, r"lm_head.norm.\1"),
    (r"text_decoder\.cls\.predictions\.bias", "lm_head.bias"),
    (r"text_decoder\.cls\.predictions\.decoder" + W, r"tied_decoder.\1"),  # checked below
]


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each ``...self_attn.qkv.{weight,bias}`` (3d, ...) -> ``q_proj``, ``k_proj``, ``v_proj``."""
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if ".self_attn.qkv." not in key:
            out[key] = t
            continue
        if t.shape[0] % 3:
            raise WeightImportError(f"{key}: a fused qkv needs 3d rows, got {tuple(t.shape)}")
        head, kind = key.split(".qkv.")
        for name, part in zip(("q_proj", "k_proj", "v_proj"), t.chunk(3, dim=0)):
            out[f"{head}.{name}.{kind}"] = part.contiguous()
    return out


def check_tied_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the decoder's stored output matrix and bias after checking they are the tied ones."""
    out = dict(state)
    tied = {"tied_decoder.weight": "text_decoder.word_embeddings.weight",
            "tied_decoder.bias": "lm_head.bias"}
    for key, twin in tied.items():
        if key in out:
            t = out.pop(key)
            if twin in out and not torch.equal(t, out[twin]):
                raise WeightImportError(
                    f"text_decoder.cls.predictions.decoder.{key.split('.')[-1]} differs from "
                    f"its tied tensor ({twin}); untied output embeddings are not supported"
                )
    return out


def blip_config_from_hf(config: dict[str, Any], state: dict[str, torch.Tensor]) -> BLIPConfig:
    """Our ``BLIPConfig`` from an HF BLIP config.json and the parts its tensors hold."""
    text, vision = sub_configs(config, "BLIP")
    encoder = any(k.startswith("text_encoder.") for k in state)
    decoder = any(k.startswith("text_decoder.") for k in state)
    if not (encoder or decoder):
        raise ConfigError(
            "the checkpoint holds neither text_encoder.* (BlipForImageTextRetrieval) nor "
            f"text_decoder.* (BlipForConditionalGeneration); architectures="
            f"{config.get('architectures')!r} is not supported"
        )
    if text.get("is_decoder", True) is False:
        raise ConfigError("text_config.is_decoder=false: BLIP's text layers need cross-attention")
    enc_width = text.get("encoder_hidden_size", vision["hidden_size"])
    if enc_width != vision["hidden_size"]:
        raise ConfigError(f"text_config.encoder_hidden_size={enc_width} differs from "
                          f"vision_config.hidden_size={vision['hidden_size']}")
    text_cfg = BLIPTextConfig(
        vocab_size=text["vocab_size"], max_length=text.get("max_position_embeddings", 512),
        dim=text["hidden_size"], depth=text["num_hidden_layers"],
        num_heads=text["num_attention_heads"], mlp_dim=text["intermediate_size"],
        activation=activation_from_hf(text.get("hidden_act", "gelu")),
        norm_eps=text.get("layer_norm_eps", 1e-12), pad_token_id=text.get("pad_token_id", 0),
        eos_token_id=text.get("sep_token_id", 102), bos_token_id=text.get("bos_token_id"),
    )
    vision_cfg = blip_vision_config(
        image_size=vision.get("image_size", 384), patch_size=vision.get("patch_size", 16),
        in_channels=3, dim=vision["hidden_size"], depth=vision["num_hidden_layers"],
        num_heads=vision["num_attention_heads"], mlp_dim=vision["intermediate_size"],
        activation=activation_from_hf(vision.get("hidden_act", "gelu")),
        norm_eps=vision.get("layer_norm_eps", 1e-5),
    )
    return BLIPConfig(
        vision=vision_cfg, text=text_cfg, embed_dim=config.get("image_text_hidden_size", 256),
        label_smoothing=text.get("label_smoothing", config.get("label_smoothing", 0.0)),
        encoder=encoder, decoder=decoder,
    )


@register_importer("blip")
def import_blip(config: dict[str, Any], state: dict[str, torch.Tensor]) -> BLIP:
    """(HF config dict, HF state) -> our ``BLIP`` holding the parts the checkpoint has."""
    cfg = blip_config_from_hf(config, state)
    model = BLIP(cfg)
    ours = check_tied_decoder(split_qkv(rename_state(state, BLIP_RULES, IGNORE)))
    if cfg.encoder and "temp" not in ours:
        ours["temp"] = torch.tensor(float(cfg.temperature_init))
    load_checked(model, ours)
    return model.eval()


__all__ = [
    "BLIP_RULES",
    "blip_config_from_hf",
    "check_tied_decoder",
    "import_blip",
    "split_qkv",
    "text_rules",
]
