"""The synthetic shapes generator: determinism, held-out splits, tight boxes, parsable captions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paperlab import create
from paperlab.data.synthetic.shapes import (
    COLORS,
    DEFAULT_HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapesDataset,
    caption_words,
    class_names,
    combinations,
    make_shapes,
    parse_caption,
    shape_coverage,
)
from paperlab.errors import ArgumentError, ArgumentTypeError


def _pairs(data):
    return {(o["color"], o["shape"]) for objs in data.attributes for o in objs}


def test_same_seed_same_data_other_seed_other_data_and_prefix_stable():
    a = make_shapes(40, seed=3, objects=2, noise=0.1, antialias=True)
    b = make_shapes(40, seed=3, objects=2, noise=0.1, antialias=True)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes))
    c = make_shapes(40, seed=4, objects=2, noise=0.1, antialias=True)
    assert not torch.equal(a.images, c.images) and a.captions != c.captions
    head = make_shapes(10, seed=3, objects=2, noise=0.1, antialias=True)
    assert torch.equal(head.images, a.images[:10]) and head.captions == a.captions[:10]


def test_images_are_float32_in_unit_range_with_the_listed_shapes():
    d = make_shapes(12, seed=0, image_size=24, objects=3, noise=0.5, background=0.5)
    assert d.images.shape == (12, 3, 24, 24) and d.images.dtype == torch.float32
    assert d.images.min() >= 0.0 and d.images.max() <= 1.0
    assert len(d.captions) == len(d.attributes) == len(d.boxes) == len(d.labels) == 12
    for objs, boxes, labels in zip(d.attributes, d.boxes, d.labels):
        assert boxes.shape == (3, 4) and boxes.dtype == torch.float32
        assert labels.dtype == torch.int64 and labels.tolist() == [
            SHAPES.index(o["shape"]) for o in objs
        ]
        assert len({o["position"] for o in objs}) == 3  # distinct positions


def test_train_never_shows_a_held_out_pair_and_heldout_shows_only_them():
    train = make_shapes(400, seed=0, objects=2)
    held = make_shapes(200, seed=0, objects=2, split="heldout")
    everything = make_shapes(600, seed=0, split="all")
    assert not _pairs(train) & DEFAULT_HELD_OUT
    assert _pairs(train) == {(c, s) for c in COLORS for s in SHAPES} - DEFAULT_HELD_OUT
    assert _pairs(held) == DEFAULT_HELD_OUT
    assert _pairs(everything) == {(c, s) for c in COLORS for s in SHAPES}
    # every held-out colour and shape is still seen in training, only in other pairs
    assert {c for c, _ in DEFAULT_HELD_OUT} <= {c for c, _ in _pairs(train)}
    assert {s for _, s in DEFAULT_HELD_OUT} <= {s for _, s in _pairs(train)}


def test_custom_held_out_and_split_combinations():
    custom = {("cyan", "square")}
    assert combinations("heldout", custom) == [("cyan", "square")]
    assert len(combinations("train", custom)) == len(COLORS) * len(SHAPES) - 1
    held = make_shapes(20, seed=1, split="heldout", held_out=custom)
    assert all(c.split()[2:4] == ["cyan", "square"] for c in held.captions)
    assert ("cyan", "square") not in _pairs(make_shapes(300, seed=1, held_out=custom))


def _ink(image: torch.Tensor, background: float) -> torch.Tensor:
    """(S, S) bool: pixels that differ from the flat background."""
    return (image - background).abs().amax(dim=0) > 1e-6


def _box_of(mask: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]


@pytest.mark.parametrize("antialias", [False, True])
def test_single_object_box_is_exactly_the_drawn_pixels(antialias):
    d = make_shapes(60, seed=5, image_size=32, background=0.3, antialias=antialias)
    for image, box in zip(d.images, d.boxes):
        assert box[0].tolist() == _box_of(_ink(image, 0.3))


def test_multi_object_boxes_are_disjoint_tight_and_cover_all_ink():
    d = make_shapes(40, seed=6, image_size=40, objects=3, antialias=True)
    for image, boxes in zip(d.images, d.boxes):
        ink = _ink(image, 0.0)
        inside = torch.zeros_like(ink)
        for x1, y1, x2, y2 in boxes.int().tolist():
            region = torch.zeros_like(ink)
            region[y1:y2, x1:x2] = True
            assert not (inside & region).any(), "boxes overlap"
            inside |= region
            # tight: the box is exactly the bounding box of the ink inside it
            assert _box_of(ink & region) == [x1, y1, x2, y2]
        assert not (ink & ~inside).any(), "ink outside every box"


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    image_size=st.integers(16, 48),
    objects=st.integers(1, 4),
    antialias=st.booleans(),
    split=st.sampled_from(["train", "heldout", "all"]),
)
def test_any_setting_gives_tight_boxes_and_parsable_captions(
    seed, image_size, objects, antialias, split
):
    d = make_shapes(
        2,
        seed=seed,
        image_size=image_size,
        objects=objects,
        split=split,
        antialias=antialias,
        background=0.5,
    )
    for image, boxes, caption, objs in zip(d.images, d.boxes, d.captions, d.attributes):
        assert parse_caption(caption) == objs
        ink = _ink(image, 0.5)
        covered = torch.zeros_like(ink)
        for x1, y1, x2, y2 in boxes.int().tolist():
            assert 0 <= x1 < x2 <= image_size and 0 <= y1 < y2 <= image_size
            region = torch.zeros_like(ink)
            region[y1:y2, x1:x2] = True
            assert _box_of(ink & region) == [x1, y1, x2, y2]
            covered |= region
        assert not (ink & ~covered).any()


def test_solid_pixels_have_the_named_colour():
    d = make_shapes(30, seed=7, background=0.0)
    for image, (obj,), box in zip(d.images, d.attributes, d.boxes):
        x1, y1, x2, y2 = box[0].int().tolist()
        centre = image[:, (y1 + y2) // 2, (x1 + x2) // 2]
        assert torch.allclose(centre, torch.tensor(COLORS[obj["color"]]), atol=1e-6)


@pytest.mark.parametrize(
    "shape, area",
    [
        ("circle", math.pi),
        ("square", 4.0),
        ("triangle", 2.0),
        ("diamond", 2.0),
        ("cross", 2 * (2 * 2 / 3) - (2 / 3) ** 2),
    ],
)
def test_drawn_area_matches_the_shape_formula(shape, area):
    r = 20.0  # half-extent in pixels; area in units of r^2
    cover = shape_coverage(shape, 32.3, 31.8, r, 64, antialias=True)
    assert cover.sum() / r**2 == pytest.approx(area, rel=0.02)


def test_captions_parse_back_to_the_attributes():
    d = make_shapes(50, seed=8, objects=2, split="all")
    words = set(caption_words())
    for caption, objs in zip(d.captions, d.attributes):
        assert parse_caption(caption) == objs
        assert set(caption.split()) <= words
    assert parse_caption("a large red circle at the top left") == [
        {"shape": "circle", "color": "red", "size": "large", "position": "top left"}
    ]
    with pytest.raises(ArgumentError, match="'a huge red circle at the top left'"):
        parse_caption("a huge red circle at the top left")


def test_class_names_and_targets_agree():
    assert class_names("shape") == list(SHAPES) and class_names("color") == list(COLORS)
    assert class_names("size") == list(SIZES) and class_names("position") == list(POSITIONS)
    names = class_names("color_shape")
    assert len(names) == len(COLORS) * len(SHAPES) and names[0] == "red circle"
    d = make_shapes(25, seed=9, split="all")
    for kind in ("shape", "color", "color_shape", "size", "position"):
        ids = d.targets(kind)
        assert ids.dtype == torch.int64 and ids.shape == (25,)
        for i, (caption, k) in enumerate(zip(d.captions, ids.tolist())):
            assert class_names(kind)[k] in caption, (kind, i)
    with pytest.raises(ArgumentError, match="exactly one object"):
        make_shapes(2, seed=0, objects=2).targets("shape")
    with pytest.raises(ArgumentError, match="kind must be one of"):
        class_names("texture")


def test_dataset_wrapper_and_registry_entry():
    data = make_shapes(6, seed=2)
    image, caption = ShapesDataset(data)[1]
    assert torch.equal(image, data.images[1]) and caption == data.captions[1]
    _, label = ShapesDataset(data, target="color_shape")[2]
    assert label == data.targets("color_shape")[2].item()
    _, det = ShapesDataset(data, target="detection", transform=lambda x: 1 - x)[3]
    assert torch.equal(det["boxes"], data.boxes[3]) and torch.equal(det["labels"], data.labels[3])
    flipped, _ = ShapesDataset(data, transform=lambda x: 1 - x)[0]
    assert torch.equal(flipped, 1 - data.images[0])
    ds = create("dataset", "shapes", n=5, seed=2, target="shape", image_size=16)
    assert len(ds) == 5 and ds[0][0].shape == (3, 16, 16) and isinstance(ds[0][1], int)
    with pytest.raises(ArgumentError, match="target must be"):
        ShapesDataset(data, target="boxes")
    with pytest.raises(ArgumentTypeError, match="ShapesData"):
        ShapesDataset([1, 2])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=8), "image_size must be >= 16"),
        (dict(split="test"), "split must be one of"),
        (dict(objects=5), "objects must be <= 4"),
        (dict(held_out={("red", "hexagon")}), "held_out entries"),
        (dict(held_out="red circle"), "held_out must be a set"),
        (dict(split="heldout", held_out=set()), "no \\(color, shape\\) combination"),
        (dict(noise=-0.1), "noise must be >= 0"),
        (dict(background=2.0), "background must be in"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises((ArgumentError, ArgumentTypeError), match=message):
        make_shapes(3, seed=0, **kwargs)
