"""Face detection, the first stage of the face-recognition system (note E1):
``detect_faces(image, detector="mtcnn") -> list[Face]``.

Detectors, chosen by name:

- ``"mtcnn"`` (default): our MTCNN (``face/mtcnn.py``) with the trained weights shipped in
  the ``facenet-pytorch`` wheel; boxes, scores and the five landmarks (left eye, right eye,
  nose, left and right mouth corner) that alignment needs.
- ``"haar"``: OpenCV's Viola-Jones cascade ``haarcascade_frontalface_default.xml`` (the
  ``face`` extra, ``opencv-python-headless`` < 5: the 5.x wheels ship no cascades). It gives
  boxes and a confidence (the cascade's last-stage weight), no landmarks.

Images: an H x W x 3 uint8 RGB array, a PIL image, or a path (read with Pillow). An image
without a face gives an empty list, never an exception. Faces come sorted by decreasing score.
Boxes are (x1, y1, x2, y2) pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, require

DETECTORS = ("mtcnn", "haar")


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2) pixels, ``score``, and ``landmarks``
    (5, 2) (x, y) pixels or None (the Haar cascade finds none)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None


def load_image(image: Any) -> np.ndarray:
    """H x W x 3 uint8 RGB from an array, a PIL image or a path."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ArgumentError(f"image file not found: {path}")
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"image arrays must be H x W x 3 uint8 RGB, got {image.dtype} "
                             f"{image.shape}")
        return image
    raise ArgumentTypeError(f"image must be an array, a PIL image or a path, got "
                            f"{type(image).__name__}")


@functools.cache
def _mtcnn() -> Any:
    from paperlab.face.mtcnn import MTCNN

    return MTCNN()


@functools.cache
def _haar() -> Any:
    cv2 = require("cv2", extra="face", purpose="the Haar cascade face detector")
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ArgumentError(f"OpenCV's cascade {path} is missing (opencv 5.x ships none): "
                            f"pip install 'opencv-python-headless<5'")
    return cascade


def detect_faces(image: Any, detector: str = "mtcnn") -> list[Face]:
    """Faces in ``image`` by the detector named ``detector`` (``"mtcnn"`` or ``"haar"``)."""
    if detector not in DETECTORS:
        raise ArgumentError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    img = load_image(image)
    if detector == "mtcnn":
        boxes, scores, marks = _mtcnn().detect(img)
        return [Face(b.numpy().astype(np.float64), float(s), m.numpy().astype(np.float64))
                for b, s, m in zip(boxes, scores, marks)]
    cv2 = require("cv2", extra="face", purpose="the Haar cascade face detector")
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rects, _, weights = _haar().detectMultiScale3(grey, scaleFactor=1.1, minNeighbors=5,
                                                  outputRejectLevels=True)
    faces = [Face(np.array([x, y, x + w, y + h], dtype=np.float64), float(s), None)
             for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4),
                                        np.asarray(weights).reshape(-1))]
    return sorted(faces, key=lambda f: -f.score)
