"""BERT (Devlin et al. 2019, note D2): a bidirectional Transformer encoder pre-trained by MLM.

The idea: hide some input tokens and train the encoder to restore them from both sides'
context (the *masked language model*), plus, in the original paper, to tell whether
sentence B followed sentence A (*next sentence prediction*, NSP). Nothing is causal, so
every layer sees the whole sentence.

The formula::

    x_0 = LayerNorm(E_word[ids] + E_pos[0..L) + E_type[type_ids])      (then dropout)
    x_l = EncoderLayer_l(x_{l-1})        post-LN, GELU FFN, LayerNorm eps 1e-12
    pooled = tanh(W_p x_L[:, 0] + b_p)                                   ([CLS] pooler)
    MLM logits = LayerNorm(gelu(W_t x_L + b_t)) E_word^T + b_vocab      (decoder tied)
    NSP logits = W_nsp pooled + b_nsp                                    (2 classes)

The masking rule (``mask_tokens``, in ``language/mlm.py`` with the MLM loss and accuracy,
re-exported here): each non-special token is *selected* with probability p = 0.15; a
selected token becomes [MASK] with probability 0.8, a uniformly random token with 0.1, and
stays unchanged with 0.1. The loss is cross-entropy on the selected positions only.

The layers are ``paperlab.sequence.transformer_layers.EncoderLayer`` (post-LN), the
attention is paperlab's ``MultiHeadAttention``. Weight names are ours; ``paperlab/hub/bert.py``
maps HF checkpoints onto them. HF's ``attention_mask`` convention is kept at this boundary:
(B, L) with 1/True = a real token (the attention's ``key_padding_mask`` is its negation).

Shapes: input_ids, token_type_ids, attention_mask (B, L); hidden (B, L, d);
pooled (B, d); MLM logits (B, L, V); NSP logits (B, 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError
from paperlab.language.mlm import (
    IGNORE_INDEX,
    mask_tokens,
    mlm_accuracy,
    mlm_loss,
    special_tokens_mask,
)
from paperlab.registry import export_model
from paperlab.sequence.lm import check_tokens
from paperlab.sequence.transformer_layers import ACTIVATIONS, EncoderLayer

# HF ``hidden_act`` names -> ours (transformer_layers.ACTIVATIONS)
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "relu": "relu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_tanh": "gelu_tanh",
    "quick_gelu": "quick_gelu",
}


@dataclass
class BertConfig(Config):
    """BERT's sizes, with HF ``BertConfig``'s field names and meanings."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02

    def check(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_act not in HF_ACTIVATIONS:
            raise ConfigError(
                f"hidden_act must be one of {', '.join(HF_ACTIVATIONS)}, got {self.hidden_act!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(
                f"pad_token_id must lie in [0, vocab_size={self.vocab_size}), "
                f"got {self.pad_token_id}"
            )

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> BertConfig:
        """Our config from an HF ``config.json`` dict (unknown HF fields are ignored)."""
        if hf.get("model_type", "bert") != "bert":
            raise ConfigError(f"config.json is for model_type {hf.get('model_type')!r}, not bert")
        for flag in ("is_decoder", "add_cross_attention"):
            if hf.get(flag):
                raise ConfigError(f"config.json sets {flag}=true; our BERT is an encoder only")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(
                f"position_embedding_type must be 'absolute', got "
                f"{hf['position_embedding_type']!r}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in hf.items() if k in names}
        if fields.get("pad_token_id") is None:
            fields["pad_token_id"] = 0
        cfg = cls(**fields)
        cfg.check()
        return cfg


# --- the functions ---------------------------------------------------------------------------


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states (sentence-transformers' pooling): (B, L, d) -> (B, d)."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


# --- the modules -----------------------------------------------------------------------------


def _config(config: BertConfig | None, fields: dict[str, Any]) -> BertConfig:
    if config is None:
        config = BertConfig(**fields)
    elif fields:
        config = dataclasses.replace(config, **fields)
    if not isinstance(config, BertConfig):
        raise ArgumentTypeError(f"config must be a BertConfig, got {type(config).__name__}")
    config.check()
    return config


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) weights, zero biases, unit LayerNorms, zero pad row."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout: (B, L) -> (B, L, d)."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.config = c
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.config
        check_tokens(input_ids, c.vocab_size, "input_ids")
        b, n = input_ids.shape
        if position_ids is None:
            if n > c.max_position_embeddings:
                raise ShapeError(
                    f"input_ids has length {n}, more than max_position_embeddings "
                    f"({c.max_position_embeddings})"
                )
            position_ids = torch.arange(n, device=input_ids.device).unsqueeze(0)
        else:
            check_tokens(position_ids.expand(b, n), c.max_position_embeddings, "position_ids")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif token_type_ids.shape != input_ids.shape:
            raise ShapeError(
                f"token_type_ids must have input_ids' shape {tuple(input_ids.shape)}, got "
                f"{tuple(token_type_ids.shape)}"
            )
        else:
            check_tokens(token_type_ids, c.type_vocab_size, "token_type_ids")
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.norm(x))


class BertOutput(NamedTuple):
    """``last_hidden_state`` (B, L, d) and ``pooler_output`` (B, d), or None without pooler."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None


def _padding(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor | None:
    """HF's attention_mask (B, L), 1/True = real, as a key_padding_mask (True = padding)."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise ArgumentTypeError(
            f"attention_mask must be a tensor, got {type(attention_mask).__name__}"
        )
    if attention_mask.shape != input_ids.shape:
        raise ShapeError(
            f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    return ~attention_mask.bool()


@export_model("bert", note="D2", paper="Devlin et al. 2019")
class BertModel(nn.Module):
    """BERT encoder: embeddings, post-LN encoder layers, [CLS] pooler (dense + tanh).

    ``BertModel(config=None, *, add_pooling_layer=True, **fields)``;
    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None)``
    -> ``BertOutput(last_hidden_state (B, L, d), pooler_output (B, d) or None)``.
    """

    def __init__(
        self, config: BertConfig | None = None, *, add_pooling_layer: bool = True, **fields: Any
    ) -> None:
        super().__init__()
        self.config = c = _config(config, fields)
        self.embeddings = BertEmbeddings(c)
        self.layers = nn.ModuleList(
            EncoderLayer(
                c.hidden_size, c.num_attention_heads, c.intermediate_size,
                dropout=c.hidden_dropout_prob, attention_dropout=c.attention_probs_dropout_prob,
                activation=HF_ACTIVATIONS[c.hidden_act], norm_eps=c.layer_norm_eps,
            )
            for _ in range(c.num_hidden_layers)
        )  # fmt: skip
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size) if add_pooling_layer else None
        init_bert_weights(self, c.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BertOutput:
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        padding = _padding(attention_mask, input_ids)
        for layer in self.layers:
            x = layer(x, key_padding_mask=padding)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return BertOutput(x, pooled)


class BertMLMHead(nn.Module):
    """dense -> activation -> LayerNorm, then the tied word embeddings and a vocabulary bias."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.activation = HF_ACTIVATIONS[c.hidden_act]

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, d), word_embeddings (V, d) -> logits (B, L, V)."""
        h = self.norm(ACTIVATIONS[self.activation](self.dense(hidden)))
        return F.linear(h, word_embeddings, self.bias)


@export_model("bert-mlm", note="D2", paper="Devlin et al. 2019")
class BertForMaskedLM(nn.Module):
    """BERT with the MLM head; the decoder is the word embedding matrix itself (tied).

    ``BertForMaskedLM(config=None, *, add_pooling_layer=False, **fields)``; ``forward(...)``
    as ``BertModel`` -> MLM logits (B, L, V).
    """

    def __init__(
        self, config: BertConfig | None = None, *, add_pooling_layer: bool = False, **fields: Any
    ) -> None:
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=add_pooling_layer, **fields)
        self.config = c = self.bert.config
        self.mlm = BertMLMHead(c)
        init_bert_weights(self.mlm, c.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids)
        return self.mlm(out.last_hidden_state, self.bert.embeddings.word_embeddings.weight)


