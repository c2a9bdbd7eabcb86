"""Contrastive image-text losses: CLIP's softmax InfoNCE (D5) and SigLIP's pairwise sigmoid (D6).

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"). A batch of B matching (image, text) pairs gives the B x B similarity matrix
``logits = t * I T^T`` (I, T the L2-normalised embeddings, t = exp(t') a learnable inverse
temperature). Each image must pick out its own text among the B texts and each text its image:
a B-way cross-entropy over the rows and one over the columns, labels ``arange(B)``::

    L_clip = (CE(logits, arange(B)) + CE(logits^T, arange(B))) / 2

The softmax normalises over the whole batch, so every device must see every logit of its rows.

SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training") replaces the softmax
by an independent binary decision per pair: z_ij = +1 on the diagonal (a match), -1 elsewhere::

    L_siglip = -1/B * sum_ij log sigmoid(z_ij * (t * I_i . T_j + b))

(the 1/B is the paper's and open_clip's ``SigLipLoss`` normalisation). No term needs a row-wise
normaliser, so the B x B matrix never has to exist at once: ``siglip_loss_chunked`` loops over
text chunks of C columns, in the forward and again (recomputing) in the backward, with O(B C)
memory instead of O(B^2); across devices, each rank keeps its images and passes its texts
around the ring (``siglip_loss_distributed``, the paper's scheme).

Initialisation (SigLIP paper, section 3): t' = log 10 (t = 10) and b = -10, so that training
starts near the prior "almost every pair is a negative" instead of spending its first steps
correcting B - 1 large negative terms per image. The caveat is the batch size: the prior
log-odds of a match is log(1 / (B - 1)), which is -10 at B ~ 22,000 (the paper trains at 32k)
but -4.1 at B = 64; at small batches b = -10 starts several units below the balanced value,
the positives' terms dominate the early gradient, and b has to climb first. ``SigLIPLoss``
exposes both initial values so a small-batch run can start from log(1 / (B - 1)).

``logit_scale`` is the *already exponentiated* scale t (as in open_clip and HF: the model
holds t' and passes ``t'.exp()``); a float or a one-element tensor. Embeddings are used as
given: the models normalise them first.

Shapes: image_emb (B, d), text_emb (B, d); logit_scale, logit_bias scalars; the losses are
0-dim tensors. Distributed: each rank holds its local (b, d) pair, every rank the same b.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.registry import export_loss
from paperlab.training.distributed import all_gather_with_grad

# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_embeddings(image_emb: Any, text_emb: Any) -> None:
    for name, t in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ShapeError(f"{name} must be 2-D (B, d), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ArgumentTypeError(f"{name} must be floating point, got dtype {t.dtype}")
        if t.shape[0] == 0:
            raise ShapeError(f"{name} must hold at least one row, got shape {tuple(t.shape)}")
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ShapeError(
            f"image_emb and text_emb must have the same embedding dim d (project both to one "
            f"width), got image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)}"
        )
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ShapeError(
            f"image_emb and text_emb must hold the same number of pairs B, got image_emb "
            f"{tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)}"
        )


def _scalar(name: str, value: Any, like: torch.Tensor) -> torch.Tensor:
    """``value`` (float or one-element tensor) as a 0-dim tensor; refuses non-finite values."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ShapeError(f"{name} must be a scalar (one element), got shape "
                             f"{tuple(value.shape)}")
        if not value.is_floating_point():
            raise ArgumentTypeError(f"{name} must be floating point, got dtype {value.dtype}")
        t = value.reshape(())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        t = torch.tensor(float(value), dtype=like.dtype, device=like.device)
    else:
        raise ArgumentTypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not bool(torch.isfinite(t.detach())):
        raise ArgumentError(f"{name} must be finite, got {t.item()}")
    return t


# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


@export_loss("clip", paper="Radford et al. 2021", note="D5")
def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any) -> torch.Tensor:
    """Symmetric InfoNCE: mean of the row and column cross-entropies of ``t * I T^T``.

    image_emb, text_emb (B, d); ``logit_scale`` = t, already exponentiated. Returns a 0-dim
    tensor equal to open_clip's ``ClipLoss()(image_emb, text_emb, logit_scale)``.
    """
    _check_embeddings(image_emb, text_emb)
    scale = _scalar("logit_scale", logit_scale, image_emb)
    logits = scale * image_emb @ text_emb.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


