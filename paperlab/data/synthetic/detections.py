"""Synthetic COCO ground truth and detections whose difficulty is set by a few knobs.

The idea
--------
Average precision (note F4) is a function of two lists: the ground-truth objects of a data set
and a detector's scored boxes. Testing an implementation against pycocotools, timing it, and
showing how the AP definitions differ all need such lists in quantity, with every corner case
that COCO's rules treat specially. This module draws them from a seeded numpy generator:

- images with non-contiguous, shuffled ids; a fraction of them have no objects at all;
- categories with non-contiguous ids, some of which (``unused_categories``) never occur;
- objects with log-uniform sizes, so the small / medium / large area ranges are all populated,
  an ``area`` field that is *not* the box area (a mask covers part of its box: ``area =
  w * h * u``, u ~ U(0.5, 1)), and a fraction marked ``iscrowd``;
- detections: each object is found with probability ``recall``, as its box jittered by
  ``noise`` times its size, scored higher the closer the box (plus noise); some are found twice
  (duplicates: false positives at every IoU); the rest of ``detections_per_image`` are false
  positives, random boxes of random categories with lower scores. Scores are rounded to
  ``score_decimals`` (ties in score, which COCO breaks by a stable sort).

``noise=0, recall=1, false_positives=False`` is a perfect detector: every AP definition gives
1.0 on it.

Output (COCO JSON structures in memory): ``ground_truth = {"images": [{"id", "width",
"height"}], "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area",
"iscrowd"}], "categories": [{"id", "name"}]}`` and ``detections = [{"image_id",
"category_id", "bbox", "score"}]``. Boxes are COCO's ``[x, y, width, height]`` in pixels.

Determinism: everything depends only on the arguments (``seed`` included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paperlab.errors import ArgumentError, check_int


def synthetic_detections(
    num_images: int,
    *,
    num_categories: int = 10,
    unused_categories: int = 2,
    objects_per_image: float = 6.0,
    detections_per_image: int = 20,
    empty_fraction: float = 0.05,
    crowd_fraction: float = 0.03,
    recall: float = 0.85,
    noise: float = 0.12,
    duplicate_fraction: float = 0.1,
    false_positives: bool = True,
    score_decimals: int | None = 2,
    image_size: int = 640,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Draw ``(ground_truth, detections)`` in COCO's JSON layout (see the module docstring)."""
    check_int("num_images", num_images, minimum=0)
    check_int("num_categories", num_categories, minimum=1)
    check_int("unused_categories", unused_categories, minimum=0)
    check_int("detections_per_image", detections_per_image, minimum=0)
    for name, value in (("empty_fraction", empty_fraction), ("crowd_fraction", crowd_fraction),
                        ("recall", recall), ("duplicate_fraction", duplicate_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ArgumentError(f"{name} must be in [0, 1], got {value}")
    if noise < 0 or objects_per_image < 0:
        raise ArgumentError(f"noise and objects_per_image must be >= 0, got {noise}, "
                            f"{objects_per_image}")
    rng = np.random.default_rng(seed)
    image_ids = (rng.permutation(num_images) * 3 + 7).tolist()
    total_categories = num_categories + unused_categories
    category_ids = [2 * k + 1 for k in range(total_categories)]
    used = category_ids[:num_categories]
    images = [{"id": i, "width": image_size, "height": image_size} for i in image_ids]
    categories = [{"id": c, "name": f"class{c}"} for c in category_ids]
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []

    def rnd(score: float) -> float:
        return float(round(score, score_decimals)) if score_decimals is not None else score

    for image_id in image_ids:
        n_obj = 0 if rng.random() < empty_fraction else int(rng.poisson(objects_per_image))
        found = 0
        for _ in range(n_obj):
            side = float(np.exp(rng.uniform(np.log(6.0), np.log(image_size * 0.6))))
            aspect = float(np.exp(rng.uniform(-0.5, 0.5)))
            w, h = side * aspect, side / aspect
            x = float(rng.uniform(0, max(image_size - w, 1.0)))
            y = float(rng.uniform(0, max(image_size - h, 1.0)))
            cat = used[int(rng.integers(num_categories))]
            crowd = int(rng.random() < crowd_fraction)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                "bbox": [x, y, w, h], "area": w * h * float(rng.uniform(0.5, 1.0)),
                "iscrowd": crowd,
            })
            copies = 0
            if rng.random() < recall:
                copies = 2 if rng.random() < duplicate_fraction else 1
            for _ in range(copies):
                if found >= detections_per_image:
                    break
                jitter = rng.normal(0.0, noise, size=4)
                box = [x + jitter[0] * w, y + jitter[1] * h,
                       w * float(np.exp(jitter[2])), h * float(np.exp(jitter[3]))]
                closeness = float(np.exp(-np.abs(jitter).sum() / max(noise, 1e-9) / 4))
                score = 0.5 + 0.45 * closeness * float(rng.uniform(0.6, 1.0)) if noise else 1.0
                detections.append({"image_id": image_id, "category_id": cat, "bbox": box,
                                   "score": rnd(score)})
                found += 1
        if not false_positives:
            continue
        for _ in range(max(detections_per_image - found, 0)):
            side = float(np.exp(rng.uniform(np.log(6.0), np.log(image_size * 0.5))))
            x, y = (float(v) for v in rng.uniform(0, image_size - side, size=2))
            cat = category_ids[int(rng.integers(total_categories))]
            detections.append({"image_id": image_id, "category_id": cat,
                               "bbox": [x, y, side, side * float(rng.uniform(0.5, 2.0))],
                               "score": rnd(float(rng.uniform(0.0, 0.7)))})
    ground_truth = {"images": images, "annotations": annotations, "categories": categories}
    return ground_truth, detections
