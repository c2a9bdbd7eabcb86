"""A small face-embedding backbone: IResNet blocks and the BN-Dropout-FC-BN embedding head.

The idea
--------
insightface's IResNet (Deng et al. 2019, ArcFace, section 4.1; Duta et al. 2020) is a ResNet
changed for faces: the stem keeps the resolution (3x3 conv, stride 1, no max-pool), each block
is BN - conv3x3 - BN - PReLU - conv3x3 (stride s) - BN plus the shortcut (a 1x1 conv with BN
where the shape changes), and the head keeps the spatial layout instead of global pooling::

    BN2d -> Dropout -> flatten -> FC(C * h * w -> d) -> BN1d   ("option E" in the paper)

The final BN1d normalises each embedding dimension over the batch; the margin losses then
L2-normalise the embedding. This module is the same design at small widths and depths so it
trains on a CPU: ``widths`` (one per stage, each stage halves the resolution) and ``blocks``
(blocks per stage). Inputs 112 x 112 (the ArcFace crop) or smaller: the side must be
divisible by 2 ** len(widths).

Differences from insightface's ``iresnet``: the embedding BN's scale is trainable here
(insightface fixes it at 1), and the widths and depths are ours (theirs: 64-512 channels,
r18-r200 blocks).

Shapes: images (B, 3, S, S) -> embeddings (B, embedding_dim).
"""

from __future__ import annotations

import torch
from torch import nn

from paperlab.errors import ArgumentError, ShapeError, check_int, check_int_list
from paperlab.registry import export_model


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the (projected) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


@export_model("face-backbone", note="E2-E3", paper="Deng et al. 2019 (IResNet, option E)")
class FaceBackbone(nn.Module):
    """A small IResNet: images (B, C, S, S) -> embeddings (B, embedding_dim)."""

    def __init__(self, embedding_dim: int = 128, *, image_size: int = 112,
                 widths: tuple[int, ...] = (16, 32, 64, 128),
                 blocks: tuple[int, ...] = (1, 1, 1, 1), in_channels: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=1)
        widths, blocks = tuple(check_int_list("widths", widths)), tuple(
            check_int_list("blocks", blocks))
        if not widths or len(widths) != len(blocks) or min(widths) < 1 or min(blocks) < 1:
            raise ArgumentError(f"widths and blocks must be equally long lists of positive "
                                f"ints, got {widths} and {blocks}")
        factor = 2 ** len(widths)
        if image_size % factor:
            raise ArgumentError(f"image_size must be divisible by 2 ** len(widths) = {factor}, "
                                f"got {image_size}")
        if not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        layers, ch = [], widths[0]
        for w, n in zip(widths, blocks):
            layers.append(IBasicBlock(ch, w, stride=2))
            layers.extend(IBasicBlock(w, w) for _ in range(n - 1))
            ch = w
        self.stages = nn.Sequential(*layers)
        side = image_size // factor
        self.bn2 = nn.BatchNorm2d(ch)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ch * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if images.dim() != 4 or images.shape[1:] != (self.in_channels, s, s):
            raise ShapeError(f"images must be (B, {self.in_channels}, {s}, {s}), got "
                             f"{tuple(images.shape)}")
        x = self.stages(self.stem(images))
        x = self.dropout(self.bn2(x)).flatten(1)
        return self.features(self.fc(x))
