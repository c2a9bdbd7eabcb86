"""COCO detection data: targets from the JSON, exact shapes boxes, the flip, collate, COCO
results."""

from __future__ import annotations

import json

import pytest
import torch
from data_files import write_png

from paperlab.data.formats.coco_detection import (
    COCODetectionDataset,
    HorizontalFlip,
    coco_results,
    detection_collate,
    detection_data,
    evaluate_detections,
    hflip,
)
from paperlab.data.formats.common import DataFormatError

pytestmark = pytest.mark.note("F1")


def _coco(tmp_path, **change):
    write_png(tmp_path / "im" / "a.png", (255, 0, 0), size=(10, 8))
    write_png(tmp_path / "im" / "b.png", (0, 255, 0), size=(6, 6))
    gt = {"images": [{"id": 7, "file_name": "a.png", "width": 10, "height": 8},
                     {"id": 3, "file_name": "b.png", "width": 6, "height": 6}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 20, "bbox": [1, 2, 3, 4]},
                          {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 2, 2]},
                          {"id": 3, "image_id": 7, "category_id": 5, "bbox": [0, 0, 9, 7],
                           "iscrowd": 1}],
          "categories": [{"id": 20, "name": "dog"}, {"id": 5, "name": "cat"}]}
    gt.update(change)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path, tmp_path / "im"


def test_coco_targets_and_ground_truth(tmp_path):
    path, root = _coco(tmp_path)
    ds = COCODetectionDataset(path, root)
    assert len(ds) == 2 and ds.category_ids == [5, 20] and ds.names == ["cat", "dog"]
    assert ds.num_classes == 3
    image, target = ds[0]
    assert image.shape == (3, 8, 10) and image.dtype == torch.float32
    assert target["image_id"] == 7
    torch.testing.assert_close(target["boxes"], torch.tensor([[1.0, 2, 4, 6], [0, 0, 2, 2]]))
    assert target["labels"].tolist() == [2, 1] and target["labels"].dtype == torch.int64
    _, empty = ds[1]  # an image without objects
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert len(ds.coco_ground_truth()["annotations"]) == 3  # the crowd region is still scored


def test_errors_name_the_file(tmp_path):
    path, root = _coco(tmp_path, images=[{"id": 7, "file_name": "missing.png"},
                                         {"id": 3, "file_name": "b.png"}])
    with pytest.raises(DataFormatError, match=r"gt.json: images\[0\]: image file not found"):
        COCODetectionDataset(path, root)
    path, root = _coco(tmp_path, images=[{"id": 7}, {"id": 3, "file_name": "b.png"}])
    with pytest.raises(DataFormatError, match=r"images\[0\]: missing key 'file_name'"):
        COCODetectionDataset(path, root)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [{"id": 1}], "categories": []}))
    with pytest.raises(DataFormatError, match=r"bad.json: annotations\[0\]"):
        COCODetectionDataset(bad, root)


def test_flip_moves_boxes_exactly():
    ds = detection_data(n=4, seed=1, image_size=32, objects=1, noise=0.0)
    image, target = ds[0]
    fi, ft = hflip(image, target)
    ys, xs = torch.nonzero(fi.sum(0) > 0, as_tuple=True)
    assert ft["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    back = hflip(fi, ft)
    torch.testing.assert_close(back[1]["boxes"], target["boxes"])
    torch.testing.assert_close(back[0], image)
    torch.manual_seed(0)
    assert HorizontalFlip(1.0)(image, target)[1]["boxes"].tolist() == ft["boxes"].tolist()


def test_shapes_boxes_are_exact_and_splits_differ():
    ds = detection_data(n=6, seed=0, image_size=32, objects=1, noise=0.0)
    for i in range(len(ds)):
        image, target = ds[i]
        ys, xs = torch.nonzero(image.sum(0) > 0, as_tuple=True)
        assert target["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert 1 <= int(target["labels"][0]) <= 5
    val = detection_data(split="val", n=6, seed=0, image_size=32, objects=1, noise=0.0)
    assert not torch.equal(val[0][0], ds[0][0])
    images, targets = detection_collate([ds[0], ds[1]])
    assert len(images) == 2 and targets[1]["image_id"] == 1


def test_perfect_predictions_score_one_and_results_json(tmp_path):
    ds = detection_data(n=5, seed=0, image_size=32)

    def oracle(images):  # the ground truth of the images, in order
        out = []
        for im in images:
            i = next(k for k in range(len(ds)) if torch.equal(ds[k][0], im))
            t = ds[i][1]
            out.append({"boxes": t["boxes"], "labels": t["labels"],
                        "scores": torch.ones(len(t["labels"]))})
        return out

    path = tmp_path / "results.json"
    stats = evaluate_detections(oracle, ds, results_path=path, batch_size=2)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    results = json.loads(path.read_text())
    assert {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    one = coco_results([{"boxes": torch.tensor([[1.0, 2, 4, 7]]), "labels": torch.tensor([2]),
                         "scores": torch.tensor([0.5])}], [9], [5, 20])
    assert one == [{"image_id": 9, "category_id": 20, "bbox": [1.0, 2.0, 3.0, 5.0],
                    "score": 0.5}]


def test_coco_splits(tmp_path):
    path, root = _coco(tmp_path)
    train = detection_data(path, root, split="train", seed=0, val_fraction=0.5)
    val = detection_data(path, root, split="val", seed=0, val_fraction=0.5)
    assert sorted(train.image_ids + val.image_ids) == [3, 7]
    assert len(detection_data(path, root, split="all")) == 2
