"""DETR equals HF ``DetrForObjectDetection`` given the same weights: logits and boxes, the
Hungarian matching, the set loss (total and every term, auxiliary losses on, an image without
objects in the batch). Plus the pieces' own behaviour: the sine encoding, post-processing
without NMS, the matcher's optimality, errors at the boundaries.

The HF model is built offline from the benchmark's tiny config (``TINY_DETR``: ResNet of basic
blocks, d_model 32, 2 + 2 layers, 10 queries, 5 classes), with random frozen batch-norm
statistics; our model gets its weights through ``hub/detr.py``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.benchmarks.detection.detr import hf_tiny_detr
from paperlab.detection.detr import DETR, DETROutput, postprocess, sine_position_encoding_2d
from paperlab.detection.matcher import HungarianMatcher, matching_cost
from paperlab.detection.set_criterion import SetCriterion, detr_targets
from paperlab.errors import ArgumentError, ConfigError, ShapeError

pytestmark = pytest.mark.note("F3", reference="transformers DetrForObjectDetection")

_CACHE: dict[bool, tuple] = {}


def _pair(aux: bool):
    """(transformers, HF model, ours) for auxiliary_loss=aux; built once per module run."""
    if aux not in _CACHE:
        tr = require("transformers")
        from paperlab.hub.detr import import_detr

        torch.manual_seed(0)
        ref = hf_tiny_detr(tr, auxiliary_loss=aux, decoder_layers=3 if aux else 2)
        _CACHE[aux] = (tr, ref, import_detr(ref.config.to_dict(), ref.state_dict()))
    return _CACHE[aux]


def _images(b=2, h=64, w=48):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(b, 3, h, w, generator=g)
    valid = torch.ones(b, h, w, dtype=torch.long)
    valid[1, 40:, :] = 0  # the second image is padded at the bottom and the right
    valid[1, :, 30:] = 0
    return x, valid


def _targets(sizes, seed=5, classes=5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        c = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        out.append({"labels": torch.randint(0, classes, (n,), generator=g),
                    "boxes": torch.cat([c, wh], 1)})
    return out


def _hf_labels(targets):
    return [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]


def _no_dropout(*models):
    for m in models:
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
            for name in ("dropout", "activation_dropout", "attention_dropout"):
                if isinstance(getattr(mod, name, None), float):
                    setattr(mod, name, 0.0)


@pytest.mark.parametrize("aux", [False, True])
def test_logits_and_boxes_equal_hf(aux):
    """Eval forward with a padded image: logits and boxes to 1e-5 (float32)."""
    _, ref, ours = _pair(aux)
    x, valid = _images()
    with torch.no_grad():
        r = ref(pixel_values=x, pixel_mask=valid)
        o = ours.eval()(x, padding_mask=~valid.bool())
    assert_close(o.logits, r.logits, what="logits")
    assert_close(o.boxes, r.pred_boxes, what="boxes")


def test_initial_queries_equal_hf_decoder_inputs_embeds():
    """``queries`` is HF's ``decoder_inputs_embeds`` (the decoder's initial content)."""
    _, ref, ours = _pair(False)
    x, valid = _images()
    q = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        r = ref(pixel_values=x, pixel_mask=valid, decoder_inputs_embeds=q)
        o = ours.eval()(x, padding_mask=~valid.bool(), queries=q)
    assert_close(o.logits, r.logits, what="logits")
    assert_close(o.boxes, r.pred_boxes, what="boxes")


def test_matched_indices_equal_hf():
    """Our matcher and HF's on the same outputs: identical indices, over several batches."""
    _require_loss = require("transformers.loss.loss_for_object_detection")
    hf_matcher = _require_loss.HungarianMatcher(class_cost=1, bbox_cost=5, giou_cost=2)
    ours = HungarianMatcher()
    g = torch.Generator().manual_seed(7)
    for trial in range(5):
        logits = torch.randn(3, 12, 6, generator=g)
        boxes = torch.rand(3, 12, 4, generator=g) * 0.5 + 0.1
        targets = _targets([4, 0, 12], seed=trial)
        a = ours(logits, boxes, targets)
        b = hf_matcher({"logits": logits, "pred_boxes": boxes}, _hf_labels(targets))
        for (i1, j1), (i2, j2) in zip(a, b):
            assert torch.equal(i1, i2) and torch.equal(j1, j2)


