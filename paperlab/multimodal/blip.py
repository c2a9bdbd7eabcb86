"""BLIP: bootstrapping language-image pre-training (Li et al. 2022, note D7).

The idea: one model, three ways of reading an image-text pair, trained together.
A ViT turns the image into tokens; a BERT-style text transformer reads the caption in three
modes, switched by which parts of its layers run::

    image tokens  v = ViT(x)                                          (B, T, d_v)
    ITC  unimodal text encoder (bidirectional, no cross-attention):
         s_ij = <norm(W_v v_i[0]), norm(W_t t_j[0])> / tau           contrastive, as CLIP
    ITM  image-grounded text encoder (bidirectional, cross-attends to v):
         p(match | x, t) = softmax(W_itm h[0])                        2 classes
    LM   image-grounded text decoder (causal, cross-attends to v):
         -sum_k log p(t_k | t_<k, x), with label smoothing 0.1

    loss = L_itc + L_itm + L_lm

ITM learns from *hard negatives*: for each image, a wrong caption of the batch drawn with
probability softmax(s_i.) over the other captions (captions the ITC head finds similar are
drawn more often), and for each caption a wrong image likewise; the head then separates B
positives from 2B negatives. A caption identical to the positive's is never drawn as its
negative. Every layer of both text transformers is a ``DecoderLayer`` (post-LN,
``sequence/transformer_layers.py``): self-attention, cross-attention into the image tokens,
FFN; the unimodal mode skips the cross-attention branch.

CapFilt (``multimodal/capfilt.py``) then bootstraps a noisy data set: the decoder writes
synthetic captions, the ITM head filters original and synthetic ones.

Simplifications (said here so nobody looks for them): no momentum encoders, feature queues
or momentum distillation in ITC; the encoder and decoder do not share their cross-attention
and FFN weights (the paper shares all but self-attention; HF checkpoints store them apart).
The first token is BLIP's mode switch: ITC reads ``[CLS]``; ``itm_loss`` and ``lm_loss``
replace it by ``enc_token_id`` / ``bos_token_id`` when the config sets them (the forward
functions take ids as given, as HF's models do).

Shapes: images (B, C, H, W); input_ids, attention_mask (B, N) (mask True/1 = real token);
image tokens (B, T, d_v); ITC embeddings (B, E); ITM logits (B, 2); LM logits (B, N, V).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError, check_int
from paperlab.language.bert import IGNORE_INDEX, BertConfig, BertMLMHead, init_bert_weights
from paperlab.multimodal.losses import clip_loss
from paperlab.multimodal.text import build_config, padding_from_attention_mask
from paperlab.registry import export_model
from paperlab.sequence.lm import check_tokens
from paperlab.sequence.transformer_layers import DecoderLayer, check_activation, cross_attention_kv
from paperlab.vision.vit import VisionTransformer, ViTConfig


def blip_vision_config(**fields: Any) -> ViTConfig:
    """A ``ViTConfig`` laid out as BLIP's image encoder (HF ``BlipVisionModel``): class
    token, learned positions, pre-LN layers, GELU, eps 1e-5, a final LayerNorm over all
    tokens, patch bias, no pre-norm. Small by default; ``fields`` override."""
    base: dict[str, Any] = dict(
        image_size=32, patch_size=8, in_channels=3, dim=64, depth=2, num_heads=4, mlp_dim=128,
        activation="gelu", norm_eps=1e-5, class_token=True, patch_bias=True,
        position="learned", pre_norm=False, final_norm=True, pool="cls",
    )
    base.update(fields)
    return ViTConfig(**base)


@dataclass
class BLIPTextConfig(Config):
    """BLIP's text transformers (HF ``BlipTextConfig`` at a small size).

    ``eos_token_id`` ends generation (HF's ``sep_token_id``, [SEP]); ``bos_token_id`` starts
    it and replaces the first token in ``lm_loss`` ([DEC]); ``enc_token_id`` replaces it in
    ``itm_loss`` ([ENC]); ``None`` keeps the caption's own first token."""

    vocab_size: int = 64
    max_length: int = 32
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.0
    attention_dropout: float = 0.0
    pad_token_id: int = 0
    eos_token_id: int = 3
    bos_token_id: int | None = None
    enc_token_id: int | None = None

    def check(self) -> None:
        for name in ("vocab_size", "max_length", "dim", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"text {name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ConfigError(f"text dim={self.dim} must be divisible by num_heads="
                              f"{self.num_heads}")
        check_activation(self.activation)
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"text {name} must be a probability in [0, 1), got {value!r}")
        for name in ("pad_token_id", "eos_token_id", "bos_token_id", "enc_token_id"):
            value = getattr(self, name)
            if value is None and name in ("bos_token_id", "enc_token_id"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value < self.vocab_size
            ):
                raise ConfigError(f"text {name} must be an id in [0, vocab_size="
                                  f"{self.vocab_size}), got {value!r}")


