"""Word2Vec's SGD step on a batch of (centre, context) pairs at once (note D1).

``paperlab.language.word2vec`` states the model; this file is how one chunk of text becomes a
few large tensor operations instead of a Python loop per word.

The update (word2vec.c's, per pair)
-----------------------------------
With input ``h`` (a context vector in skip-gram, the context's mean or sum in CBOW), an output
row ``u`` and label ``y`` (1 for the target, 0 for a negative; ``1 - code_d`` on the Huffman
path), ``f = h . u`` and ``g = (y - s(f)) * alpha``; then ``u += g h`` and ``h``'s rows get
``+= sum g u``. Negative sampling takes word2vec.c's table values ``s = 1`` above ``|f| = 6``
and ``0`` below; hierarchical softmax skips a node with ``|f| >= 6``. For one pair
``ns_update`` and ``hs_update`` are word2vec.c's update exactly (tested in float64).

The batch
---------
- windows: ``reduced_windows`` gives every position's context slots at once, (n, 2 window)
  positions and a mask, from one random ``b`` per position;
- groups: one group per centre word with M inputs (skip-gram: its up to 2 window context
  vectors, padded and masked; CBOW: one, the context's mean or sum by ``embedding_bag``) and
  R output rows (1 + K for the target and its K negatives; the target's Huffman path, padded);
  CBOW's negatives instead form groups of G centres (M = G inputs) sharing K rows, with
  ``valid`` per (input, row); ``f`` is a batched matrix product (N, M, D) x (N, D, R), or an
  elementwise product when M = R = 1 (a ``bmm`` with unit dimensions is slow on the CPU);
- writes: every row reads its old value, and the updates of the batch are added with
  ``index_add_`` ("Hogwild within a batch"), where word2vec.c chains them pair after pair.

The cap on shared rows
----------------------
Summing is harmless for a row that a batch touches a few times, but not for the rows that
many pairs share: the Huffman root is on every path, so in a batch of 1000 skip-gram pairs
word2vec.c moves it 1000 times, each step from the value the last one left (the steps
correct each other), while the summed update is 1000 steps all taken from the same point, a
single step of 1000 alpha that overshoots (the frequent negatives, and frequent words' own
rows without subsampling, likewise). So a row that receives ``n`` pair updates in one batch
gets ``min(1, cap / n)`` of their sum: at most ``cap`` updates' worth, in the direction of their
mean. A row below the cap (almost every row) gets exactly word2vec.c's summed updates; a row
above it moves as ``cap`` sequential steps along its mean gradient would, to the same fixed
point (where the mean gradient is zero). ``cap=None`` sums without a cap.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AliasSampler",
    "Workspace",
    "hs_rows",
    "hs_update",
    "ns_rows",
    "ns_update",
    "output_step",
    "padded_tree",
    "reduced_windows",
    "row_scale",
    "train_cbow",
    "train_skipgram",
]

MAX_EXP = 6.0


def row_scale(
    rows: torch.Tensor, n_rows: int, cap: float | None, weight=None, workspace=None
) -> torch.Tensor | None:
    """``min(1, cap / n)`` for every entry of ``rows``, n = the updates its row gets in the batch.

    ``weight`` (same shape as ``rows``): the pair updates each entry carries (default 1 each).
    Returns None when no row exceeds the cap (or ``cap`` is None): nothing to scale.
    ``workspace`` (a ``Workspace``): count in its persistent zeroed (n_rows,) buffer and zero
    only the touched entries again, instead of a fresh ``bincount`` over all n_rows rows
    (which costs a pass over the whole vocabulary per step).
    """
    if cap is None:
        return None
    if workspace is None:
        n = torch.bincount(rows, weights=weight, minlength=n_rows).to(torch.float32)
        n = n.index_select(0, rows)
    else:
        counts = workspace.zeros("row_counts", n_rows, rows.device)
        ones = weight if weight is not None else workspace.ones(len(rows), rows.device)
        counts.index_add_(0, rows, ones if ones.dtype == torch.float32 else ones.float())
        n = counts.index_select(0, rows)
        counts.index_fill_(0, rows, 0.0)
    if float(n.max()) <= cap:
        return None
    # min(1, cap / n) = cap / max(n, cap)
    return torch.div(cap, n.clamp_(min=cap))


class Workspace:
    """Scratch memory reused from step to step for a step's large temporaries.

    A fresh tensor of a few MB per step costs the allocator page faults each time (glibc
    hands such blocks back to the system); writing with ``out=`` into the same buffers does
    not. ``ws(name, shape, like)`` is a view of the buffer ``name``, grown when too small.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._views: dict[tuple, torch.Tensor] = {}  # (name, shape, dtype, device) -> view

    def __call__(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (name, shape, like.dtype, like.device)
        view = self._views.get(key)  # a step's shapes recur: reuse the view object too
        if view is not None:
            return view
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.numel() < size
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = self._buffers[name] = torch.empty(size, dtype=like.dtype, device=like.device)
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        if len(self._views) > 4096:  # bounded: shapes vary with the steps' sizes
            self._views.clear()
        view = self._views[key] = buf.narrow(0, 0, size).view(shape)
        return view

    def zeros(self, name: str, size: int, device: torch.device) -> torch.Tensor:
        """A persistent float32 (size,) buffer of zeros; the caller leaves it zero again."""
        buf = self._buffers.get(name)
        if buf is None or buf.numel() != size or buf.device != device:
            buf = self._buffers[name] = torch.zeros(size, device=device)
        return buf

    def ones(self, size: int, device: torch.device) -> torch.Tensor:
        """A view of ``size`` float32 ones (read only)."""
        buf = self._buffers.get("ones")
        if buf is None or buf.numel() < size or buf.device != device:
            buf = self._buffers["ones"] = torch.ones(max(size, 1024), device=device)
        return buf.narrow(0, 0, size)


def _fresh(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _add_rows(
    weights: torch.Tensor, rows: torch.Tensor, update: torch.Tensor, cap, count=None, ws=None
):
    scale = row_scale(rows, weights.shape[0], cap, count, ws if isinstance(ws, Workspace) else None)
    if scale is not None:  # every update here is a fresh tensor: scaled in place
        update.mul_((scale if scale.dtype == update.dtype else scale.to(update.dtype)).unsqueeze(1))
    weights.index_add_(0, rows, update)


def output_step(
    h, mask, rows, label, valid, weights, alpha, hs, compute_loss, cap, ws, pairs=None, tag=None
):
    """The shared step: f = h . u, g = (label - s(f)) alpha, u += sum g h, return sum g u.

    h (N, M, D): M inputs per group, ``mask`` (N, M) or None (all real); rows and label
    (N, R): the R output rows of each group and their labels (float, or (1, R)); ``valid``
    (N, R), or (N, M, R) per input: which (input, row) pairs count; ``pairs`` (N * R,) float
    or None: the pair updates each output row carries (computed here when None). ``ws``: a
    ``Workspace`` or ``_fresh``; ``tag`` names the buffer of the returned update (default
    "hs" or "ns"), so that two layers of one step return updates in different buffers.
    """
    n, m, d = h.shape
    flat = rows.reshape(-1)
    r, tag = rows.shape[1], tag or ("hs" if hs else "ns")
    u = torch.index_select(weights, 0, flat, out=ws("u", (n * r, d), h)).view(n, r, d)
    # (N, M, R); batched matmuls with a dimension of 1 are slow on the CPU: products instead
    f = (h * u).sum(2, keepdim=True) if m == 1 and r == 1 else torch.bmm(h, u.transpose(1, 2))
    keep = valid if valid.dim() == 3 else valid.unsqueeze(1)
    keep = keep if mask is None else mask.unsqueeze(2) & keep
    if cap is not None and pairs is None:  # (input, row) pairs per output row
        pairs = keep.expand(n, m, r).sum(1).reshape(-1).to(h.dtype)
    s = torch.sigmoid(f)
    if hs:  # hierarchical softmax: word2vec.c skips a node with |f| >= MAX_EXP
        keep = keep & (f.abs() < MAX_EXP)
    else:  # negative sampling: word2vec.c's table gives 1 above MAX_EXP, 0 below -MAX_EXP
        s.masked_fill_(f > MAX_EXP, 1.0).masked_fill_(f < -MAX_EXP, 0.0)
    lab = label if label.dim() == 3 else label.unsqueeze(1)  # (N or 1, 1, R)
    lab = lab if lab.dtype == h.dtype else lab.to(h.dtype)
    g = (lab - s).mul_(keep).mul_(alpha)
    neu1e = ws(f"neu1e_{tag}", (n, m, d), h)  # (N, M, D), from the old u
    if r == 1:
        torch.mul(g, u, out=neu1e)
    else:
        torch.bmm(g, u, out=neu1e)
    # the cap's scale of each output row goes into g (N, M, R), not into its (N, R, D) update
    scale = row_scale(flat, weights.shape[0], cap, pairs, ws if isinstance(ws, Workspace) else None)
    if scale is not None:
        g = g * (scale if scale.dtype == g.dtype else scale.to(g.dtype)).view(n, 1, r)
    gt = g.transpose(1, 2)
    # u's update sum_m g h: one broadcast product for a single input (CBOW), else a matmul
    du = ws("du", (n, r, d), h)  # (N, R, D)
    if m == 1:
        torch.mul(gt, h, out=du)
    else:
        torch.bmm(gt, h, out=du)
    weights.index_add_(0, flat, du.view(-1, d))
    if not compute_loss:
        return neu1e, None
    loss = -(F.logsigmoid((2 * lab - 1) * f) * keep).sum()
    return neu1e, loss


def ns_rows(
    targets: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative sampling's output rows (N, 1 + K), labels (1, 1 + K) and which rows count.

    Label 1 for the target (column 0), 0 for a negative; a negative equal to its target is
    skipped (not valid).
    """
    rows = torch.cat([targets[:, None], negatives], dim=1)  # (N, 1 + K)
    label = (torch.arange(rows.shape[1], device=rows.device) == 0)[None, :]  # (1, 1 + K)
    valid = rows != targets[:, None]
    valid[:, 0] = True  # the target itself; a negative equal to it is skipped
    return rows, label, valid


def hs_rows(
    targets: torch.Tensor, tree: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hierarchical softmax's output rows (N, L): the targets' padded Huffman paths, labels
    ``1 - code_d`` and which nodes are on the path (``tree`` as ``padded_tree`` returns)."""
    points, codes, lengths = tree
    depth = torch.arange(points.shape[1], device=targets.device)
    valid = depth[None, :] < lengths.index_select(0, targets)[:, None]
    return points.index_select(0, targets), 1 - codes.index_select(0, targets), valid


def ns_update(
    h: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    syn1neg: torch.Tensor,
    alpha: float,
    mask: torch.Tensor | None = None,
    compute_loss: bool = True,
    cap: float | None = None,
    workspace: Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Negative sampling for N groups at once; updates ``syn1neg`` in place.

    h (N, D), or (N, M, D) with ``mask`` (N, M): M inputs sharing one target and its
    negatives; targets (N,), negatives (N, K) word ids. Label 1 for the target, 0 for a
    negative; a negative equal to its target is skipped. Returns ``(neu1e, loss)``: the
    update for the inputs' rows (h's shape) and the summed negative log-likelihood.
    ``cap``: the most pair updates a row of ``syn1neg`` takes in full (module docstring).
    ``workspace``: reuse its buffers (then ``neu1e`` is valid until the next call).
    """
    squeeze = h.dim() == 2
    h = h[:, None, :] if squeeze else h
    rows, label, valid = ns_rows(targets, negatives)
    neu1e, loss = output_step(h, mask, rows, label, valid, syn1neg, alpha, False, compute_loss,
                              cap, workspace or _fresh)  # fmt: skip
    return (neu1e[:, 0] if squeeze else neu1e), loss


def hs_update(
    h: torch.Tensor,
    targets: torch.Tensor,
    tree: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    syn1: torch.Tensor,
    alpha: float,
    mask: torch.Tensor | None = None,
    compute_loss: bool = True,
    cap: float | None = None,
    workspace: Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hierarchical softmax for N groups; updates ``syn1`` (V - 1, D) in place.

    ``tree = (points, codes, lengths)``: each word's Huffman path padded to the longest,
    (V, L) inner-node ids and bits, and (V,) path lengths. Node d of the target's path has
    label ``1 - code_d``; a node with ``|f| >= 6`` is skipped (word2vec.c). Shapes, result,
    ``cap`` and ``workspace`` as ``ns_update``.
    """
    squeeze = h.dim() == 2
    h = h[:, None, :] if squeeze else h
    rows, label, valid = hs_rows(targets, tree)
    neu1e, loss = output_step(h, mask, rows, label, valid, syn1, alpha, True, compute_loss, cap,
                              workspace or _fresh)  # fmt: skip
    return (neu1e[:, 0] if squeeze else neu1e), loss


def padded_tree(
    codes: list[list[int]], points: list[list[int]], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Huffman codes and paths as (V, L) tensors padded to the longest path, plus lengths."""
    lengths = [len(c) for c in codes]
    width = max(max(lengths, default=0), 1)
    pts = np.zeros((len(codes), width), dtype=np.int64)
    bits = np.zeros((len(codes), width), dtype=np.int64)
    for w, (code, path) in enumerate(zip(codes, points, strict=True)):
        pts[w, : len(path)], bits[w, : len(code)] = path, code
    return (
        torch.tensor(pts, device=device),
        torch.tensor(bits, device=device),
        torch.tensor(lengths, dtype=torch.long, device=device),
    )


def reduced_windows(
    sentence: torch.Tensor, reduced: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The context positions of every position at once: (n, 2 window) ids and a mask.

    ``sentence[i]`` is position i's sentence id, ``reduced[i]`` its random ``b`` in
    ``[0, window)``: j is a context of i when they share a sentence and
    ``1 <= |i - j| <= window - b_i``. Column order: offsets -window..-1, 1..window.
    """
    n = len(sentence)
    dev = sentence.device
    offsets = torch.cat(
        [torch.arange(-window, 0, device=dev), torch.arange(1, window + 1, device=dev)]
    )
    pos = torch.arange(n, device=dev)[:, None] + offsets[None, :]
    inside = (pos >= 0) & (pos < n)
    pos = pos.clamp(0, n - 1)
    mask = inside & (sentence.index_select(0, pos.reshape(-1)).view(pos.shape) == sentence[:, None])
    mask &= offsets.abs()[None, :] <= (window - reduced)[:, None]
    return pos, mask


def train_skipgram(
    vectors: torch.Tensor,
    context: torch.Tensor,
    mask: torch.Tensor,
    outputs,
    cap: float | None = None,
    workspace: Workspace | None = None,
) -> torch.Tensor | None:
    """One batched skip-gram step for N centre words; updates ``vectors`` and the outputs.

    context (N, 2 window) the context word ids of each centre, mask (N, 2 window) which of
    them are real. Each context vector predicts the centre: ``outputs(h, mask)`` with h
    (N, 2 window, D) runs the output layers and returns ``(neu1e, loss or None)``.
    """
    ws = workspace or _fresh
    n, width = context.shape
    d = vectors.shape[1]
    flat = context.reshape(-1)
    real = mask.reshape(-1).nonzero()[:, 0]  # the real (centre, context) slots
    h = torch.index_select(vectors, 0, flat, out=ws("h", (n * width, d), vectors))
    neu1e, loss = outputs(h.view(n, width, d), mask)  # padded slots masked out of updates
    update = torch.index_select(neu1e.reshape(n * width, d), 0, real,
                                out=ws("update", (len(real), d), vectors))  # fmt: skip
    _add_rows(vectors, flat.index_select(0, real), update, cap, None, ws)
    return loss


def train_cbow(
    vectors: torch.Tensor,
    words: torch.Tensor,
    offsets: torch.Tensor,
    weights: torch.Tensor,
    group: torch.Tensor,
    outputs,
    size: torch.Tensor | None = None,
    cap: float | None = None,
    workspace: Workspace | None = None,
) -> torch.Tensor | None:
    """One batched CBOW step for N centre words; updates ``vectors`` and the outputs.

    The real context words of the N centres back to back: words (S,) their ids, offsets (N,)
    where each centre's start, weights (S,) ``1 / size`` of their centre for the mean (1 for
    the sum), group (S,) their centre in ``0..N-1``. h (N, D) = ``embedding_bag`` of the
    weighted rows; ``outputs(h, None)`` returns ``(neu1e, loss or None)`` and every context
    row gets its centre's ``neu1e`` (divided by ``size`` (N, 1) for the sum, as gensim does).
    """
    ws = workspace or _fresh
    d = vectors.shape[1]
    # the op itself (mode 0: sum), without F.embedding_bag's Python checks on every step
    h = torch.embedding_bag(vectors, words, offsets, False, 0, False, weights, False, None)[0]
    neu1e, loss = outputs(h, None)
    if size is not None:  # gensim spreads a summed context's error over its words
        neu1e = neu1e / size
    update = torch.index_select(neu1e, 0, group, out=ws("update", (len(words), d), vectors))
    _add_rows(vectors, words, update, cap, None, ws)
    return loss


class AliasSampler:
    """Draws from a discrete distribution in O(1) per draw (Walker's alias method).

    Vose's construction ("A linear algorithm for generating random numbers with a given
    distribution", 1991): V columns of height 1/V; column i keeps word i with probability
    ``prob[i]`` and gives the rest to ``alias[i]``. A draw is a uniform column and one
    uniform number: ``i if u < prob[i] else alias[i]``. Exact up to float32 rounding of
    ``prob``, where a binary search of the cumulative distribution costs log V reads.
    """

    def __init__(self, probs, device: str | torch.device = "cpu") -> None:
        p = np.asarray(probs, dtype=np.float64)
        q = (p * (len(p) / p.sum())).tolist()
        prob, alias = [1.0] * len(q), list(range(len(q)))
        small = [i for i, x in enumerate(q) if x < 1.0]
        large = [i for i, x in enumerate(q) if x >= 1.0]
        while small and large:
            s, big = small.pop(), large[-1]
            prob[s], alias[s] = q[s], big
            q[big] -= 1.0 - q[s]
            if q[big] < 1.0:
                small.append(large.pop())
        self.prob = torch.tensor(prob, dtype=torch.float32, device=device)
        self.alias = torch.tensor(alias, dtype=torch.long, device=device)

    def probabilities(self) -> np.ndarray:
        """The distribution drawn: ``(prob_w + sum over alias_i = w of (1 - prob_i)) / V``."""
        prob = self.prob.double().cpu()
        n = len(prob)
        given = torch.bincount(self.alias.cpu(), weights=1.0 - prob, minlength=n)
        return ((prob + given) / n).numpy()

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Word ids of ``shape``, i.i.d. from the distribution."""
        dev = self.prob.device
        i = torch.randint(0, len(self.prob), shape, generator=generator, device=dev)
        u = torch.rand(shape, generator=generator, device=dev)
        flat = i.reshape(-1)
        keep = u < self.prob.index_select(0, flat).view(shape)
        return torch.where(keep, i, self.alias.index_select(0, flat).view(shape))
