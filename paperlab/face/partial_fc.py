"""Partial FC (note E2): the margin softmax over millions of classes, sharded across processes.

The problem
-----------
With C identities the classifier W is (C, d): at C = 10^7 and d = 512 that is 20 GB of
float32, before its gradient and optimiser state. No one GPU holds it, and the logits
(N, C) of a batch of N are larger still.

The method (An et al. 2021, "Partial FC: Training 10 Million Identities on a Single Machine";
insightface's ``PartialFC_V2``)
--------------------------------------------------------------------------------------------
1. **Shard the centres.** Rank r of W ranks holds the rows of classes
   [start_r, start_r + C_r) (C_r = C / W, the first C % W ranks one more).
2. **Gather the batch.** Every rank all-gathers the embeddings (with gradient: the backward
   sums the ranks' gradients of each slice) and the labels, so it sees the global batch of N.
   A label outside the rank's classes becomes -1 (no target column here).
3. **Sample the negatives.** With ``sample_rate`` < 1 a rank keeps the centres of every class
   that is a positive in the global batch plus random others, int(sample_rate * C_r) in all
   (sorted), and relabels the positives by their place among the kept ones. At 0.1 the logits,
   the centres' gradient and the softmax cost a tenth; the paper shows accuracy holds.
4. **Margin logits** of the normalised features against the kept, normalised centres
   (``margin_logits``: s, m1, m2, m3; rows with label -1 get no margin).
5. **Distributed softmax cross-entropy.** The row max is all-reduced (MAX), then the row sum
   of exp(z - max) (SUM), and each row's target logit (SUM: exactly one rank holds it), so
   every rank has the exact loss  mean_i [max_i + log sum_j exp(z_ij - max_i) - z_i,y_i]
   without ever holding a full row. The backward is written out: d loss / d z_ij =
   (softmax_ij - [j = y_i]) / N on the rank's own columns -- no communication.

With ``sample_rate = 1`` the result equals one process computing the full margin softmax
on the whole batch: the same loss, and each rank's gradients are the slices of the full
gradients (its own rows of W; its own rows of the embeddings). ``tests/face/test_partial_fc.py``
checks this with two gloo processes.

Outside ``torch.distributed`` (or with a one-process group) it is the plain margin softmax.

Shapes: local embeddings (b, d), local labels (b,) int64 in [0, C) (every rank the same b);
the loss is a 0-dim tensor, the same on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ArgumentError, ShapeError, check_int
from paperlab.face.margin import _check_embeddings, _check_labels, _check_margins, margin_logits
from paperlab.registry import export_loss
from paperlab.training.distributed import all_gather_with_grad


def _world(group: Any) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """(start, count) of the classes rank ``rank`` holds: the first C % W ranks one more."""
    base, extra = divmod(num_classes, world)
    count = base + (1 if rank < extra else 0)
    return rank * base + min(rank, extra), count


class _DistCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over rows whose columns are split across ranks."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor, group: Any
                ) -> torch.Tensor:
        distributed = _world(group)[1] > 1
        n = logits.shape[0]
        row_max = logits.max(dim=1, keepdim=True).values if logits.shape[1] else \
            torch.full((n, 1), -torch.inf, dtype=logits.dtype, device=logits.device)
        if distributed:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        exp = torch.exp(logits - row_max)
        total = exp.sum(dim=1, keepdim=True)
        rows = torch.nonzero(labels >= 0).flatten()
        target = torch.zeros(n, 1, dtype=logits.dtype, device=logits.device)
        target[rows, 0] = logits[rows, labels[rows]]
        if distributed:
            dist.all_reduce(total, group=group)
            dist.all_reduce(target, group=group)
        loss = (row_max + torch.log(total) - target).mean()
        ctx.save_for_backward(exp / total, labels, rows)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        prob, labels, rows = ctx.saved_tensors
        g = prob.clone()
        g[rows, labels[rows]] -= 1.0
        return g * (grad / prob.shape[0]), None, None


def dist_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, group: Any = None
                       ) -> torch.Tensor:
    """Softmax cross-entropy, mean over the N rows, of logits whose columns are sharded:
    ``logits`` (N, C_r) this rank's columns, ``labels`` (N,) the column of the target on this
    rank or -1 where another rank holds it. The same loss on every rank."""
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ShapeError(f"logits must be a floating (N, C) tensor, got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    _check_labels(labels, logits.shape[0], logits.shape[1])
    return _DistCrossEntropy.apply(logits, labels.long(), group)


def sample_centres(labels: torch.Tensor, num_local: int, num_sample: int,
                   generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """insightface's positive-first sampling: the sorted indices of the kept local centres
    (every positive, then random others up to ``num_sample``; only the positives if they are
    more) and the labels relabelled to their place among them (-1 stays -1)."""
    pos_mask = labels >= 0
    positive = torch.unique(labels[pos_mask], sorted=True)
    if num_sample >= positive.numel():
        score = torch.rand(num_local, generator=generator, device=labels.device)
        score[positive] = 2.0
        index = torch.topk(score, k=num_sample).indices.sort().values
    else:
        index = positive
    out = labels.clone()
    out[pos_mask] = torch.searchsorted(index, labels[pos_mask])
    return index, out


@export_loss("partial-fc", note="E2", paper="An et al. 2021")
class PartialFC(nn.Module):
    """Margin softmax with class centres sharded over the ranks of ``group`` and a
    ``sample_rate`` of them used per step. ``weight`` holds this rank's (C_r, dim) centres
    (classes ``class_start`` .. ``class_start + num_local``)."""

    def __init__(self, num_classes: int, dim: int, *, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.5, m3: float = 0.0, sample_rate: float = 1.0,
                 group: Any = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.dim = check_int("dim", dim, minimum=1)
        self.s = float(s)
        self.m1, self.m2, self.m3 = _check_margins(m1, m2, m3)
        if not 0.0 < sample_rate <= 1.0:
            raise ArgumentError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.sample_rate = float(sample_rate)
        self.group, self.generator = group, generator
        self.rank, self.world = _world(group)
        self.class_start, self.num_local = shard(num_classes, self.rank, self.world)
        if self.num_local < 1:
            raise ArgumentError(f"num_classes {num_classes} is smaller than the world size "
                                f"{self.world}: some rank would hold no class")
        self.num_sample = max(1, int(self.sample_rate * self.num_local))
        self.weight = nn.Parameter(torch.empty(self.num_local, dim))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_embeddings(embeddings, self.dim)
        _check_labels(labels, embeddings.shape[0], self.num_classes)
        if (labels < 0).any():
            raise ArgumentError("labels must lie in [0, num_classes) (no -1 here)")
        if self.world > 1:
            sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
            dist.all_gather(sizes, torch.tensor([embeddings.shape[0]]), group=self.group)
            if len({int(x) for x in sizes}) != 1:
                raise ShapeError(f"every rank needs the same local batch, got "
                                 f"{[int(x) for x in sizes]}")
        x = all_gather_with_grad(embeddings, self.group)
        y = all_gather_with_grad(labels.long(), self.group) if self.world > 1 else labels.long()
        local = (y >= self.class_start) & (y < self.class_start + self.num_local)
        y = torch.where(local, y - self.class_start, -1)
        weight = self.weight
        if self.num_sample < self.num_local:
            index, y = sample_centres(y, self.num_local, self.num_sample, self.generator)
            weight = weight[index]
        half = x.dtype in (torch.float16, torch.bfloat16)
        xf, wf = (x.float(), weight.float()) if half else (x, weight.to(x.dtype))
        cos = (F.normalize(xf, dim=1) @ F.normalize(wf, dim=1).T).clamp(-1.0, 1.0)
        logits = margin_logits(cos, y, s=self.s, m1=self.m1, m2=self.m2, m3=self.m3)
        return dist_cross_entropy(logits, y, self.group)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, dim={self.dim}, rank={self.rank}/"
                f"{self.world}, local={self.num_local}, sample_rate={self.sample_rate}")