def test_set_loss_equals_hf_with_auxiliary_losses():
    """Train-mode forward (dropout off) of both with labels, one image without objects: the
    total loss and each of HF's terms (ce, bbox, giou, cardinality; _0, _1 for the aux layers)
    to 1e-5, and the gradient of the total w.r.t. the images."""
    _, ref, ours = _pair(True)
    _no_dropout(ref, ours)
    x, valid = _images()
    targets = _targets([3, 0])
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    r = ref(pixel_values=xr, pixel_mask=valid, labels=_hf_labels(targets))
    o = ours(xo, padding_mask=~valid.bool())
    total, terms = SetCriterion(5)(o, targets)
    assert set(r.loss_dict) == set(terms)
    assert_close(total, r.loss, what="total loss")
    for k in sorted(terms):
        assert_close(terms[k], r.loss_dict[k], what=k)
    (gr,) = torch.autograd.grad(r.loss, xr)
    (go,) = torch.autograd.grad(total, xo)
    assert_close(go, gr, atol=1e-5, rtol=1e-4, what="grad of images")
    ours.eval()
    ref.eval()


def test_sine_encoding_matches_the_formula():
    """concat(PE(y), PE(x)) with y, x the normalised 1-based counts; padding is not counted."""
    valid = torch.ones(1, 3, 4, dtype=torch.bool)
    pos = sine_position_encoding_2d(valid, 8)
    assert pos.shape == (1, 3, 4, 8)
    y = torch.arange(1, 4).double() / (3 + 1e-6) * 2 * torch.pi
    x = torch.arange(1, 5).double() / (4 + 1e-6) * 2 * torch.pi
    want_y = torch.stack([y.sin(), y.cos(), (y / 100).sin(), (y / 100).cos()], -1)
    want_x = torch.stack([x.sin(), x.cos(), (x / 100).sin(), (x / 100).cos()], -1)
    assert torch.allclose(pos[0, :, 0, :4].double(), want_y, atol=1e-6)
    assert torch.allclose(pos[0, 0, :, 4:].double(), want_x, atol=1e-6)
    valid[0, :, 2:] = False  # the valid part is encoded as an image of its own
    assert torch.allclose(sine_position_encoding_2d(valid, 8)[0, :, :2],
                          sine_position_encoding_2d(torch.ones(1, 3, 2, dtype=torch.bool), 8)[0])


def test_matcher_finds_the_cheapest_assignment():
    """Against brute force over all injections on a small problem; empty targets are empty."""
    g = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(1, 5, 4, generator=g), torch.rand(1, 5, 4, generator=g) * .5 + .2
    targets = _targets([3], classes=3)
    (rows, cols), = HungarianMatcher()(logits, boxes, targets)
    c = matching_cost(logits, boxes, targets)[0]
    best = min(sum(c[p[j], j] for j in range(3)) for p in itertools.permutations(range(5), 3))
    assert torch.isclose(c[rows, cols].sum(), best)
    (r0, c0), = HungarianMatcher()(logits, boxes, _targets([0]))
    assert r0.numel() == 0 and c0.numel() == 0


