"""Training checkpoints that survive crashes: safetensors weights, JSON metadata, checksums.

A checkpoint is a folder ``<root>/step-00000123/`` holding

- ``model.safetensors``: the model's ``state_dict``;
- ``optimizer.safetensors``: every tensor of the optimizer's and scheduler's state, flattened;
- ``rng.safetensors``: the torch CPU (and CUDA) RNG states;
- ``meta.json``: step, data position, the non-tensor parts of the states, Python's RNG state,
  user extras, and the SHA-256 of every file above.

Writes are atomic: everything goes to a hidden temporary folder, each file is fsync'ed, and
one ``rename`` publishes the folder. A process killed mid-write leaves at most a temporary
folder, which loading ignores, so the previous checkpoint stays loadable. The last ``keep``
checkpoints are kept. Loading verifies every checksum first: a corrupt or truncated file is
a ``CheckpointError`` naming the file, never a partial load.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from paperlab.errors import PaperlabError

FORMAT = 1


class CheckpointError(PaperlabError, ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested state into ``tensors``; leave a ``{"__tensor__": key}`` stub."""
    if isinstance(obj, torch.Tensor):
        key = prefix.lstrip(".")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [[_key(k), _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]
        }
    if isinstance(obj, (list, tuple)):
        kind = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {kind: [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    return obj


def _key(k: Any) -> Any:
    return {"__int__": k} if isinstance(k, int) else k


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {
                (k["__int__"] if isinstance(k, dict) else k): _unflatten(v, tensors)
                for k, v in obj["__dict__"]
            }
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__int__" in obj:
            return obj["__int__"]
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_folder(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Published checkpoint folders under ``root``, oldest first (temporary folders ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "meta.json").exists())


def save_checkpoint(
    root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    data_position: int | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and keep the newest ``keep``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_folder(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    model_state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(model_state, tmp / "model.safetensors")

    tensors: dict[str, torch.Tensor] = {}
    states = {
        "optimizer": _flatten(optimizer.state_dict(), "optimizer", tensors) if optimizer else None,
        "scheduler": _flatten(scheduler.state_dict(), "scheduler", tensors) if scheduler else None,
    }
    save_file(tensors, tmp / "optimizer.safetensors")

    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(rng, tmp / "rng.safetensors")

    files = ["model.safetensors", "optimizer.safetensors", "rng.safetensors"]
    for name in files:
        _fsync_file(tmp / name)
    meta = {
        "format": FORMAT,
        "step": step,
        "data_position": step if data_position is None else data_position,
        "states": states,
        "python_random": _flatten(random.getstate(), "random", {}),
        "extra": extra or {},
        "sha256": {name: _sha256(tmp / name) for name in files},
    }
    with open(tmp / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)

    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a checkpoint folder, else the newest checkpoint under it."""
    path = Path(path)
    if (path / "meta.json").exists():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"no checkpoint found at {str(path)!r}")
    return found[-1]


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Verify and load a checkpoint into ``model`` (and optimizer, scheduler, RNG states).

    Returns the metadata (``step``, ``data_position``, ``extra``). Every file's checksum is
    checked before anything is loaded, and the model's keys and shapes must match exactly.
    """
    folder = resolve_checkpoint(path)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / 'meta.json'} is unreadable or truncated: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder} has format {meta.get('format')!r}, expected {FORMAT}")
    for name, digest in meta["sha256"].items():
        file = folder / name
        if not file.exists():
            raise CheckpointError(f"checkpoint file {file} is missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint file {file} is corrupt (checksum mismatch)")

    state = load_file(folder / "model.safetensors")
    target = _unwrap(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {folder} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"checkpoint {folder}: {k} has shape {tuple(v.shape)}, "
                f"model has {tuple(own[k].shape)}"
            )
    target.load_state_dict(state)

    tensors = load_file(folder / "optimizer.safetensors")
    if optimizer is not None and meta["states"]["optimizer"] is not None:
        optimizer.load_state_dict(_unflatten(meta["states"]["optimizer"], tensors))
    if scheduler is not None and meta["states"]["scheduler"] is not None:
        scheduler.load_state_dict(_unflatten(meta["states"]["scheduler"], tensors))
    if restore_rng:
        rng = load_file(folder / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        random.setstate(_unflatten(meta["python_random"], {}))
    return {
        "step": meta["step"],
        "data_position": meta["data_position"],
        "extra": meta["extra"],
        "folder": str(folder),
    }


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
