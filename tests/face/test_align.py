"""Five-point alignment: Umeyama equals scikit-image's SimilarityTransform to 1e-10, the crop
equals insightface's norm_crop (OpenCV warpAffine) on the astronaut within one grey level, with
the landmarks facenet-pytorch's MTCNN finds there."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require
from PIL import Image

from paperlab.errors import ArgumentError, ShapeError
from paperlab.face.align import (
    ARCFACE_TEMPLATE,
    align_face,
    landmark_residual,
    similarity_transform,
    template,
    warp_affine,
)

pytestmark = pytest.mark.note("E1")


def _skimage_params(src, dst):
    transform = require("skimage.transform")
    cls = transform.SimilarityTransform
    if hasattr(cls, "from_estimate"):  # scikit-image >= 0.26
        return cls.from_estimate(src, dst).params[:2]
    t = cls()
    assert t.estimate(src, dst)
    return t.params[:2]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reflect", [False, True])
def test_similarity_transform_equals_skimage(seed, reflect):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 300, size=(5, 2))
    a, c = rng.uniform(-math.pi, math.pi), rng.uniform(0.2, 3.0)
    rot = c * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = src @ rot.T + rng.normal(size=2) * 40 + rng.normal(size=(5, 2)) * 5
    if reflect:  # the best similarity must still be a rotation, never a mirror
        dst[:, 0] = -dst[:, 0]
    ours = similarity_transform(src, dst)
    ref = _skimage_params(src, dst)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    assert np.linalg.det(ours[:, :2]) > 0


def test_similarity_transform_recovers_an_exact_similarity():
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 100, size=(5, 2))
    a, c, t = 0.7, 1.8, np.array([12.0, -4.0])
    m = np.c_[c * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]), t]
    dst = src @ m[:, :2].T + t
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-12)
    assert landmark_residual(ARCFACE_TEMPLATE * 2.0 + 5.0) < 1e-12


def _norm_crop():
    """insightface's utils/face_align.py loaded by file path (``import insightface`` needs
    onnxruntime, which is not a test dependency)."""
    require("cv2")
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        require("insightface")
    path = Path(list(spec.submodule_search_locations)[0]) / "utils" / "face_align.py"
    mod_spec = importlib.util.spec_from_file_location("_insightface_face_align", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.norm_crop


@pytest.fixture(scope="module")
def astronaut():
    data = require("skimage.data")
    facenet = require("facenet_pytorch")
    img = data.astronaut()
    torch.manual_seed(0)
    _, probs, lms = facenet.MTCNN(keep_all=True).detect(img, landmarks=True)
    assert len(probs) == 1 and probs[0] > 0.99
    return img, np.asarray(lms[0], dtype=np.float64)


@pytest.mark.parametrize("size", [112, 224, 128])
def test_align_face_equals_insightface_norm_crop(astronaut, size):
    norm_crop = _norm_crop()
    img, lm = astronaut
    with warnings.catch_warnings():  # insightface calls the deprecated estimate()
        warnings.simplefilter("ignore", FutureWarning)
        ref = norm_crop(img, lm, image_size=size)
    ours = align_face(img, lm, size)
    assert ours.shape == ref.shape == (size, size, 3) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"max {diff.max()} grey levels"
    assert (diff > 0).mean() < 0.02
    # exact coordinates (no 1/32-pixel grid) are further from OpenCV's crop
    exact = warp_affine(torch.from_numpy(img).permute(2, 0, 1).double(),
                        similarity_transform(lm, template(size)), size, opencv_grid=False)
    exact = exact.round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(exact - ref.astype(int)).max() > 1


def test_aligned_landmarks_sit_on_the_template(astronaut):
    img, lm = astronaut
    m = similarity_transform(lm, template(112))
    mapped = lm @ m[:, :2].T + m[:, 2]
    assert np.sqrt(((mapped - ARCFACE_TEMPLATE) ** 2).sum(1)).max() < 10.0
    assert 1.0 < landmark_residual(lm) < 6.0  # a slightly turned face
    # PIL in -> the same crop; a float tensor in -> a (3, 112, 112) tensor
    np.testing.assert_array_equal(align_face(Image.fromarray(img), lm), align_face(img, lm))
    t = align_face(torch.from_numpy(img).permute(2, 0, 1).float() / 255, lm)
    assert t.shape == (3, 112, 112) and t.dtype == torch.float32


def test_template_sizes():
    np.testing.assert_allclose(template(224), ARCFACE_TEMPLATE * 2)
    t128 = template(128)
    np.testing.assert_allclose(t128[:, 0], ARCFACE_TEMPLATE[:, 0] + 8.0)
    with pytest.raises(ArgumentError, match="size"):
        template(100)


def test_bad_inputs_are_named():
    img = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(ShapeError, match="landmarks"):
        align_face(img, np.zeros((4, 2)))
    with pytest.raises(ShapeError, match="src and dst"):
        similarity_transform(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(ArgumentError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ShapeError, match="image"):
        align_face(np.zeros((20, 20, 2), dtype=np.uint8), ARCFACE_TEMPLATE)
    with pytest.raises(ArgumentError, match="finite"):
        similarity_transform(np.full((5, 2), np.nan), ARCFACE_TEMPLATE)
