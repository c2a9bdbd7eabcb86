"""Feature Pyramid Network: strong semantics at every scale (Lin et al. 2017; note F1).

Idea. A CNN's deep maps are semantically strong but coarse, its shallow maps fine but weak.
The FPN gives every level both: a 1x1 *lateral* conv brings each backbone map ``C_l`` to a
common width, a *top-down* path adds the coarser level, upsampled (nearest) to the lateral's
size, and a 3x3 conv smooths each sum (the aliasing of the upsampling):

    C_l' = conv1x1_l(C_l)
    M_L  = C_L',        M_l = C_l' + upsample_nearest(M_{l+1}, size of C_l')
    P_l  = conv3x3_l(M_l)

Faster R-CNN with an FPN runs one RPN head over all levels and pools each RoI from the level
its size picks (``roi.py``'s ``fpn_levels``, eq. 1 of the paper). ``LastLevelMaxPool`` adds
a coarser level ``"pool"`` = ``P_L`` subsampled by 2 (``max_pool2d``, kernel 1, stride 2),
used by the RPN only (anchors of size 512 in torchvision's detectors).

Paper: T.-Y. Lin, P. Dollar, R. Girshick, K. He, B. Hariharan, S. Belongie, "Feature Pyramid
Networks for Object Detection", CVPR 2017 (arXiv:1612.03144).

Shapes: ``FeaturePyramidNetwork(in_channels_list, out_channels)`` takes an ordered dict of
``(N, in_channels_list[l], H_l, W_l)`` maps, finest first (any sizes, odd ones included: the
upsampling goes to each lateral's exact size), and returns an ordered dict with the same
names of ``(N, out_channels, H_l, W_l)`` maps (plus ``"pool"``, ``(N, out_channels,
ceil(H_L / 2), ceil(W_L / 2))``, with ``LastLevelMaxPool``). ``BackboneWithFPN(body,
in_channels_list, out_channels)`` puts one on any CNN: ``body`` returns the dict itself, or
``return_layers`` (``{child name: output name}``) picks the outputs of ``body``'s direct
children, run in order. Anchor: ``torchvision.ops.FeaturePyramidNetwork`` and
``torchvision.models.detection.backbone_utils.BackboneWithFPN``: the same parameter names
(``inner_blocks.l.0``, ``layer_blocks.l.0``, ``body.*``, ``fpn.*``), initialisation (Kaiming
uniform with a = 1, zero bias) and outputs (tests/detection/test_fpn.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError, check_int


class ExtraFPNBlock(nn.Module):
    """Base of the blocks that add levels after the pyramid.

    ``forward(results, inputs, names)``: the FPN's outputs ``P_l`` (finest first), the
    backbone's maps ``C_l`` and their names; returns the extended ``(results, names)``."""

    def forward(self, results: list[Tensor], inputs: list[Tensor], names: list[str]
                ) -> tuple[list[Tensor], list[str]]:
        raise NotImplementedError


class LastLevelMaxPool(ExtraFPNBlock):
    """Adds ``"pool"`` = the coarsest ``P_L`` subsampled by 2 (``max_pool2d``, kernel 1,
    stride 2): ``(N, C, H, W) -> (N, C, ceil(H / 2), ceil(W / 2))``."""

    def forward(self, results: list[Tensor], inputs: list[Tensor], names: list[str]
                ) -> tuple[list[Tensor], list[str]]:
        pooled = F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0)
        return [*results, pooled], [*names, "pool"]


