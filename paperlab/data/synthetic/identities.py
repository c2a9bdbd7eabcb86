"""Synthetic face identities: many fixed face-like patterns, each seen under random pose,
illumination, blur, noise and occlusion, with the exact five landmarks of every image.

The idea
--------
Face recognition (notes E1-E3) is classification over identities during training and
verification of *unseen* identities at test time. Real face data cannot ship with the
library, so this module makes a world where the truth is known exactly. Identity ``i`` is a
fixed random pattern in a canonical frame (the unit square, y down):

- an oval face of its own shape and skin colour on a per-image background;
- its own five landmarks (left eye, right eye, nose tip, left and right mouth corner): the
  ArcFace template's positions / 112, moved by up to ``landmark_jitter`` per identity;
- dark eyes, a nose and a mouth drawn at those landmarks, with identity-specific sizes;
- ``blobs`` Gaussian blobs of identity-specific position, width and colour (its "texture").

An image of identity i is that pattern under a random similarity pose (rotation up to
``max_rotation`` degrees, scale 1 +- ``max_scale``, shift up to ``max_shift`` of the image),
illumination (gain, offset and a linear gradient), Gaussian blur (sigma up to ``max_blur``
pixels), Gaussian noise (std up to ``max_noise``) and, with probability ``occlusion``, a grey
rectangle over part of the face. The image is rendered directly in the posed frame (each
pixel centre mapped back to the canonical frame), so the landmarks of every image are exact:
the canonical landmarks through the same pose.

Coordinates: pixel (row r, column c) has its centre at (x, y) = (c, r); landmarks are (x, y)
pixels of the S x S image, the convention of ``paperlab.face.align``.

Determinism: image (identity, instance) depends only on ``(seed, identity, instance)`` and
the options (a counter-based hash, not a shared random stream), so any subset renders the same
images in any order or batch.

Shapes: ``render(identities, instances)`` gives images (B, 3, S, S) float32 in [0, 1] and
landmarks (B, 5, 2) float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from paperlab.errors import ArgumentError, check_int
from paperlab.registry import export_dataset

# insightface's arcface_dst / 112: the canonical landmark positions in the unit square
CANONICAL_LANDMARKS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64) / 112.0

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash_uniform(*keys: Any) -> np.ndarray:
    """Uniform [0, 1) numbers from integer keys (broadcast numpy arrays) by splitmix64."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint64)
            h = (h ^ k) * np.uint64(0xBF58476D1CE4E5B9)
            h = h ^ (h >> np.uint64(31))
            h = (h + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class IdentityStyle:
    """The nuisance ranges of the rendered images (see the module docstring)."""

    max_rotation: float = 15.0
    max_scale: float = 0.1
    max_shift: float = 0.06
    max_blur: float = 0.8
    max_noise: float = 0.04
    occlusion: float = 0.15
    illumination: float = 0.3
    landmark_jitter: float = 0.03
    blobs: int = 10


class SyntheticIdentities:
    """``num_identities`` face-like identities rendered at ``image_size`` pixels."""

    def __init__(self, num_identities: int, *, image_size: int = 32, seed: int = 0,
                 style: IdentityStyle | None = None) -> None:
        self.num_identities = check_int("num_identities", num_identities, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=8)
        self.seed = check_int("seed", seed, minimum=0)
        self.style = style or IdentityStyle()
        self._tables = self._identity_tables()

    # -- per identity -------------------------------------------------------------------------

    def _u(self, ids: np.ndarray, field: int, count: int) -> np.ndarray:
        """(len(ids), count) uniforms of identity parameter ``field``."""
        return _hash_uniform(self.seed, 1, ids[:, None], field, np.arange(count)[None, :])

    def _identity_tables(self) -> dict[str, torch.Tensor]:
        st, ids = self.style, np.arange(self.num_identities)
        lm = CANONICAL_LANDMARKS[None] + (self._u(ids, 0, 10).reshape(-1, 5, 2) * 2 - 1) \
            * st.landmark_jitter
        skin = 0.35 + 0.5 * self._u(ids, 1, 3)
        oval = np.stack([0.30 + 0.08 * self._u(ids, 2, 1)[:, 0],
                         0.40 + 0.08 * self._u(ids, 3, 1)[:, 0]], 1)
        k = st.blobs
        centres = 0.2 + 0.6 * self._u(ids, 4, 2 * k).reshape(-1, k, 2)
        widths = 0.04 + 0.10 * self._u(ids, 5, k)
        colours = (self._u(ids, 6, 3 * k).reshape(-1, k, 3) * 2 - 1) * 0.35
        features = 0.6 + 0.8 * self._u(ids, 7, 3)  # eye, nose, mouth sizes
        t = {"landmarks": lm, "skin": skin, "oval": oval, "centres": centres,
             "widths": widths, "colours": colours, "features": features}
        return {name: torch.as_tensor(v, dtype=torch.float32) for name, v in t.items()}

    def canonical_landmarks(self, identities: Any) -> torch.Tensor:
        """(B, 5, 2) landmarks of the identities in the canonical unit square."""
        return self._tables["landmarks"][self._ids(identities)]

    def _ids(self, identities: Any) -> torch.Tensor:
        ids = torch.as_tensor(identities, dtype=torch.int64).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_identities):
            raise ArgumentError(f"identities must lie in [0, {self.num_identities}), got "
                                f"[{int(ids.min())}, {int(ids.max())}]")
        return ids

    # -- per image ----------------------------------------------------------------------------

    def _nuisances(self, ids: np.ndarray, inst: np.ndarray) -> dict[str, torch.Tensor]:
        u = _hash_uniform(self.seed, 2, ids[:, None], inst[:, None], np.arange(20)[None, :])
        st = self.style
        pose = {
            "angle": np.radians((u[:, 0] * 2 - 1) * st.max_rotation),
            "scale": 1.0 + (u[:, 1] * 2 - 1) * st.max_scale,
            "shift": (u[:, 2:4] * 2 - 1) * st.max_shift,
        }
        out = {
            **pose,
            "background": 0.1 + 0.8 * u[:, 4:7],
            "gain": 1.0 + (u[:, 7] * 2 - 1) * st.illumination,
            "offset": (u[:, 8] * 2 - 1) * st.illumination * 0.3,
            "gradient": (u[:, 9:11] * 2 - 1) * st.illumination,
            "blur": u[:, 11] * st.max_blur,
            "noise": u[:, 12] * st.max_noise,
            "occlude": (u[:, 13] < st.occlusion).astype(np.float64),
            "occ_box": u[:, 14:18],
            "occ_grey": u[:, 18],
            "noise_seed": (u[:, 19] * 2**31).astype(np.int64),
        }
        return {k: torch.as_tensor(v) for k, v in out.items()}

    def render(self, identities: Any, instances: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, S, S) float32 in [0, 1] and exact landmarks (B, 5, 2) (x, y pixels)
        of image ``instances[b]`` of identity ``identities[b]``."""
        ids = self._ids(identities)
        inst = torch.as_tensor(instances, dtype=torch.int64).reshape(-1)
        if inst.shape != ids.shape:
            raise ArgumentError(f"instances must match identities in length, got "
                                f"{inst.numel()} and {ids.numel()}")
        if inst.numel() and int(inst.min()) < 0:
            raise ArgumentError("instances must be >= 0")
        n = self._nuisances(ids.numpy(), inst.numpy())
        tb = {k: v[ids].double() for k, v in self._tables.items()}
        s = self.image_size
        b = ids.numel()
        # pose: canonical c -> unit image coords a = R (c - 1/2) * scale + 1/2 + shift
        cos, sin = torch.cos(n["angle"]), torch.sin(n["angle"])
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        rot = rot * n["scale"][:, None, None]  # (B, 2, 2)
        lm_unit = (tb["landmarks"] - 0.5) @ rot.transpose(1, 2) + 0.5 + n["shift"][:, None]
        landmarks = lm_unit * s - 0.5
        # every pixel centre back to the canonical frame
        grid = (torch.arange(s, dtype=torch.float64) + 0.5) / s
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        a = torch.stack([xx, yy], -1).reshape(1, -1, 2) - 0.5 - n["shift"][:, None]
        c = a @ torch.linalg.inv(rot).transpose(1, 2) + 0.5  # (B, S*S, 2)
        img = self._paint(c, tb, n) * n["gain"][:, None, None]
        img = img + n["offset"][:, None, None]
        img = img + ((c - 0.5) * n["gradient"][:, None]).sum(-1, keepdim=True)
        img = img.permute(0, 2, 1).reshape(b, 3, s, s)
        img = self._occlude(img, n)
        img = self._blur(img, n["blur"])
        noise = torch.stack([torch.randn(3, s, s, generator=torch.Generator().manual_seed(
            int(sd)), dtype=torch.float64) for sd in n["noise_seed"]]) if b else img
        img = img + noise * n["noise"][:, None, None, None]
        return img.clamp(0, 1).float(), landmarks.float()

    def _paint(self, c: torch.Tensor, tb: dict[str, torch.Tensor],
               n: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S*S, 3) colours of the canonical points c (B, S*S, 2)."""
        centre = torch.tensor([0.5, 0.55], dtype=torch.float64)
        q = (c - centre) / tb["oval"][:, None]
        r = (q * q).sum(-1)
        inside = torch.sigmoid((1.0 - r) * 12.0)[..., None]
        col = inside * tb["skin"][:, None] + (1 - inside) * n["background"][:, None]
        mu = tb["centres"]  # (B, K, 2); |c - mu|^2 by one batched matrix product
        d2 = (c * c).sum(-1, keepdim=True) + (mu * mu).sum(-1)[:, None] \
            - 2 * torch.bmm(c, mu.transpose(1, 2))  # (B, P, K)
        blobs = torch.bmm(torch.exp(-d2 / (2 * tb["widths"][:, None] ** 2)), tb["colours"])
        col = col + inside * blobs
        lm, fs = tb["landmarks"], tb["features"]

        cx, cy = c[..., 0], c[..., 1]

        def ellipse(centre: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
            dx = (cx - centre[:, None, 0]) / sx[:, None]
            dy = (cy - centre[:, None, 1]) / sy[:, None]
            return torch.exp(-0.5 * (dx * dx + dy * dy))[..., None]

        eye_s = 0.035 * fs[:, 0]
        dark = ellipse(lm[:, 0], eye_s, eye_s * 0.6) + ellipse(lm[:, 1], eye_s, eye_s * 0.6)
        nose = ellipse(lm[:, 2], 0.025 * fs[:, 1], 0.04 * fs[:, 1])
        mouth_c = (lm[:, 3] + lm[:, 4]) / 2
        half = (lm[:, 4, 0] - lm[:, 3, 0]).abs() / 2
        mouth = ellipse(mouth_c, half * fs[:, 2].clamp(max=1.2), 0.02 * fs[:, 2])
        col = col * (1 - 0.8 * dark.clamp(max=1)) * (1 - 0.4 * nose)
        lip = torch.tensor([0.55, 0.1, 0.15], dtype=torch.float64)
        return col * (1 - mouth) + mouth * lip

    def _occlude(self, img: torch.Tensor, n: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.image_size
        box = n["occ_box"]
        x0, y0 = box[:, 0] * 0.7, box[:, 1] * 0.7
        x1, y1 = x0 + 0.15 + 0.3 * box[:, 2], y0 + 0.15 + 0.3 * box[:, 3]
        g = (torch.arange(s, dtype=torch.float64) + 0.5) / s
        inx = (g[None] >= x0[:, None]) & (g[None] < x1[:, None])  # (B, S)
        iny = (g[None] >= y0[:, None]) & (g[None] < y1[:, None])
        m = (iny[:, :, None] & inx[:, None, :]) & (n["occlude"][:, None, None] > 0)
        return torch.where(m[:, None], n["occ_grey"][:, None, None, None], img)

    def _blur(self, img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur, one sigma per image (grouped convolution)."""
        b, ch, s, _ = img.shape
        if b == 0:
            return img
        radius = 2
        x = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-x[None] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (B, 5): sigma ~ 0 gives the identity kernel
        k = k.repeat_interleave(ch, 0)
        flat = F.pad(img.reshape(1, b * ch, s, s), (radius,) * 4, mode="replicate")
        flat = F.conv2d(flat, k[:, None, None, :], groups=b * ch)
        flat = F.conv2d(flat, k[:, None, :, None], groups=b * ch)
        return flat.reshape(b, ch, s, s)


@export_dataset("synthetic-identities", note="E1-E3", tags=("face", "synthetic"))
class IdentityImages(Dataset):
    """``images_per_identity`` images of each of the identities ``identities`` (a range or a
    list of ids of a ``SyntheticIdentities`` world): item k is (image (3, S, S), label,
    landmarks (5, 2)) with label the position of its identity in ``identities``, so a
    held-out range of identities is its own 0-based label space."""

    def __init__(self, num_identities: int = 1000, images_per_identity: int = 20, *,
                 identities: Any = None, image_size: int = 32, seed: int = 0,
                 first_instance: int = 0, style: IdentityStyle | None = None) -> None:
        self.world = SyntheticIdentities(num_identities, image_size=image_size, seed=seed,
                                         style=style)
        ids = range(num_identities) if identities is None else identities
        self.identities = self.world._ids(list(ids))
        self.per_identity = check_int("images_per_identity", images_per_identity, minimum=1)
        self.first_instance = check_int("first_instance", first_instance, minimum=0)

    def __len__(self) -> int:
        return len(self.identities) * self.per_identity

    def index(self, items: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(labels, identity ids, instance ids) of dataset items."""
        k = torch.as_tensor(items, dtype=torch.int64).reshape(-1)
        if k.numel() and (int(k.min()) < 0 or int(k.max()) >= len(self)):
            raise ArgumentError(f"item must lie in [0, {len(self)}), got {k.tolist()[:4]}")
        labels = k // self.per_identity
        return labels, self.identities[labels], k % self.per_identity + self.first_instance

    def batch(self, items: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (B, 3, S, S), labels (B,), landmarks (B, 5, 2)) of several items at once."""
        labels, ids, inst = self.index(items)
        images, landmarks = self.world.render(ids, inst)
        return images, labels, landmarks

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        images, labels, landmarks = self.batch([k])
        return images[0], int(labels[0]), landmarks[0]


def verification_pairs(num_identities: int, images_per_identity: int, num_pairs: int, *,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_pairs`` pairs of items of an ``IdentityImages`` set, half same-identity (two
    different images) and half different-identity, in a seeded order: (items1, items2, same)."""
    num_identities = check_int("num_identities", num_identities, minimum=2)
    per = check_int("images_per_identity", images_per_identity, minimum=2)
    num_pairs = check_int("num_pairs", num_pairs, minimum=2)
    g = torch.Generator().manual_seed(seed)
    half = num_pairs // 2
    ident = torch.randint(0, num_identities, (half,), generator=g)
    a = torch.randint(0, per, (half,), generator=g)
    b = (a + torch.randint(1, per, (half,), generator=g)) % per
    same1, same2 = ident * per + a, ident * per + b
    rest = num_pairs - half
    i1 = torch.randint(0, num_identities, (rest,), generator=g)
    i2 = (i1 + torch.randint(1, num_identities, (rest,), generator=g)) % num_identities
    diff1 = i1 * per + torch.randint(0, per, (rest,), generator=g)
    diff2 = i2 * per + torch.randint(0, per, (rest,), generator=g)
    items1, items2 = torch.cat([same1, diff1]), torch.cat([same2, diff2])
    same = torch.cat([torch.ones(half, dtype=torch.bool), torch.zeros(rest, dtype=torch.bool)])
    order = torch.randperm(num_pairs, generator=g)
    return items1[order], items2[order], same[order]


def pose_matrix(world: SyntheticIdentities, identities: Any, instances: Any) -> torch.Tensor:
    """(B, 2, 3) the similarity from canonical unit coordinates to image pixels of each image
    (so that landmarks = canonical landmarks through it)."""
    ids = world._ids(identities)
    inst = torch.as_tensor(instances, dtype=torch.int64).reshape(-1)
    n = world._nuisances(ids.numpy(), inst.numpy())
    s = world.image_size
    cos, sin = torch.cos(n["angle"]), torch.sin(n["angle"])
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    rot = rot * n["scale"][:, None, None] * s
    t = (0.5 + n["shift"]) * s - 0.5 - (rot @ torch.full((2,), 0.5, dtype=torch.float64))
    return torch.cat([rot, t[:, :, None]], -1)

