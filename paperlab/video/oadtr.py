"""OadTR (note H1): online action detection with a task token and a decoder of the future.

The idea
--------
Online action detection labels the *current* frame of a stream from the past alone. OadTR
(Wang et al., ICCV 2021, "OadTR: Online Action Detection with Transformers") reads the last
W frame features with a Transformer encoder and, beside it, a decoder that anticipates the
next Q frames, and classifies the current frame from both:

    encoder:  E = Enc([x_{t-W+1} .. x_t] W_in  ++  [task]  +  P)         (W + 1 tokens, d)
              the learnable task token is appended at the end; P learned positions
    decoder:  D = Dec(queries, E)       Q learnable queries, masked self-attention among them
                                        (query i sees queries <= i), cross-attention to E
    future:   p(y_{t+i}) = softmax(W_f D_i),                       i = 1 .. Q
    current:  p(y_t) = softmax(W_c [E_task ; mean_i D_i])

The task token is a learned summary slot: it attends over the whole window and carries what
the classifier needs, rather than the current frame's own token. The loss is cross-entropy on
the current frame plus 0.5 x the mean cross-entropy on the Q future frames, the "ambiguous"
class ignored in both:

    L = CE(p(y_t), y_t) + 0.5 * mean_i CE(p(y_{t+i}), y_{t+i}).

Ablations (``OadTRConfig``): ``task_token=False`` classifies from the current frame's encoder
output E_t instead of the token; ``decoder=False`` drops the decoder and the future loss
(p(y_t) = softmax(W_c E_task)).

Here the encoder and decoder layers are paperlab's pre-LN ``EncoderLayer`` / ``DecoderLayer``
(``sequence/transformer_layers.py``, GELU). The decoder's input is the learned queries
themselves (OadTR's code adds them as query positions to a zero target, DETR-style; on the
first layer that is the same sum). Windows at the start of a stream are left-padded with zero
features (``sliding_windows``); ``OadTRStream.step`` keeps the window as frames arrive and
returns exactly what the batched model gives for that window.

The baselines: ``LSTMDetector`` reads the same window with an LSTM and classifies the current
frame from its last hidden state; ``TRNDetector`` adds TRN's LSTM decoder of the future.

Shapes: windows (B, W, F); logits (B, C) for the current frame and (B, Q, C) for the future,
C = K + 2 classes (background 0, K actions, ambiguous K + 1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ConfigError, ShapeError, check_int
from paperlab.sequence.transformer_layers import (
    DecoderLayer,
    EncoderLayer,
    cross_attention_kv,
)

FUTURE_WEIGHT = 0.5


# --- data helpers ----------------------------------------------------------------------------


def sliding_windows(features: Any, window: int) -> torch.Tensor:
    """(T, F) -> (T, W, F): row t is frames t-W+1 .. t, zero-padded before the first frame."""
    x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if x.dim() != 2:
        raise ShapeError(f"features must be (T, F), got shape {tuple(x.shape)}")
    check_int("window", window, minimum=1)
    padded = torch.cat((x.new_zeros(window - 1, x.shape[1]), x.float()))
    return padded.unfold(0, window, 1).transpose(1, 2).contiguous()


def future_targets(labels: Any, steps: int, ignore_index: int) -> torch.Tensor:
    """(T,) -> (T, Q): row t holds labels t+1 .. t+Q, ``ignore_index`` past the end."""
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
    if y.dim() != 1:
        raise ShapeError(f"labels must be (T,), got shape {tuple(y.shape)}")
    check_int("steps", steps, minimum=1)
    padded = torch.cat((y, y.new_full((steps,), ignore_index)))
    return padded[1:].unfold(0, steps, 1)[: y.shape[0]].contiguous()


# --- the model -------------------------------------------------------------------------------


@dataclass
class OadTRConfig(Config):
    """OadTR's sizes: ``num_classes`` counts background and the ambiguous class."""

    feature_dim: int = 16
    num_classes: int = 6
    window: int = 64
    dim: int = 64
    depth: int = 2
    decoder_depth: int = 1
    num_heads: int = 4
    ffn_dim: int = 128
    future: int = 8
    dropout: float = 0.1
    task_token: bool = True
    decoder: bool = True

    def check(self) -> None:
        for name in ("feature_dim", "num_classes", "window", "dim", "depth", "num_heads",
                     "ffn_dim", "future"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.decoder and self.decoder_depth < 1:
            raise ConfigError(f"decoder_depth must be >= 1, got {self.decoder_depth}")
        if self.dim % self.num_heads:
            raise ConfigError(f"dim ({self.dim}) must be divisible by num_heads "
                              f"({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class OadTROutput(NamedTuple):
    current: torch.Tensor  # (B, C) logits of the current frame
    future: torch.Tensor | None  # (B, Q, C) logits of the next Q frames (None without decoder)


class OadTR(nn.Module):
    """OadTR: windows (B, W, F) -> ``OadTROutput(current (B, C), future (B, Q, C))``."""

    def __init__(self, config: OadTRConfig | None = None, **fields: Any) -> None:
        super().__init__()
        c = config if config is not None else OadTRConfig(**fields)
        if config is not None and fields:
            c = OadTRConfig(**{**c.to_dict(), **fields})
        c.check()
        self.config = c
        d = c.dim
        self.input_proj = nn.Linear(c.feature_dim, d)
        tokens = c.window + int(c.task_token)
        self.task = nn.Parameter(torch.zeros(1, 1, d)) if c.task_token else None
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.drop = nn.Dropout(c.dropout)
        layer = dict(dropout=c.dropout, activation="gelu", norm_first=True)
        self.encoder = nn.ModuleList(
            EncoderLayer(d, c.num_heads, c.ffn_dim, **layer) for _ in range(c.depth))
        self.encoder_norm = nn.LayerNorm(d)
        if c.decoder:
            self.queries = nn.Parameter(torch.randn(1, c.future, d) * 0.02)
            self.decoder = nn.ModuleList(
                DecoderLayer(d, c.num_heads, c.ffn_dim, causal=True, **layer)
                for _ in range(c.decoder_depth))
            self.decoder_norm = nn.LayerNorm(d)
            self.future_head = nn.Linear(d, c.num_classes)
        self.current_head = nn.Linear(2 * d if c.decoder else d, c.num_classes)
        if self.task is not None:
            nn.init.normal_(self.task, std=0.02)

    def encode(self, projected: torch.Tensor) -> torch.Tensor:
        """Projected frames (B, W, d) -> encoder output (B, W [+ 1], d); the task token (when
        used) is the last token."""
        x = projected
        if self.task is not None:
            x = torch.cat((x, self.task.expand(x.shape[0], -1, -1)), dim=1)
        x = self.drop(x + self.pos)
        for layer in self.encoder:
            x = layer(x)
        return self.encoder_norm(x)

    def decode(self, memory: torch.Tensor) -> torch.Tensor:
        """Encoder output (B, S, d) -> decoder output (B, Q, d)."""
        y = self.queries.expand(memory.shape[0], -1, -1)
        for layer in self.decoder:
            y, _ = layer(y, cross_attention_kv(layer.cross_attn, memory))
        return self.decoder_norm(y)

    def from_projected(self, projected: torch.Tensor) -> OadTROutput:
        """The heads on projected frames (B, W, d)."""
        memory = self.encode(projected)
        summary = memory[:, -1]  # the task token, or the current frame's token without it
        if not self.config.decoder:
            return OadTROutput(self.current_head(summary), None)
        dec = self.decode(memory)
        current = self.current_head(torch.cat((summary, dec.mean(dim=1)), dim=-1))
        return OadTROutput(current, self.future_head(dec))

    def forward(self, windows: torch.Tensor) -> OadTROutput:
        c = self.config
        if windows.dim() != 3 or windows.shape[1:] != (c.window, c.feature_dim):
            raise ShapeError(f"windows must be (B, {c.window}, {c.feature_dim}), got "
                             f"{tuple(windows.shape)}")
        return self.from_projected(self.input_proj(windows))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def oadtr_loss(
    output: OadTROutput, current: torch.Tensor, future: torch.Tensor | None = None, *,
    ignore_index: int = -100, future_weight: float = FUTURE_WEIGHT,
) -> torch.Tensor:
    """CE(current) + ``future_weight`` x CE(future), ``ignore_index`` (the ambiguous class)
    left out of both. ``current`` (B,) labels, ``future`` (B, Q) labels of frames t+1..t+Q."""
    if current.shape != output.current.shape[:1]:
        raise ShapeError(f"current labels must be ({output.current.shape[0]},), got "
                         f"{tuple(current.shape)}")
    loss = _ce(output.current, current, ignore_index)
    if output.future is None or future_weight == 0:
        return loss
    if future is None:
        raise ArgumentError("future labels are needed when the model predicts the future")
    if future.shape != output.future.shape[:2]:
        raise ShapeError(f"future labels must be {tuple(output.future.shape[:2])}, got "
                         f"{tuple(future.shape)}")
    fut = _ce(output.future.flatten(0, 1), future.flatten(), ignore_index)
    return loss + future_weight * fut


def _ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored rows (0 when every row is ignored)."""
    keep = labels != ignore_index
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


@torch.no_grad()
def task_token_attention(model: OadTR, windows: torch.Tensor) -> torch.Tensor:
    """Attention of the last token (the task token) over the window in the last encoder
    layer, averaged over heads: (B, W + 1), rows sum to 1."""
    layer = model.encoder[-1]
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    was = model.training
    model.eval()
    try:
        model(windows)
    finally:
        handle.remove()
        model.train(was)
    attn = layer.self_attn
    h = layer.norm1(seen[0])
    b, n, _ = h.shape
    q = attn.q_proj(h[:, -1:]).view(b, 1, attn.num_heads, -1).transpose(1, 2)
    k = attn.k_proj(h).view(b, n, attn.num_heads, -1).transpose(1, 2)
    weights = torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1)  # (B, H, 1, N)
    return weights.mean(dim=1)[:, 0]


class OadTRStream:
    """Streaming inference: ``step(frame_feature) -> class probabilities (C,)``.

    Keeps the last W projected frames (the window starts as projected zero features, as in
    ``sliding_windows``); each step projects only the new frame and re-runs the encoder and
    decoder on the window, so its output equals the batched model's on that window.
    """

    def __init__(self, model: OadTR) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        c = self.model.config
        with torch.no_grad():
            zero = self.model.input_proj(torch.zeros(c.feature_dim,
                                                     device=self.model.pos.device))
        self.window: deque[torch.Tensor] = deque([zero] * c.window, maxlen=c.window)

    @torch.no_grad()
    def step(self, frame_feature: Any) -> torch.Tensor:
        c = self.model.config
        x = torch.as_tensor(frame_feature, dtype=torch.float32, device=self.model.pos.device)
        if x.shape != (c.feature_dim,):
            raise ShapeError(f"frame_feature must be ({c.feature_dim},), got {tuple(x.shape)}")
        self.window.append(self.model.input_proj(x))
        was = self.model.training
        self.model.eval()
        out = self.model.from_projected(torch.stack(tuple(self.window))[None])
        self.model.train(was)
        return torch.softmax(out.current[0], dim=-1)


# --- the baseline ----------------------------------------------------------------------------


class LSTMDetector(nn.Module):
    """An LSTM over the window: windows (B, W, F) -> current-frame logits (B, C)."""

    def __init__(self, feature_dim: int = 16, num_classes: int = 6, hidden: int = 64,
                 layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        check_int("feature_dim", feature_dim, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        check_int("hidden", hidden, minimum=1)
        check_int("layers", layers, minimum=1)
        self.lstm = nn.LSTM(feature_dim, hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, windows: torch.Tensor) -> OadTROutput:
        if windows.dim() != 3 or windows.shape[-1] != self.lstm.input_size:
            raise ShapeError(f"windows must be (B, W, {self.lstm.input_size}), got "
                             f"{tuple(windows.shape)}")
        out, _ = self.lstm(windows)
        return OadTROutput(self.head(self.drop(out[:, -1])), None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TRNDetector(nn.Module):
    """TRN's idea (Xu et al., ICCV 2019, "Temporal Recurrent Networks for Online Action
    Detection") on a window: an LSTM encoder reads the window; an LSTM decoder starts from its
    state and runs Q steps, each predicting a future frame's class and feeding that prediction
    back as its next input; the current frame is classified from [encoder state ; mean
    decoder state] -- the recurrent counterpart of OadTR's decoder. (TRN proper also feeds the
    future representation into the next encoder step; with the encoder re-run on each window
    it goes straight to the classifier.) windows (B, W, F) -> ``OadTROutput`` (B, C), (B, Q, C).
    """

    def __init__(self, feature_dim: int = 16, num_classes: int = 6, hidden: int = 48,
                 future: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        check_int("feature_dim", feature_dim, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        check_int("hidden", hidden, minimum=1)
        self.future = check_int("future", future, minimum=1)
        self.encoder = nn.LSTM(feature_dim, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(hidden, hidden)
        self.feedback = nn.Linear(num_classes, hidden)
        self.future_head = nn.Linear(hidden, num_classes)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, windows: torch.Tensor) -> OadTROutput:
        if windows.dim() != 3 or windows.shape[-1] != self.encoder.input_size:
            raise ShapeError(f"windows must be (B, W, {self.encoder.input_size}), got "
                             f"{tuple(windows.shape)}")
        _, (h, c) = self.encoder(windows)
        h, c = h[-1], c[-1]
        summary = h
        step_in = torch.zeros_like(h)
        states, logits = [], []
        for _ in range(self.future):
            h, c = self.decoder(step_in, (h, c))
            lg = self.future_head(h)
            states.append(h)
            logits.append(lg)
            step_in = self.feedback(torch.softmax(lg, dim=-1))
        mean = torch.stack(states, dim=1).mean(dim=1)
        current = self.head(self.drop(torch.cat((summary, mean), dim=-1)))
        return OadTROutput(current, torch.stack(logits, dim=1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
