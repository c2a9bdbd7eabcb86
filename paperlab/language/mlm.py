"""The masked-language-model objective of BERT (Devlin et al. 2019, note D2).

The masking rule: each non-special token is *selected* with probability p = 0.15; a selected
token becomes [MASK] with probability 0.8, a uniformly random token with 0.1, and stays
unchanged with 0.1::

    selected ~ Bernoulli(p) and not special
    input'   = [MASK] (80%) | uniform(V) (10%) | input (10%)     where selected
    labels   = input where selected, else -100
    loss     = mean over selected positions of -log softmax(logits)[label]

[MASK] never occurs at fine-tuning time; the random and unchanged 20% keep the model from
trusting the input only where it sees [MASK]. Used by ``language/bert.py`` (MLM and NSP
pre-training), the ``bert`` recipe and the ``bert-mlm`` experiment.

Shapes: input_ids, special_mask, labels (B, L); logits (B, L, V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.registry import export_loss
from paperlab.sequence.lm import check_tokens

IGNORE_INDEX = -100


def special_tokens_mask(input_ids: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    """True where ``input_ids`` holds one of ``special_ids`` ([PAD], [CLS], [SEP], ...)."""
    ids = torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, ids)


def mask_tokens(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    vocab_size: int,
    *,
    mask_token_id: int,
    p: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking: (masked input_ids, labels), both shaped like ``input_ids``.

    Each token where ``special_mask`` is False is selected with probability ``p``; a
    selected token becomes ``mask_token_id`` (80%), a uniform random id in [0, vocab_size)
    (10%) or stays (10%). ``labels`` hold the original id at selected positions and -100
    elsewhere. Draws come from ``generator`` (a CPU generator; the global RNG when None).
    """
    check_tokens(input_ids, vocab_size, "input_ids")
    if not isinstance(special_mask, torch.Tensor) or special_mask.dtype != torch.bool:
        raise ArgumentTypeError(
            f"special_mask must be a bool tensor, got "
            f"{getattr(special_mask, 'dtype', type(special_mask).__name__)}"
        )
    if special_mask.shape != input_ids.shape:
        raise ShapeError(
            f"special_mask must have input_ids' shape {tuple(input_ids.shape)}, got "
            f"{tuple(special_mask.shape)}"
        )
    if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or not (
        0 <= mask_token_id < vocab_size
    ):
        raise ArgumentError(
            f"mask_token_id must be an int in [0, vocab_size={vocab_size}), got {mask_token_id!r}"
        )
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ArgumentError(f"p must be a probability in [0, 1], got {p!r}")
    shape, dev = input_ids.shape, input_ids.device
    draw_on = generator.device if generator is not None else dev
    u_select = torch.rand(shape, generator=generator, device=draw_on).to(dev)
    u_action = torch.rand(shape, generator=generator, device=draw_on).to(dev)
    random_ids = torch.randint(vocab_size, shape, generator=generator, device=draw_on).to(dev)
    selected = (u_select < p) & ~special_mask
    to_mask = selected & (u_action < 0.8)
    to_random = selected & (u_action >= 0.8) & (u_action < 0.9)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels


@export_loss("mlm", note="D2", paper="Devlin et al. 2019")
def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100: logits (B, L, V)."""
    if logits.shape[:-1] != labels.shape:
        raise ShapeError(
            f"logits (B, L, V) and labels (B, L) disagree: {tuple(logits.shape)} vs "
            f"{tuple(labels.shape)}"
        )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)


def mlm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of selected positions (label != -100) whose arg-max is the label."""
    keep = labels != IGNORE_INDEX
    if not bool(keep.any()):
        return float("nan")
    return float((logits.argmax(-1)[keep] == labels[keep]).float().mean())


__all__ = ["IGNORE_INDEX", "mask_tokens", "mlm_accuracy", "mlm_loss", "special_tokens_mask"]
