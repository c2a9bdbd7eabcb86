"""Relative position encodings that read the content: Shaw, Transformer-XL/XLNet, DeBERTa (A1).

Expand the logit of absolute-encoded inputs, (x_i + p_i) W_Q W_K^T (x_j + p_j)^T, into four
terms: content-content, content-position, position-content, position-position. The relative
encodings keep some of them and replace the absolute p_j by a function of i - j. (T5's scalar
bias is in ``t5.py``, ALiBi in ``alibi.py``; RoPE, which needs no extra term, in ``rope.py``.)

Shaw, Uszkoreit & Vaswani 2018 -- one learned vector per clipped distance, added to the key::

    logits_ij = q_i . (k_j + a_ij) / sqrt(d),   a_ij = w[clip(j - i, -K, K)]   (2K+1 vectors)
    out_i = sum_j alpha_ij (v_j + a^V_ij)      (optional value term, ``shaw_values``)

Transformer-XL (Dai et al. 2019; XLNet uses the same score) -- a sinusoid R of the distance,
projected by W_r, and two learned global vectors u, v that replace the query in the terms
where the query's own position used to be::

    logits_ij = [(q_i + u) . k_j + (q_i + v) . W_r R_{i-j}] / sqrt(d)

  Computing (q_i + v) . W_r R_c for every listed distance c gives an (N, L) matrix indexed by
  (i, c); ``rel_shift`` re-indexes it to (i, j) with one pad and two reshapes instead of a
  gather: with distances listed from offset+N-1 down, row i must shift left by N-1-i.

DeBERTa (He et al. 2021) -- disentangled: content and relative position have separate
projections, and both cross terms are kept, with distances clipped to [-k, k)::

    delta(i, j) = clip(i - j, -k, k - 1) + k              (0 .. 2k-1)
    logits_ij = [q_i . k_j + q_i . K^r_{delta(i,j)} + k_j . Q^r_{delta(j,i)}] / sqrt(3d)
    Q^r = P W_{q,r},  K^r = P W_{k,r},  P: 2k learned relative embeddings

Shapes: q (B, H, N, D), k (B, H, M, D); queries sit at ``offset..offset+N-1`` (default
M - N: the last N of the M keys) and keys at ``0..M-1``. The functions return the terms
*added* to q.k (unscaled); the modules return them times ``scale`` (the ``"bias"`` interface,
see ``paperlab.position``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ShapeError, check_int
from paperlab.position.base import PositionBias, check_qk, query_offset
from paperlab.position.sinusoidal import sinusoidal_encoding
from paperlab.registry import export_position

# --- Shaw et al. -----------------------------------------------------------------------------


def shaw_relative_index(
    n: int, m: int, max_distance: int, *, offset: int = 0, device: torch.device | None = None
) -> torch.Tensor:
    """(N, M) index clip(j - i, -K, K) + K into the 2K+1 embeddings."""
    check_int("max_distance", max_distance, minimum=0)
    query = torch.arange(offset, offset + n, device=device)
    key = torch.arange(m, device=device)
    rel = key[None, :] - query[:, None]
    return rel.clamp(-max_distance, max_distance) + max_distance


def shaw_scores(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """q_i . a_ij for q (B, H, N, D) and the (N, M, D) table: (B, H, N, M)."""
    if table.dim() != 3 or table.shape[0] != q.shape[-2] or table.shape[-1] != q.shape[-1]:
        raise ShapeError(
            f"table must be (N, M, D) for q {tuple(q.shape)}, got {tuple(table.shape)}"
        )
    return torch.einsum("bhnd,nmd->bhnm", q, table)


def shaw_values(weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """sum_j alpha_ij a^V_ij for weights (B, H, N, M) and the (N, M, D) table: (B, H, N, D)."""
    if table.dim() != 3 or table.shape[:2] != weights.shape[-2:]:
        raise ShapeError(
            f"table must be (N, M, D) for weights {tuple(weights.shape)}, got {tuple(table.shape)}"
        )
    return torch.einsum("bhnm,nmd->bhnd", weights, table)


@export_position("shaw", note="A1", paper="Shaw et al. 2018")
class ShawRelativePosition(PositionBias):
    """Clipped relative key (and optionally value) embeddings shared by all heads."""

    def __init__(self, max_distance: int, head_dim: int, *, values: bool = False) -> None:
        super().__init__()
        self.max_distance = check_int("max_distance", max_distance, minimum=0)
        self.head_dim = check_int("head_dim", head_dim, minimum=1)
        self.key_embeddings = nn.Embedding(2 * max_distance + 1, head_dim)
        self.value_embeddings = nn.Embedding(2 * max_distance + 1, head_dim) if values else None
        for emb in (self.key_embeddings, self.value_embeddings):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)

    def table(
        self, n: int, m: int, *, offset: int | None = None, values: bool = False
    ) -> torch.Tensor:
        """The (N, M, D) table a^K_ij (or a^V_ij with ``values=True``)."""
        emb = self.value_embeddings if values else self.key_embeddings
        if emb is None:
            raise ShapeError("this module has no value embeddings; build it with values=True")
        off = query_offset(n, m, offset)
        index = shaw_relative_index(n, m, self.max_distance, offset=off, device=emb.weight.device)
        return emb(index)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """scale * q_i . a_ij: (B, H, N, M)."""
        check_qk(q, k)
        if q.shape[-1] != self.head_dim:
            raise ShapeError(f"q must have head dim {self.head_dim}, got {tuple(q.shape)}")
        scale = self.default_scale(q.shape[-1]) if scale is None else scale
        table = self.table(q.shape[-2], k.shape[-2], offset=offset).to(q.dtype)
        return shaw_scores(q, table) * scale

    def extra_repr(self) -> str:
        return f"max_distance={self.max_distance}, head_dim={self.head_dim}"


# --- Transformer-XL / XLNet ------------------------------------------------------------------


def xl_relative_distances(n: int, m: int, *, offset: int) -> torch.Tensor:
    """The N + M - 1 distances i - j the score needs, descending: offset+N-1 .. offset-M+1."""
    return torch.arange(offset + n - 1, offset - m, -1)


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """(..., N, L) -> (..., N, L) with out[..., i, j] = x[..., i, j + N - 1 - i].

    Valid where 0 <= j + N - 1 - i < L (all j < M when L = N + M - 1). Zero-pad one column on
    the left, read the memory as (L + 1, N), drop the first row, read it back as (N, L).
    """
    *lead, n, length = x.shape
    padded = F.pad(x, (1, 0)).reshape(*lead, length + 1, n)
    return padded[..., 1:, :].reshape(*lead, n, length)


def xl_position_terms(
    q: torch.Tensor, k: torch.Tensor, r: torch.Tensor, u: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """u . k_j + (q_i + v) . r_{i-j}: (B, H, N, M).

    r (H, N + M - 1, D): the projected encodings W_r R of ``xl_relative_distances``;
    u, v (H, D): the global content and position biases.
    """
    check_qk(q, k)
    b, h, n, d = q.shape
    m = k.shape[-2]
    if r.shape != (h, n + m - 1, d):
        raise ShapeError(f"r must be (H, N + M - 1, D) = {(h, n + m - 1, d)}, got {tuple(r.shape)}")
    for name, t in (("u", u), ("v", v)):
        if t.shape != (h, d):
            raise ShapeError(f"{name} must be (H, D) = {(h, d)}, got {tuple(t.shape)}")
    content_bias = torch.einsum("hd,bhmd->bhm", u, k)[:, :, None, :]  # (B, H, 1, M)
    by_distance = torch.einsum("bhnd,hld->bhnl", q + v[None, :, None, :], r)  # (B, H, N, L)
    return content_bias + rel_shift(by_distance)[..., :m]


def xl_relative_scores(
    q: torch.Tensor, k: torch.Tensor, r: torch.Tensor, u: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """The full (unscaled) score (q_i + u) . k_j + (q_i + v) . W_r R_{i-j}: (B, H, N, M)."""
    return q @ k.transpose(-1, -2) + xl_position_terms(q, k, r, u, v)


@export_position("xl", note="A1", paper="Dai et al. 2019 (Transformer-XL); Yang et al. 2019")
class XLRelativePosition(PositionBias):
    """Relative sinusoids projected by W_r, with the global biases u and v."""

    def __init__(
        self, num_heads: int, head_dim: int, *, dim: int | None = None, base: float = 10000.0
    ) -> None:
        super().__init__()
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.head_dim = check_int("head_dim", head_dim, minimum=1)
        self.dim = check_int("dim", num_heads * head_dim if dim is None else dim, minimum=2)
        self.base = float(base)
        sinusoidal_encoding(torch.zeros(1), self.dim, self.base)  # validates dim (even), base
        self.u = nn.Parameter(torch.empty(num_heads, head_dim))
        self.v = nn.Parameter(torch.empty(num_heads, head_dim))
        self.w_r = nn.Linear(self.dim, num_heads * head_dim, bias=False)
        nn.init.normal_(self.u, std=0.02)
        nn.init.normal_(self.v, std=0.02)

    def relative_keys(self, n: int, m: int, offset: int, like: torch.Tensor) -> torch.Tensor:
        """W_r R for the N + M - 1 distances: (H, N + M - 1, D)."""
        dist = xl_relative_distances(n, m, offset=offset).to(like.device)
        rel = sinusoidal_encoding(dist, self.dim, self.base, dtype=self.w_r.weight.dtype)
        r = self.w_r(rel).view(-1, self.num_heads, self.head_dim).transpose(0, 1)
        return r.to(like.dtype)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """scale * [u . k_j + (q_i + v) . W_r R_{i-j}]: (B, H, N, M)."""
        check_qk(q, k, self.num_heads)
        n, m = q.shape[-2], k.shape[-2]
        scale = self.default_scale(q.shape[-1]) if scale is None else scale
        r = self.relative_keys(n, m, query_offset(n, m, offset), q)
        terms = xl_position_terms(q, k, r, self.u.to(q.dtype), self.v.to(q.dtype))
        return terms * scale

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, dim={self.dim}"


# --- DeBERTa ---------------------------------------------------------------------------------


def _delta(a: torch.Tensor, b: torch.Tensor, max_distance: int) -> torch.Tensor:
    """clip(a_x - b_y, -k, k - 1) + k for every pair: (len(a), len(b))."""
    return (a[:, None] - b[None, :] + max_distance).clamp(0, 2 * max_distance - 1)


def deberta_relative_index(
    n: int, m: int, max_distance: int, *, offset: int = 0, device: torch.device | None = None
) -> torch.Tensor:
    """(N, M) delta(i, j) = clip(i - j, -k, k - 1) + k for queries at offset.. and keys 0.."""
    check_int("max_distance", max_distance, minimum=1)
    query = torch.arange(offset, offset + n, device=device)
    return _delta(query, torch.arange(m, device=device), max_distance)


def deberta_position_terms(
    q: torch.Tensor,
    k: torch.Tensor,
    q_r: torch.Tensor,
    k_r: torch.Tensor,
    max_distance: int,
    *,
    offset: int = 0,
) -> torch.Tensor:
    """content->position + position->content, (B, H, N, M), unscaled.

    q_r, k_r (H, 2k, D): the relative embeddings projected for queries and for keys.
    """
    check_qk(q, k)
    b, h, n, d = q.shape
    m = k.shape[-2]
    for name, t in (("q_r", q_r), ("k_r", k_r)):
        if t.shape != (h, 2 * max_distance, d):
            raise ShapeError(
                f"{name} must be (H, 2 * max_distance, D) = {(h, 2 * max_distance, d)}, "
                f"got {tuple(t.shape)}"
            )
    query = torch.arange(offset, offset + n, device=q.device)
    key = torch.arange(m, device=q.device)
    # c2p[i, j] = q_i . K^r[delta(i, j)]: score every listed distance, then pick
    delta_ij = _delta(query, key, max_distance).expand(b, h, n, m)
    c2p = torch.einsum("bhnd,hrd->bhnr", q, k_r).gather(-1, delta_ij)
    # p2c[i, j] = k_j . Q^r[delta(j, i)]: the same, from the key's side, then transposed
    delta_ji = _delta(key, query, max_distance).expand(b, h, m, n)
    p2c = torch.einsum("bhmd,hrd->bhmr", k, q_r).gather(-1, delta_ji)
    return c2p + p2c.transpose(-1, -2)


@export_position("deberta", note="A1", paper="He et al. 2021 (DeBERTa)")
class DebertaRelativePosition(PositionBias):
    """Disentangled attention's two cross terms, with 2k shared relative embeddings."""

    def __init__(
        self, num_heads: int, head_dim: int, max_distance: int = 128, *, dim: int | None = None
    ) -> None:
        super().__init__()
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.head_dim = check_int("head_dim", head_dim, minimum=1)
        self.max_distance = check_int("max_distance", max_distance, minimum=1)
        self.dim = check_int("dim", num_heads * head_dim if dim is None else dim, minimum=1)
        self.rel_embeddings = nn.Parameter(torch.empty(2 * max_distance, self.dim))
        nn.init.normal_(self.rel_embeddings, std=0.02)
        self.query_proj = nn.Linear(self.dim, num_heads * head_dim)  # W_{q,r} (with bias)
        self.key_proj = nn.Linear(self.dim, num_heads * head_dim, bias=False)  # W_{k,r}

    def default_scale(self, head_dim: int) -> float:
        """DeBERTa divides all three terms by sqrt(3d)."""
        return (3 * check_int("head_dim", head_dim, minimum=1)) ** -0.5

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """scale * [q_i . K^r_delta(i,j) + k_j . Q^r_delta(j,i)]: (B, H, N, M)."""
        check_qk(q, k, self.num_heads)
        n, m = q.shape[-2], k.shape[-2]
        scale = self.default_scale(q.shape[-1]) if scale is None else scale
        split = (2 * self.max_distance, self.num_heads, self.head_dim)
        q_r = self.query_proj(self.rel_embeddings).view(split).transpose(0, 1).to(q.dtype)
        k_r = self.key_proj(self.rel_embeddings).view(split).transpose(0, 1).to(q.dtype)
        off = query_offset(n, m, offset)
        return deberta_position_terms(q, k, q_r, k_r, self.max_distance, offset=off) * scale

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"max_distance={self.max_distance}"
        )
