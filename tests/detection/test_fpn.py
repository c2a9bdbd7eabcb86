"""The FPN equals torchvision's ``FeaturePyramidNetwork`` given the same weights, alone and
inside Faster R-CNN.

torchvision's FPN with the same ``in_channels_list`` (with and without ``LastLevelMaxPool``)
has its ``state_dict`` loaded into ours; on maps of odd and even sizes the outputs agree to
1e-6 (float32). End to end: our ``FasterRCNN`` around our ``BackboneWithFPN`` on a small
ResNet-ish body (``return_layers``) or on ``TinyBackbone`` (a body returning a dict) equals
torchvision's ``FasterRCNN`` around torchvision's FPN on the same body and weights, eval mode:
the same labels, boxes within 1e-4 px.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from conftest import require
from parity import assert_close
from test_faster_rcnn import SETTINGS, _images
from torch import nn

from paperlab.detection import BackboneWithFPN, FasterRCNN, FeaturePyramidNetwork, LastLevelMaxPool
from paperlab.detection.faster_rcnn import TinyBackbone
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError

pytestmark = pytest.mark.note("F1", reference="torchvision.ops.FeaturePyramidNetwork")

CHANNELS = [6, 10, 14]


def _maps(sizes, channels=CHANNELS, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((f"c{i}", torch.randn(n, c, h, w, generator=g))
                       for i, (c, (h, w)) in enumerate(zip(channels, sizes)))


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("sizes", [((32, 24), (16, 12), (8, 6)),  # exact halves
                                   ((31, 23), (16, 12), (7, 5)),  # odd: ceil / floor strides
                                   ((9, 13), (5, 7), (3, 4))])
def test_fpn_equals_torchvision(sizes, pool):
    ops = require("torchvision.ops.feature_pyramid_network")
    torch.manual_seed(1)
    ref = ops.FeaturePyramidNetwork(CHANNELS, 8, ops.LastLevelMaxPool() if pool else None)
    with torch.no_grad():  # non-zero biases, so a bias missed in the loading would show
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3)
    ours = FeaturePyramidNetwork(CHANNELS, 8, LastLevelMaxPool() if pool else None)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = _maps(sizes)
    out, ref_out = ours(x), ref(x)
    assert list(out) == list(ref_out) == ["c0", "c1", "c2", *(["pool"] if pool else [])]
    for name in ref_out:
        assert out[name].shape == ref_out[name].shape
        assert_close(out[name], ref_out[name], atol=1e-6, rtol=0, what=f"level {name}")
    if pool:
        h, w = sizes[-1]
        assert out["pool"].shape[-2:] == ((h + 1) // 2, (w + 1) // 2)


def test_fpn_init_and_gradient():
    ours = FeaturePyramidNetwork([4, 4], 4)
    assert all(float(b.detach().abs().max()) == 0 for n, b in ours.named_parameters()
               if n.endswith("bias"))
    x = _maps(((8, 8), (4, 4)), channels=[4, 4])
    sum(v.sum() for v in ours(x).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


class TinyResNetBody(nn.Module):
    """A torchvision-free ResNet-like body: stem (stride 4) and three stages (4, 8, 16)."""

    def __init__(self, width=8):
        super().__init__()

        def stage(i, o, stride):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o),
                                 nn.ReLU())

        self.stem = nn.Sequential(stage(3, width, 2), nn.MaxPool2d(3, 2, 1))
        self.layer1 = stage(width, width, 1)
        self.layer2 = stage(width, 2 * width, 2)
        self.layer3 = stage(2 * width, 4 * width, 2)
        self.head = nn.Linear(4 * width, 10)  # after the last returned layer: never run


class _RefDictFPN(nn.Module):
    """torchvision's FPN on a body that returns a dict (its BackboneWithFPN needs
    return_layers), with the same parameter names as ours."""

    def __init__(self, body, in_channels_list, out_channels):
        super().__init__()
        ops = require("torchvision.ops.feature_pyramid_network")
        self.body = body
        self.fpn = ops.FeaturePyramidNetwork(in_channels_list, out_channels,
                                             ops.LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def _fpn_pair(kind):
    tvd = require("torchvision.models.detection")
    ops = require("torchvision.ops")
    backbone_utils = require("torchvision.models.detection.backbone_utils")
    torch.manual_seed(5)
    if kind == "return_layers":
        body, layers, channels = TinyResNetBody(), {"layer1": "0", "layer2": "1",
                                                    "layer3": "2"}, [8, 16, 32]
        ref_backbone = backbone_utils.BackboneWithFPN(copy.deepcopy(body), layers, channels, 16)
        backbone = BackboneWithFPN(body, channels, 16, return_layers=layers)
    else:  # TinyBackbone returns {"0", "1", "2"} at strides 8, 16, 32
        body, channels = TinyBackbone(out_channels=12, width=16, levels=3), [12, 12, 12]
        ref_backbone = _RefDictFPN(copy.deepcopy(body), channels, 16)
        backbone = BackboneWithFPN(body, channels, 16)
    sizes, ratios = ((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4
    names = ["0", "1", "2"]
    ref = tvd.FasterRCNN(
        ref_backbone, None, rpn_anchor_generator=tvd.anchor_utils.AnchorGenerator(sizes, ratios),
        box_roi_pool=ops.MultiScaleRoIAlign(names, 7, 2),
        box_head=tvd.faster_rcnn.TwoMLPHead(16 * 49, 64),
        box_predictor=tvd.faster_rcnn.FastRCNNPredictor(64, 6),
        **{k: v for k, v in SETTINGS.items() if k != "representation_size"})
    with torch.no_grad():  # spread the scores so ranks and NMS decisions are not ties
        for name, p in ref.named_parameters():
            if not name.startswith("backbone.body."):
                p.normal_(0, 0.2 if p.dim() > 1 else 0.05)
    ours = FasterRCNN(backbone, 6, anchor_sizes=sizes, aspect_ratios=ratios,
                      featmap_names=names, **SETTINGS)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    return ours.eval(), ref.eval()


@pytest.mark.parametrize("kind", ["return_layers", "dict_body"])
def test_faster_rcnn_with_fpn_equals_torchvision(kind):
    ours, ref = _fpn_pair(kind)
    images, _ = _images()
    with torch.no_grad():
        batch, _, _ = ours.transform(images)
        features, ref_features = ours.features(batch), ref.backbone(batch)
        assert list(features) == list(ref_features) == ["0", "1", "2", "pool"]
        assert_close(list(features.values()), list(ref_features.values()), atol=1e-6, rtol=0,
                     what="fpn levels")
        final, ref_final = ours(images), ref(images)
    for d, r in zip(final, ref_final):
        assert torch.equal(d["labels"], r["labels"])
        assert_close(d["boxes"], r["boxes"], atol=1e-4, rtol=0, what="final boxes")
        assert_close(d["scores"], r["scores"], atol=1e-6, what="final scores")
    assert sum(len(d["labels"]) for d in final) > 0  # something was compared


def test_errors_are_named():
    with pytest.raises(ArgumentError, match="at least one level"):
        FeaturePyramidNetwork([], 8)
    with pytest.raises(ArgumentTypeError, match="ExtraFPNBlock"):
        FeaturePyramidNetwork([4], 8, extra_blocks=nn.Identity())
    fpn = FeaturePyramidNetwork([4, 6], 8)
    with pytest.raises(ShapeError, match="'c1' has 5 channels.*expects 6"):
        fpn(_maps(((8, 8), (4, 4)), channels=[4, 5]))
    with pytest.raises(ShapeError, match="2 feature maps"):
        FeaturePyramidNetwork([4, 6, 8], 8)(_maps(((8, 8), (4, 4)), channels=[4, 6]))
    with pytest.raises(ArgumentError, match="return_layers"):
        BackboneWithFPN(TinyResNetBody(), [8], 8, return_layers={"layer9": "0"})
    backbone = BackboneWithFPN(TinyBackbone(out_channels=8, levels=2), [8, 4], 8,
                               extra_blocks=False)
    with pytest.raises(ShapeError, match="'1' has 8 channels"):
        backbone(torch.rand(1, 3, 32, 32))
