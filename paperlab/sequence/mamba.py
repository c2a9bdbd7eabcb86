"""Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces";
note C3): a language model built from selective state space blocks instead of attention.

The block (the "mixer"; HF ``MambaMixer``), for hidden states h (B, L, d_model)::

    x, z  = in_proj(h)                           two (B, L, d_inner), d_inner = expand * d_model
    x     = silu(causal depthwise conv1d(x))     kernel d_conv = 4 over time
    dt, B, C = x_proj(x)                         (B, L, dt_rank), (B, L, N), (B, L, N)
    delta = softplus(dt_proj(dt))                (B, L, d_inner): one step size per channel
    A     = -exp(A_log)                          (d_inner, N), input-independent, negative
    y     = selective_scan(x, delta, A, B, C, D) * silu(z)
    out   = out_proj(y)                          (B, L, d_model)

delta, B and C depend on the token: that is the "selection" (S6). With ``selective=False``
they become learned constants (delta = softplus(dt_bias) per channel, B and C (d_inner, N)):
the same block with an S4D-like linear time-invariant (LTI) SSM, which the experiment
``mamba-selective-copying`` pits against Mamba.

The residual block is ``h + mixer(RMSNorm(h))``; the LM is embedding -> n_layer residual blocks
-> RMSNorm -> LM head tied to the embedding. Parameter names follow HF transformers'
``MambaForCausalLM`` (``layers.{i}.norm``, ``layers.{i}.mixer.{in_proj, conv1d, x_proj,
dt_proj, A_log, D, out_proj}``, ``norm_f``, ``embeddings``), so ``load_hf_mamba_state_dict``
only strips the ``backbone.`` prefix and drops the tied ``lm_head``.

Inference is recurrent: per layer a conv state (B, d_inner, d_conv) holds the last d_conv
inputs of the convolution and an SSM state (B, d_inner, d_state) holds x_t; ``MambaLM.step``
consumes one token in O(1) time and memory, and agrees with the parallel forward (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.config import Config
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.registry import export_model
from paperlab.sequence.selective_scan import METHODS, selective_scan

State = tuple[torch.Tensor, torch.Tensor]  # (conv_state (B, d_inner, d_conv), ssm_state)


@dataclass
class MambaConfig(Config):
    """Sizes of a Mamba LM. ``dt_rank="auto"`` means ceil(d_model / 16)."""

    d_model: int = 64
    n_layer: int = 2
    vocab_size: int = 256
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: str | int = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    conv_bias: bool = True
    bias: bool = False
    norm_eps: float = 1e-5
    selective: bool = True
    scan: str = "parallel"

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.dt_rank, str) and self.dt_rank.strip().isdigit():
            self.dt_rank = int(self.dt_rank)
        if self.dt_rank != "auto" and (
            isinstance(self.dt_rank, bool) or not isinstance(self.dt_rank, int) or self.dt_rank < 1
        ):
            raise ConfigError(f"dt_rank must be 'auto' or an int >= 1, got {self.dt_rank!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ConfigError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.norm_eps <= 0:
            raise ConfigError(f"norm_eps must be > 0, got {self.norm_eps}")
        if self.scan not in METHODS:
            raise ConfigError(f"scan must be one of {', '.join(METHODS)}, got {self.scan!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y (for y > 0): y + log(1 - exp(-y))."""
    return y + torch.log(-torch.expm1(-y))


def _initial_dt_bias(cfg: MambaConfig) -> torch.Tensor:
    """softplus^{-1} of step sizes drawn log-uniformly from [dt_min, dt_max] (Mamba's init)."""
    lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
    dt = torch.exp(torch.rand(cfg.d_inner) * (hi - lo) + lo).clamp(min=cfg.dt_init_floor)
    return _inverse_softplus(dt)


