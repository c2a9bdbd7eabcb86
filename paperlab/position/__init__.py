"""Position encodings (notes A1, A2): how a transformer learns the order of its tokens.

Attention alone is permutation-equivariant: shuffle the tokens and the outputs shuffle with
them. A position encoding breaks the symmetry. The families differ in *where* the position
enters, and that is the whole plug-in interface a later attention module needs. Every position
module carries a class attribute ``kind``:

``kind = "absolute"`` -- acts on the input, before attention (``sinusoidal``, ``learned``,
``recursive``; ``multiplicative`` returns ``x * p`` instead of ``x + p``)::

    x = pe(x, offset=0, position_ids=None)          # (B, N, C) -> x + p  (B, N, C)
    p = pe.encoding(n, offset=0, position_ids=None)  # the encoding alone: (N, C) or (B, N, C)

``kind = "rotary"`` -- rotates queries and keys inside attention (``rope``, ``rope-2d``)::

    q = pe.rotate(q, offset=0, position_ids=None)   # (B, H, N, D) -> (B, H, N, D)
    k = pe.rotate(k, offset=0, position_ids=None)   # rotate keys before they enter a cache
    cos, sin = pe(position_ids)                      # the tables alone, float32 by default

``kind = "bias"`` -- adds a term to the attention logits (``shaw``, ``t5``, ``xl``,
``deberta``, ``alibi``)::

    scale = pe.default_scale(D)                      # the paper's logit scale (T5: 1.0)
    bias = pe(q, k, scale=scale, offset=None)        # (B or 1, H, N, M)
    logits = q @ k.transpose(-1, -2) * scale + bias

  ``offset`` is the absolute position of the first query; ``None`` means the queries are the
  last N of the M keys (``offset = M - N``: 0 for plain self-attention, the cache length when
  decoding). ``pe.content_dependent`` is ``False`` for ``t5`` and ``alibi``, whose bias depends
  on positions only (compute it once per shape and pass it as an ``attn_mask``); ``shaw``,
  ``xl`` and ``deberta`` read q and k (their terms are already multiplied by ``scale``). The
  causal ``alibi`` bias carries ``-inf`` above the diagonal; the others leave masking to the
  attention.

``kind_of(name)`` returns the kind of a registered encoding, so a config can name one
(``create("position", "rope", dim=64)``) and the attention knows where to plug it.

Positions: ``offset`` (an int >= 0) shifts ``0..N-1`` to ``offset..offset+N-1`` for
incremental decoding; ``position_ids`` ((N,) or (B, N) integers >= 0) gives them explicitly;
not both. The functions (``sinusoidal_table``, ``apply_rotary``, ``t5_relative_bucket``, ...)
accept any positions; the modules check them.
"""

from paperlab.position.alibi import ALiBi, alibi_bias, alibi_slopes
from paperlab.position.base import (
    KINDS,
    PositionBias,
    check_qk,
    kind_of,
    query_offset,
    resolve_positions,
)
from paperlab.position.learned import LearnedPositionalEmbedding
from paperlab.position.relative import (
    DebertaRelativePosition,
    ShawRelativePosition,
    XLRelativePosition,
    deberta_position_terms,
    rel_shift,
    shaw_relative_index,
    shaw_scores,
    shaw_values,
    xl_position_terms,
    xl_relative_scores,
)
from paperlab.position.rope import (
    RotaryEmbedding,
    RotaryEmbedding2D,
    apply_axial_rotary,
    apply_rotary,
    axial_rotary,
    rotary_cos_sin,
    rotary_inv_freq,
)
from paperlab.position.sinusoidal import (
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
    sinusoidal_table,
)
from paperlab.position.t5 import T5RelativeBias, t5_relative_bucket

__all__ = [
    "KINDS",
    "ALiBi",
    "PositionBias",
    "DebertaRelativePosition",
    "LearnedPositionalEmbedding",
    "MultiplicativePositionalEncoding",
    "RecursivePositionalEncoding",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "ShawRelativePosition",
    "SinusoidalPositionalEncoding",
    "T5RelativeBias",
    "XLRelativePosition",
    "alibi_bias",
    "alibi_slopes",
    "apply_axial_rotary",
    "apply_rotary",
    "axial_rotary",
    "check_qk",
    "deberta_position_terms",
    "kind_of",
    "multiply_positions",
    "query_offset",
    "rel_shift",
    "resolve_positions",
    "roll_recurrence",
    "rotate_pairs",
    "rotary_cos_sin",
    "rotary_inv_freq",
    "shaw_relative_index",
    "shaw_scores",
    "shaw_values",
    "sinusoidal_encoding",
    "sinusoidal_table",
    "t5_relative_bucket",
    "xl_position_terms",
    "xl_relative_scores",
]
