"""Object-detection data: the user's COCO JSON, or synthetic shapes with exact boxes (F1, F3).

One item format for every detector (Faster R-CNN, DETR):

    image  (3, H, W) float32 in [0, 1]
    target {"boxes": (k, 4) float32 xyxy pixels, "labels": (k,) int64, "image_id": int}

Labels are contiguous class indices ``1..K`` (0 is left for the background, as torchvision's
detectors want; DETR with ``num_classes = K + 1`` simply never sees class 0), and
``dataset.category_ids[label - 1]`` is the COCO ``category_id`` a label came from.

- ``COCODetectionDataset(annotations, images)``: a COCO ground truth file (validated by
  ``detection/coco.py``'s ``load_ground_truth``: every malformed entry raises
  ``DataFormatError`` naming the file and the entry) and the folder holding each image's
  ``file_name``, read with Pillow. Crowd annotations and boxes with no area are left out of
  the training targets (they stay in the ground truth that evaluation scores, as in COCO).
- ``ShapesDetectionDataset``: ``data/synthetic/shapes.py``'s coloured shapes; the box of an
  object is exactly the bounding box of its drawn pixels, its label ``SHAPES.index + 1``.
- ``HorizontalFlip(p)``: mirror the image, and each box with it: ``x1' = W - x2``,
  ``x2' = W - x1`` (pixel ``i`` spans ``[i, i + 1)``, so the flip is exact).
- ``detection_collate``: a batch stays two lists (images differ in size, targets in k).
- ``predict`` / ``coco_results`` / ``evaluate_detections``: run a detector (``model(list of
  images) -> list of {"boxes", "scores", "labels"}``) over a dataset, write its detections as
  a COCO results JSON (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``) and
  score them with ``detection/map.py``'s ``coco_evaluate`` against
  ``dataset.coco_ground_truth()``.

``detection_data(data=None, images=None, split="train", seed=0)`` is the one entry the
recipes call: synthetic shapes when ``data`` is None, else the COCO file, split into train and
val images by a seeded permutation (``val_fraction``) unless ``split="all"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from paperlab.data.formats.common import DataFormatError, existing, read_image
from paperlab.errors import ArgumentError, ArgumentTypeError, check_int

SPLITS = ("train", "val", "all")
Target = dict[str, Any]


# ----------------------------------------------------------------------------- augmentation


def hflip(image: Tensor, target: Target) -> tuple[Tensor, Target]:
    """Mirror ``image`` (3, H, W) left-right and its boxes: ``x1' = W - x2``, ``x2' = W - x1``."""
    width = image.shape[-1]
    boxes = target["boxes"]
    flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1)
    return image.flip(-1), {**target, "boxes": flipped.reshape(boxes.shape)}


class HorizontalFlip:
    """Flip with probability ``p`` (one draw of the global torch RNG per item, so the Trainer's
    per-step seeding makes it reproducible)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if self.p > 0 and float(torch.rand(())) < self.p:
            return hflip(image, target)
        return image, target


def detection_collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """``[(image, target), ...]`` -> ``(images, targets)``, two lists of the batch's length."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence) or not batch:
        raise ArgumentError("batch must be a non-empty list of (image, target) pairs")
    images, targets = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[1], dict):
            raise ArgumentTypeError(f"batch[{i}] must be an (image, target dict) pair, got "
                                    f"{type(item).__name__}")
        images.append(item[0])
        targets.append(item[1])
    return images, targets


# ----------------------------------------------------------------------------- datasets


class _DetectionBase(Dataset):
    """What both datasets share: the flip, the category table and the COCO ground truth."""

    category_ids: list[int]
    names: list[str]
    transform: Callable[[Tensor, Target], tuple[Tensor, Target]] | None

    @property
    def num_classes(self) -> int:
        """Classes including the background: ``K + 1``."""
        return len(self.category_ids) + 1

    def _item(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        return self.transform(image, target) if self.transform is not None else (image, target)

    def coco_ground_truth(self) -> dict[str, Any]:
        """The COCO ground truth of this dataset's images (what ``evaluate_detections`` scores)."""
        raise NotImplementedError


