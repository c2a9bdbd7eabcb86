"""COCO JSON reading and validation (detection/coco.py): every malformed entry is named by
file, list and index; the defaults where pycocotools would raise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paperlab.data.formats.common import DataFormatError, MissingFileError
from paperlab.detection.coco import load_detections, load_ground_truth

pytestmark = pytest.mark.note("F4")


def _gt():
    return {
        "images": [{"id": 5}, {"id": 2}],
        "categories": [{"id": 3}, {"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 60.0,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 1},
            {"id": 7, "image_id": 2, "category_id": 3, "bbox": [5, 5, 2, 2]},
        ],
    }


def test_arrays_and_defaults():
    gt = load_ground_truth(_gt())
    np.testing.assert_array_equal(gt.image_ids, [2, 5])
    np.testing.assert_array_equal(gt.category_ids, [1, 3])
    np.testing.assert_array_equal(gt.image, [1, 0, 0])
    np.testing.assert_array_equal(gt.category, [1, 0, 1])
    np.testing.assert_array_equal(gt.area, [60.0, 12.0, 4.0])  # absent area: w * h
    np.testing.assert_array_equal(gt.iscrowd, [False, True, False])  # absent iscrowd: 0
    np.testing.assert_array_equal(gt.ids, [1, 2, 7])
    dt = load_detections([{"image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1],
                           "score": 0.5}], gt)
    assert dt.image.tolist() == [0] and dt.category.tolist() == [1]
    empty = load_detections([], gt)
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)


def _bad(mutate):
    gt = _gt()
    mutate(gt)
    return gt


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g["annotations"][1].pop("bbox"),
     r"ground_truth: annotations\[1\]: missing key 'bbox'"),
    (lambda g: g["annotations"][2].update(bbox=[1, 2, 3]),
     r"annotations\[2\]: bbox must be 4 numbers"),
    (lambda g: g["annotations"][0].update(bbox=[0, 0, -1, 3]),
     r"annotations\[0\]: bbox must be finite with w, h >= 0"),
    (lambda g: g["annotations"][0].update(bbox=[0, 0, "1", 3]),
     r"annotations\[0\]: bbox must be 4 numbers"),
    (lambda g: g["annotations"][2].update(image_id=9),
     r"annotations\[2\]: image_id 9 is not in images"),
    (lambda g: g["annotations"][1].update(category_id=4),
     r"annotations\[1\]: category_id 4 is not in categories"),
    (lambda g: g["annotations"][1].update(id=1), r"annotations\[1\]: duplicate id 1"),
    (lambda g: g["images"].append({"id": 5}), r"images\[2\]: duplicate id 5"),
    (lambda g: g["images"][0].update(id=1.5), r"images\[0\]: id must be an integer id"),
    (lambda g: g["annotations"][0].update(iscrowd=2), r"annotations\[0\]: iscrowd must be 0 or 1"),
    (lambda g: g["annotations"][0].update(area=float("inf")),
     r"annotations\[0\]: area must be a finite number"),
    (lambda g: g.pop("categories"), r"missing key 'categories'"),
    (lambda g: g.update(images={}), r"images must be a list"),
    (lambda g: g["annotations"].append(3), r"annotations\[3\] must be an object"),
])
def test_ground_truth_errors_name_list_and_index(mutate, message):
    with pytest.raises(DataFormatError, match=message):
        load_ground_truth(_bad(mutate))


@pytest.mark.parametrize("det, message", [
    ({"image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1]},
     r"detections\[1\]: missing key 'score'"),
    ({"image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1.0},
     r"detections\[1\]: image_id 4 is not in ground_truth's images"),
    ({"image_id": 2, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1.0},
     r"detections\[1\]: category_id 2 is not in ground_truth's categories"),
    ({"image_id": 2, "category_id": 3, "bbox": [0, 0, 1], "score": 1.0},
     r"detections\[1\]: bbox must be 4 numbers"),
    ({"image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1], "score": float("nan")},
     r"detections\[1\]: score must be a finite number"),
])
def test_detection_errors_name_list_and_index(det, message):
    gt = load_ground_truth(_gt())
    ok = {"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.3}
    with pytest.raises(DataFormatError, match=message):
        load_detections([ok, det], gt)


def test_files_are_named(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(_bad(lambda g: g["annotations"][2].pop("image_id"))))
    with pytest.raises(DataFormatError, match=r"gt\.json: annotations\[2\]: missing key 'image"):
        load_ground_truth(gt_path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_gt()))
    gt = load_ground_truth(str(good))
    assert gt.source == str(good)
    dt_path = tmp_path / "dt.json"
    dt_path.write_text(json.dumps([{"image_id": 5, "category_id": 8, "bbox": [0, 0, 1, 1],
                                    "score": 1}]))
    with pytest.raises(DataFormatError, match=r"dt\.json: detections\[0\]: category_id 8 is not "
                                              r"in .*good\.json's categories"):
        load_detections(dt_path, gt)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataFormatError, match=r"broken\.json: not a readable JSON file"):
        load_ground_truth(tmp_path / "broken.json")
    with pytest.raises(MissingFileError, match="no such file"):
        load_ground_truth(tmp_path / "missing.json")
    with pytest.raises(DataFormatError, match="must be a list of detections"):
        load_detections({"annotations": []}, gt)
