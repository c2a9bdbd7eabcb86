"""Faster R-CNN equals torchvision's ``FasterRCNN`` given the same weights, stage by stage.

torchvision's model is built with ``weights=None`` around our ``TinyBackbone`` (one level, and
two levels pooled by multi-scale RoI align), its ``state_dict`` is loaded into ours, and on the
same images we compare: the transform's padded batch and sizes, the anchors, the RPN's
proposals, the RoI heads' class logits and box deltas on those proposals, and the final
detections (boxes 1e-4 px, identical labels). In training mode, with the global RNG seeded the
same before each model (both draw the same random numbers in the same order), the same four
losses and the same parameter gradients.
"""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.data.formats.coco_detection import detection_data
from paperlab.detection.anchors import AnchorGenerator, base_anchors
from paperlab.detection.faster_rcnn import FasterRCNN, TinyBackbone
from paperlab.errors import ArgumentError

pytestmark = pytest.mark.note("F1", reference="torchvision.models.detection.FasterRCNN")

SIZES = {1: ((16, 32),), 2: ((16,), (32,))}
RATIOS = {1: ((0.5, 1.0, 2.0),), 2: ((0.5, 1.0, 2.0),) * 2}
SETTINGS = dict(min_size=64, max_size=96, rpn_pre_nms_top_n_test=300,
                rpn_post_nms_top_n_test=100, rpn_pre_nms_top_n_train=300,
                rpn_post_nms_top_n_train=100, representation_size=64,
                box_batch_size_per_image=32)


def _pair(levels: int, num_classes: int = 6):
    tvd = require("torchvision.models.detection")
    ops = require("torchvision.ops")
    torch.manual_seed(levels)
    backbone = TinyBackbone(out_channels=16, width=16, levels=levels)
    names = [str(i) for i in range(levels)]
    ref = tvd.FasterRCNN(
        backbone, None,
        rpn_anchor_generator=tvd.anchor_utils.AnchorGenerator(SIZES[levels], RATIOS[levels]),
        box_roi_pool=ops.MultiScaleRoIAlign(names, 7, 2),
        box_head=tvd.faster_rcnn.TwoMLPHead(16 * 49, 64),
        box_predictor=tvd.faster_rcnn.FastRCNNPredictor(64, num_classes),
        **{k: v for k, v in SETTINGS.items() if k != "representation_size"})
    with torch.no_grad():  # spread the scores so ranks and NMS decisions are not ties
        for name, p in ref.named_parameters():  # (the backbone keeps its own init)
            if not name.startswith("backbone."):
                p.normal_(0, 0.2 if p.dim() > 1 else 0.05)
    ours = FasterRCNN(TinyBackbone(out_channels=16, width=16, levels=levels), num_classes,
                      anchor_sizes=SIZES[levels], aspect_ratios=RATIOS[levels],
                      featmap_names=names, **SETTINGS)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _images():
    ds = detection_data(n=3, seed=3, image_size=64, objects=2)
    images, targets = [], []
    for i, (im, t) in enumerate(ds[k] for k in range(3)):
        if i == 1:  # another size and aspect: resize and padding do something
            im = torch.nn.functional.interpolate(im[None], size=(48, 80), mode="bilinear")[0]
            t = {**t, "boxes": t["boxes"] * torch.tensor([80 / 64, 48 / 64] * 2)}
        images.append(im)
        targets.append({"boxes": t["boxes"], "labels": t["labels"]})
    targets[2] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return images, targets


