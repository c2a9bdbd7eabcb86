"""BLIP's captioning and CapFilt: bootstrap a noisy image-text set (Li et al. 2022, note D7).

Web captions are often wrong for their image. CapFilt cleans a data set with two heads of
BLIP (in the paper two copies, each fine-tuned on a small clean set):

- the **captioner** (the image-grounded decoder) writes ``num_synthetic`` captions per image
  by nucleus sampling -- sampling keeps captions diverse, which the paper finds matters more
  than beam search's safer ones;
- the **filter** (the ITM head) scores every original and every synthetic caption with its
  image and keeps a pair when p(match | image, caption) > ``threshold``.

The bootstrapped set is the union of the kept pairs; a new model is pre-trained on it.

Nucleus (top-p) sampling (Holtzman et al. 2020): sort the next-token probabilities, keep
the smallest prefix whose mass reaches p (at least one token), renormalise, sample::

    keep token i  iff  sum_{j ranked before i} p_j < top_p

Greedy decoding takes the arg-max. Decoding starts at ``bos_token_id`` ([DEC]) and a row ends
at ``eos_token_id`` ([SEP]); later positions hold ``pad_token_id`` (as HF's ``generate``).

Shapes: images (N, C, H, W); generated ids (N * num_return, 1 + L); ITM probabilities (N,).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.language.tokenizer import encode_batch
from paperlab.multimodal.blip import BLIP

# --- the functions ---------------------------------------------------------------------------


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Next-token probabilities (B, V) restricted to the top-p nucleus and renormalised."""
    if not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ArgumentError(f"top_p must be in (0, 1], got {top_p!r}")
    probs = torch.softmax(logits.double(), dim=-1)
    ranked, order = probs.sort(dim=-1, descending=True)
    before = ranked.cumsum(-1) - ranked
    ranked = ranked.masked_fill(before >= top_p, 0.0)
    ranked[..., 0] = probs.gather(-1, order[..., :1])[..., 0]  # at least one token
    kept = torch.zeros_like(probs).scatter(-1, order, ranked)
    return kept / kept.sum(-1, keepdim=True)


def _check_model(model: Any, part: str) -> BLIP:
    core = getattr(model, "module", model)
    if not isinstance(core, BLIP):
        raise ArgumentTypeError(f"model must be a BLIP, got {type(core).__name__}")
    if not getattr(core.config, part):
        raise ConfigError(f"the model has no text {part} ({part}=False)")
    return core


