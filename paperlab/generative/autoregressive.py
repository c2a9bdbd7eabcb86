"""Autoregressive models of binary vectors (note G2): FVSBN, NADE and MADE, with exact likelihoods.

The chain rule factorises any distribution over x in {0, 1}^D without approximation:

    p(x) = prod_i p(x_i | x_<i),        log p(x) = sum_i log Bernoulli(x_i; sigmoid(l_i(x_<i)))

so a model only has to give, for every i, a logit l_i that depends on x_<i alone. Each model
below computes all D logits in one pass (``logits(x) -> (B, D)``); the autoregressive property
(logit i ignores x_>=i) is what makes ``log_prob`` an exact, normalised log-likelihood, and
``sample`` draws the x_i one after the other.

- ``FVSBN(D)`` -- fully visible sigmoid belief network (Frey 1998): one logistic regression
  per dimension, l_i = b_i + sum_{j<i} W_ij x_j with W strictly lower-triangular.
  D(D - 1)/2 + D parameters.
- ``NADE(D, hidden)`` -- neural autoregressive density estimator (Larochelle & Murray 2011):
  one hidden layer whose weights are shared across the D conditionals,
  a_i = c + W[:, <i] x_<i,  l_i = b_i + V_i . sigmoid(a_i).  Since a_{i+1} = a_i + W[:, i] x_i,
  all D hidden states come from one (exclusive) cumulative sum over i: O(D H) work instead of
  O(D^2 H). 2 D H + H + D parameters.
- ``MADE(D, hidden, num_masks)`` -- masked autoencoder for distribution estimation (Germain
  et al. 2015), the modern form of the same idea and beyond the note: an MLP whose weight
  masks allow hidden unit k of layer l (degree m_l(k)) to see inputs of degree <= m_l(k), and
  output d to see units of degree < m_0(d), with m_0 an ordering of the inputs. ``num_masks``
  mask sets (order- and connectivity-agnostic training) are cycled in training
  (``log_prob(x, mask=k)``); ``log_prob(x)`` is the exact log-likelihood of the uniform
  mixture of the K models, log (1/K) sum_k p_k(x), which is itself normalised. Mask set 0
  uses the natural order 1..D; the others random orders; hidden degrees are random for all.

Shapes: x is (B, D) with values in {0, 1} (any floating or integer dtype); ``log_prob(x)`` is
(B,) in nats; ``sample(n, generator)`` is (n, D) in the parameters' dtype. The functions
``fvsbn_logits``, ``nade_logits`` and ``bernoulli_log_prob`` are the formulas; the modules hold
the parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i log Bernoulli(x_i; sigmoid(logits_i)) over the last dim: (B, D), (B, D) -> (B,).

    Computed as -softplus(-l) for x = 1 and -softplus(l) for x = 0 (binary cross-entropy with
    logits), which is finite for any finite logit.
    """
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def fvsbn_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """FVSBN logits l_i = b_i + sum_{j<i} W_ij x_j: x (B, D), weight (D, D), bias (D,) -> (B, D).

    Only the strictly lower triangle of ``weight`` is used.
    """
    return F.linear(x, torch.tril(weight, diagonal=-1), bias)


def nade_logits(
    x: torch.Tensor,
    weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
) -> torch.Tensor:
    """NADE logits for all i at once: x (B, D), W (H, D), c (H,), V (D, H), b (D,) -> (B, D).

    a_i = c + sum_{j<i} W[:, j] x_j is the exclusive cumulative sum over j of W[:, j] x_j;
    l_i = b_i + V_i . sigmoid(a_i). The sum runs over the leading dim of a (D, B, H) layout,
    where each step adds one contiguous (B, H) slab.
    """
    contrib = x.t().unsqueeze(-1) * weight.t().unsqueeze(1)  # (D, B, H): W[:, j] x_j
    a = torch.cumsum(contrib, dim=0) - contrib + hidden_bias  # exclusive: j < i
    h = torch.sigmoid(a)  # (D, B, H), the D hidden states of every vector
    return torch.bmm(h, out_weight.unsqueeze(-1)).squeeze(-1).t() + out_bias