class MambaBlock(nn.Module):
    """The Mamba mixer: (B, L, d_model) -> (B, L, d_model); ``selective=False`` gives the LTI
    (S4D-like) ablation with the same architecture."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = cfg = config
        d_inner, n = cfg.d_inner, cfg.d_state
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_inner, bias=cfg.bias)
        self.conv1d = nn.Conv1d(
            d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1,
            bias=cfg.conv_bias,
        )  # fmt: skip
        if cfg.selective:
            rank = cfg.resolved_dt_rank
            self.x_proj = nn.Linear(d_inner, rank + 2 * n, bias=False)
            self.dt_proj = nn.Linear(rank, d_inner, bias=True)
            std = rank**-0.5 * cfg.dt_scale
            with torch.no_grad():
                self.dt_proj.weight.uniform_(-std, std)
                self.dt_proj.bias.copy_(_initial_dt_bias(cfg))
        else:
            self.dt_bias = nn.Parameter(_initial_dt_bias(cfg))
            self.B = nn.Parameter(torch.ones(d_inner, n))
            self.C = nn.Parameter(torch.randn(d_inner, n))
        # S4D-real initialisation: A = -(1, 2, ..., N) for every channel
        a = torch.arange(1, n + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=cfg.bias)

    def ssm(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        ssm_state: torch.Tensor | None = None,
        method: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The SSM on the conv output x and gate z, both (B, d_inner, L), from ``ssm_state``
        (B, d_inner, N) or zero: returns y (B, d_inner, L) and the last state."""
        A = -torch.exp(self.A_log.float())
        if self.config.selective:
            rank, n = self.config.resolved_dt_rank, self.config.d_state
            dt, B, C = self.x_proj(x.transpose(1, 2)).split([rank, n, n], dim=-1)
            delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias goes in the scan
            delta_bias, B, C = self.dt_proj.bias.float(), B.transpose(1, 2), C.transpose(1, 2)
        else:
            delta = torch.zeros_like(x)
            delta_bias, B, C = self.dt_bias.float(), self.B, self.C
        return selective_scan(
            x, delta, A, B, C, self.D.float(), z,
            delta_bias=delta_bias, delta_softplus=True, return_last_state=True,
            initial_state=ssm_state, method=method or self.config.scan,
        )  # fmt: skip

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, d_model) -> (B, L, d_model), the parallel form, from zero state."""
        return self.forward_with_state(hidden)[0]

    def forward_with_state(
        self, hidden: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Like ``forward``, continuing from ``state = (conv_state, ssm_state)`` (None: zeros);
        also returns the state after the last token."""
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        d_conv = self.config.d_conv
        if state is None:
            conv_in = F.pad(x, (d_conv, 0))  # the state of a fresh sequence is zeros
            x_conv = self.conv1d(x)[..., :length]  # padding d_conv - 1, trimmed: causal
            ssm_state = None
        else:
            conv_state, ssm_state = state
            conv_in = torch.cat((conv_state.to(x.dtype), x), dim=-1)
            x_conv = F.conv1d(
                conv_in[..., 1:], self.conv1d.weight, self.conv1d.bias, groups=x.shape[1]
            )
        y, ssm_state = self.ssm(F.silu(x_conv), z, ssm_state)
        return self.out_proj(y.transpose(1, 2)), (conv_in[..., -d_conv:], ssm_state)

    def step(self, hidden: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token, the recurrent form: hidden (B, d_model) and (conv_state (B, d_inner,
        d_conv), ssm_state (B, d_inner, N)) -> output (B, d_model) and the new state."""
        conv_state, ssm_state = state
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, d_inner) each
        conv_state = torch.cat((conv_state[..., 1:], x[..., None].to(conv_state.dtype)), -1)
        x = (conv_state * self.conv1d.weight[:, 0, :]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        y, ssm_state = self.ssm(F.silu(x)[..., None], z[..., None], ssm_state, "sequential")
        return self.out_proj(y[..., 0]), (conv_state, ssm_state)


class MambaResidualBlock(nn.Module):
    """h + mixer(RMSNorm(h)) (HF ``MambaBlock``)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mixer = MambaBlock(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.mixer(self.norm(hidden))

    def forward_with_state(
        self, hidden: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        out, state = self.mixer.forward_with_state(self.norm(hidden), state)
        return hidden + out, state

    def step(self, hidden: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, state = self.mixer.step(self.norm(hidden), state)
        return hidden + out, state


@dataclass
class MambaCache:
    """Per-layer recurrent state for decoding: conv (B, d_inner, d_conv) and SSM
    (B, d_inner, d_state) states, and how many tokens they have consumed."""

    conv_states: list[torch.Tensor] = field(default_factory=list)
    ssm_states: list[torch.Tensor] = field(default_factory=list)
    length: int = 0

    def layer(self, i: int) -> State:
        return self.conv_states[i], self.ssm_states[i]

    def update(self, i: int, state: State) -> None:
        self.conv_states[i], self.ssm_states[i] = state


@export_model("mamba", note="C3 Mamba", paper="Gu & Dao 2023")
class MambaLM(nn.Module):
    """Mamba language model: tokens (B, L) -> logits (B, L, vocab_size).

    Build from a ``MambaConfig`` or keyword overrides: ``MambaLM(d_model=32, n_layer=2)``.
    """

    def __init__(self, config: MambaConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is not None and not isinstance(config, MambaConfig):
            raise ArgumentTypeError(f"config must be a MambaConfig, got {type(config).__name__}")
        base = (config or MambaConfig()).to_dict()
        self.config = cfg = MambaConfig.from_dict({**base, **overrides})
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(MambaResidualBlock(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        nn.init.normal_(self.embeddings.weight, std=0.02)
        with torch.no_grad():  # GPT-2 style: shrink the residual branches by 1/sqrt(n_layer)
            for layer in self.layers:
                layer.mixer.out_proj.weight /= math.sqrt(cfg.n_layer)

    def _check_tokens(self, tokens: torch.Tensor, ndim: int) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point():
            raise ArgumentTypeError(f"tokens must be an integer tensor, got {tokens!r:.60}")
        if tokens.dim() != ndim or (ndim == 2 and tokens.shape[1] == 0):
            want = "(batch, length) with length >= 1" if ndim == 2 else "(batch,)"
            raise ShapeError(f"tokens must have shape {want}, got {tuple(tokens.shape)}")

    def features(self, tokens: torch.Tensor, cache: MambaCache | None = None) -> torch.Tensor:
        """tokens (B, L) -> final normalised hidden states (B, L, d_model) (HF ``MambaModel``).

        With ``cache`` the layers continue from its states and leave theirs in it.
        """
        self._check_tokens(tokens, 2)
        hidden = self.embeddings(tokens)
        for i, layer in enumerate(self.layers):
            if cache is None:
                hidden = layer(hidden)
            else:
                hidden, state = layer.forward_with_state(hidden, cache.layer(i))
                cache.update(i, state)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.norm_f(hidden)

    def forward(self, tokens: torch.Tensor, cache: MambaCache | None = None) -> torch.Tensor:
        """tokens (B, L) -> logits (B, L, vocab_size), the LM head tied to the embedding."""
        return F.linear(self.features(tokens, cache), self.embeddings.weight)

    def allocate_cache(
        self, batch_size: int, *, dtype: torch.dtype | None = None, device: Any = None
    ) -> MambaCache:
        """Zero states for ``batch_size`` sequences (SSM states in float32 or float64)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
        cfg, p = self.config, self.embeddings.weight
        dtype = dtype or p.dtype
        device = device or p.device
        ssm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        shape = (batch_size, cfg.d_inner)
        return MambaCache(
            [torch.zeros(*shape, cfg.d_conv, dtype=dtype, device=device) for _ in self.layers],
            [torch.zeros(*shape, cfg.d_state, dtype=ssm_dtype, device=device) for _ in self.layers],
        )

    def step(self, token: torch.Tensor, cache: MambaCache) -> torch.Tensor:
        """One token per sequence, (B,) -> next-token logits (B, vocab_size); updates cache."""
        self._check_tokens(token, 1)
        if cache.conv_states and cache.conv_states[0].shape[0] != token.shape[0]:
            raise ShapeError(
                f"token has batch {token.shape[0]} but the cache was allocated for "
                f"{cache.conv_states[0].shape[0]}"
            )
        hidden = self.embeddings(token)
        for i, layer in enumerate(self.layers):
            hidden, state = layer.step(hidden, cache.layer(i))
            cache.update(i, state)
        cache.length += 1
        return F.linear(self.norm_f(hidden), self.embeddings.weight)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: prompt (B, L) or (L,) -> prompt followed by max_new_tokens tokens.

        The prompt is read in one parallel pass that fills the cache; each new token is one
        recurrent ``step``.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ArgumentTypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
        if max_new_tokens < 0:
            raise ArgumentError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        squeeze = isinstance(prompt, torch.Tensor) and prompt.dim() == 1
        tokens = prompt[None] if squeeze else prompt
        self._check_tokens(tokens, 2)
        cache = self.allocate_cache(tokens.shape[0])
        out = [tokens]
        logits = self(tokens, cache)[:, -1]
        for i in range(max_new_tokens):
            nxt = logits.argmax(dim=-1)
            out.append(nxt[:, None])
            if i + 1 < max_new_tokens:
                logits = self.step(nxt, cache)
        result = torch.cat(out, dim=1)
        return result[0] if squeeze else result


# ----------------------------------------------------------------------------- HF weights


def config_from_hf(hf_config: Any) -> MambaConfig:
    """Our ``MambaConfig`` for an HF ``transformers.MambaConfig``."""
    if int(hf_config.intermediate_size) != int(hf_config.expand) * int(hf_config.hidden_size):
        raise ConfigError(
            f"intermediate_size {hf_config.intermediate_size} must be expand * hidden_size "
            f"= {hf_config.expand * hf_config.hidden_size}"
        )
    return MambaConfig(
        d_model=int(hf_config.hidden_size),
        n_layer=int(hf_config.num_hidden_layers),
        vocab_size=int(hf_config.vocab_size),
        d_state=int(hf_config.state_size),
        d_conv=int(hf_config.conv_kernel),
        expand=int(hf_config.expand),
        dt_rank=int(hf_config.time_step_rank),
        conv_bias=bool(hf_config.use_conv_bias),
        bias=bool(hf_config.use_bias),
        norm_eps=float(hf_config.layer_norm_epsilon),
    )


def hf_mamba_name(name: str) -> str | None:
    """Our parameter name for an HF (or original mamba_ssm) Mamba name; None for the tied head.

    ``backbone.layers.0.mixer.A_log`` -> ``layers.0.mixer.A_log``; ``backbone.embedding.weight``
    (mamba_ssm) -> ``embeddings.weight``; ``lm_head.weight`` -> None.
    """
    if name == "lm_head.weight":
        return None
    name = name.removeprefix("backbone.")
    if name.startswith("embedding."):
        name = "embeddings." + name.removeprefix("embedding.")
    return name


def load_hf_mamba_state_dict(model: MambaLM, hf_state_dict: dict[str, torch.Tensor]) -> None:
    """Copy HF ``MambaModel``/``MambaForCausalLM`` (or mamba_ssm) weights into ``model``.

    Raises ``ConfigError`` listing missing/unexpected names or mismatched shapes, and when
    the checkpoint's LM head is not tied to its embedding (our head is always tied).
    """
    if not model.config.selective:
        raise ConfigError("HF Mamba weights need a selective model (config.selective=True)")
    mapped: dict[str, torch.Tensor] = {}
    head = None
    for name, tensor in hf_state_dict.items():
        ours = hf_mamba_name(name)
        if ours is None:
            head = tensor
        else:
            mapped[ours] = tensor
    emb = mapped.get("embeddings.weight")
    if head is not None and emb is not None and not torch.equal(head, emb):
        raise ConfigError("the checkpoint's lm_head.weight is not tied to its embedding")
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    wrong = [
        f"{k}: ours {tuple(own[k].shape)}, checkpoint {tuple(v.shape)}"
        for k, v in mapped.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise ConfigError(
            "HF Mamba state dict does not fit this model: "
            f"missing {missing or 'none'}; unexpected {unexpected or 'none'}; "
            f"shape mismatches {wrong or 'none'}"
        )
    model.load_state_dict(mapped)


__all__ = [
    "MambaBlock",
    "MambaCache",
    "MambaConfig",
    "MambaLM",
    "MambaResidualBlock",
    "config_from_hf",
    "hf_mamba_name",
    "load_hf_mamba_state_dict",
    "selective_scan",
]