@dataclass
class BLIPConfig(Config):
    """BLIP: ``vision`` (``ViTConfig``), ``text`` (``BLIPTextConfig``), the ITC width
    ``embed_dim`` (HF ``image_text_hidden_size``), the initial ITC temperature (0.07, kept
    in [0.001, 0.5] as in BLIP), the LM label smoothing (0.1) and which parts exist:
    ``encoder`` (text encoder, ITC and ITM heads: HF ``BlipForImageTextRetrieval``) and
    ``decoder`` (captioning decoder: HF ``BlipForConditionalGeneration``)."""

    vision: ViTConfig = field(default_factory=blip_vision_config)
    text: BLIPTextConfig = field(default_factory=BLIPTextConfig)
    embed_dim: int = 64
    temperature_init: float = 0.07
    label_smoothing: float = 0.1
    encoder: bool = True
    decoder: bool = True

    def check(self) -> None:
        if not isinstance(self.vision, ViTConfig):
            raise ConfigError(f"BLIP vision must be a ViTConfig, got {type(self.vision).__name__}")
        if not isinstance(self.text, BLIPTextConfig):
            raise ConfigError(f"BLIP text must be a BLIPTextConfig, got "
                              f"{type(self.text).__name__}")
        self.vision.check()
        self.text.check()
        if not self.vision.class_token:
            raise ConfigError("BLIP's image encoder needs class_token=True (ITC reads it)")
        check_int("embed_dim", self.embed_dim, minimum=1)
        if not 0.001 <= self.temperature_init <= 0.5:
            raise ConfigError(f"temperature_init must lie in [0.001, 0.5], got "
                              f"{self.temperature_init!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not (self.encoder or self.decoder):
            raise ConfigError("a BLIP needs encoder=True or decoder=True (or both)")


# --- the functions ---------------------------------------------------------------------------


@torch.no_grad()
def sample_hard_negatives(
    sim: torch.Tensor, same: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One negative column per row of ``sim`` (B, M), drawn from softmax(sim) + 1e-4.

    ``same`` (B, M) bool marks the positives (never drawn); a row without any negative
    raises. Returns (B,) int64 column indices. Draws from ``generator`` (CPU)."""
    if sim.shape != same.shape:
        raise ShapeError(f"sim {tuple(sim.shape)} and same {tuple(same.shape)} must match")
    weights = torch.softmax(sim.double(), dim=1) + 1e-4
    weights = weights.masked_fill(same, 0.0)
    empty = torch.nonzero(~(~same).any(dim=1)).flatten()
    if empty.numel():
        raise ArgumentError(
            f"rows {empty[:8].tolist()} have no negative: every candidate is a positive "
            f"(a batch needs at least two different captions)"
        )
    return torch.multinomial(weights.cpu(), 1, generator=generator).flatten().to(sim.device)


def caption_lm_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """Next-token cross-entropy of logits (B, N, V) against ids[:, 1:], padding ignored."""
    labels = input_ids[:, 1:].clone()
    if attention_mask is not None:
        labels[~attention_mask[:, 1:].bool()] = IGNORE_INDEX
    flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)


# --- the modules -----------------------------------------------------------------------------


class BLIPTextTransformer(nn.Module):
    """Word + position embeddings, LayerNorm, then post-LN ``DecoderLayer``s.

    ``causal`` False: BLIP's text encoder (ITC without memory, ITM with it); True: the
    decoder. Submodules ``word_embeddings``, ``position_embeddings``, ``norm``, ``layers``.
    ``forward(input_ids, attention_mask=None, memory_kv=None)`` -> (B, N, d); ``memory_kv``
    comes from ``memory_kv(image_tokens)`` (``None``: unimodal, no cross-attention)."""

    def __init__(self, c: BLIPTextConfig, memory_dim: int, causal: bool) -> None:
        super().__init__()
        self.config = c
        self.word_embeddings = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_length, c.dim)
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(c.dim, c.num_heads, c.mlp_dim, dropout=c.dropout,
                         attention_dropout=c.attention_dropout, activation=c.activation,
                         norm_eps=c.norm_eps, norm_first=False, causal=causal,
                         memory_dim=memory_dim)
            for _ in range(c.depth)
        )

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention keys and values of the image tokens (B, T, d_v)."""
        return [cross_attention_kv(layer.cross_attn, memory) for layer in self.layers]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        c = self.config
        check_tokens(input_ids, c.vocab_size, "input_ids")
        n = input_ids.shape[1]
        if n > c.max_length:
            raise ShapeError(f"input_ids has {n} tokens, more than max_length={c.max_length}")
        padding = padding_from_attention_mask(attention_mask, tuple(input_ids.shape))
        if padding is not None and not bool(padding.any()):
            padding = None
        pos = self.position_embeddings(torch.arange(n, device=input_ids.device))
        h = self.dropout(self.norm(self.word_embeddings(input_ids) + pos))
        for i, layer in enumerate(self.layers):
            kv = None if memory_kv is None else memory_kv[i]
            h, _ = layer(h, kv, key_padding_mask=padding)
        return h


class BLIPLosses(NamedTuple):
    """The three BLIP losses (0-dim each) and their sum ``loss``."""

    loss: torch.Tensor
    itc: torch.Tensor
    itm: torch.Tensor
    lm: torch.Tensor


def _lm_head(c: BLIPTextConfig) -> BertMLMHead:
    """BERT's MLM head (dense, activation, LayerNorm, tied decoder + bias) at BLIP's sizes."""
    bert = BertConfig(vocab_size=c.vocab_size, hidden_size=c.dim, num_attention_heads=c.num_heads,
                      intermediate_size=c.mlp_dim, hidden_act=c.activation,
                      layer_norm_eps=c.norm_eps, pad_token_id=c.pad_token_id)
    return BertMLMHead(bert)


@export_model("blip", note="D7", paper="Li et al. 2022")
class BLIP(nn.Module):
    """ViT + text encoder (ITC, ITM) + text decoder (LM), as one model.

    ``BLIP(config)`` or ``BLIP(**fields)``. Submodules ``vision``; with ``encoder``:
    ``text_encoder``, ``vision_proj``, ``text_proj``, ``itm_head``, parameter ``temp``; with
    ``decoder``: ``text_decoder``, ``lm_head`` (tied to the decoder's word embeddings).
    ``forward(images, input_ids, attention_mask=None, *, generator=None)`` -> ``BLIPLosses``.
    """

    def __init__(self, config: BLIPConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = c = build_config(config, fields, BLIPConfig)
        self.vision = VisionTransformer(c.vision)
        dv, dt = c.vision.dim, c.text.dim
        if c.encoder:
            self.text_encoder = BLIPTextTransformer(c.text, dv, causal=False)
            self.vision_proj = nn.Linear(dv, c.embed_dim)
            self.text_proj = nn.Linear(dt, c.embed_dim)
            self.itm_head = nn.Linear(dt, 2)
            self.temp = nn.Parameter(torch.tensor(float(c.temperature_init)))
        if c.decoder:
            self.text_decoder = BLIPTextTransformer(c.text, dv, causal=True)
            self.lm_head = _lm_head(c.text)
        for name in ("text_encoder", "vision_proj", "text_proj", "itm_head", "text_decoder",
                     "lm_head"):  # BERT's init on the text side; the ViT keeps its own
            if hasattr(self, name):
                init_bert_weights(getattr(self, name), 0.02)

    def _need(self, part: str) -> None:
        if not getattr(self.config, part):
            raise ConfigError(f"this BLIP was built with {part}=False; it has no text {part}")

    # --- the three modes ---

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the image encoder's tokens after its final LayerNorm, (B, T, d_v)."""
        return self.vision(images).hidden

    def encode_image(self, images: torch.Tensor, *, normalize: bool = True,
                     tokens: torch.Tensor | None = None) -> torch.Tensor:
        """ITC image embedding (B, E): W_v v[:, 0] (L2-normalised)."""
        self._need("encoder")
        v = self.image_tokens(images) if tokens is None else tokens
        emb = self.vision_proj(v[:, 0])
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    *, normalize: bool = True) -> torch.Tensor:
        """ITC text embedding (B, E): W_t t[:, 0] of the unimodal encoder (normalised)."""
        self._need("encoder")
        emb = self.text_proj(self.text_encoder(input_ids, attention_mask)[:, 0])
        return F.normalize(emb, dim=-1) if normalize else emb

    def _tokens_for(self, images: torch.Tensor | None, tokens: torch.Tensor | None,
                    batch: int) -> torch.Tensor:
        v = self.image_tokens(images) if tokens is None else tokens
        if v.dim() != 3 or v.shape[0] != batch or v.shape[-1] != self.config.vision.dim:
            raise ShapeError(f"image tokens must be ({batch}, T, {self.config.vision.dim}) for "
                             f"{batch} captions, got {tuple(v.shape)}")
        return v

    def itm_logits(self, images: torch.Tensor | None, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None, *,
                   tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Image-text matching logits (B, 2) (class 1 = match), pairing row b with row b."""
        self._need("encoder")
        v = self._tokens_for(images, tokens, input_ids.shape[0])
        enc = self.text_encoder
        return self.itm_head(enc(input_ids, attention_mask, enc.memory_kv(v))[:, 0])

    def lm_logits(self, images: torch.Tensor | None, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor | None = None, *,
                  tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Captioning logits (B, N, V): position k predicts token k + 1."""
        self._need("decoder")
        v = self._tokens_for(images, tokens, input_ids.shape[0])
        dec = self.text_decoder
        h = dec(input_ids, attention_mask, dec.memory_kv(v))
        return self.lm_head(h, dec.word_embeddings.weight)

    def scale(self) -> torch.Tensor:
        """1 / tau, with tau clamped to [0.001, 0.5] as in BLIP."""
        return 1.0 / self.temp.clamp(0.001, 0.5)

    # --- the losses ---

    def _first_token(self, input_ids: torch.Tensor, token: int | None) -> torch.Tensor:
        if token is None:
            return input_ids
        ids = input_ids.clone()
        ids[:, 0] = token
        return ids

    def itm_loss(self, tokens: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, sim: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """ITM cross-entropy over B positives and 2B hard negatives (see module docstring).

        ``sim`` (B, B) image-text similarities (rows images); ``tokens`` (B, T, d_v)."""
        b = input_ids.shape[0]
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else (
            attention_mask.bool())
        same = (input_ids[:, None, :] == input_ids[None, :, :]).all(-1)  # identical captions
        neg_text = sample_hard_negatives(sim, same, generator)  # per image
        neg_image = sample_hard_negatives(sim.T, same, generator)  # per caption
        ids = self._first_token(input_ids, self.config.text.enc_token_id)
        all_ids = torch.cat((ids, ids, ids[neg_text]))
        all_mask = torch.cat((mask, mask, mask[neg_text]))
        all_tokens = torch.cat((tokens, tokens[neg_image], tokens))
        logits = self.itm_logits(None, all_ids, all_mask, tokens=all_tokens)
        labels = torch.cat((torch.ones(b), torch.zeros(2 * b))).long().to(logits.device)
        return F.cross_entropy(logits.float(), labels)

    def lm_loss(self, tokens: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Captioning loss with label smoothing, the first token replaced by ``bos_token_id``."""
        ids = self._first_token(input_ids, self.config.text.bos_token_id)
        logits = self.lm_logits(None, ids, attention_mask, tokens=tokens)
        return caption_lm_loss(logits, ids, attention_mask, self.config.label_smoothing)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None) -> BLIPLosses:
        """ITC + ITM + LM on a batch of B matching pairs (parts the model lacks give 0)."""
        c = self.config
        for name, t in (("images", images), ("input_ids", input_ids)):
            if not isinstance(t, torch.Tensor):
                raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if images.shape[0] != input_ids.shape[0]:
            raise ShapeError(f"images ({images.shape[0]}) and input_ids ({input_ids.shape[0]}) "
                             f"must hold the same number of pairs")
        check_int("batch size", input_ids.shape[0], minimum=2)
        tokens = self.image_tokens(images)
        zero = tokens.new_zeros(())
        itc = itm = lm = zero
        if c.encoder:
            img = self.encode_image(images, tokens=tokens)
            txt = self.encode_text(input_ids, attention_mask)
            itc = clip_loss(img, txt, self.scale())
            itm = self.itm_loss(tokens, input_ids, attention_mask, (img @ txt.T).detach(),
                                generator)
        if c.decoder:
            lm = self.lm_loss(tokens, input_ids, attention_mask)
        return BLIPLosses(itc + itm + lm, itc, itm, lm)


__all__ = [
    "BLIP",
    "BLIPConfig",
    "BLIPLosses",
    "BLIPTextConfig",
    "BLIPTextTransformer",
    "blip_vision_config",
    "caption_lm_loss",
    "sample_hard_negatives",
]