def check_binary(x: torch.Tensor, dim: int, name: str = "x") -> None:
    """Raise unless ``x`` is a (B, dim) tensor whose entries are all 0 or 1."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != dim:
        raise ShapeError(f"{name} must have shape (B, {dim}), got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must be a real 0/1 tensor, got dtype {x.dtype}")
    if x.numel() and not bool(((x == 0) | (x == 1)).all()):
        raise ArgumentError(f"{name} must hold only 0 and 1 (binary vectors)")


class BinaryAutoregressive(nn.Module):
    """Base of the models: ``logits(x)`` (subclasses) gives ``log_prob`` and ``sample``."""

    dim: int

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        check_binary(x, self.dim)
        p = self._param()
        return x.to(device=p.device, dtype=p.dtype)

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats: x (B, D) in {0, 1} -> (B,)."""
        x = self._prepare(x)
        return bernoulli_log_prob(self.logits(x), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    def _sample_in_order(
        self, n: int, order: torch.Tensor, logits_fn, generator: torch.Generator | None
    ) -> torch.Tensor:
        p = self._param()
        dev = generator.device if generator is not None else p.device  # draws where it lives
        x = torch.zeros(n, self.dim, dtype=p.dtype, device=p.device)
        for i in order.tolist():
            prob = torch.sigmoid(logits_fn(x)[:, i])
            u = torch.rand(n, generator=generator, dtype=p.dtype, device=dev).to(p.device)
            x[:, i] = (u < prob).to(p.dtype)
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent draws (n, D): x_1, then x_2 given x_1, ... (one pass per dimension)."""
        n = _check_sample_args(n, generator)
        order = torch.arange(self.dim)
        return self._sample_in_order(n, order, self.logits, generator)


def _check_sample_args(n: object, generator: object) -> int:
    check_int("n", n, minimum=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return n  # type: ignore[return-value]


class FVSBN(BinaryAutoregressive):
    """Fully visible sigmoid belief network: p(x_i = 1 | x_<i) = sigmoid(b_i + W_i,<i . x_<i)."""

    def __init__(self, D: int) -> None:
        super().__init__()
        self.dim = check_int("D", D, minimum=1)
        # every entry is a parameter for simplicity; the upper triangle never reaches the
        # output, gets zero gradient and is not counted by ``num_parameters``
        self.weight = nn.Parameter(torch.zeros(D, D))
        self.bias = nn.Parameter(torch.zeros(D))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return fvsbn_logits(x, self.weight, self.bias)

    def num_parameters(self) -> int:
        """Free parameters: D (D - 1) / 2 weights + D biases."""
        return self.dim * (self.dim - 1) // 2 + self.dim


class NADE(BinaryAutoregressive):
    """NADE: p(x_i = 1 | x_<i) = sigmoid(b_i + V_i . sigmoid(c + W[:, <i] x_<i)), W shared."""

    def __init__(self, D: int, hidden: int) -> None:
        super().__init__()
        self.dim = check_int("D", D, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.weight = nn.Parameter(torch.randn(hidden, D) * D**-0.5)
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))
        self.out_weight = nn.Parameter(torch.randn(D, hidden) * hidden**-0.5)
        self.out_bias = nn.Parameter(torch.zeros(D))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return nade_logits(x, self.weight, self.hidden_bias, self.out_weight, self.out_bias)

    def num_parameters(self) -> int:
        """2 D H + H + D."""
        return sum(p.numel() for p in self.parameters())


def made_masks(
    D: int, hidden: list[int], order: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """MADE's masks (out, in) for one ordering: input degrees m_0 = order + 1 (1..D),
    hidden degrees m_l(k) ~ U{min m_{l-1}, ..., D - 1}; a unit sees degrees <= its own, an
    output d sees hidden units of degree < m_0(d)."""
    degrees = [order + 1]
    for h in hidden:
        if D == 1:  # nothing may be seen: degree 0 units connect to no input
            degrees.append(torch.zeros(h, dtype=torch.long))
        else:
            low = int(degrees[-1].min())
            degrees.append(torch.randint(low, D, (h,), generator=generator))
    masks = [(degrees[i + 1][:, None] >= degrees[i][None, :]) for i in range(len(hidden))]
    masks.append(degrees[0][:, None] > degrees[-1][None, :])
    return [m.float() for m in masks]


class MADE(BinaryAutoregressive):
    """Masked autoencoder (one or more ReLU hidden layers) with ``num_masks`` mask sets.

    ``hidden`` is an int (one layer) or a sequence of widths. ``seed`` draws the orders and
    degrees. ``log_prob(x)`` is the mixture over mask sets; ``log_prob(x, mask=k)`` one set's.
    """

    def __init__(
        self,
        D: int,
        hidden: int | list[int] | tuple[int, ...],
        num_masks: int = 1,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dim = check_int("D", D, minimum=1)
        widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
            raise ArgumentTypeError(f"hidden must be an int or a sequence of ints, got {hidden!r}")
        widths = list(widths)
        if not widths:
            raise ArgumentError("hidden must give at least one layer width")
        for i, w in enumerate(widths):
            check_int(f"hidden[{i}]", w, minimum=1)
        self.hidden = widths
        self.num_masks = check_int("num_masks", num_masks, minimum=1)
        sizes = [D, *widths, D]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        g = torch.Generator().manual_seed(check_int("seed", seed))
        orders, masks = [], [[] for _ in self.layers]
        for k in range(num_masks):
            order = torch.arange(D) if k == 0 else torch.randperm(D, generator=g)
            orders.append(order)
            for store, m in zip(masks, made_masks(D, widths, order, g)):
                store.append(m)
        # order[d] is the position of input d in the chain (0 = first)
        self.register_buffer("orders", torch.stack(orders))
        for i, store in enumerate(masks):
            self.register_buffer(f"mask{i}", torch.stack(store))

    def _mask(self, layer: int, k: int) -> torch.Tensor:
        return getattr(self, f"mask{layer}")[k]

    def _check_mask(self, mask: object) -> int:
        check_int("mask", mask, minimum=0)
        if mask >= self.num_masks:  # type: ignore[operator]
            raise ArgumentError(f"mask must be < num_masks = {self.num_masks}, got {mask}")
        return mask  # type: ignore[return-value]

    def logits(self, x: torch.Tensor, mask: int = 0) -> torch.Tensor:
        """Logits (B, D) under mask set ``mask``; logit d depends on inputs earlier in its order."""
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            w = layer.weight * self._mask(i, mask).to(layer.weight.dtype)
            h = F.linear(h, w, layer.bias)
            if i < last:
                h = F.relu(h)
        return h

    def log_prob(self, x: torch.Tensor, mask: int | None = None) -> torch.Tensor:
        """Exact log p(x): mask set ``mask``'s model, or (None) the uniform mixture over sets."""
        x = self._prepare(x)
        if mask is not None:
            return bernoulli_log_prob(self.logits(x, self._check_mask(mask)), x)
        per_mask = torch.stack(
            [bernoulli_log_prob(self.logits(x, k), x) for k in range(self.num_masks)]
        )
        return torch.logsumexp(per_mask, dim=0) - torch.log(
            torch.tensor(float(self.num_masks), dtype=per_mask.dtype)
        )

    def forward(self, x: torch.Tensor, mask: int | None = None) -> torch.Tensor:
        return self.log_prob(x, mask)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, mask: int | None = None
    ) -> torch.Tensor:
        """n draws from mask set ``mask``'s model, or (None) from the mixture: each sample
        picks its mask set uniformly, then draws in that set's order."""
        n = _check_sample_args(n, generator)
        p = self._param()
        if mask is not None:
            k = self._check_mask(mask)
            picks = torch.full((n,), k, dtype=torch.long)
        else:
            picks = torch.randint(0, self.num_masks, (n,), generator=generator)
        out = torch.zeros(n, self.dim, dtype=p.dtype, device=p.device)
        for k in range(self.num_masks):
            rows = (picks == k).nonzero().flatten()
            if len(rows) == 0:
                continue
            chain = torch.argsort(self.orders[k].cpu())  # dims in the order they are drawn
            out[rows.to(p.device)] = self._sample_in_order(
                len(rows), chain, lambda x, k=k: self.logits(x, k), generator
            )
        return out