@pytest.mark.parametrize("levels", [1, 2])
def test_eval_stage_by_stage_equals_torchvision(levels):
    require("torchvision.models.detection.image_list")
    ours, ref = _pair(levels)
    ours.eval()
    ref.eval()
    images, _ = _images()
    with torch.no_grad():
        batch, sizes, _ = ours.transform(images)
        ref_list, _ = ref.transform(images)
        assert sizes == ref_list.image_sizes
        assert_close(batch, ref_list.tensors, atol=1e-6, what="transform")
        features = ours.features(batch)
        ref_features = ref.backbone(ref_list.tensors)
        maps = list(features.values())
        anchors = ours.rpn.anchor_generator(batch, maps)
        ref_anchors = ref.rpn.anchor_generator(ref_list, list(ref_features.values()))
        assert_close(anchors, ref_anchors, atol=0, rtol=0, what="anchors")
        proposals, _ = ours.rpn(batch, sizes, features)
        ref_proposals, _ = ref.rpn(ref_list, ref_features)
        assert [len(p) for p in proposals] == [len(p) for p in ref_proposals]
        assert_close(proposals, ref_proposals, atol=1e-4, rtol=0, what="rpn proposals")
        rh = ref.roi_heads
        pooled = ours.roi_heads.box_roi_pool(features, ref_proposals, sizes)
        ref_pooled = rh.box_roi_pool(ref_features, ref_proposals, ref_list.image_sizes)
        assert_close(pooled, ref_pooled, atol=1e-6 * float(ref_pooled.abs().max()), rtol=0,
                     what="multi-scale roi align")
        logits, deltas = ours.roi_heads.box_outputs(features, ref_proposals, sizes)
        ref_logits, ref_deltas = rh.box_predictor(rh.box_head(ref_pooled))
        # float32 rounding of the pooled features (~2e-7 of their scale) passes through fc6
        # and fc7: the tolerance is 1e-6 of each output's largest magnitude
        for what, a, b in (("class logits", logits, ref_logits),
                           ("box deltas", deltas, ref_deltas)):
            assert_close(a, b, atol=1e-6 * float(b.abs().max()), rtol=0, what=what)
        dets = ours.roi_heads(features, ref_proposals, sizes)[0]
        ref_dets = rh(ref_features, ref_proposals, ref_list.image_sizes)[0]
        final, ref_final = ours(images), ref(images)
    for stage, a, b in (("roi head detections", dets, ref_dets), ("final", final, ref_final)):
        for d, r in zip(a, b):
            assert torch.equal(d["labels"], r["labels"]), stage
            assert_close(d["boxes"], r["boxes"], atol=1e-4, rtol=0, what=f"{stage} boxes")
            assert_close(d["scores"], r["scores"], atol=1e-6, what=f"{stage} scores")
    assert sum(len(d["labels"]) for d in final) > 0  # something was compared


@pytest.mark.parametrize("levels", [1, 2])
def test_train_losses_and_gradients_equal_torchvision(levels):
    ours, ref = _pair(levels)
    ours.train()
    ref.train()
    images, targets = _images()
    torch.manual_seed(11)
    losses = ours(images, targets)
    torch.manual_seed(11)
    ref_losses = ref(images, [dict(t) for t in targets])
    assert list(losses) == list(ref_losses)
    assert_close(losses, ref_losses, what="losses")
    sum(losses.values()).backward()
    sum(ref_losses.values()).backward()
    grads = [p.grad for p in ours.parameters()]
    ref_grads = [p.grad for p in ref.parameters()]
    assert_close(grads, ref_grads, atol=1e-5, rtol=1e-4, what="parameter gradients")


def test_anchor_layout():
    # ratio-major base anchors, rounded: ratio 0.5 (wide) first
    base = base_anchors((16, 32), (0.5, 1.0))
    assert base.tolist() == [[-11, -6, 11, 6], [-23, -11, 23, 11], [-8, -8, 8, 8],
                             [-16, -16, 16, 16]]
    gen = AnchorGenerator(((8,),), ((1.0,),))
    (anchors,) = gen(torch.zeros(1, 3, 16, 32), [torch.zeros(1, 4, 2, 4)])
    # cell (y, x) at (x * 8, y * 8), row by row
    assert anchors[:5, :2].tolist() == [[-4, -4], [4, -4], [12, -4], [20, -4], [-4, 4]]


def test_errors_are_named():
    model = FasterRCNN(TinyBackbone(16, 16), 3, anchor_sizes=((16,),), min_size=32, max_size=64)
    with pytest.raises(ArgumentError, match="one target per image"):
        model([torch.rand(3, 32, 32)])
    with pytest.raises(ArgumentError, match="no area"):
        model([torch.rand(3, 32, 32)], [{"boxes": torch.tensor([[5.0, 5, 5, 9]]),
                                         "labels": torch.tensor([1])}])
    with pytest.raises(ArgumentError, match="out_channels"):
        FasterRCNN(torch.nn.Identity(), 3)
