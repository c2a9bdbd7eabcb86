"""Attention mechanisms (notes B1-B5): one file per technique, one plug-in interface.

Functions work on heads, like ``torch.nn.functional.scaled_dot_product_attention``: q
(B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), a boolean ``mask`` (True = attend) broadcastable
to (B, H, N, M), a float ``bias`` added to the scores, ``causal`` aligned bottom-right (the
queries are the last N of the M keys, as with a KV cache). ``masks.py`` holds the checks and
mask builders every file shares.

Modules: the common signature
-----------------------------
Every registered attention (``create("attention", name, dim=..., num_heads=...)``) is an
``nn.Module`` built and called the same way, so a transformer block can take any of them by
registry name::

    attn = Cls(dim, num_heads, *, causal=False, dropout=0.0, bias=True,
               position=None, position_kwargs=None, **variant_options)
    out = attn(x)                                          # (B, N, C) -> (B, N, C)
    out = attn(x, key_padding_mask=pad)                    # pad (B, N) bool, True = padding
    out, cache = attn(x, use_cache=True)                   # prefill, returns the cache
    out, cache = attn(x_next, cache=cache, use_cache=True) # incremental decoding (causal)

- ``dim`` C = ``num_heads`` * head dim; ``causal`` is fixed at construction (decoder or
  encoder); ``dropout`` is attention dropout (on the weights where there are weights; linear
  attention, which has none, drops its output); ``bias`` puts biases on the projections.
- ``position``: ``None``, a registered position encoding's name (``"rope"``, ``"t5"``, ...) or
  a position module; ``position_kwargs`` go to its constructor, whose ``num_heads``,
  ``head_dim``, rotary ``dim`` and causal direction (``causal`` / ``bidirectional``) are
  filled in from the attention unless given. ``kind = "rotary"`` encodings rotate q and k (at
  the right offset when decoding; caches hold rotated keys); ``kind = "bias"`` encodings add
  their (B or 1, H, N, M) term to the scores and set the logit scale (only attentions with a
  score matrix accept them); ``kind = "absolute"`` encodings act on the input, not in the
  attention: add them to x before the block (``x = pe(x)``) -- passing one here is an error.
- ``key_padding_mask`` follows ``torch.nn.MultiheadAttention``: True marks padding. When
  decoding with a cache, it covers the new tokens only; the cache remembers earlier padding.
- The return value is ``out`` unless ``use_cache=True``, which returns ``(out, cache)``.
  A ``cache`` given without ``use_cache`` is read but no new cache is returned.

Registered: ``softmax`` (``MultiHeadAttention``), ``linear`` (``LinearAttention``), ``local``
(``LocalAttention``), ``linformer`` (``LinformerAttention``), ``performer``
(``PerformerAttention``), ``norm-attention`` and ``diag-attention`` (TransNormer's
``NormAttention``, ``DiagAttention``), ``gau`` (``GatedAttentionUnit``) and ``flash``
(``FLASH``; GAU and FLASH use one shared head whatever ``num_heads`` says).
"""

from paperlab.attention.base import AttentionModule, KVCache, build_position
from paperlab.attention.gau import FLASH, GatedAttentionUnit, gau_attention, mixed_chunk_attention  # noqa: E501
from paperlab.attention.linear import (
    FEATURE_MAPS,
    LinearAttention,
    LinearState,
    linear_attention,
    linear_attention_features,
    linear_attention_recurrent,
    linear_attention_step,
)
from paperlab.attention.performer import PerformerAttention, performer_attention
from paperlab.attention.softmax import (
    MultiHeadAttention,
    attention_weights,
    masked_softmax,
    scaled_dot_product_attention,
)
from paperlab.attention.sparse import (
    LinformerAttention,
    LocalAttention,
    linformer_attention,
    local_attention,
)
from paperlab.attention.transnormer import (
    DiagAttention,
    NormAttention,
    TransNormer,
    diag_attention,
    norm_attention,
)

__all__ = [
    "FEATURE_MAPS",
    "FLASH",
    "DiagAttention",
    "GatedAttentionUnit",
    "NormAttention",
    "PerformerAttention",
    "TransNormer",
    "diag_attention",
    "gau_attention",
    "linear_attention_features",
    "mixed_chunk_attention",
    "norm_attention",
    "performer_attention",
    "AttentionModule",
    "KVCache",
    "LinearAttention",
    "LinearState",
    "LinformerAttention",
    "LocalAttention",
    "MultiHeadAttention",
    "attention_weights",
    "build_position",
    "linear_attention",
    "linear_attention_recurrent",
    "linear_attention_step",
    "linformer_attention",
    "local_attention",
    "masked_softmax",
    "scaled_dot_product_attention",
]
