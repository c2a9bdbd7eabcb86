"""Zero-shot classification by prompts and image-text retrieval recall@K (CLIP, note D5).

The idea (Radford et al. 2021, sec. 3.1): a contrastive image-text model classifies images
into classes it was never trained to separate. Each class name is written into prompt
templates ("a photo of a {}."), the text tower embeds every prompt, and the class's weight
vector is the mean of its normalised prompt embeddings, normalised again -- the paper's
*prompt ensembling* (sec. 3.1.4), which averages in embedding space::

    w_c = normalise( (1/T) sum_t normalise(f_text(template_t(c))) )      W (C, E)
    logits = f_image(x) W^T ;  prediction = argmax_c logits             (B, C)

Retrieval recall@K ranks one modality against the other by cosine similarity. With several
captions per image (``text_to_image_index[t]`` = the image of caption t):

- image -> text: an image is a hit when one of *its* captions is among the K most similar
  texts;
- text -> image: a caption is a hit when its image is among the K most similar images.

Ties count against the query: the rank of the answer is the number of wrong candidates
scoring **at least** as high as it, and a hit needs rank < K (constant embeddings score
0 for K < n, never a flattering tie-break).

Shapes: image_emb (I, E), text_emb (T, E), class weights (C, E); rows L2-normalised by the
model's ``encode_image`` / ``encode_text`` (recall normalises again, so raw features work).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int
from paperlab.registry import export_metric

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
)

Encoder = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


# --- prompts ---------------------------------------------------------------------------------


def format_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """[[template.format(name) for template in templates] for name in class_names]."""
    if isinstance(class_names, str) or not class_names:
        raise ArgumentError(f"class_names must be a non-empty list of names, got {class_names!r}")
    if isinstance(templates, str) or not templates:
        raise ArgumentError(f"templates must be a non-empty list of strings, got {templates!r}")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ArgumentError(f"each template must contain '{{}}' exactly once, got {t!r}")
    return [[t.format(name) for t in templates] for name in class_names]


def _encoder(tokenizer: Any, max_length: int) -> Encoder:
    """texts -> (input_ids, attention_mask): a ``tokenizers.Tokenizer`` or such a callable."""
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "get_vocab"):
        from paperlab.language.tokenizer import encode_batch

        return lambda texts: encode_batch(tokenizer, texts, max_length)
    if callable(tokenizer):
        return tokenizer
    raise ArgumentTypeError(
        f"tokenizer must be a tokenizers.Tokenizer or a callable texts -> (input_ids, "
        f"attention_mask), got {type(tokenizer).__name__}"
    )


@torch.no_grad()
def zero_shot_classifier(
    model: Any,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    tokenizer: Any = None,
    max_length: int = 32,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Class weight matrix (C, E): each class's mean normalised prompt embedding, renormalised.

    ``model.encode_text(input_ids, attention_mask)`` gives (N, E) text embeddings;
    ``tokenizer`` is a ``tokenizers.Tokenizer`` (encoded with
    ``paperlab.language.tokenizer.encode_batch`` at ``max_length``) or a callable
    texts -> (input_ids, attention_mask).
    """
    if not hasattr(model, "encode_text"):
        raise ArgumentTypeError(f"model must have encode_text, got {type(model).__name__}")
    check_int("max_length", max_length, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    prompts = format_prompts(class_names, templates)
    encode = _encoder(tokenizer, max_length)
    flat = [p for row in prompts for p in row]
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
    chunks = []
    for start in range(0, len(flat), batch_size):
        ids, mask = encode(flat[start : start + batch_size])
        chunks.append(F.normalize(model.encode_text(ids.to(device), mask.to(device)), dim=-1))
    emb = torch.cat(chunks).view(len(prompts), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def _check_embeddings(name: str, x: Any, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating (N, E) tensor, got {tuple(x.shape)} {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ShapeError(f"{name} must have embedding width E={dim}, got {tuple(x.shape)}")
    return x


def zero_shot_logits(image_emb: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each image with each class: (B, E), (C, E) -> (B, C)."""
    _check_embeddings("class_weights", class_weights)
    _check_embeddings("image_emb", image_emb, class_weights.shape[1])
    return F.normalize(image_emb, dim=-1) @ F.normalize(class_weights, dim=-1).T


@torch.no_grad()
def zero_shot_predict(
    model: Any, images: torch.Tensor, class_weights: torch.Tensor, *, batch_size: int = 256
) -> torch.Tensor:
    """Predicted class (B,) int64 of each image: argmax_c of ``model.encode_image`` . w_c."""
    if not hasattr(model, "encode_image"):
        raise ArgumentTypeError(f"model must have encode_image, got {type(model).__name__}")
    out = []
    for start in range(0, images.shape[0], batch_size):
        emb = model.encode_image(images[start : start + batch_size].to(class_weights.device))
        out.append(zero_shot_logits(emb, class_weights).argmax(dim=-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# --- retrieval -------------------------------------------------------------------------------


def _ranks(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Per query row: wrong candidates scoring >= the best right one. scores, positive (Q, M)."""
    best = scores.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
    return ((scores >= best) & ~positive).sum(dim=1)


@export_metric("retrieval-recall", note="D5", paper="Radford et al. 2021")
def retrieval_recall_at_k(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    k: int | Sequence[int] = (1, 5),
    *,
    text_to_image_index: torch.Tensor | Sequence[int] | None = None,
) -> dict[str, float]:
    """Recall@K both ways: {"i2t@K": ..., "t2i@K": ...} for every K in ``k``.

    image_emb (I, E), text_emb (T, E); ``text_to_image_index`` (T,) the image of each text
    (default: text t belongs to image t, so T == I). Every image needs at least one text.
    """
    _check_embeddings("image_emb", image_emb)
    _check_embeddings("text_emb", text_emb, image_emb.shape[1])
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]
    ks = [k] if isinstance(k, int) else list(k)
    if not ks:
        raise ArgumentError("k must be an int or a non-empty sequence of ints")
    for kk in ks:
        check_int("k", kk, minimum=1)
    if text_to_image_index is None:
        if n_img != n_txt:
            raise ShapeError(
                f"image_emb has {n_img} rows and text_emb {n_txt}: pass text_to_image_index "
                f"(the image of each text) when images have several captions"
            )
        index = torch.arange(n_txt)
    else:
        index = torch.as_tensor(text_to_image_index)
        if index.dtype in (torch.bool,) or index.is_floating_point() or index.dim() != 1:
            raise ArgumentTypeError(
                f"text_to_image_index must be a (T,) integer tensor, got {tuple(index.shape)} "
                f"{index.dtype}"
            )
        if index.shape[0] != n_txt:
            raise ShapeError(
                f"text_to_image_index must have one entry per text ({n_txt}), got {index.shape[0]}"
            )
        if n_txt and (int(index.min()) < 0 or int(index.max()) >= n_img):
            raise ArgumentError(
                f"text_to_image_index must lie in [0, {n_img}), got "
                f"[{int(index.min())}, {int(index.max())}]"
            )
    index = index.long().to(image_emb.device)
    positive = F.one_hot(index, n_img).bool()  # (T, I)
    captionless = torch.nonzero(~positive.any(dim=0)).flatten()
    if captionless.numel():
        raise ArgumentError(
            f"images {captionless[:8].tolist()} have no text in text_to_image_index; "
            f"image->text recall needs at least one per image"
        )
    sim = F.normalize(text_emb.double(), dim=-1) @ F.normalize(image_emb.double(), dim=-1).T
    rank_t2i = _ranks(sim, positive)
    rank_i2t = _ranks(sim.T, positive.T)
    out: dict[str, float] = {}
    for kk in ks:
        out[f"i2t@{kk}"] = float((rank_i2t < kk).double().mean())
        out[f"t2i@{kk}"] = float((rank_t2i < kk).double().mean())
    return out


__all__ = [
    "DEFAULT_TEMPLATES",
    "format_prompts",
    "retrieval_recall_at_k",
    "zero_shot_classifier",
    "zero_shot_logits",
    "zero_shot_predict",
]
