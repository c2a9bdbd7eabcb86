"""Five-point face alignment (note E1): warp a detected face onto a canonical template.

The idea
--------
A recogniser compares faces best when every face sits in the same place: the eyes, the nose
tip and the mouth corners at fixed positions of a small crop. Given the five landmarks a
detector found (left eye, right eye, nose, left and right mouth corner, in image pixels), find
the similarity transform (rotation, uniform scale, translation: no shear, so the face keeps
its shape) that best maps them onto the template, and resample the image through it.

The transform (Umeyama 1991, "Least-squares estimation of transformation parameters between
two point patterns"): with the means mu_s, mu_d, the centred points and
Sigma = (1/n) sum (d_i - mu_d)(s_i - mu_s)^T = U D V^T (SVD),

    R = U diag(1, det(U V^T)) V^T          (a rotation, never a reflection)
    c = trace(D diag(1, det(U V^T))) / sigma_s^2,   sigma_s^2 = (1/n) sum |s_i - mu_s|^2
    t = mu_d - c R mu_s

minimises sum |c R s_i + t - d_i|^2. (Where Sigma has rank 1 -- collinear points -- the sign
follows det(U) det(V) instead, as scikit-image does.) ``similarity_transform`` returns the
(2, 3) matrix [c R | t] mapping image coordinates to template coordinates; it equals
``skimage.transform.SimilarityTransform.from_estimate(src, dst).params[:2]``.

The template is insightface's ``arcface_dst``: the five points of a 112 x 112 ArcFace crop.
For other sizes it is scaled by size / 112 (sizes that are multiples of 128 are scaled by
size / 128 and shifted 8 * size / 128 to the right, insightface's ``estimate_norm``).

The warp: output pixel (u, v) samples the image at M^-1 (u, v) bilinearly, pixel centres at
integer coordinates, zeros outside the image -- OpenCV's ``warpAffine(img, M, (size, size),
borderValue=0)``, which insightface's ``norm_crop`` calls; we use
``torch.nn.functional.grid_sample`` (``align_corners=True``), so no OpenCV is needed. OpenCV
rounds the source coordinates to 1/32 pixel; ``warp_affine`` rounds them the same way by
default (exact coordinates differ from OpenCV's crop by up to 3 grey levels at sharp edges of
the astronaut), and OpenCV's fixed-point weights leave the two within one grey level.

Shapes: landmarks (5, 2) as (x, y) pixels; image H x W x 3 uint8 (or H x W grey) numpy
array, a PIL image, or a float tensor (C, H, W); the crop comes back in the same kind
(uint8 H x W x C rounded, or a float tensor (C, size, size)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int

# insightface's arcface_dst: left eye, right eye, nose tip, left and right mouth corner in a
# 112 x 112 crop, (x, y) pixels
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def _points(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to(torch.float64).cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ArgumentTypeError(f"{name} must be an (N, 2) array of points, got "
                                    f"{type(x).__name__}") from exc
    if t.dim() != 2 or t.shape[1] != 2 or t.shape[0] < 2:
        raise ShapeError(f"{name} must be (N, 2) with N >= 2 points, got shape "
                         f"{tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ArgumentError(f"{name} must hold finite coordinates")
    return t


def template(size: int = 112) -> np.ndarray:
    """The ArcFace template for a ``size`` x ``size`` crop (insightface's ``estimate_norm``)."""
    size = check_int("size", size, minimum=1)
    if size % 112 == 0:
        return ARCFACE_TEMPLATE * (size / 112.0)
    if size % 128 == 0:
        out = ARCFACE_TEMPLATE * (size / 128.0)
        out[:, 0] += 8.0 * size / 128.0
        return out
    raise ArgumentError(f"size must be a multiple of 112 or 128 (the template's), got {size}")


def similarity_transform(src: Any, dst: Any) -> np.ndarray:
    """The (2, 3) similarity [c R | t] that best maps ``src`` (N, 2) onto ``dst`` (N, 2) in
    the least-squares sense (Umeyama's method, no reflection), float64."""
    s, d = _points("src", src), _points("dst", dst)
    if s.shape != d.shape:
        raise ShapeError(f"src and dst must have the same shape, got {tuple(s.shape)} and "
                         f"{tuple(d.shape)}")
    mu_s, mu_d = s.mean(0), d.mean(0)
    sc, dc = s - mu_s, d - mu_d
    var_s = (sc * sc).sum(1).mean()
    if not var_s > 0:
        raise ArgumentError("src points must not all coincide")
    sigma = dc.T @ sc / s.shape[0]
    u, sv, vt = torch.linalg.svd(sigma)
    sign = torch.ones(2, dtype=torch.float64)
    rank = int((sv > sv.max() * 2 * torch.finfo(torch.float64).eps).sum())
    if rank == 0:
        raise ArgumentError("src and dst points give no rotation (all points coincide)")
    flip = (torch.linalg.det(u) * torch.linalg.det(vt) < 0) if rank == 1 else \
        (torch.linalg.det(sigma) < 0)
    if flip:
        sign[1] = -1.0
    rot = u @ torch.diag(sign) @ vt
    c = (sv * sign).sum() / var_s
    t = mu_d - c * rot @ mu_s
    return torch.cat([c * rot, t[:, None]], 1).numpy()


def _image_tensor(image: Any) -> tuple[torch.Tensor, str]:
    """(C, H, W) float64 tensor and the kind to return: "uint8" (H x W x C array) or "tensor"."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ShapeError(f"image must be H x W x 3 (or H x W), got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ArgumentTypeError(f"image arrays must be uint8, got {image.dtype}")
        return torch.from_numpy(image).permute(2, 0, 1).to(torch.float64), "uint8"
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or not image.is_floating_point():
            raise ShapeError(f"image tensors must be float (C, H, W), got {image.dtype} of "
                             f"shape {tuple(image.shape)}")
        return image, "tensor"
    raise ArgumentTypeError(f"image must be a numpy array, PIL image or tensor, got "
                            f"{type(image).__name__}")


def _invert_affine(m: torch.Tensor) -> torch.Tensor:
    """The inverse of a (2, 3) affine map, written out as OpenCV's ``invertAffineTransform``."""
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    if det == 0:
        raise ArgumentError("matrix must be invertible")
    a11, a22 = m[1, 1] / det, m[0, 0] / det
    a12, a21 = -m[0, 1] / det, -m[1, 0] / det
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    return torch.stack([torch.stack([a11, a12, b1]), torch.stack([a21, a22, b2])])


def warp_affine(image: torch.Tensor, matrix: Any, size: int | tuple[int, int], *,
                opencv_grid: bool = True) -> torch.Tensor:
    """Resample (C, H, W) ``image`` through the (2, 3) ``matrix`` (image -> output pixels):
    output (C, h, w), bilinear, zeros outside, like ``cv2.warpAffine(..., borderValue=0)``.

    With ``opencv_grid`` the source coordinates are rounded to 1/32 pixel the way OpenCV's
    fixed-point warp does (the row part and the column part each rounded to 1/1024, then the
    sum to 1/32), so that crops match OpenCV's to a grey level; without it they are exact."""
    h, w = (size, size) if isinstance(size, int) else size
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    if m.shape != (2, 3):
        raise ShapeError(f"matrix must be (2, 3), got {tuple(m.shape)}")
    inv = _invert_affine(m)
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    if opencv_grid:
        def coord(row: int) -> torch.Tensor:
            base = torch.round((inv[row, 1] * ys + inv[row, 2]) * 1024) + 16  # (h, 1)
            delta = torch.round(inv[row, 0] * xs * 1024)  # (1, w)
            return torch.floor((base + delta) / 32) / 32
        sx, sy = coord(0), coord(1)
    else:
        sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
        sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    big_h, big_w = image.shape[-2:]
    grid = torch.stack([2 * sx / max(big_w - 1, 1) - 1, 2 * sy / max(big_h - 1, 1) - 1], -1)
    out = F.grid_sample(image[None].to(torch.float64), grid[None], mode="bilinear",
                        padding_mode="zeros", align_corners=True)[0]
    return out.to(image.dtype)


def align_face(image: Any, landmarks: Any, size: int = 112) -> Any:
    """The ``size`` x ``size`` crop with the five ``landmarks`` (5, 2) moved onto the ArcFace
    template (insightface's ``norm_crop``). A uint8 H x W x C array or PIL image gives a
    uint8 size x size x C array; a float (C, H, W) tensor gives a (C, size, size) tensor."""
    pts = _points("landmarks", landmarks)
    if pts.shape != (5, 2):
        raise ShapeError(f"landmarks must be (5, 2), got shape {tuple(pts.shape)}")
    img, kind = _image_tensor(image)
    matrix = similarity_transform(pts, template(size))
    out = warp_affine(img, matrix, size)
    if kind == "uint8":
        return out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return out


def landmark_residual(landmarks: Any, size: int = 112) -> float:
    """Root-mean-square distance (template pixels) of the transformed landmarks to the
    template: how far from a similarity of the template the detected face is."""
    pts = _points("landmarks", landmarks)
    dst = template(size)
    m = similarity_transform(pts, dst)
    mapped = pts.numpy() @ m[:, :2].T + m[:, 2]
    return float(np.sqrt(((mapped - dst) ** 2).sum(1).mean()))
