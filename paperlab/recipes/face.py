"""``face``: the face backbone trained with any registered margin-softmax loss, judged by
verification of identities held out from training (open set, notes E2-E3).

``paperlab train face --set loss=arcface`` trains ``FaceBackbone`` (``face/backbone.py``) with
the head named by ``loss``: any loss of notes E2-E3 (``softmax``, ``lsoftmax``, ``sphereface``,
``normface``, ``cosface``, ``arcface``, ``combined-margin``, ``partial-fc``), built as
``registry.get("loss", name).obj(num_classes, embedding_dim, **loss_args)``; ``loss_args`` is
``key=value,key=value`` (numbers, true/false), e.g. ``--set loss_args=s=30,m=0.4``. The scale
defaults to s = 30 for the normalised losses (the papers' 64 is for 512-d embeddings of
hundreds of thousands of identities). It runs through the shared ``Trainer``: checkpoints,
``--resume``, and ``torchrun`` (DDP: backbone and centres replicated; ``partial-fc``, whose
centres are sharded over ranks, is refused under DDP, which would average the shards).

Data:

- synthetic (``data`` empty, the default): ``data/synthetic/identities.py``; ``identities``
  training identities x ``images_per_identity`` images, rendered once at ``image_size``
  (with their exact landmarks the images are already face crops up to pose), and
  ``heldout_identities`` other identities x 10 images for evaluation;
- ``--set data=ROOT``: an ImageFolder of identities (``ROOT/<identity>/*.jpg``,
  ``data/formats/image_folder.py``; crops already aligned, as face training sets ship), images
  resized to ``image_size``; a seeded ``eval_fraction`` of the *identities* (all their images)
  is held out (``recipes/data_sources.seeded_split`` keyed by identity), the rest relabelled
  0..K-1 for training.

Evaluation (``face/verification.py``) on the held-out identities: ``eval_pairs`` pairs, half
same-identity (two different images), half different, in a seeded order; the LFW protocol's
10-fold ``accuracy`` (+- ``accuracy_std``) and ``val@far1e-3`` on squared L2 distances of the
normalised embeddings, and ``tar@far1e-2`` of their cosine similarities.

Measured: ``paperlab train face --set loss=arcface --set steps=150 --set identities=100``
(CPU, one process): held-out 10-fold accuracy 0.958 +- 0.012, VAL@FAR=1e-3 0.615,
TAR@FAR=1e-2 0.896 on 50 unseen identities.

Shapes: images (B, 3, S, S) in [0, 1], standardised to [-1, 1] inside the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from paperlab import registry
from paperlab.data.synthetic.identities import SyntheticIdentities
from paperlab.errors import ConfigError
from paperlab.face.backbone import FaceBackbone
from paperlab.face.verification import tar_at_far, verify_pairs
from paperlab.recipes.data_sources import check_fraction, report, seeded_split
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig

SCALED = {"normface", "cosface", "arcface", "combined-margin", "partial-fc"}
HELD_PER_IDENTITY = 10


def margin_losses() -> list[str]:
    """The registered losses of the face notes (E2, E3)."""
    return [e.name for e in registry.entries("loss") if str(e.meta.get("note", "")).startswith("E")]


def parse_loss_args(text: str) -> dict[str, Any]:
    """``"s=30,m=0.4,easy_margin=true"`` -> {"s": 30, "m": 0.4, "easy_margin": True}."""
    out: dict[str, Any] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"loss_args expects key=value,key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw.strip().lower() if raw.strip().lower() in
                                          ("true", "false") else raw.strip())
        except json.JSONDecodeError:
            raise ConfigError(f"loss_args: {key.strip()} expects a number or true/false, got "
                              f"{raw!r}") from None
    return out


@dataclass
class FaceRecipeConfig(TrainConfig):
    """``face`` settings: the shared training fields, the loss, the data and the backbone."""

    steps: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    loss: str = "arcface"
    loss_args: str = ""
    data: str = ""  # "" = synthetic identities; else an ImageFolder root of identities
    identities: int = 200
    images_per_identity: int = 20
    heldout_identities: int = 50
    eval_fraction: float = 0.2  # ImageFolder: the fraction of identities held out
    eval_pairs: int = 2000
    image_size: int = 32
    embedding_dim: int = 64
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (1, 1, 1)
    dropout: float = 0.0

    def validate(self) -> None:
        super().validate()
        names = margin_losses()
        if self.loss not in names:
            raise ConfigError(f"loss must be one of {', '.join(names)}, got {self.loss!r}")
        parse_loss_args(self.loss_args)
        check_fraction("eval_fraction", self.eval_fraction)
        for name, low in (("identities", 2), ("images_per_identity", 1),
                          ("heldout_identities", 2), ("eval_pairs", 100)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")


class FaceModel(nn.Module):
    """The backbone and the loss head in one module (one state dict, one DDP wrapper):
    ``model(images)`` embeddings (B, d), ``model(images, labels)`` the loss."""

    def __init__(self, backbone: FaceBackbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.backbone(images * 2.0 - 1.0)
        return emb if labels is None else self.head(emb, labels)


class _Relabelled(Dataset):
    """Items ``rows`` of an (image, label) dataset, labels mapped through ``mapping``."""

    def __init__(self, dataset: Any, rows: list[int], mapping: dict[int, int]) -> None:
        self.dataset, self.rows, self.mapping = dataset, rows, mapping

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[self.rows[i]]
        return image, self.mapping[int(label)]


def balanced_pairs(labels: torch.Tensor, num_pairs: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_pairs`` pairs of rows (half same-identity of two different rows, half different
    identities; fewer same ones if fewer exist), shuffled by a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(len(labels), len(labels), offset=1)
    same = labels[i] == labels[j]
    if not same.any() or same.all():
        raise ConfigError("the held-out identities need two images of one identity and two "
                          "identities for verification pairs")
    half = num_pairs // 2
    pick_same = torch.nonzero(same).flatten()
    pick_same = pick_same[torch.randperm(len(pick_same), generator=g)[:half]]
    pick_diff = torch.nonzero(~same).flatten()
    pick_diff = pick_diff[torch.randperm(len(pick_diff), generator=g)[:num_pairs - half]]
    chosen = torch.cat([pick_same, pick_diff])
    if len(pick_same) < 10 or len(pick_diff) < 10:
        raise ConfigError(f"the held-out identities give {len(pick_same)} same and "
                          f"{len(pick_diff)} different pairs: the 10-fold protocol needs at "
                          f"least 10 of each (hold out more identities or images)")
    chosen = chosen[torch.randperm(len(chosen), generator=g)]
    return i[chosen], j[chosen], same[chosen]


def face_data(cfg: FaceRecipeConfig) -> tuple[Dataset, torch.Tensor, torch.Tensor, int]:
    """(training set, held-out images, held-out identity labels, training identities)."""
    if not cfg.data:
        world = SyntheticIdentities(cfg.identities + cfg.heldout_identities,
                                    image_size=cfg.image_size, seed=cfg.seed)
        ids = torch.arange(cfg.identities).repeat_interleave(cfg.images_per_identity)
        x, _ = world.render(ids, torch.arange(cfg.images_per_identity).repeat(cfg.identities))
        held = torch.arange(cfg.identities, cfg.identities + cfg.heldout_identities)
        held = held.repeat_interleave(HELD_PER_IDENTITY)
        xt, _ = world.render(held, torch.arange(HELD_PER_IDENTITY).repeat(
            cfg.heldout_identities))
        report("face", f"synthetic identities: {cfg.identities} x {cfg.images_per_identity} "
                       f"training images, {cfg.heldout_identities} held-out identities x "
                       f"{HELD_PER_IDENTITY}")
        return TensorDataset(x, ids), xt, held, cfg.identities
    from paperlab.data.formats.image_folder import ImageFolderDataset

    dataset = ImageFolderDataset(cfg.data, image_size=cfg.image_size)
    labels = dataset.targets
    train, held = seeded_split(labels, cfg.eval_fraction, seed=cfg.seed, what="identities")
    train_ids = sorted({labels[r] for r in train})
    mapping = {old: new for new, old in enumerate(train_ids)}
    items = [dataset[r] for r in held]
    xt = torch.stack([x for x, _ in items])
    yt = torch.tensor([y for _, y in items])
    report("face", f"{cfg.data}: {len(labels)} images of {len(dataset.classes)} identities "
                   f"({len(train_ids)} identities for training, "
                   f"{len(set(yt.tolist()))} held out for verification)")
    if len(train_ids) < 2:
        raise ConfigError(f"{cfg.data}: training needs at least 2 identities, got "
                          f"{len(train_ids)}")
    return _Relabelled(dataset, train, mapping), xt, yt, len(train_ids)


@export_recipe("face", config=FaceRecipeConfig)
def face_recipe(cfg: FaceRecipeConfig) -> Task:
    """FaceBackbone + a margin loss on synthetic identities (or ``data=ROOT``); evaluation:
    verification of held-out identities."""
    cfg.validate()
    if cfg.loss == "partial-fc" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("loss=partial-fc shards its centres over the ranks, which DDP would "
                          "average: use it in one process here, or another loss under torchrun")
    train_set, held_x, held_y, classes = face_data(cfg)
    kwargs = {"s": 30.0} if cfg.loss in SCALED else {}
    kwargs.update(parse_loss_args(cfg.loss_args))
    try:
        head = registry.get("loss", cfg.loss).obj(classes, cfg.embedding_dim, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"loss_args {cfg.loss_args!r} do not fit loss {cfg.loss!r}: {exc}"
                          ) from None
    backbone = FaceBackbone(cfg.embedding_dim, image_size=cfg.image_size, widths=cfg.widths,
                            blocks=cfg.blocks, dropout=cfg.dropout)
    model = FaceModel(backbone, head)
    a, b, same = balanced_pairs(held_y, cfg.eval_pairs, cfg.seed)

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        images, labels = batch
        value = model(images, labels)
        return value.float(), {}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        emb = torch.cat([model(chunk.to(device)).float().cpu() for chunk in held_x.split(256)])
        res = verify_pairs(emb[a].double(), emb[b].double(), same)
        u = nn.functional.normalize(emb.double(), dim=1)
        scores = (u[a] * u[b]).sum(1)
        return {"accuracy": res.accuracy, "accuracy_std": res.accuracy_std,
                "val@far1e-3": res.val, "tar@far1e-2": tar_at_far(scores, same, 1e-2)}

    return Task(model=model, train_set=train_set, loss=loss, evaluate=evaluate)


__all__ = ["FaceModel", "FaceRecipeConfig", "balanced_pairs", "face_data", "face_recipe",
           "margin_losses", "parse_loss_args"]