class COCODetectionDataset(_DetectionBase):
    """COCO detection JSON ``annotations`` and the folder ``images`` of its ``file_name``s.

    ``image_ids``: only these images (in this order); default all, in the file's order.
    ``transform(image, target)``: e.g. ``HorizontalFlip(0.5)``.
    """

    def __init__(self, annotations: str | Path, images: str | Path, *,
                 image_ids: Sequence[int] | None = None,
                 transform: Callable[[Tensor, Target], tuple[Tensor, Target]] | None = None
                 ) -> None:
        from paperlab.detection.coco import load_ground_truth

        self.path = existing(annotations, "COCO annotations file")
        self.root = existing(images, "image folder", folder=True)
        gt = load_ground_truth(self.path)  # validates every entry, naming file and index
        self.raw = json.loads(self.path.read_text())
        self.category_ids = [int(c) for c in gt.category_ids]
        by_id = {int(c["id"]): c for c in self.raw["categories"]}
        self.names = [str(by_id[c].get("name", c)) for c in self.category_ids]
        files: dict[int, Path] = {}
        for i, entry in enumerate(self.raw["images"]):
            name = entry.get("file_name")
            if not isinstance(name, str) or not name:
                raise DataFormatError(self.path, None, f"images[{i}]: missing key 'file_name' "
                                      f"(the image's path under {self.root})")
            path = self.root / name
            if not path.is_file():
                raise DataFormatError(self.path, None, f"images[{i}]: image file not found: "
                                      f"{path}")
            files[int(entry["id"])] = path
        order = [int(e["id"]) for e in self.raw["images"]] if image_ids is None else [
            int(i) for i in image_ids]
        for i in order:
            if i not in files:
                raise ArgumentError(f"image id {i} is not in {self.path}")
        self.image_ids, self.files = order, files
        label = {c: k + 1 for k, c in enumerate(self.category_ids)}
        boxes: dict[int, list[list[float]]] = {i: [] for i in files}
        labels: dict[int, list[int]] = {i: [] for i in files}
        for a in self.raw["annotations"]:
            x, y, w, h = a["bbox"]
            if a.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            boxes[int(a["image_id"])].append([x, y, x + w, y + h])
            labels[int(a["image_id"])].append(label[int(a["category_id"])])
        self._boxes = {i: torch.tensor(b, dtype=torch.float32).reshape(-1, 4)
                       for i, b in boxes.items()}
        self._labels = {i: torch.tensor(v, dtype=torch.int64) for i, v in labels.items()}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        i = self.image_ids[index]
        image = read_image(self.files[i], None, self.path, None)
        target = {"boxes": self._boxes[i].clone(), "labels": self._labels[i].clone(),
                  "image_id": i}
        return self._item(image, target)

    def coco_ground_truth(self) -> dict[str, Any]:
        keep = set(self.image_ids)
        return {"images": [e for e in self.raw["images"] if int(e["id"]) in keep],
                "annotations": [a for a in self.raw["annotations"]
                                if int(a["image_id"]) in keep],
                "categories": self.raw["categories"]}


class ShapesDetectionDataset(_DetectionBase):
    """Synthetic shapes (``make_shapes(n, seed=seed, split="all", **options)``) as detection
    items; ``image_id`` is the index, labels ``SHAPES.index + 1``."""

    def __init__(self, n: int, *, seed: int,
                 transform: Callable[[Tensor, Target], tuple[Tensor, Target]] | None = None,
                 **options: Any) -> None:
        from paperlab.data.synthetic.shapes import SHAPES, make_shapes

        check_int("n", n, minimum=1)
        self.data = make_shapes(n, seed=seed, split="all", **options)
        self.names = list(SHAPES)
        self.category_ids = list(range(1, len(SHAPES) + 1))
        self.image_ids = list(range(n))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        target = {"boxes": self.data.boxes[index].clone(),
                  "labels": self.data.labels[index] + 1, "image_id": index}
        return self._item(self.data.images[index], target)

    def coco_ground_truth(self) -> dict[str, Any]:
        size = self.data.images.shape[-1]
        anns = []
        for i in self.image_ids:
            for box, label in zip(self.data.boxes[i].tolist(), self.data.labels[i].tolist()):
                x1, y1, x2, y2 = box
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                             "iscrowd": 0})
        return {"images": [{"id": i, "width": size, "height": size} for i in self.image_ids],
                "annotations": anns,
                "categories": [{"id": c, "name": n} for c, n in zip(self.category_ids,
                                                                    self.names)]}