class PreTrainingOutput(NamedTuple):
    """``mlm_logits`` (B, L, V) and ``nsp_logits`` (B, 2)."""

    mlm_logits: torch.Tensor
    nsp_logits: torch.Tensor


@export_model("bert-pretraining", note="D2", paper="Devlin et al. 2019")
class BertForPreTraining(nn.Module):
    """BERT with both pre-training heads: MLM (tied) and NSP (Linear(d, 2) on the pooler).

    ``forward(...)`` as ``BertModel`` -> ``PreTrainingOutput(mlm_logits, nsp_logits)``.
    """

    def __init__(self, config: BertConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=True, **fields)
        self.config = c = self.bert.config
        self.mlm = BertMLMHead(c)
        self.nsp = nn.Linear(c.hidden_size, 2)
        init_bert_weights(self.mlm, c.initializer_range)
        init_bert_weights(self.nsp, c.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> PreTrainingOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids)
        mlm = self.mlm(out.last_hidden_state, self.bert.embeddings.word_embeddings.weight)
        return PreTrainingOutput(mlm, self.nsp(out.pooler_output))


def pretraining_loss(
    out: PreTrainingOutput, labels: torch.Tensor, next_sentence_label: torch.Tensor
) -> torch.Tensor:
    """MLM cross-entropy (labels -100 ignored) + NSP cross-entropy (label 0 = B follows A)."""
    nsp = out.nsp_logits
    nsp = nsp.float() if nsp.dtype in (torch.float16, torch.bfloat16) else nsp
    return mlm_loss(out.mlm_logits, labels) + F.cross_entropy(nsp, next_sentence_label)


__all__ = [
    "HF_ACTIVATIONS",
    "IGNORE_INDEX",
    "BertConfig",
    "BertEmbeddings",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertMLMHead",
    "BertModel",
    "BertOutput",
    "PreTrainingOutput",
    "mask_tokens",
    "mean_pool",
    "mlm_accuracy",
    "mlm_loss",
    "pretraining_loss",
    "special_tokens_mask",
]
