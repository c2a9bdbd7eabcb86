"""F1 recipe ``faster-rcnn``: ``paperlab train faster-rcnn`` on shapes and on a COCO file."""

from __future__ import annotations

import json

import pytest

from paperlab import registry
from paperlab.cli import main
from paperlab.data.formats.coco_detection import detection_data
from paperlab.recipes.faster_rcnn import FasterRCNNConfig

pytestmark = pytest.mark.note("F1")

TINY = ["--set", "steps=2", "--set", "batch_size=2", "--set", "width=8",
        "--set", "representation_size=16", "--set", "image_size=32", "--set", "n_val=4",
        "--set", "eval_batch_size=4", "--no-progress"]


def test_registered():
    assert registry.get("recipe", "faster-rcnn").meta["config"] is FasterRCNNConfig


def test_train_on_shapes_writes_coco_results(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "faster-rcnn", *TINY, "--set", "n_train=8", "--out", str(out)]) == 0
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
            "eval_AP", "eval_AP50"} <= set(last)
    results = json.loads((out / "predictions.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score"} <= set(r) for r in results)


def test_train_on_a_coco_file(tmp_path):
    from PIL import Image

    shapes = detection_data(n=6, seed=0, image_size=32)  # written out as PNG + COCO JSON
    (tmp_path / "images").mkdir()
    gt = shapes.coco_ground_truth()
    for i in range(len(shapes)):
        image = (shapes[i][0].permute(1, 2, 0).numpy() * 255).astype("uint8")
        Image.fromarray(image).save(tmp_path / "images" / f"{i}.png")
        gt["images"][i]["file_name"] = f"{i}.png"
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    out = tmp_path / "coco"
    code = main(["train", "faster-rcnn", *TINY, "--set", f"data={tmp_path / 'gt.json'}",
                 "--set", f"images={tmp_path / 'images'}", "--set", "min_size=32",
                 "--out", str(out)])
    assert code == 0
    assert (out / "predictions.json").exists()
    assert "eval_AP50" in (out / "metrics.jsonl").read_text()