# ---------------------------------------------------------------------------------------------
# SigLIP: full, chunked
# ---------------------------------------------------------------------------------------------


def _pair_signs(logits: torch.Tensor, first_positive: int | None) -> torch.Tensor:
    """z for a block of columns: -1, and +1 at (first_positive + k, k) when given."""
    signs = torch.full_like(logits, -1.0)
    if first_positive is not None:
        signs.diagonal(-first_positive).fill_(1.0)
    return signs


def _sigmoid_pair_sum(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                      bias: torch.Tensor, first_positive: int | None) -> torch.Tensor:
    """sum_ij -log sigmoid(z_ij (t I_i.T_j + b)) over image (B, d) x text block (c, d).

    Column k of the block is the positive of image row ``first_positive + k``; ``None``: the
    block holds negatives only (another rank's texts).
    """
    logits = scale * image @ text.T + bias
    return -F.logsigmoid(_pair_signs(logits, first_positive) * logits).sum()


@export_loss("siglip", paper="Zhai et al. 2023", note="D6")
def siglip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any,
                logit_bias: Any) -> torch.Tensor:
    """Pairwise sigmoid loss -1/B sum_ij log sigmoid(z_ij (t I_i.T_j + b)), z = 2 eye - 1.

    image_emb, text_emb (B, d); ``logit_scale`` = t (exponentiated), ``logit_bias`` = b.
    Builds the full B x B logits; equals open_clip's ``SigLipLoss()``.
    """
    _check_embeddings(image_emb, text_emb)
    scale = _scalar("logit_scale", logit_scale, image_emb)
    bias = _scalar("logit_bias", logit_bias, image_emb)
    return _sigmoid_pair_sum(image_emb, text_emb, scale, bias, 0) / image_emb.shape[0]


class _ChunkedSigLIP(torch.autograd.Function):
    """Forward: sum the loss over text chunks. Backward: recompute each chunk's logits.

    Saves only the inputs, so neither pass holds more than one (B, chunk) block of logits.
    d/dx [-log sigmoid(z x)] = -z sigmoid(-z x) gives the gradient of each block's logits.
    """

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor, chunk: int) -> torch.Tensor:
        n = image.shape[0]
        total = torch.zeros((), dtype=torch.result_type(image, text), device=image.device)
        for start in range(0, n, chunk):
            total += _sigmoid_pair_sum(image, text[start : start + chunk], scale, bias, start)
        ctx.save_for_backward(image, text, scale, bias)
        ctx.chunk = chunk
        return total / n

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        image, text, scale, bias = ctx.saved_tensors
        need_i, need_t, need_s, need_b = ctx.needs_input_grad[:4]
        weight = grad / image.shape[0]
        g_image = torch.zeros_like(image) if need_i else None
        g_text = torch.empty_like(text) if need_t else None
        g_scale = torch.zeros((), dtype=weight.dtype, device=image.device)
        g_bias = torch.zeros((), dtype=weight.dtype, device=image.device)
        for start in range(0, image.shape[0], ctx.chunk):
            block = text[start : start + ctx.chunk]
            raw = image @ block.T
            logits = scale * raw + bias
            signs = _pair_signs(logits, start)
            d_logits = -signs * torch.sigmoid(-signs * logits) * weight
            if g_image is not None:
                g_image += d_logits @ block
            if g_text is not None:
                g_text[start : start + ctx.chunk] = (d_logits.T @ image) * scale
            if need_s:
                g_scale += (d_logits * raw).sum()
            if need_b:
                g_bias += d_logits.sum()
        if g_image is not None:
            g_image *= scale
        return (g_image, g_text, g_scale.to(scale) if need_s else None,
                g_bias.to(bias) if need_b else None, None)


