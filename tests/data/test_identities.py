"""Synthetic identities: deterministic per (seed, identity, instance), exact landmarks (the
pose maps canonical landmarks onto them, and warping a posed image back gives the unposed
one), nuisances present, verification pairs well-formed, bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlab import create
from paperlab.data.synthetic.identities import (
    CANONICAL_LANDMARKS,
    IdentityImages,
    IdentityStyle,
    SyntheticIdentities,
    pose_matrix,
    verification_pairs,
)
from paperlab.errors import ArgumentError
from paperlab.face.align import ARCFACE_TEMPLATE, similarity_transform, warp_affine


def test_deterministic_in_any_order_and_batch():
    ds = IdentityImages(30, 5, image_size=24, seed=3)
    a, la, ma = ds.batch([7, 0, 149, 33])
    b, lb, mb = ds.batch([33, 149])
    assert torch.equal(a[3], b[0]) and torch.equal(a[2], b[1]) and torch.equal(ma[2], mb[1])
    img, label, lm = ds[149]
    assert torch.equal(img, a[2]) and label == 29 and torch.equal(lm, ma[2])
    assert a.shape == (4, 3, 24, 24) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    other = IdentityImages(30, 5, image_size=24, seed=4).batch([7])[0]
    assert not torch.equal(other[0], a[0])


def test_images_differ_between_instances_and_identities():
    ds = IdentityImages(10, 4, image_size=24)
    x, labels, _ = ds.batch(range(40))
    flat = x.flatten(1)
    d = torch.cdist(flat, flat)
    assert (d + torch.eye(40) * 1e9).min() > 0.1  # no two images are the same
    assert labels.tolist() == [i // 4 for i in range(40)]


def test_landmarks_are_the_pose_of_the_canonical_landmarks():
    world = SyntheticIdentities(20, image_size=32, seed=1)
    ids, inst = torch.arange(20), torch.arange(20) * 3
    _, lm = world.render(ids, inst)
    m = pose_matrix(world, ids, inst)
    canon = world.canonical_landmarks(ids).double()
    mapped = canon @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    torch.testing.assert_close(mapped.float(), lm, atol=1e-4, rtol=0)
    # canonical landmarks are the ArcFace template / 112, jittered per identity
    off = (canon - torch.as_tensor(CANONICAL_LANDMARKS)).abs()
    assert off.max() <= 0.03 + 1e-9 and off.max() > 0.01


def test_warping_a_posed_image_back_gives_the_unposed_one():
    clean = dict(max_blur=0.0, max_noise=0.0, occlusion=0.0, illumination=0.0)
    posed = SyntheticIdentities(5, image_size=64, seed=2, style=IdentityStyle(**clean))
    still = SyntheticIdentities(5, image_size=64, seed=2, style=IdentityStyle(
        max_rotation=0.0, max_scale=0.0, max_shift=0.0, **clean))
    x, lm = posed.render([3], [5])
    y, lm0 = still.render([3], [5])  # same identity, same background, no pose
    m = similarity_transform(lm[0].double(), lm0[0].double())  # posed pixels -> unposed
    back = warp_affine(x[0].double(), m, 64, opencv_grid=False).float()
    inner = (slice(None), slice(16, 48), slice(16, 48))  # the face, away from the borders
    assert (back[inner] - y[0][inner]).abs().mean() < 0.02
    assert (x[0][inner] - y[0][inner]).abs().mean() > 0.05  # the pose did move it
    # and the landmarks align onto the ArcFace template like a real face's
    crop_m = similarity_transform(lm[0].double(), ARCFACE_TEMPLATE * 64 / 112)
    mapped = lm[0].double().numpy() @ crop_m[:, :2].T + crop_m[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE * 64 / 112).max() < 64 * 0.06


def test_nuisances_vary_pose_light_and_occlusion():
    world = SyntheticIdentities(3, image_size=32, seed=0, style=IdentityStyle(occlusion=0.5))
    n = world._nuisances(np.zeros(200, dtype=np.int64), np.arange(200))
    assert n["angle"].abs().max() > np.radians(10) and n["occlude"].mean().item() > 0.3
    assert n["gain"].std() > 0.1 and n["blur"].max() > 0.5


def test_verification_pairs():
    i1, i2, same = verification_pairs(50, 6, 400, seed=1)
    assert same.sum() == 200 and len(i1) == 400
    assert ((i1 // 6 == i2 // 6) == same).all()  # same pairs share the identity
    assert (i1 != i2).all()  # never an image with itself
    assert (i1 < 300).all() and (i2 < 300).all()


def test_registry_and_held_out_identities():
    ds = create("dataset", "synthetic-identities", num_identities=100, images_per_identity=2,
                identities=range(90, 100), image_size=16)
    assert len(ds) == 20
    labels, ids, inst = ds.index([0, 19])
    assert labels.tolist() == [0, 9] and ids.tolist() == [90, 99] and inst.tolist() == [0, 1]


def test_bad_arguments_are_named():
    ds = IdentityImages(5, 2, image_size=16)
    with pytest.raises(ArgumentError, match="item"):
        ds.batch([10])
    with pytest.raises(ArgumentError, match="identities"):
        ds.world.render([5], [0])
    with pytest.raises(ArgumentError, match="instances"):
        ds.world.render([1, 2], [0])
    with pytest.raises(ArgumentError, match="image_size"):
        SyntheticIdentities(5, image_size=4)
