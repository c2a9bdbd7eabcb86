"""ALiBi: attention with linear biases (Press, Smith & Lewis 2022, "Train Short, Test Long").

The idea: no position vectors at all. Each head penalises a key linearly in its distance from
the query, ``logits[h, i, j] += -m_h * (i - j)``, with a fixed, head-specific slope m_h. Heads
with steep slopes look locally, shallow ones globally; since the penalty is defined for every
distance, a model trained on length L keeps working at several times L.

Slopes: for H a power of two, the geometric sequence starting at and with ratio 2^(-8/H):
H = 8 gives 1/2, 1/4, ..., 1/256. For other H, the reference implementation takes the
sequence of the nearest lower power of two c, then every other slope of the sequence for 2c
until H slopes are reached.

Shapes: ``alibi_slopes(H)`` -> (H,); ``alibi_bias(n, m, slopes)`` -> (1, H, N, M) for queries
at ``offset..offset+N-1`` (default M - N) and keys ``0..M-1``. ``causal=True`` puts ``-inf``
above the diagonal (keys after the query), as the reference's causal bias does;
``causal=False`` uses the symmetric distance |i - j|.
"""

from __future__ import annotations

import math

import torch

from paperlab.errors import ShapeError, check_int
from paperlab.position.base import PositionBias, check_qk, query_offset
from paperlab.registry import export_position


def _geometric_slopes(n: int) -> list[float]:
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]


def alibi_slopes(num_heads: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The per-head slopes m_h, shape (H,)."""
    check_int("num_heads", num_heads, minimum=1)
    closest = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = _geometric_slopes(closest)
    if closest < num_heads:
        slopes += _geometric_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=dtype)


def alibi_bias(
    n: int,
    m: int,
    slopes: torch.Tensor,
    *,
    causal: bool = True,
    offset: int | None = None,
) -> torch.Tensor:
    """-m_h * distance for N queries against M keys: (1, H, N, M) in ``slopes``' dtype."""
    check_int("n", n, minimum=0)
    check_int("m", m, minimum=0)
    if not isinstance(slopes, torch.Tensor) or slopes.dim() != 1:
        raise ShapeError(f"slopes must be a (H,) tensor, got {getattr(slopes, 'shape', slopes)}")
    off = query_offset(n, m, offset)
    query = torch.arange(off, off + n, device=slopes.device)
    key = torch.arange(m, device=slopes.device)
    distance = (query[:, None] - key[None, :]).to(slopes.dtype)  # i - j, (N, M)
    if causal:
        bias = -slopes[:, None, None] * distance.clamp(min=0)
        bias = bias.masked_fill(distance < 0, float("-inf"))
    else:
        bias = -slopes[:, None, None] * distance.abs()
    return bias.unsqueeze(0)


@export_position("alibi", note="A1", paper="Press et al. 2022 (ALiBi)")
class ALiBi(PositionBias):
    """Fixed linear distance penalty per head (no parameters): (1, H, N, M)."""

    content_dependent = False

    def __init__(self, num_heads: int, *, causal: bool = True) -> None:
        super().__init__()
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.causal = bool(causal)

    def bias(
        self,
        n: int,
        m: int,
        *,
        offset: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """(1, H, N, M) for N queries at ``offset..`` (default M - N) against M keys."""
        slopes = alibi_slopes(self.num_heads, dtype=dtype).to(device)
        return alibi_bias(n, m, slopes, causal=self.causal, offset=offset)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        offset: int | None = None,
    ) -> torch.Tensor:
        """The bias for q (B, H, N, D) against k (B, H, M, D); ``scale`` does not enter."""
        check_qk(q, k, self.num_heads)
        exact = torch.float64 if q.dtype == torch.float64 else torch.float32
        bias = self.bias(q.shape[-2], k.shape[-2], offset=offset, dtype=exact, device=q.device)
        return bias.to(q.dtype)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, causal={self.causal}"
