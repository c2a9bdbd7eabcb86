"""Reading local HF-format folders and loading their tensors into paperlab models, checked.

A Hugging Face model folder holds ``config.json`` and ``model.safetensors`` (or shards listed
in ``model.safetensors.index.json``). Importing it into one of our models is three steps:

1. ``read_hf_folder(folder)`` -> (config dict, {hf_name: tensor}); clear errors for a missing
   folder, config or weight file.
2. ``rename_state(state, rules, ignore)`` maps every HF name to ours by an ordered list of
   regex rules (first match wins); a name no rule maps and no ``ignore`` pattern covers is
   an error naming it, so a checkpoint with parts we would silently drop is refused.
3. ``load_checked(model, state)`` copies the tensors in, requiring every parameter and
   buffer of the model to be present with the exact shape, and names every missing,
   unexpected or mis-shaped key in one error.

Each model family registers one importer with ``register_importer(kind)``: a function
(config dict, state) -> loaded model, in ``paperlab/hub/<family>.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperlab.errors import ArgumentError, ConfigError

Importer = Callable[[dict[str, Any], dict[str, torch.Tensor]], nn.Module]
IMPORTERS: dict[str, Importer] = {}


class WeightImportError(ConfigError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped tensors."""


def register_importer(kind: str) -> Callable[[Importer], Importer]:
    """Register ``fn(config, state) -> model`` as the importer of ``kind`` ("bert", "vit", ...)."""

    def deco(fn: Importer) -> Importer:
        IMPORTERS[kind] = fn
        return fn

    return deco


def read_hf_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` as a dict and every tensor of ``model.safetensors`` (or its shards)."""
    from safetensors.torch import load_file

    path = Path(folder)
    if not path.is_dir():
        raise ArgumentError(f"model folder {str(path)!r} does not exist or is not a folder")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ArgumentError(f"{str(path)!r} has no config.json (an HF-format folder needs one)")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{cfg_file}: not valid JSON ({exc})") from None
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = json.loads(index.read_text()).get("weight_map", {})
        files = [path / name for name in sorted(set(shards.values()))]
        for f in files:
            if not f.is_file():
                raise ArgumentError(f"{index} lists shard {f.name!r}, which is missing")
    else:
        raise ArgumentError(
            f"{str(path)!r} has no model.safetensors (nor a sharded index); save the model "
            f"with save_pretrained(..., safe_serialization=True)"
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return config, state


Rule = tuple[str, str]


def rename_state(
    state: Mapping[str, torch.Tensor],
    rules: Iterable[Rule],
    ignore: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """{hf_name: t} -> {our_name: t} by regex ``rules`` [(pattern, replacement)], first match.

    Patterns are anchored (``re.fullmatch``). A name matching one of the ``ignore`` patterns
    is dropped (buffers such as ``position_ids``); any other unmatched name is an error.
    """
    compiled = [(re.compile(p), r) for p, r in rules]
    skip = [re.compile(p) for p in ignore]
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for name, tensor in state.items():
        for pattern, repl in compiled:
            if pattern.fullmatch(name):
                out[pattern.sub(repl, name)] = tensor
                break
        else:
            if not any(s.fullmatch(name) for s in skip):
                unmatched.append(name)
    if unmatched:
        raise WeightImportError(
            f"{len(unmatched)} checkpoint tensor(s) have no place in the model: "
            f"{', '.join(sorted(unmatched)[:12])}{' ...' if len(unmatched) > 12 else ''}"
        )
    return out


@torch.no_grad()
def load_checked(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy ``state`` into ``model``; every key present, none unexpected, every shape equal.

    Tied parameters (one tensor under two names) need only one of their names. Returns the
    model. Raises ``WeightImportError`` naming every missing, unexpected and mis-shaped key.
    """
    own = model.state_dict(keep_vars=True)
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    missing, unexpected, wrong = [], [], []
    for key in state:
        if key not in own:
            unexpected.append(key)
        elif tuple(own[key].shape) != tuple(state[key].shape):
            wrong.append(f"{key}: checkpoint {tuple(state[key].shape)}, model "
                         f"{tuple(own[key].shape)}")
    by_id: dict[int, list[str]] = {}
    for key, t in own.items():
        by_id.setdefault(id(t), []).append(key)
    for names in by_id.values():
        if not any(n in state for n in names):
            missing.extend(names)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(sorted(keys)[:12]) + (" ..." if len(keys) > 12 else "")
                parts.append(f"{label} ({len(keys)}): {shown}")
        raise WeightImportError("the checkpoint does not fit the model; " + "; ".join(parts))
    for key, t in state.items():
        target = params.get(key, buffers.get(key))
        target.copy_(t.to(dtype=target.dtype))
    return model


__all__ = [
    "IMPORTERS",
    "WeightImportError",
    "load_checked",
    "read_hf_folder",
    "register_importer",
    "rename_state",
]
