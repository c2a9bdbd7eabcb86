"""Import HF BERT checkpoints (``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``).

``load_pretrained("bert", folder)`` lands here. The model built follows what the
checkpoint holds: ``cls.seq_relationship.*`` (NSP head) -> ``BertForPreTraining``;
``cls.predictions.*`` (MLM head) -> ``BertForMaskedLM`` (with a pooler if the checkpoint
has one); neither -> ``BertModel`` (sentence-transformers' folders, such as all-MiniLM-L6-v2,
are plain ``BertModel`` checkpoints). Names map by regex (``rename_state``), and
``load_checked`` insists that every tensor fits: a missing, extra or mis-shaped tensor is an
error naming it.

HF name (``bert.`` prefix in the head models)     ours
``embeddings.LayerNorm``                          ``embeddings.norm``
``encoder.layer.i.attention.self.query/key/value`` ``layers.i.self_attn.q/k/v_proj``
``encoder.layer.i.attention.output.dense``        ``layers.i.self_attn.out_proj``
``encoder.layer.i.attention.output.LayerNorm``    ``layers.i.norm1``
``encoder.layer.i.intermediate.dense``            ``layers.i.ffn.fc1``
``encoder.layer.i.output.dense / LayerNorm``      ``layers.i.ffn.fc2`` / ``layers.i.norm2``
``pooler.dense``                                  ``pooler``
``cls.predictions.transform.dense / LayerNorm``   ``mlm.dense`` / ``mlm.norm``
``cls.predictions.bias`` (= ``decoder.bias``)     ``mlm.bias``
``cls.predictions.decoder.weight``                tied to the word embeddings (checked equal)
``cls.seq_relationship``                          ``nsp``
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paperlab.hub.base import WeightImportError, load_checked, register_importer, rename_state
from paperlab.language.bert import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel

_LAYER = r"(?:bert\.)?encoder\.layer\.(\d+)\."
_SUFFIX = r"\.(weight|bias)"
# (HF pattern, our name without the "bert." prefix); \1 = layer index, last group = weight|bias
_ENCODER_RULES = [
    (r"(?:bert\.)?embeddings\.(word|position|token_type)_embeddings\.weight",
     r"embeddings.\1_embeddings.weight"),
    (r"(?:bert\.)?embeddings\.LayerNorm" + _SUFFIX, r"embeddings.norm.\1"),
    (_LAYER + r"attention\.self\.query" + _SUFFIX, r"layers.\1.self_attn.q_proj.\2"),
    (_LAYER + r"attention\.self\.key" + _SUFFIX, r"layers.\1.self_attn.k_proj.\2"),
    (_LAYER + r"attention\.self\.value" + _SUFFIX, r"layers.\1.self_attn.v_proj.\2"),
    (_LAYER + r"attention\.output\.dense" + _SUFFIX, r"layers.\1.self_attn.out_proj.\2"),
    (_LAYER + r"attention\.output\.LayerNorm" + _SUFFIX, r"layers.\1.norm1.\2"),
    (_LAYER + r"intermediate\.dense" + _SUFFIX, r"layers.\1.ffn.fc1.\2"),
    (_LAYER + r"output\.dense" + _SUFFIX, r"layers.\1.ffn.fc2.\2"),
    (_LAYER + r"output\.LayerNorm" + _SUFFIX, r"layers.\1.norm2.\2"),
    (r"(?:bert\.)?pooler\.dense" + _SUFFIX, r"pooler.\1"),
]  # fmt: skip
_HEAD_RULES = [
    (r"cls\.predictions\.transform\.dense" + _SUFFIX, r"mlm.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm" + _SUFFIX, r"mlm.norm.\1"),
    (r"cls\.predictions\.(?:decoder\.)?bias", r"mlm.bias"),
    (r"cls\.seq_relationship" + _SUFFIX, r"nsp.\1"),
]
_IGNORE = [r"(?:bert\.)?embeddings\.(position_ids|token_type_ids)"]
_DECODER = "cls.predictions.decoder.weight"


def bert_rules(prefix: str) -> list[tuple[str, str]]:
    """The rename rules with ``prefix`` ("" or "bert.") before our encoder names."""
    return [(p, prefix + r) for p, r in _ENCODER_RULES] + _HEAD_RULES


def _word_embedding_key(state: dict[str, torch.Tensor]) -> str:
    for key in ("bert.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"):
        if key in state:
            return key
    raise WeightImportError("the checkpoint has no embeddings.word_embeddings.weight")


def bert_from_state(config: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """Our BERT (the class the heads in ``state`` call for) from an HF config dict and state."""
    cfg = BertConfig.from_hf(config)
    state = dict(state)
    has_mlm = any(k.startswith("cls.predictions.") for k in state)
    has_nsp = any(k.startswith("cls.seq_relationship.") for k in state)
    has_pooler = any(k.startswith(("pooler.", "bert.pooler.")) for k in state)
    decoder = state.pop(_DECODER, None)
    if decoder is not None:
        words = state[_word_embedding_key(state)]
        if decoder.shape != words.shape or not torch.equal(decoder, words):
            raise WeightImportError(
                f"{_DECODER} differs from the word embeddings; our MLM decoder is tied to them "
                f"(tie_word_embeddings=true), untied checkpoints are not supported"
            )
    if has_nsp:
        model: nn.Module = BertForPreTraining(cfg)
    elif has_mlm:
        model = BertForMaskedLM(cfg, add_pooling_layer=has_pooler)
    else:
        model = BertModel(cfg, add_pooling_layer=has_pooler)
    prefix = "" if isinstance(model, BertModel) else "bert."
    ours = rename_state(state, bert_rules(prefix), ignore=_IGNORE)
    load_checked(model, ours)
    return model.eval()


register_importer("bert")(bert_from_state)

__all__ = ["bert_from_state", "bert_rules"]