def test_criterion_is_zero_box_loss_for_perfect_predictions():
    """Predictions equal to the targets on matched queries: L1 and 1 - GIoU are 0; the
    cardinality error counts the queries not predicting 'no object'."""
    t = _targets([2])
    logits = torch.full((1, 4, 6), -10.0)
    logits[0, :, 5] = 10.0  # every query "no object" ...
    boxes = torch.full((1, 4, 4), 0.5)
    boxes[0, 1], boxes[0, 3] = t[0]["boxes"][0], t[0]["boxes"][1]
    logits[0, 1, t[0]["labels"][0]] = 30.0  # ... but the two that hold the objects
    logits[0, 3, t[0]["labels"][1]] = 30.0
    _, terms = SetCriterion(5)(DETROutput(logits, boxes), t)
    assert terms["loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss_giou"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss_ce"].item() < 1e-6
    assert terms["cardinality_error"].item() == 0.0


def test_postprocess_top_k_without_nms():
    """Top-k by the best real-class probability, boxes scaled to (h, w); duplicates stay."""
    logits = torch.tensor([[[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4]] * 3])
    (det,) = postprocess(DETROutput(logits, boxes), [(100, 200)], top_k=2)
    assert det["labels"].tolist() == [0, 0]  # the two identical boxes are both kept
    assert torch.allclose(det["boxes"][0], torch.tensor([80.0, 30.0, 120.0, 70.0]))
    with pytest.raises(ShapeError):
        postprocess(DETROutput(logits, boxes), [(1, 2), (3, 4)])


def test_detr_targets_and_errors():
    t = detr_targets([{"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
                       "labels": torch.tensor([1])}], [(100, 50)])
    assert torch.allclose(t[0]["boxes"], torch.tensor([[0.4, 0.4, 0.4, 0.4]]))
    model = DETR(num_classes=2, num_queries=3, d_model=16, encoder_heads=2, decoder_heads=2,
                 encoder_ffn_dim=16, decoder_ffn_dim=16, hidden_sizes=(8,), depths=(1,),
                 embedding_size=8)
    with pytest.raises(ShapeError):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ShapeError):
        model(torch.randn(1, 3, 32, 32), padding_mask=torch.zeros(1, 16, 16, dtype=torch.bool))
    with pytest.raises(ConfigError):
        DETR(d_model=30)
    with pytest.raises(ArgumentError):
        SetCriterion(2)(model.eval()(torch.randn(1, 3, 32, 32)), [{"labels": torch.zeros(1)}])
    with pytest.raises(ShapeError):
        HungarianMatcher()(torch.randn(2, 3, 3), torch.rand(2, 3, 4), _targets([1]))


def test_recipe_trains_and_writes_coco_results(tmp_path):
    """``paperlab train detr`` in miniature: the shared Trainer, COCO mAP, results JSON."""
    import json

    from paperlab.recipes.detr import DETRRecipeConfig
    from paperlab.training.trainer import train

    cfg = DETRRecipeConfig(steps=2, batch_size=4, shapes_images=8, image_size=32, warmup=1,
                           out=str(tmp_path), progress=False)
    summary = train("detr", cfg)
    assert summary.step == 2 and 0.0 <= summary.eval["AP50"] <= 1.0
    results = json.loads((tmp_path / "detections.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])


def test_import_from_a_saved_hf_folder(tmp_path):
    """``save_pretrained`` folder (config.json + model.safetensors) -> the same outputs."""
    from paperlab.hub.base import read_hf_folder
    from paperlab.hub.detr import import_detr

    _, ref, _ = _pair(True)
    ref.save_pretrained(tmp_path)
    ours = import_detr(*read_hf_folder(tmp_path))
    x, valid = _images()
    with torch.no_grad():
        r = ref.eval()(pixel_values=x, pixel_mask=valid)
        o = ours(x, padding_mask=~valid.bool())
    assert_close(o.logits, r.logits, what="logits")
    assert_close(o.boxes, r.pred_boxes, what="boxes")


def test_importer_refuses_what_it_cannot_map():
    _, ref, _ = _pair(False)
    from paperlab.hub.base import WeightImportError
    from paperlab.hub.detr import import_detr

    cfg = ref.config.to_dict()
    with pytest.raises(ConfigError, match="timm"):
        import_detr({**cfg, "use_timm_backbone": True}, ref.state_dict())
    with pytest.raises(ConfigError, match="sine"):
        import_detr({**cfg, "position_embedding_type": "learned"}, ref.state_dict())
    state = dict(ref.state_dict())
    state["model.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightImportError, match="model.extra.weight"):
        import_detr(cfg, state)
