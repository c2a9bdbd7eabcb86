"""COCO JSON in, validated arrays out: what ``map.coco_evaluate`` scores (note F4).

The format (https://cocodataset.org/#format-data, "object detection"):

- ground truth: ``{"images": [{"id": int, ...}], "annotations": [{"id": int, "image_id": int,
  "category_id": int, "bbox": [x, y, w, h], "area": float, "iscrowd": 0 | 1}], "categories":
  [{"id": int, ...}]}``;
- detections ("results"): ``[{"image_id": int, "category_id": int, "bbox": [x, y, w, h],
  "score": float}]``.

Either may be a path to a JSON file or the same structure already in memory. A malformed
entry raises ``DataFormatError`` (the data readers' error, a ``ValueError``) naming the file
(or ``ground_truth`` / ``detections`` for in-memory input), the list and the index, e.g.
``gt.json: annotations[3]: bbox must be 4 numbers [x, y, w, h], got [1, 2, 3]``. Checked:
missing keys, boxes of the wrong length, negative or non-finite sizes, non-finite scores,
duplicate image, category or annotation ids, annotations and detections on an unknown image
id or category id.
An empty detection list is valid (pycocotools' ``loadRes`` crashes on it).

Where we differ from pycocotools: ``iscrowd`` defaults to 0 and ``area`` to ``w * h`` when
absent (pycocotools raises ``KeyError``); a detection or annotation of a category or image the
ground truth does not list raises (pycocotools drops it silently); duplicate ids raise
(pycocotools' index keeps the last one). An ``ignore`` key is ignored, as in pycocotools
(its ``_prepare`` overwrites it with ``iscrowd``).

Validation is vectorised: the fields are gathered once into numpy arrays; only when that
fails does a loop walk the entries to name the first bad one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paperlab.data.formats.common import DataFormatError, MissingFileError


@dataclass(frozen=True)
class COCOGroundTruth:
    """Ground truth as arrays. N annotations, in the file's order.

    ``image_ids`` (I,) and ``category_ids`` (K,) sorted ascending; per annotation ``image``
    (N,) and ``category`` (N,) int64 indices into them, ``boxes`` (N, 4) float64 ``[x, y, w,
    h]``, ``area`` (N,) float64, ``iscrowd`` (N,) bool, ``ids`` (N,) int64 annotation ids.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    ids: np.ndarray
    source: str = "ground_truth"


@dataclass(frozen=True)
class COCODetections:
    """Detections as arrays, in the file's order: ``image`` and ``category`` (D,) int64
    indices into the ground truth's ``image_ids`` / ``category_ids``, ``boxes`` (D, 4)
    float64 ``[x, y, w, h]``, ``scores`` (D,) float64."""

    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    source: str = "detections"


def _read(source: Any, default_name: str) -> tuple[Any, str]:
    """A JSON file's content (``source`` a path) or ``source`` itself, and its name."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(path, None, f"no such file (the {default_name} file)")
        try:
            return json.loads(path.read_text()), str(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataFormatError(path, None, f"not a readable JSON file: {exc}") from None
    return source, default_name


def _entries(data: Mapping[str, Any], key: str, name: str) -> list[Any]:
    if key not in data:
        raise DataFormatError(name, None, f"missing key {key!r} (a COCO ground truth has "
                              f"'images', 'annotations' and 'categories')")
    value = data[key]
    if not isinstance(value, list):
        raise DataFormatError(name, None, f"{key} must be a list, got {type(value).__name__}")
    return value


def _find_bad(entries: list[Any], name: str, where: str, fields: dict[str, str]) -> None:
    """Walk ``entries`` and raise on the first one with a missing or malformed field.

    ``fields`` maps a key to its kind: ``int`` (an integer id), ``number``, ``box`` (4
    finite numbers, w and h >= 0), ``flag`` (0/1/bool) or ``optional-number``.
    """
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise DataFormatError(name, None, f"{at} must be an object, got "
                                  f"{type(entry).__name__}")
        for key, kind in fields.items():
            if key not in entry:
                if kind.startswith("optional"):
                    continue
                raise DataFormatError(name, None, f"{at}: missing key {key!r}")
            problem = _check_value(entry[key], kind.removeprefix("optional-"), key)
            if problem:
                raise DataFormatError(name, None, f"{at}: {problem}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_value(v: Any, kind: str, key: str) -> str:
    """What is wrong with value ``v`` of field ``key`` ("" if nothing)."""
    if kind == "int" and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
        return f"{key} must be an integer id, got {v!r}"
    if kind == "number" and (not _is_number(v) or not np.isfinite(v)):
        return f"{key} must be a finite number, got {v!r}"
    if kind == "flag" and (isinstance(v, float) or v not in (0, 1, True, False)):
        return f"{key} must be 0 or 1, got {v!r}"
    if kind == "box":
        if not isinstance(v, (list, tuple)) or len(v) != 4 or not all(map(_is_number, v)):
            return f"{key} must be 4 numbers [x, y, w, h], got {v!r}"
        if not all(np.isfinite(v)) or v[2] < 0 or v[3] < 0:
            return f"{key} must be finite with w, h >= 0, got {v!r}"
    return ""


def _numeric(vals: list[Any]) -> np.ndarray:
    """``vals`` as float64, refusing strings and other non-numbers (numpy would parse "1")."""
    arr = np.array(vals)
    if arr.dtype.kind not in "iuf" and len(vals):
        raise ValueError
    return arr.astype(np.float64)


def _gather(entries: list[Any], name: str, where: str,
            fields: dict[str, str]) -> dict[str, np.ndarray]:
    """The fields of every entry as arrays (fast path), or the first bad entry's error."""
    try:
        out: dict[str, np.ndarray] = {}
        for key, kind in fields.items():
            if kind.startswith("optional"):  # absent: NaN (a number) or 0 (a flag)
                missing = np.nan if kind == "optional-number" else 0
                vals = [e.get(key, missing) for e in entries]
                kind = kind.removeprefix("optional-")
            else:
                vals = [e[key] for e in entries]
            if kind == "int":
                arr = np.array(vals, dtype=object if not vals else None)
                if len(vals) and arr.dtype.kind not in "iu":
                    raise ValueError
                arr = arr.astype(np.int64)
            elif kind == "flag":
                arr = np.array(vals)
                if len(vals) and (arr.dtype.kind not in "iub" or not np.isin(arr, (0, 1)).all()):
                    raise ValueError
                arr = arr.astype(bool)
            elif kind == "box":
                arr = _numeric(vals)
                if len(vals) == 0:
                    arr = arr.reshape(0, 4)
                if arr.shape != (len(vals), 4) or not np.isfinite(arr).all():
                    raise ValueError
                if (arr[:, 2:] < 0).any():
                    raise ValueError
            else:
                arr = _numeric(vals)
                finite = np.isfinite(arr) | (np.isnan(arr) if key == "area" else False)
                if arr.ndim != 1 or not finite.all() or bool in set(map(type, vals)):
                    raise ValueError
            out[key] = arr
        return out
    except (KeyError, TypeError, ValueError, AttributeError):
        _find_bad(entries, name, where, fields)
        raise DataFormatError(name, None, f"{where}: malformed entries") from None