def siglip_loss_chunked(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any,
                        logit_bias: Any, chunk_size: int) -> torch.Tensor:
    """``siglip_loss`` computed over text chunks of ``chunk_size`` columns: O(B chunk) memory.

    Equal to the full loss in value and gradients (any chunk size, dividing B or not); the
    backward recomputes each block, so about one extra matmul per chunk buys the memory.
    Not twice differentiable.
    """
    _check_embeddings(image_emb, text_emb)
    check_int("chunk_size", chunk_size, minimum=1)
    scale = _scalar("logit_scale", logit_scale, image_emb)
    bias = _scalar("logit_bias", logit_bias, image_emb)
    return _ChunkedSigLIP.apply(image_emb, text_emb, scale, bias, chunk_size)


# ---------------------------------------------------------------------------------------------
# Distributed: each rank holds its local batch
# ---------------------------------------------------------------------------------------------
#
# With W ranks of b pairs each (N = W b), the single-process loss on the concatenated batch is
# a sum over rows (images) of row terms, divided by N. Rank r computes its share S_r: the
# terms of its own rows against every text, over N; sum_r S_r is the single-process loss.
# Gradients reach other ranks' texts through the backward of the exchange (all-gather's
# backward sums the gathered gradients; a ring step's backward sends them back), so
# back-propagating S_r on every rank gives each rank's local features exactly their slice
# of the single-process gradient. The returned value is the all-reduced total (the same
# number on every rank) with S_r's gradient. Under DistributedDataParallel, which *averages*
# parameter gradients over ranks, pass ``for_ddp=True``: the gradient is scaled by W, which
# is open_clip's convention (its per-rank losses are normalised by the local batch).


def _world(group: Any) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _exchange(tensor: torch.Tensor, step: int, group: Any) -> torch.Tensor:
    """Send ``tensor`` to rank + step and receive the one from rank - step (same shape)."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)

    def peer(r: int) -> int:
        return r if group is None else dist.get_global_rank(group, r)

    received = torch.empty_like(tensor)
    ops = [
        dist.P2POp(dist.isend, tensor.contiguous(), peer((rank + step) % world), group),
        dist.P2POp(dist.irecv, received, peer((rank - step) % world), group),
    ]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return received


class _RingShift(torch.autograd.Function):
    """One ring step: pass the tensor to the next rank; backward passes gradients back."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return _exchange(tensor, 1, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _exchange(grad, -1, ctx.group), None


def _check_same_local_batch(image_emb: torch.Tensor, group: Any) -> None:
    world = dist.get_world_size(group)
    mine = torch.tensor(list(image_emb.shape), dtype=torch.long, device=image_emb.device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine, group=group)
    shapes = [tuple(s.tolist()) for s in every]
    if len(set(shapes)) != 1:
        raise ShapeError(f"every rank must hold the same local (b, d) embeddings, got {shapes} "
                         f"on ranks 0..{world - 1}")


def _total_with_share_grad(share: torch.Tensor, group: Any, world: int,
                           for_ddp: bool) -> torch.Tensor:
    total = share.detach().clone()
    dist.all_reduce(total, group=group)
    k = world if for_ddp else 1
    return share * k + (total - share.detach() * k)


def siglip_loss_distributed(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any,
                            logit_bias: Any, *, mode: str = "ring", group: Any = None,
                            for_ddp: bool = False) -> torch.Tensor:
    """SigLIP loss of the global batch, each rank holding its local (b, d) pairs.

    ``mode="ring"``: W - 1 steps pass text blocks to the next rank (the paper's scheme; each
    step adds a (b, b) negatives-only block); ``"all_gather"``: gather every text, one (b, N)
    block. Returns the single-process loss of the concatenated batch on every rank, with this
    rank's share as gradient (see the comment above; ``for_ddp`` scales it by W). Without an
    initialised process group (or with one rank) this is ``siglip_loss``.
    """
    if mode not in ("ring", "all_gather"):
        raise ArgumentError(f"mode must be 'ring' or 'all_gather', got {mode!r}")
    _check_embeddings(image_emb, text_emb)
    scale = _scalar("logit_scale", logit_scale, image_emb)
    bias = _scalar("logit_bias", logit_bias, image_emb)
    rank, world = _world(group)
    if world == 1:
        return siglip_loss(image_emb, text_emb, scale, bias)
    _check_same_local_batch(image_emb, group)
    b = image_emb.shape[0]
    if mode == "all_gather":
        texts = all_gather_with_grad(text_emb, group)
        share = _sigmoid_pair_sum(image_emb, texts, scale, bias, -rank * b)
    else:
        share = _sigmoid_pair_sum(image_emb, text_emb, scale, bias, 0)
        block = text_emb
        for _ in range(world - 1):
            block = _RingShift.apply(block, group)
            share = share + _sigmoid_pair_sum(image_emb, block, scale, bias, None)
    return _total_with_share_grad(share / (world * b), group, world, for_ddp)


