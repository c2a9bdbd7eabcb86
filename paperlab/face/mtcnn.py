"""MTCNN face detection (note E1): a cascade of three small CNNs with the real trained weights.

The idea (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks")
----------------------------------------------------------------------------------------
Three networks, each stricter and slower than the last, each seeing only what the one before
let through:

1. **P-Net** (proposal), fully convolutional, slides a 12 x 12 window over an image pyramid
   (scales 12 / min_face * 0.709^k while the short side stays >= 12 pixels; each level
   area-resized). At each position (stride 2) it gives a face probability and a box
   regression; windows with probability >= 0.6 become boxes (mapped back through the scale),
   NMS at IoU 0.5 within each scale and 0.7 across scales, then regressed and squared.
2. **R-Net** (refine) rescores 24 x 24 crops of those boxes: probability > 0.7 survives,
   NMS 0.7, regression, squared again.
3. **O-Net** (output) rescores 48 x 48 crops (> 0.7), regresses the box once more and
   predicts the five landmarks (left eye, right eye, nose, left and right mouth corner) as
   fractions of the box; final NMS 0.7.

Pixels enter as (x - 127.5) / 128. The networks' weights are the original Caffe/TF model's, as
shipped in the ``facenet-pytorch`` wheel (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, about
2 MB). They are read with ``torch.load(..., weights_only=True)`` (tensors only, never pickled
code) and every tensor's name and shape is checked. facenet-pytorch's own metadata pins an
old torch, so it is installed without its dependencies: ``pip install --no-deps
facenet-pytorch==2.6.0``; or pass ``weights_dir`` to a folder holding the three files.

The box arithmetic follows facenet-pytorch's ``detect_face`` (itself the MATLAB original's):
boxes in (x1, y1, x2, y2) pixels with the "+1" width convention in the regressions, crops
taken from integer-truncated boxes clipped to the image. NMS is
``paperlab.detection.boxes.batched_nms`` (torchvision's semantics). One difference: the
original's last NMS measures overlap by intersection over the *smaller* box ("Min") with
"+1" areas; ``paperlab.detection.boxes`` offers IoU only, so the last NMS is IoU at 0.7 as
well. The two differ only for a box nested inside a higher-scoring one.

Shapes: an image H x W x 3 uint8 (RGB) -> boxes (N, 4) float32, scores (N,), landmarks
(N, 5, 2) (x, y) pixels, N >= 0, sorted by decreasing score.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from paperlab.detection.boxes import batched_nms
from paperlab.errors import ArgumentError, MissingExtraError, ShapeError

INSTALL_HINT = ("pip install --no-deps facenet-pytorch==2.6.0 (its wheel ships "
                "data/pnet.pt, rnet.pt, onet.pt), or pass weights_dir=FOLDER holding them")


class PNet(nn.Module):
    """12 x 12 proposal network, fully convolutional: (B, 3, H, W) -> regression (B, 4, h, w),
    probabilities (B, 2, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """24 x 24 refinement network: (B, 3, 24, 24) -> regression (B, 4), probabilities (B, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the TF weights flatten (W, H, C)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """48 x 48 output network: (B, 3, 48, 48) -> regression (B, 4), landmarks (B, 10: five x
    then five y, fractions of the box), probabilities (B, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def find_weights(weights_dir: str | Path | None = None) -> Path:
    """The folder with pnet.pt, rnet.pt and onet.pt: ``weights_dir`` or the installed
    facenet-pytorch's ``data/`` (found without importing the package)."""
    if weights_dir is not None:
        folder = Path(weights_dir)
    else:
        spec = importlib.util.find_spec("facenet_pytorch")
        if spec is None or not spec.submodule_search_locations:
            raise MissingExtraError(f"MTCNN needs its trained weights: {INSTALL_HINT}")
        folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [n for n in ("pnet.pt", "rnet.pt", "onet.pt") if not (folder / n).is_file()]
    if missing:
        raise MissingExtraError(f"MTCNN weights {', '.join(missing)} not found in {folder}: "
                                f"{INSTALL_HINT}")
    return folder


def load_checked(module: nn.Module, path: Path) -> nn.Module:
    """Load a tensors-only state dict into ``module``, naming every missing, unexpected or
    mis-shaped tensor."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ArgumentError(f"{path}: expected a state dict of tensors, got {type(state)}")
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if problems:
        raise ShapeError(f"{path}: {'; '.join(problems)}")
    module.load_state_dict(state)
    return module.eval()


# ---------------------------------------------------------------------------------------------
# The cascade
# ---------------------------------------------------------------------------------------------


def pyramid_scales(height: int, width: int, min_face: float = 20.0,
                   factor: float = 0.709) -> list[float]:
    """12 / min_face * factor^k for every k while the scaled short side stays >= 12."""
    m = 12.0 / min_face
    side = min(height, width) * m
    scales, scale = [], m
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes made square around their centres (side = the longer side)."""
    b = boxes.clone()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = torch.maximum(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, :2] + side[:, None]
    return b


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Box regression with the +1 width convention: corner += reg * (x2 - x1 + 1)."""
    b = boxes.clone()
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, :4] = b[:, :4] + reg * torch.stack([w, h, w, h], 1)
    return b


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, size, size) area-resized crops of the integer-truncated boxes clipped to the
    image (1-based inclusive corners, as the original)."""
    h, w = image.shape[-2:]
    b = boxes[:, :4].trunc().int()
    x = b[:, 0].clamp(min=1)
    y = b[:, 1].clamp(min=1)
    ex = b[:, 2].clamp(max=w)
    ey = b[:, 3].clamp(max=h)
    out = [F.interpolate(image[None, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], size=(size, size),
                         mode="area") for k in range(len(b))]
    return torch.cat(out) if out else image.new_zeros(0, 3, size, size)


def _nms(boxes: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS of (N, >= 5) rows (box, score, ...) as the original calls it: ``batched_nms`` with
    one image index, so torchvision's switch between its two NMS paths is followed too."""
    return batched_nms(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes), dtype=torch.int64),
                       threshold)


def _usable(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes whose clipped integer crop is non-empty."""
    b = boxes[:, :4].trunc().int()
    return (b[:, 3].clamp(max=height) > b[:, 1].clamp(min=1) - 1) & (
        b[:, 2].clamp(max=width) > b[:, 0].clamp(min=1) - 1)


class MTCNN(nn.Module):
    """The P-Net / R-Net / O-Net cascade with the trained weights (see the module docstring).

    ``detect(image)`` returns (boxes (N, 4), scores (N,), landmarks (N, 5, 2)).
    """

    def __init__(self, *, min_face_size: float = 20.0, thresholds: tuple[float, float, float] =
                 (0.6, 0.7, 0.7), factor: float = 0.709, weights_dir: str | Path | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        if not min_face_size >= 12:
            raise ArgumentError(f"min_face_size must be >= 12 pixels, got {min_face_size}")
        if not 0 < factor < 1:
            raise ArgumentError(f"factor must be in (0, 1), got {factor}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ArgumentError(f"thresholds must be three probabilities, got {thresholds}")
        self.min_face_size, self.factor = float(min_face_size), float(factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        if pretrained:
            folder = find_weights(weights_dir)
            for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
                load_checked(net, folder / f"{name}.pt")
        self.eval()

    @torch.no_grad()
    def detect(self, image: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Faces in one H x W x 3 uint8 RGB image (numpy array or tensor)."""
        img = torch.as_tensor(np.array(image))
        if img.dim() != 3 or img.shape[2] != 3 or img.dtype != torch.uint8:
            raise ShapeError(f"image must be H x W x 3 uint8, got {img.dtype} "
                             f"{tuple(img.shape)}")
        img = img.permute(2, 0, 1).float()
        h, w = img.shape[-2:]
        empty = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))
        t1, t2, t3 = self.thresholds

        # stage 1: P-Net over the pyramid
        found = []
        for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
            level = F.interpolate(img[None], size=(int(h * scale + 1), int(w * scale + 1)),
                                  mode="area")
            reg, prob = self.pnet(_normalise(level))
            p = prob[0, 1]
            ys, xs = torch.nonzero(p >= t1, as_tuple=True)
            cells = torch.stack([xs, ys], 1).to(p.dtype)
            q1 = ((2 * cells + 1) / scale).floor()
            q2 = ((2 * cells + 12) / scale).floor()
            boxes = torch.cat([q1, q2, p[ys, xs, None], reg[0][:, ys, xs].T], 1)
            found.append(boxes[_nms(boxes, 0.5)])
        if not found:
            return empty
        boxes = torch.cat(found)
        boxes = boxes[_nms(boxes, 0.7)]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        corners = boxes[:, :4] + boxes[:, 5:9] * torch.stack([bw, bh, bw, bh], 1)
        boxes = _square(torch.cat([corners, boxes[:, 4:5]], 1))
        if len(boxes) == 0:
            return empty

        # stage 2: R-Net on 24 x 24 crops
        boxes = boxes[_usable(boxes, h, w)]
        reg, prob = self.rnet(_normalise(_crops(img, boxes, 24)))
        ok = prob[:, 1] > t2
        boxes = torch.cat([boxes[ok, :4], prob[ok, 1:2]], 1)
        reg = reg[ok]
        keep = _nms(boxes, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        if len(boxes) == 0:
            return empty

        # stage 3: O-Net on 48 x 48 crops, with the landmarks
        boxes = boxes[_usable(boxes, h, w)]
        reg, marks, prob = self.onet(_normalise(_crops(img, boxes, 48)))
        ok = prob[:, 1] > t3
        boxes = torch.cat([boxes[ok, :4], prob[ok, 1:2]], 1)
        reg, marks = reg[ok], marks[ok]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack([bw[:, None] * marks[:, :5] + boxes[:, 0:1] - 1,
                              bh[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1], -1)
        boxes = _regress(boxes, reg)
        keep = _nms(boxes, 0.7)
        return boxes[keep, :4], boxes[keep, 4], points[keep]