class FeaturePyramidNetwork(nn.Module):
    """The FPN over maps with ``in_channels_list`` channels (finest first), ``out_channels``
    wide; ``extra_blocks`` (e.g. ``LastLevelMaxPool()``) adds levels after the pyramid."""

    def __init__(self, in_channels_list: Sequence[int], out_channels: int,
                 extra_blocks: ExtraFPNBlock | None = None) -> None:
        super().__init__()
        if isinstance(in_channels_list, (int, str)) or not isinstance(in_channels_list,
                                                                       Sequence):
            raise ArgumentTypeError(f"in_channels_list must be a list of ints, got "
                                    f"{type(in_channels_list).__name__}")
        if len(in_channels_list) == 0:
            raise ArgumentError("in_channels_list must name at least one level, got []")
        for i, c in enumerate(in_channels_list):
            check_int(f"in_channels_list[{i}]", c, minimum=1)
        check_int("out_channels", out_channels, minimum=1)
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise ArgumentTypeError(f"extra_blocks must be an ExtraFPNBlock (e.g. "
                                    f"LastLevelMaxPool()) or None, got "
                                    f"{type(extra_blocks).__name__}")
        self.in_channels_list = [int(c) for c in in_channels_list]
        self.out_channels = out_channels
        # one-element Sequentials: torchvision's Conv2dNormActivation names (inner_blocks.l.0)
        self.inner_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in self.in_channels_list)
        self.layer_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1))
            for _ in self.in_channels_list)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)
        self.extra_blocks = extra_blocks

    def _check(self, x: Mapping[str, Tensor]) -> None:
        if not isinstance(x, Mapping):
            raise ArgumentTypeError(f"x must be a dict of feature maps (finest first), got "
                                    f"{type(x).__name__}")
        if len(x) != len(self.in_channels_list):
            raise ShapeError(f"x has {len(x)} feature maps {list(x)}, in_channels_list "
                             f"{self.in_channels_list} expects {len(self.in_channels_list)}")
        for (name, f), c in zip(x.items(), self.in_channels_list):
            if not isinstance(f, Tensor) or f.dim() != 4:
                got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                raise ShapeError(f"feature map {name!r} must be (N, C, H, W), got {got}")
            if f.shape[1] != c:
                raise ShapeError(f"feature map {name!r} has {f.shape[1]} channels, "
                                 f"in_channels_list expects {c} for that level")

    def forward(self, x: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
        self._check(x)
        names, maps = list(x), list(x.values())
        last = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last)]
        for lvl in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[lvl](maps[lvl])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[lvl](last))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, maps, names)
        return OrderedDict(zip(names, results))


class IntermediateLayers(nn.ModuleDict):
    """``model``'s direct children up to the last one named in ``return_layers``, run in
    order; returns ``{return_layers[name]: output of child name}`` (torchvision's
    ``IntermediateLayerGetter``: the children must be registered in the order they run)."""

    def __init__(self, model: nn.Module, return_layers: Mapping[str, str]) -> None:
        children = OrderedDict(model.named_children())
        missing = [k for k in return_layers if k not in children]
        if missing or not return_layers:
            raise ArgumentError(f"return_layers must name direct children of the body "
                                f"{list(children)}; got {list(return_layers)}")
        wanted = {str(k): str(v) for k, v in return_layers.items()}
        layers, left = OrderedDict(), set(wanted)
        for name, module in children.items():
            layers[name] = module
            left.discard(name)
            if not left:
                break
        super().__init__(layers)
        self.return_layers = wanted

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class BackboneWithFPN(nn.Module):
    """``body`` (a CNN) plus an FPN: ``(N, 3, H, W) -> {name: (N, out_channels, H_l, W_l)}``.

    ``body`` returns a dict of maps itself (e.g. ``TinyBackbone(levels=3)``), or
    ``return_layers`` picks its children's outputs (``{"layer1": "0", "layer2": "1"}``).
    ``in_channels_list``: the channels of those maps, in order. ``extra_blocks``: None gives
    torchvision's default ``LastLevelMaxPool()`` (a ``"pool"`` level), False none. Has
    ``out_channels``, so ``FasterRCNN(BackboneWithFPN(...), num_classes)`` takes it."""

    def __init__(self, body: nn.Module, in_channels_list: Sequence[int], out_channels: int, *,
                 return_layers: Mapping[str, str] | None = None,
                 extra_blocks: ExtraFPNBlock | bool | None = None) -> None:
        super().__init__()
        if not isinstance(body, nn.Module):
            raise ArgumentTypeError(f"body must be an nn.Module, got {type(body).__name__}")
        if extra_blocks is None or extra_blocks is True:
            extra_blocks = LastLevelMaxPool()
        elif extra_blocks is False:
            extra_blocks = None
        self.body = body if return_layers is None else IntermediateLayers(body, return_layers)
        self.fpn = FeaturePyramidNetwork(in_channels_list, out_channels, extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        return self.fpn(features)


__all__ = ["BackboneWithFPN", "ExtraFPNBlock", "FeaturePyramidNetwork", "IntermediateLayers",
           "LastLevelMaxPool"]
