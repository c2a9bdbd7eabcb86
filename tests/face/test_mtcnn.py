"""MTCNN with the real weights: boxes, scores and landmarks equal facenet-pytorch's
``MTCNN(keep_all=True).detect`` on the astronaut (1 face) and insightface's group photo t1.jpg
(8 faces); no face in coffee, chelsea, rocket; weights read tensors-only with names and shapes
checked; a missing folder says how to get them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require
from PIL import Image

from paperlab.errors import MissingExtraError, ShapeError
from paperlab.face.mtcnn import MTCNN, PNet, find_weights, load_checked, pyramid_scales

pytestmark = pytest.mark.note("E1")


@pytest.fixture(scope="module")
def detectors():
    facenet = require("facenet_pytorch")
    return MTCNN(), facenet.MTCNN(keep_all=True)


def _group_photo() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        require("insightface")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _image(name: str) -> np.ndarray:
    if name == "t1":
        return _group_photo()
    data = require("skimage.data")
    return getattr(data, name)()


@pytest.mark.parametrize("name, faces", [("astronaut", 1), ("t1", 8)])
def test_equals_facenet_pytorch(detectors, name, faces):
    ours, ref = detectors
    img = _image(name)
    boxes, scores, marks = ours.detect(img)
    rb, rs, rl = ref.detect(img, landmarks=True)
    order = np.argsort(-np.asarray(rs, dtype=np.float64), kind="stable")  # theirs: by area
    rb = np.asarray(rb, dtype=np.float64)[order]
    rs = np.asarray(rs, dtype=np.float64)[order]
    rl = np.asarray(rl, dtype=np.float64)[order]
    assert len(boxes) == len(rb) == faces
    assert np.abs(boxes.numpy() - rb).max() <= 1e-3
    assert np.abs(marks.numpy() - rl).max() <= 1e-3
    assert np.abs(scores.numpy() - rs).max() <= 1e-6
    assert (scores[:-1] >= scores[1:]).all() and marks.shape == (faces, 5, 2)
    # the landmarks sit inside their boxes, left eye left of right eye
    inside = (marks[..., 0] >= boxes[:, None, 0]) & (marks[..., 0] <= boxes[:, None, 2])
    assert inside.all() and (marks[:, 0, 0] < marks[:, 1, 0]).all()


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_no_face_gives_nothing(detectors, name):
    ours, ref = detectors
    img = _image(name)
    boxes, scores, marks = ours.detect(img)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and marks.shape == (0, 5, 2)
    assert ref.detect(img, landmarks=True)[0] is None


def test_tiny_and_blank_images_give_nothing():
    det = MTCNN()
    for img in (np.zeros((8, 8, 3), np.uint8), np.full((100, 120, 3), 128, np.uint8)):
        assert det.detect(img)[0].shape == (0, 4)


def test_pyramid():
    scales = pyramid_scales(512, 512)
    assert scales[0] == pytest.approx(0.6) and scales[1] == pytest.approx(0.6 * 0.709)
    assert 512 * scales[-1] >= 12 > 512 * scales[-1] * 0.709


def test_weights_are_checked_by_name_and_shape(tmp_path):
    require("facenet_pytorch")
    folder = find_weights()
    state = torch.load(folder / "pnet.pt", weights_only=True)
    bad = dict(state)
    bad["conv1.weight"] = torch.zeros(3, 3, 3, 3)
    bad.pop("conv4_2.bias")
    bad["extra"] = torch.zeros(1)
    torch.save(bad, tmp_path / "pnet.pt")
    with pytest.raises(ShapeError) as info:
        load_checked(PNet(), tmp_path / "pnet.pt")
    msg = str(info.value)
    assert "missing conv4_2.bias" in msg and "unexpected extra" in msg and "conv1.weight" in msg
    # a pickled object that is not tensors is refused by weights_only=True
    torch.save({"conv1.weight": object()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checked(PNet(), tmp_path / "evil.pt")


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingExtraError, match="pip install --no-deps facenet-pytorch"):
        MTCNN(weights_dir=tmp_path)
    with pytest.raises(ShapeError, match="image"):
        MTCNN(pretrained=False).detect(np.zeros((10, 10), np.uint8))


# --- detect_faces (face/detect.py) -----------------------------------------------------------


def test_detect_faces_mtcnn_from_array_pil_and_path(detectors, tmp_path):
    from paperlab.detection.boxes import box_iou
    from paperlab.face.detect import Face, detect_faces

    img = _image("astronaut")
    boxes, scores, marks = detectors[0].detect(img)
    faces = detect_faces(img)
    assert len(faces) == 1 and isinstance(faces[0], Face)
    np.testing.assert_allclose(faces[0].box, boxes[0].double().numpy())
    np.testing.assert_allclose(faces[0].landmarks, marks[0].double().numpy())
    path = tmp_path / "astronaut.png"
    Image.fromarray(img).save(path)
    for source in (Image.fromarray(img), path, str(path)):
        (face,) = detect_faces(source)
        np.testing.assert_allclose(face.box, faces[0].box)
    assert detect_faces(_image("coffee")) == []
    # the Haar cascade finds the same face (no landmarks), and nothing in the coffee cup
    require("cv2")
    (haar,) = detect_faces(img, detector="haar")
    assert haar.landmarks is None
    iou = box_iou(torch.tensor(haar.box[None]), torch.tensor(faces[0].box[None]))
    assert float(iou) > 0.5
    assert detect_faces(_image("coffee"), detector="haar") == []


def test_detect_faces_bad_input():
    from paperlab.errors import ArgumentError
    from paperlab.face.detect import detect_faces

    with pytest.raises(ArgumentError, match="detector"):
        detect_faces(np.zeros((10, 10, 3), np.uint8), detector="yolo")
    with pytest.raises(ShapeError, match="image"):
        detect_faces(np.zeros((10, 10), np.uint8))
    with pytest.raises(ArgumentError, match="not found"):
        detect_faces("/nonexistent/face.jpg")
