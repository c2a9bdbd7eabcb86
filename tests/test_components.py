"""Every registered component builds, gives the right shape, has no NaN, and trains.

Each registered name of the kinds below must have an example here: adding a component
without one fails ``test_every_component_has_an_example``. An example builds the component
with small sizes and returns (module, inputs, call) where ``call(module, *inputs)`` gives a
tensor whose expected shape is checked; then a scalar of it is back-propagated and every
parameter must receive a finite, non-zero gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from paperlab import create, registry
from paperlab.detection.faster_rcnn import TinyBackbone

B, H, N, D = 2, 2, 6, 8
C = H * D
COVERED_KINDS = ("position", "attention", "model", "optimizer")


def _x() -> torch.Tensor:
    return torch.randn(B, N, C)


def _qk() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, H, N, D), torch.randn(B, H, N, D)


# name -> (build, inputs, call, expected shape)
Example = tuple[Callable[[], Any], Callable[[], tuple], Callable[..., torch.Tensor], tuple]

POSITION: dict[str, Example] = {
    "sinusoidal": (
        lambda: create("position", "sinusoidal", dim=C),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "learned": (
        lambda: create("position", "learned", max_positions=32, dim=C),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "recursive": (
        lambda: create("position", "recursive", dim=C),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "multiplicative": (
        lambda: create("position", "multiplicative", dim=C, table="learned", max_positions=32),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "rope": (
        lambda: create("position", "rope", dim=D),
        lambda: (torch.randn(B, H, N, D),),
        lambda m, q: m.rotate(q),
        (B, H, N, D),
    ),
    "rope-2d": (
        lambda: create("position", "rope-2d", dim=D),
        lambda: (torch.randn(B, H, 3, 2, D),),
        lambda m, q: m.rotate(q.flatten(2, 3), grid=(3, 2)),
        (B, H, 6, D),
    ),
    "shaw": (
        lambda: create("position", "shaw", max_distance=4, head_dim=D),
        _qk,
        lambda m, q, k: m(q, k, scale=D**-0.5),
        (B, H, N, N),
    ),
    "t5": (
        lambda: create("position", "t5", num_heads=H),
        _qk,
        lambda m, q, k: m(q, k, scale=1.0).expand(B, H, N, N),
        (B, H, N, N),
    ),
    "xl": (
        lambda: create("position", "xl", num_heads=H, head_dim=D),
        _qk,
        lambda m, q, k: m(q, k, scale=D**-0.5),
        (B, H, N, N),
    ),
    "deberta": (
        lambda: create("position", "deberta", num_heads=H, head_dim=D, max_distance=4),
        _qk,
        lambda m, q, k: m(q, k, scale=D**-0.5),
        (B, H, N, N),
    ),
    "alibi": (
        lambda: create("position", "alibi", num_heads=H, causal=False),
        _qk,
        lambda m, q, k: m(q, k, scale=D**-0.5).expand(B, H, N, N),
        (B, H, N, N),
    ),
}

# Attention modules share one constructor, (dim, num_heads, **extra): (B, N, C) -> (B, N, C).
ATTENTION_EXTRA: dict[str, dict[str, Any]] = {
    "local": {"window": 3},
    "linformer": {"seq_len": N, "k": 4},
}


def _attention(name: str) -> Example:
    return (
        lambda: create("attention", name, dim=C, num_heads=H, **ATTENTION_EXTRA.get(name, {})),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    )


VOCAB = 13


def _tokens() -> tuple[torch.Tensor]:
    return (torch.randint(0, VOCAB, (B, N)),)


def _recurrent(name: str) -> Example:
    return (
        lambda: create(
            "model",
            name,
            input_size=C,
            hidden_size=8,
            num_layers=2,
            batch_first=True,
            bidirectional=True,
        ),
        lambda: (_x(),),
        lambda m, x: m(x)[0],
        (B, N, 16),
    )


def _bert(name: str, call: Callable[..., torch.Tensor], shape: tuple) -> Example:
    return (
        lambda: create(
            "model",
            name,
            vocab_size=VOCAB,
            hidden_size=C,
            num_hidden_layers=2,
            num_attention_heads=H,
            intermediate_size=2 * C,
            max_position_embeddings=N,
        ),
        _tokens,
        call,
        shape,
    )


MODEL: dict[str, Example] = {
    "seq2seq-transformer": (
        lambda: create(
            "model",
            "seq2seq-transformer",
            src_vocab_size=VOCAB,
            tgt_vocab_size=VOCAB,
            dim=C,
            num_heads=H,
        ),
        _tokens,
        lambda m, t: m(t, t),
        (B, N, VOCAB),
    ),
    "rnn": _recurrent("rnn"),
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
    "s4d": (
        lambda: create("model", "s4d", d_model=C, d_state=4),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "mamba": (
        lambda: create("model", "mamba", d_model=C, n_layer=2, vocab_size=VOCAB, d_state=4),
        _tokens,
        lambda m, t: m(t),
        (B, N, VOCAB),
    ),
    "decoder-lm": (
        lambda: create("model", "decoder-lm", vocab_size=VOCAB, dim=C, num_heads=H),
        _tokens,
        lambda m, t: m(t),
        (B, N, VOCAB),
    ),
    "transformer-block": (
        lambda: create("model", "transformer-block", dim=C, num_heads=H, position="rope"),
        lambda: (_x(),),
        lambda m, x: m(x),
        (B, N, C),
    ),
    "bert": _bert(
        "bert",
        lambda m, t: (lambda o: o.last_hidden_state + o.pooler_output[:, None])(m(t)),
        (B, N, C),
    ),
    "bert-mlm": _bert("bert-mlm", lambda m, t: m(t), (B, N, VOCAB)),
    "bert-pretraining": _bert(
        "bert-pretraining",
        lambda m, t: (lambda o: torch.cat((o.mlm_logits.flatten(1), o.nsp_logits), 1))(m(t)),
        (B, N * VOCAB + 2),
    ),
    "clip": (
        lambda: create("model", "clip", projection_dim=C),
        lambda: (
            torch.randn(B, 3, 32, 32),
            torch.cat([torch.randint(5, VOCAB, (B, N - 1)), torch.full((B, 1), 3)], 1),
        ),
        lambda m, x, t: m(x, t).logits_per_image,
        (B, B),
    ),
    "siglip": (
        lambda: create("model", "siglip"),
        lambda: (torch.randn(B, 3, 32, 32), torch.randint(0, VOCAB, (B, N))),
        lambda m, x, t: m(x, t).logits_per_image,
        (B, B),
    ),
    "vit": (
        lambda: create("model", "vit", image_size=8, patch_size=2, dim=C, depth=1,
                       num_heads=H, mlp_dim=C, num_classes=3),
        lambda: (torch.randn(B, 1, 8, 8),),
        lambda m, x: m(x).logits,
        (B, 3),
    ),
    "mae": (
        lambda: create("model", "mae", image_size=8, patch_size=2, dim=C, depth=1,
                       num_heads=H, mlp_dim=C, decoder_dim=8, decoder_depth=1,
                       decoder_num_heads=2, decoder_mlp_dim=8),
        lambda: (torch.rand(B, 1, 8, 8),),
        lambda m, x: m(x, generator=torch.Generator().manual_seed(0)).pred,
        (B, 16, 4),
    ),
    "blip": (
        lambda: create("model", "blip"),
        lambda: (
            torch.randn(B, 3, 32, 32),
            torch.cat([torch.full((B, 1), 2), torch.arange(4, 4 + B * (N - 2)).view(B, N - 2),
                       torch.full((B, 1), 3)], 1),
        ),
        lambda m, x, t: torch.stack(
            tuple(m(x, t, generator=torch.Generator().manual_seed(0)))[1:]
        ),
        (3,),
    ),
    "face-backbone": (
        lambda: create("model", "face-backbone", embedding_dim=C, image_size=16, widths=(4, 8),
                       blocks=(1, 1)),
        lambda: (torch.randn(B, 3, 16, 16),),
        lambda m, x: m(x),
        (B, C),
    ),
    "faster-rcnn": (
        lambda: create("model", "faster-rcnn", backbone=TinyBackbone(8, 8), num_classes=3,
                       anchor_sizes=((8, 16),), min_size=32, max_size=32,
                       representation_size=16),
        lambda: (torch.rand(2, 3, 32, 32), torch.tensor([[4.0, 4, 20, 20], [10, 8, 30, 26]])),
        lambda m, x, b: torch.stack(list(m(list(x), [
            {"boxes": bb.detach()[None], "labels": torch.tensor([1])} for bb in b
        ]).values())),
        (4,),
    ),
    # random queries: with DETR's zero initial queries the first decoder layer's value
    # projection gets no gradient (in HF's DETR too)
    "detr": (
        lambda: create("model", "detr", num_classes=3, num_queries=4, d_model=16,
                       encoder_layers=1, decoder_layers=2, encoder_heads=2, decoder_heads=2,
                       encoder_ffn_dim=16, decoder_ffn_dim=16, embedding_size=8,
                       hidden_sizes=(8,), depths=(1,)),
        lambda: (torch.randn(B, 3, 32, 32), torch.randn(B, 4, 16)),
        lambda m, x, q: (lambda o: torch.cat(
            [o.logits, o.boxes, o.aux_logits[0], o.aux_boxes[0]], -1))(m(x, queries=q)),
        (B, 4, 16),
    ),
}

EXAMPLES: dict[str, dict[str, Example]] = {
    "position": POSITION,
    "attention": {name: _attention(name) for name in registry.names("attention")},
    "model": MODEL,
}


# Registered models that are not nn.Modules trained by autograd (their own tests cover them):
# Word2Vec updates only the rows a batch touches, by hand, as word2vec.c does.
NOT_MODULES = {"word2vec"}


def _registered(kind: str) -> list[str]:
    return [n for n in registry.names(kind) if not (kind == "model" and n in NOT_MODULES)]


def test_models_outside_the_module_contract_are_the_listed_ones():
    import torch.nn as nn

    outside = {e.name for e in registry.entries("model")
               if not (isinstance(e.obj, type) and issubclass(e.obj, nn.Module))
               and not callable(getattr(e.obj, "parameters", None))}
    assert outside <= NOT_MODULES | set(MODEL), outside
    assert outside >= NOT_MODULES


@pytest.mark.parametrize("kind", ["position", "attention", "model"])
def test_every_component_has_an_example(kind):
    missing = sorted(set(_registered(kind)) - set(EXAMPLES[kind]))
    assert not missing, f"add examples to tests/test_components.py for {kind}: {missing}"


CASES = [(kind, name) for kind, table in EXAMPLES.items() for name in sorted(table)]


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}/{n}" for k, n in CASES])
def test_component_builds_runs_and_trains(kind, name):
    torch.manual_seed(0)
    build, inputs, call, shape = EXAMPLES[kind][name]
    module = build()
    args = [t.requires_grad_() if t.is_floating_point() else t for t in inputs()]
    out = call(module, *args)
    assert tuple(out.shape) == shape
    finite = out[torch.isfinite(out)] if (out == float("-inf")).any() else out
    assert torch.isfinite(finite).all(), f"{name} gives NaN/inf"
    if not finite.requires_grad:  # a bias of positions only (ALiBi): nothing to train
        assert not list(module.parameters())
        return
    (finite * torch.randn_like(finite)).sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: {pname} grad"


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_optimizers_build_from_the_registry_and_step(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = create("optimizer", name, params=model.parameters(), lr=1e-2, weight_decay=0.1)
    before = model.weight.detach().clone()
    model(torch.randn(5, 4)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.weight)