def detection_data(data: str | Path | None = None, images: str | Path | None = None, *,
                   split: str = "train", seed: int = 0, flip: float = 0.0,
                   val_fraction: float = 0.2, n: int | None = None, image_size: int = 64,
                   objects: int = 2, noise: float = 0.05) -> _DetectionBase:
    """A detection dataset for a recipe: synthetic shapes (``data=None``) or a COCO file.

    ``split``: ``"train"``, ``"val"`` or ``"all"``. Shapes: the splits are drawn with different
    seeds (``n`` images: 512 train / 128 val by default, ``image_size``, ``objects`` per image,
    background ``noise``). COCO: ``images`` is the image folder; train and val are a seeded
    permutation of the file's images, ``val_fraction`` of them for val. ``flip``: probability
    of a horizontal flip (train only).
    """
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {SPLITS}, got {split!r}")
    check_int("seed", seed, minimum=0)
    transform = HorizontalFlip(flip) if flip > 0 and split == "train" else None
    if data is None:
        if images is not None:
            raise ArgumentError("images is set but data is not: give data=annotations.json too")
        count = n if n is not None else (128 if split == "val" else 512)
        # val is drawn from another seed: no image of it is a training image
        return ShapesDetectionDataset(count, seed=seed if split != "val" else seed + 7919,
                                      transform=transform, image_size=image_size,
                                      objects=objects, noise=noise, background=0.0)
    if images is None:
        raise ArgumentError("data is a COCO annotations file; give images=<folder of its images>")
    if not 0.0 < val_fraction < 1.0:
        raise ArgumentError(f"val_fraction must be in (0, 1), got {val_fraction}")
    full = COCODetectionDataset(data, images)
    if split == "all":
        full.transform = transform
        return full
    ids = np.array(full.image_ids)
    perm = ids[np.random.default_rng(seed).permutation(len(ids))]
    n_val = max(1, int(round(len(ids) * val_fraction))) if len(ids) > 1 else 0
    chosen = perm[:n_val] if split == "val" else perm[n_val:]
    return COCODetectionDataset(data, images, image_ids=sorted(chosen.tolist()),
                                transform=transform)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: Callable[[list[Tensor]], list[dict[str, Tensor]]], dataset: Dataset, *,
            batch_size: int = 8, device: torch.device | str | None = None
            ) -> list[dict[str, Tensor]]:
    """``model(images)`` over ``dataset`` in batches: per image ``{"boxes", "scores", "labels"}``
    on the CPU, in the dataset's order."""
    check_int("batch_size", batch_size, minimum=1)
    out = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = [im.to(device) if device is not None else im for im, _ in items]
        for p in model(images):
            out.append({k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")})
    return out


def coco_results(predictions: Sequence[Mapping[str, Tensor]], image_ids: Sequence[int],
                 category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Detections as COCO results: xyxy -> ``[x, y, w, h]``, label ``l`` ->
    ``category_ids[l-1]``."""
    if len(predictions) != len(image_ids):
        raise ArgumentError(f"{len(predictions)} predictions for {len(image_ids)} images")
    table = np.asarray(list(category_ids), dtype=np.int64)
    results = []
    for image_id, p in zip(image_ids, predictions):
        boxes = p["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
        labels = p["labels"].detach().cpu().numpy()
        if len(labels) and (labels.min() < 1 or labels.max() > len(table)):
            raise ArgumentError(f"labels must be in 1..{len(table)}, got {labels.tolist()}")
        scores = p["scores"].detach().cpu().double().numpy()
        for (x1, y1, x2, y2), lab, s in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            results.append({"image_id": int(image_id), "category_id": int(table[lab - 1]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    return results


def evaluate_detections(model: Callable[[list[Tensor]], list[dict[str, Tensor]]],
                        dataset: _DetectionBase, *, results_path: str | Path | None = None,
                        batch_size: int = 8, device: torch.device | str | None = None
                        ) -> dict[str, float]:
    """COCO AP/AR of ``model`` on ``dataset`` (``map.coco_evaluate``), by ``STAT_NAMES``;
    the detections are written to ``results_path`` as COCO results JSON when given."""
    from paperlab.detection.map import coco_evaluate

    predictions = predict(model, dataset, batch_size=batch_size, device=device)
    results = coco_results(predictions, dataset.image_ids, dataset.category_ids)
    if results_path is not None:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        Path(results_path).write_text(json.dumps(results))
    return coco_evaluate(dataset.coco_ground_truth(), results).as_dict()