@torch.no_grad()
def generate_captions(
    model: BLIP,
    images: torch.Tensor,
    *,
    max_new_tokens: int | None = None,
    greedy: bool = False,
    top_p: float = 0.9,
    temperature: float = 1.0,
    num_return: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Caption ``images`` with the decoder: ids (N * num_return, 1 + L), rows image-major.

    Nucleus sampling with ``top_p`` and ``temperature`` (draws from ``generator``), or
    ``greedy``. Stops when every row has produced ``eos_token_id`` or after
    ``max_new_tokens`` (default: as many as the position table allows).
    """
    model = _check_model(model, "decoder")
    c = model.config.text
    if c.bos_token_id is None:
        raise ConfigError("captioning needs text bos_token_id (the decoder's first token)")
    limit = c.max_length - 1
    max_new_tokens = limit if max_new_tokens is None else max_new_tokens
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    if max_new_tokens > limit:
        raise ArgumentError(f"max_new_tokens must be <= {limit} (max_length - 1), got "
                            f"{max_new_tokens}")
    check_int("num_return", num_return, minimum=1)
    if not greedy and (not isinstance(temperature, (int, float)) or temperature <= 0):
        raise ArgumentError(f"temperature must be > 0, got {temperature!r}")
    was_training = model.training
    model.eval()
    tokens = model.image_tokens(images).repeat_interleave(num_return, dim=0)
    dec = model.text_decoder
    kv = dec.memory_kv(tokens)
    n = tokens.shape[0]
    ids = torch.full((n, 1), c.bos_token_id, dtype=torch.long, device=tokens.device)
    done = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    for _ in range(max_new_tokens):
        h = dec(ids, None, kv)[:, -1]
        logits = model.lm_head(h, dec.word_embeddings.weight)
        if greedy:
            nxt = logits.argmax(dim=-1)
        else:
            probs = top_p_filter(logits / temperature, top_p)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(ids.device)
        nxt = torch.where(done, torch.full_like(nxt, c.pad_token_id), nxt)
        ids = torch.cat((ids, nxt[:, None]), dim=1)
        done = done | (nxt == c.eos_token_id)
        if bool(done.all()):
            break
    model.train(was_training)
    return ids


def decode_captions(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    """Generated ids (n, L) -> caption strings, special tokens dropped."""
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids.tolist()]


@torch.no_grad()
def itm_scores(
    model: BLIP,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    tokenizer: Any,
    max_length: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """The ITM match logit margin l_match - l_no (n,) float64 of (images[i], captions[i]).

    p(match) = sigmoid(margin). The first token becomes ``enc_token_id`` when set.
    """
    model = _check_model(model, "encoder")
    if len(captions) != images.shape[0]:
        raise ShapeError(f"captions ({len(captions)}) and images ({images.shape[0]}) must pair "
                         f"up one to one")
    c = model.config.text
    max_length = c.max_length if max_length is None else max_length
    check_int("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(captions), batch_size):
        ids, mask = encode_batch(tokenizer, list(captions[s:s + batch_size]), max_length)
        ids = ids.to(images.device)
        if c.enc_token_id is not None:
            ids[:, 0] = c.enc_token_id
        logits = model.itm_logits(images[s:s + batch_size], ids, mask.to(images.device))
        out.append((logits[:, 1] - logits[:, 0]).double())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _logit(p: float) -> float:
    """log(p / (1 - p)) with the ends -inf and +inf (so 0 keeps all pairs and 1 none)."""
    if p <= 0.0:
        return float("-inf")
    if p >= 1.0:
        return float("inf")
    return math.log(p / (1.0 - p))


@dataclass
class CapFiltResult:
    """What CapFilt kept. ``pairs``: (image index, caption), originals first then synthetic;
    scores are ITM margins (p = sigmoid); ``*_kept`` the masks; ``stats`` the counts."""

    pairs: list[tuple[int, str]]
    original_scores: torch.Tensor  # (N,)
    original_kept: torch.Tensor  # (N,) bool
    synthetic: list[list[str]]  # N lists of num_synthetic captions
    synthetic_scores: torch.Tensor  # (N, S)
    synthetic_kept: torch.Tensor  # (N, S) bool
    stats: dict[str, float] = field(default_factory=dict)


def capfilt(
    model: BLIP,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    tokenizer: Any,
    threshold: float = 0.5,
    num_synthetic: int = 1,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
    captioner: BLIP | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 256,
) -> CapFiltResult:
    """Caption every image ``num_synthetic`` times (nucleus sampling with ``captioner``,
    default ``model``), score original and synthetic captions with ``model``'s ITM head, keep
    pairs with p(match) > ``threshold``. ``num_synthetic=0`` only filters."""
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise ArgumentTypeError(f"captions must be a list of str, got {type(captions).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ShapeError(f"images must be a (N, C, H, W) tensor, got "
                         f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    if len(captions) != images.shape[0]:
        raise ShapeError(f"captions ({len(captions)}) and images ({images.shape[0]}) must pair "
                         f"up one to one")
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ArgumentError(f"threshold must be in [0, 1], got {threshold!r}")
    check_int("num_synthetic", num_synthetic, minimum=0)
    _check_model(model, "encoder")
    n, s = len(captions), num_synthetic
    cut = _logit(float(threshold))
    original = itm_scores(model, images, captions, tokenizer=tokenizer, batch_size=batch_size)
    synthetic: list[list[str]] = [[] for _ in range(n)]
    syn_scores = torch.zeros(n, s, dtype=torch.float64)
    if s and n:
        writer = captioner if captioner is not None else model
        texts: list[str] = []
        for start in range(0, n, batch_size):
            ids = generate_captions(writer, images[start:start + batch_size], top_p=top_p,
                                    num_return=s, generator=generator,
                                    max_new_tokens=max_new_tokens)
            texts += decode_captions(tokenizer, ids)
        for i in range(n):
            synthetic[i] = texts[i * s:(i + 1) * s]
        rep = images.repeat_interleave(s, dim=0)
        syn_scores = itm_scores(model, rep, texts, tokenizer=tokenizer,
                                batch_size=batch_size).view(n, s).cpu()
    original = original.cpu()
    orig_kept, syn_kept = original > cut, syn_scores > cut
    pairs = [(i, captions[i]) for i in range(n) if bool(orig_kept[i])]
    pairs += [(i, synthetic[i][j]) for i in range(n) for j in range(s) if bool(syn_kept[i, j])]
    stats = {
        "originals": float(n),
        "originals_kept": float(orig_kept.sum()),
        "synthetic": float(n * s),
        "synthetic_kept": float(syn_kept.sum()),
        "pairs": float(len(pairs)),
    }
    return CapFiltResult(pairs, original, orig_kept, synthetic, syn_scores, syn_kept, stats)


__all__ = [
    "CapFiltResult",
    "capfilt",
    "decode_captions",
    "generate_captions",
    "itm_scores",
    "top_p_filter",
]
