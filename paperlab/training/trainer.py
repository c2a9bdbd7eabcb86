"""One ``Trainer`` for every recipe: accumulation, clipping, bf16, DDP, checkpoints, resume.

A *recipe* is a registered function ``build(cfg) -> Task`` plus its config class (a
``TrainConfig`` subclass): the model, the training set, the loss, and an optional evaluation.
``train(recipe, cfg)`` runs the loop:

for each step s:
    the global batch s (deterministic in (seed, s)) is split over processes and micro-batches;
    each micro-batch: forward under autocast, backward of loss / accumulation
    (DDP all-reduces only on the last micro-batch: ``no_sync``);
    the mean loss is all-reduced; a NaN/inf stops training with an error naming the step;
    gradients are clipped; optimizer and schedule step.

Dropout's randomness is re-seeded from (seed, rank, step) at every step, and the batch depends
only on (seed, step), so ``--resume`` continues exactly (bitwise on the CPU). Metrics go to
``<out>/metrics.jsonl``; checkpoints (``training/checkpoint.py``) to ``<out>/checkpoints/``,
every ``checkpoint_every`` steps, at the end, and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from paperlab.config import Config
from paperlab.errors import ConfigError, PaperlabError
from paperlab.training.checkpoint import load_checkpoint, save_checkpoint
from paperlab.training.distributed import (
    DistEnv,
    RankSampler,
    all_reduce_mean,
    barrier,
    init_from_env,
    no_sync,
)


class NonFiniteLossError(PaperlabError, FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig(Config):
    """Settings every recipe shares; recipes subclass it to add their own fields."""

    steps: int = 200
    batch_size: int = 64  # global: all processes and micro-batches together
    accumulation: int = 1  # micro-batches per step
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 10
    schedule: str = "cosine"  # cosine | linear (after a linear warmup)
    clip_norm: float = 1.0  # 0 turns clipping off
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    activation_checkpointing: bool = False
    eval_every: int = 0  # 0: only at the end
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end (and on a signal)
    keep_last: int = 3
    seed: int = 0
    workers: int = 0
    out: str = ""  # default runs/train/<recipe>
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "accumulation", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "checkpoint_every", "workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("cosine", "linear"):
            raise ConfigError(f"schedule must be cosine or linear, got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be auto, bf16 or off, got {self.amp!r}")


@dataclass
class Task:
    """What a recipe builds: a model, its data, its loss and (optionally) its evaluation.

    ``loss(model, batch) -> (loss, metrics)`` gets a batch already on the device.
    ``evaluate(model) -> metrics`` runs on the main process, in eval mode, without grad.
    """

    model: nn.Module
    train_set: Dataset
    loss: Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    collate: Callable[[list[Any]], Any] | None = None


@dataclass
class TrainSummary:
    """The outcome of ``train``: where things were written and the last numbers."""

    out: Path
    step: int
    loss: float
    eval: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    interrupted: bool = False
    seconds: float = 0.0


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _autocast(cfg: TrainConfig, device: torch.device) -> Any:
    use = cfg.amp == "bf16" or (
        cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    recipe: str,
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    env: DistEnv | None = None,
) -> TrainSummary:
    """Train ``recipe`` with ``cfg`` (resuming from a checkpoint folder when given)."""
    from paperlab import registry
    from paperlab.training.adamw import AdamW, param_groups_weight_decay
    from paperlab.training.schedules import WarmupCosine, WarmupLinear

    cfg.validate()
    entry = registry.get("recipe", recipe)
    env = env or init_from_env()
    out = Path(cfg.out or f"runs/train/{recipe}")
    ckpt_root = out / "checkpoints"
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"recipe": recipe, **cfg.to_dict()}, indent=2))

    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    task: Task = entry.obj(cfg)
    model = task.model.to(env.device)
    optimizer = AdamW(param_groups_weight_decay(model, cfg.weight_decay), lr=cfg.lr)
    shape = WarmupCosine if cfg.schedule == "cosine" else WarmupLinear
    # a run shorter than the warmup warms up over the whole run
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, shape(min(cfg.warmup, cfg.steps), cfg.steps)
    )
    start = 0
    if resume is not None:
        start = load_checkpoint(resume, model, optimizer, scheduler)["step"]
        if start >= cfg.steps:
            raise ConfigError(f"checkpoint is at step {start}, nothing left for steps={cfg.steps}")
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    core = model.module if env.distributed else model

    metrics_path = out / "metrics.jsonl"
    if env.is_main:
        _truncate_metrics(metrics_path, start)
    sampler = RankSampler(
        len(task.train_set),
        cfg.batch_size,
        env,
        accumulation=cfg.accumulation,
        seed=cfg.seed,
        start=start,
        steps=cfg.steps,
    )
    loader = DataLoader(
        task.train_set, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=task.collate
    )
    batches = iter(loader)

    progress = _Progress(cfg, start, enabled=cfg.progress and env.is_main)
    summary = TrainSummary(out=out, step=start, loss=float("nan"))
    t_start = time.perf_counter()
    model.train()
    with _StopFlag() as stop, progress:
        step = start
        while step < cfg.steps:
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + step * 1_009 + env.rank + 1)
            loss_sum, extra = 0.0, {}
            for micro in range(cfg.accumulation):
                batch = _to_device(next(batches), env.device)
                with no_sync(model, micro < cfg.accumulation - 1), _autocast(cfg, env.device):
                    loss, extra = task.loss(model, batch)
                (loss / cfg.accumulation).backward()
                loss_sum += loss.detach().float().item()
            logged = all_reduce_mean({"loss": loss_sum / cfg.accumulation, **extra}, env)
            if not math.isfinite(logged["loss"]):
                raise NonFiniteLossError(
                    f"loss became {logged['loss']} at step {step + 1} of recipe {recipe!r}; "
                    f"last good checkpoint under {ckpt_root}"
                )
            if cfg.clip_norm > 0:
                logged["grad_norm"] = float(
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                )
            logged["lr"] = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            logged["samples_per_s"] = cfg.batch_size / max(dt, 1e-9)
            summary.step, summary.loss = step, logged["loss"]

            evaluating = task.evaluate is not None and (
                step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0)
            )
            if evaluating and env.is_main:
                summary.eval = _evaluate(task, core)
                logged.update({f"eval_{k}": v for k, v in summary.eval.items()})
            if env.is_main:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": step, **logged}) + "\n")
            progress.update(step, logged)

            stopping = stop.signal is not None
            if env.distributed:  # every process must agree to stop at the same step
                stopping = all_reduce_mean({"stop": float(stopping)}, env)["stop"] > 0
            due = (
                step == cfg.steps
                or stopping
                or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
            )
            if due:
                if env.is_main:
                    summary.checkpoint = save_checkpoint(
                        ckpt_root,
                        step,
                        core,
                        optimizer,
                        scheduler,
                        keep=cfg.keep_last,
                        extra={"recipe": recipe, "loss": logged["loss"]},
                    )
                barrier(env)
            if stopping:
                summary.interrupted = True
                break
    summary.seconds = time.perf_counter() - t_start
    return summary


def _evaluate(task: Task, model: nn.Module) -> dict[str, float]:
    was = model.training
    model.eval()
    with torch.no_grad():
        result = task.evaluate(model) if task.evaluate else {}
    model.train(was)
    return {k: float(v) for k, v in result.items()}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged steps after ``step`` (they are redone on resume); start fresh at step 0."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in keep))


class _Progress:
    """A rich progress bar with loss, throughput and ETA (main process only)."""

    def __init__(self, cfg: TrainConfig, start: int, enabled: bool):
        self.cfg, self.start, self.enabled = cfg, start, enabled
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "train", total=self.cfg.steps, completed=self.start, info=""
            )
        return self

    def update(self, step: int, logged: dict[str, float]) -> None:
        if self._bar is None:
            return
        info = f"loss {logged['loss']:.4f}  {logged['samples_per_s']:.0f} samples/s"
        evals = [f"{k[5:]} {v:.3f}" for k, v in logged.items() if k.startswith("eval_")]
        self._bar.update(
            self._task, completed=step, info=info + ("  " + " ".join(evals) if evals else "")
        )

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