def clip_loss_distributed(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: Any, *,
                          group: Any = None, for_ddp: bool = False) -> torch.Tensor:
    """CLIP loss of the global batch from local (b, d) pairs: all-gather with gradients.

    Rank r's rows: its images against every text (labels r b + arange(b)) and its texts
    against every image (open_clip's ``local_loss=True, gather_with_grad=True``). Returns the
    single-process loss on every rank with this rank's share as gradient (``for_ddp``: times
    W, which is then open_clip's gradient). Without a process group this is ``clip_loss``.
    """
    _check_embeddings(image_emb, text_emb)
    scale = _scalar("logit_scale", logit_scale, image_emb)
    rank, world = _world(group)
    if world == 1:
        return clip_loss(image_emb, text_emb, scale)
    _check_same_local_batch(image_emb, group)
    b = image_emb.shape[0]
    images, texts = all_gather_with_grad(image_emb, group), all_gather_with_grad(text_emb, group)
    labels = torch.arange(b, device=image_emb.device) + rank * b
    rows = F.cross_entropy(scale * image_emb @ texts.T, labels, reduction="sum")
    cols = F.cross_entropy(scale * text_emb @ images.T, labels, reduction="sum")
    return _total_with_share_grad((rows + cols) / (2 * world * b), group, world, for_ddp)


# ---------------------------------------------------------------------------------------------
# Modules: the losses with their learnable temperature (and bias)
# ---------------------------------------------------------------------------------------------


class CLIPLoss(nn.Module):
    """CLIP's loss with a learnable log-scale t' (t = exp(t'), initialised at 1 / 0.07 and
    capped at ``max_scale`` = 100 as in CLIP). ``distributed=True`` uses all-gather."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0, *,
                 distributed: bool = False, for_ddp: bool = False) -> None:
        super().__init__()
        if not 0 < init_temperature < math.inf:
            raise ConfigError(f"init_temperature must be positive, got {init_temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_scale, self.distributed, self.for_ddp = max_scale, distributed, for_ddp

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        scale = self.log_scale.exp().clamp(max=self.max_scale)
        if self.distributed:
            return clip_loss_distributed(image_emb, text_emb, scale, for_ddp=self.for_ddp)
        return clip_loss(image_emb, text_emb, scale)


class SigLIPLoss(nn.Module):
    """SigLIP's loss with learnable t' and b, initialised at log 10 and -10 (the paper's).

    ``chunk_size`` uses the chunked loss; ``distributed`` ("ring" or "all_gather") the
    distributed one. See the module docstring on the bias and the batch size.
    """

    def __init__(self, init_log_scale: float = math.log(10.0), init_bias: float = -10.0, *,
                 chunk_size: int | None = None, distributed: str | None = None,
                 for_ddp: bool = False) -> None:
        super().__init__()
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        if distributed not in (None, "ring", "all_gather"):
            raise ConfigError(f"distributed must be None, 'ring' or 'all_gather', got "
                              f"{distributed!r}")
        self.log_scale = nn.Parameter(torch.tensor(float(init_log_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.chunk_size, self.distributed, self.for_ddp = chunk_size, distributed, for_ddp

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        scale = self.log_scale.exp()
        if self.distributed is not None:
            return siglip_loss_distributed(image_emb, text_emb, scale, self.bias,
                                           mode=self.distributed, for_ddp=self.for_ddp)
        if self.chunk_size is not None:
            return siglip_loss_chunked(image_emb, text_emb, scale, self.bias, self.chunk_size)
        return siglip_loss(image_emb, text_emb, scale, self.bias)