def _index(ids: np.ndarray, table: np.ndarray, name: str, where: str, key: str,
           table_name: str) -> np.ndarray:
    """Positions of ``ids`` in the sorted ``table``; an id not there raises naming the entry."""
    pos = np.searchsorted(table, ids)
    pos_c = np.minimum(pos, max(len(table) - 1, 0))
    bad = (pos >= len(table)) | (table[pos_c] != ids) if len(table) else np.ones(len(ids), bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(name, None, f"{where}[{i}]: {key} {int(ids[i])} is not in "
                              f"{table_name}")
    return pos.astype(np.int64)


def _unique_ids(ids: np.ndarray, name: str, where: str) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if len(dup):
        i = int(order[dup[0] + 1])
        raise DataFormatError(name, None, f"{where}[{i}]: duplicate id {int(ids[i])}")
    return s


def load_ground_truth(source: str | Path | Mapping[str, Any]) -> COCOGroundTruth:
    """Read and validate a COCO ground truth (a JSON file's path or the dict itself)."""
    if isinstance(source, (COCOGroundTruth,)):
        return source
    data, name = _read(source, "ground_truth")
    if not isinstance(data, Mapping):
        raise DataFormatError(name, None, f"must be a COCO object with 'images', "
                              f"'annotations' and 'categories', got {type(data).__name__}")
    images = _entries(data, "images", name)
    anns = _entries(data, "annotations", name)
    cats = _entries(data, "categories", name)
    image_ids = _unique_ids(_gather(images, name, "images", {"id": "int"})["id"], name, "images")
    category_ids = _unique_ids(_gather(cats, name, "categories", {"id": "int"})["id"], name,
                               "categories")
    where = "annotations"
    f = _gather(anns, name, where, {"id": "int", "image_id": "int", "category_id": "int",
                              "bbox": "box", "area": "optional-number",
                              "iscrowd": "optional-flag"})
    _unique_ids(f["id"], name, where)
    boxes = f["bbox"]
    return COCOGroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        image=_index(f["image_id"], image_ids, name, where, "image_id", "images"),
        category=_index(f["category_id"], category_ids, name, where, "category_id",
                        "categories"),
        boxes=boxes,
        area=np.where(np.isnan(f["area"]), boxes[:, 2] * boxes[:, 3], f["area"]),
        iscrowd=f["iscrowd"],
        ids=f["id"],
        source=name,
    )


def load_detections(
    source: str | Path | Sequence[Mapping[str, Any]], ground_truth: COCOGroundTruth
) -> COCODetections:
    """Read and validate COCO detection results against ``ground_truth``'s image and category
    ids (a JSON file's path or the list itself; an empty list is valid)."""
    if isinstance(source, COCODetections):
        return source
    data, name = _read(source, "detections")
    if not isinstance(data, list):
        raise DataFormatError(name, None, f"must be a list of detections, got "
                              f"{type(data).__name__}")
    f = _gather(data, name, "detections", {"image_id": "int", "category_id": "int", "bbox": "box",
                             "score": "number"})
    return COCODetections(
        image=_index(f["image_id"], ground_truth.image_ids, name, "detections", "image_id",
                     f"{ground_truth.source}'s images"),
        category=_index(f["category_id"], ground_truth.category_ids, name, "detections",
                        "category_id", f"{ground_truth.source}'s categories"),
        boxes=f["bbox"],
        scores=f["score"],
        source=name,
    )
