"""Weights from ``torch.nn.Transformer`` into paperlab's encoder-decoder Transformer.

torch packs each attention's q, k, v projections in one ``in_proj_weight`` (3d, d): rows
[0:d], [d:2d], [2d:3d] are q, k, v; the rest maps name for name. With the weights copied,
``Seq2SeqTransformer.encoder_stack`` / ``decoder_stack`` equal torch's encoder / decoder
(``tests/sequence/test_transformer.py`` proves it, post-LN and pre-LN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from paperlab.attention.softmax import MultiHeadAttention
from paperlab.errors import ConfigError

if TYPE_CHECKING:
    from paperlab.sequence.transformer import Seq2SeqTransformer


def _copy_attention(attn: MultiHeadAttention, sd: Mapping[str, torch.Tensor], prefix: str):
    w, bias = sd[prefix + "in_proj_weight"], sd.get(prefix + "in_proj_bias")
    d = attn.dim
    for j, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
        proj.weight.copy_(w[j * d:(j + 1) * d])
        if bias is not None and proj.bias is not None:
            proj.bias.copy_(bias[j * d:(j + 1) * d])
    attn.out_proj.weight.copy_(sd[prefix + "out_proj.weight"])
    if attn.out_proj.bias is not None:
        attn.out_proj.bias.copy_(sd[prefix + "out_proj.bias"])


def _copy_linear(mod: nn.Module, sd: Mapping[str, torch.Tensor], prefix: str) -> None:
    mod.weight.copy_(sd[prefix + "weight"])
    if getattr(mod, "bias", None) is not None:
        mod.bias.copy_(sd[prefix + "bias"])


@torch.no_grad()
def load_torch_transformer(
    model: Seq2SeqTransformer, state_dict: Mapping[str, torch.Tensor]
) -> Seq2SeqTransformer:
    """Copy a ``torch.nn.Transformer`` state dict into ``model``'s encoder-decoder core.

    torch's ``self_attn`` / ``multihead_attn`` -> our ``self_attn`` / ``cross_attn`` (the
    ``in_proj_weight`` rows [0:d], [d:2d], [2d:3d] are q, k, v), ``linear1``/``linear2`` ->
    ``ffn.fc1``/``ffn.fc2``, ``norm1..3`` likewise, ``encoder.norm``/``decoder.norm`` ->
    ``encoder_norm``/``decoder_norm`` (which must then exist: ``final_norm=True``).
    Embeddings and the head are not part of ``nn.Transformer`` and stay as they are.
    """
    sd = state_dict
    n_enc = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    n_dec = len({k.split(".")[2] for k in sd if k.startswith("decoder.layers.")})
    if (n_enc, n_dec) != (len(model.encoder_layers), len(model.decoder_layers)):
        raise ConfigError(
            f"the state dict has {n_enc} encoder / {n_dec} decoder layers, the model "
            f"{len(model.encoder_layers)} / {len(model.decoder_layers)}"
        )
    for i, layer in enumerate(model.encoder_layers):
        p = f"encoder.layers.{i}."
        _copy_attention(layer.self_attn, sd, p + "self_attn.")
        _copy_linear(layer.ffn.fc1, sd, p + "linear1.")
        _copy_linear(layer.ffn.fc2, sd, p + "linear2.")
        _copy_linear(layer.norm1, sd, p + "norm1.")
        _copy_linear(layer.norm2, sd, p + "norm2.")
    for i, layer in enumerate(model.decoder_layers):
        p = f"decoder.layers.{i}."
        _copy_attention(layer.self_attn, sd, p + "self_attn.")
        _copy_attention(layer.cross_attn, sd, p + "multihead_attn.")
        _copy_linear(layer.ffn.fc1, sd, p + "linear1.")
        _copy_linear(layer.ffn.fc2, sd, p + "linear2.")
        for j, norm in enumerate((layer.norm1, layer.norm2, layer.norm3), start=1):
            _copy_linear(norm, sd, p + f"norm{j}.")
    finals = (("encoder.norm.", model.encoder_norm), ("decoder.norm.", model.decoder_norm))
    for name, norm in finals:
        if name + "weight" in sd:
            if isinstance(norm, nn.Identity):
                raise ConfigError(
                    f"the state dict has a final {name[:-1]} but the model has none; build it "
                    f"with final_norm=True"
                )
            _copy_linear(norm, sd, name)
    return model


__all__ = ["load_torch_transformer"]
