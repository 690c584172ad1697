"""Stacked hourglass / FAN (seed 002 chapter 4) with the hierarchical, parallel & multi-scale block, real or
binarized (seed 002 chapter 5)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.binary import BinaryConv2d

__all__ = ["HPMBlock", "Hourglass", "StackedHourglass", "zero_init"]


def zero_init(layer: nn.Module) -> nn.Module:
    """``layer`` with zero weight and bias, for the layers that output maps: they start all zero, the
    background of every target."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class HPMBlock(nn.Module):
    """Hierarchical, parallel & multi-scale block (seed 002 Fig. 5.1b, FAN's ``ConvBlock``), pre-activation:

    ``h1 = conv1(act(bn1(x)))`` (3x3, in -> out/2), ``h2 = conv2(act(bn2(h1)))`` (3x3, out/2 -> out/4),
    ``h3 = conv3(act(bn3(h2)))`` (3x3, out/4 -> out/4), ``y = cat(h1, h2, h3) + residual`` with the identity
    residual, or ``conv1x1(relu(bn(x)))`` when ``in_channels != out_channels``. ``out_channels % 4 == 0``.

    Real (``binary=False``): ``act`` is ReLU, the convs are ``nn.Conv2d`` without bias (as FAN; same
    attribute names, so FAN block weights load). Binary: each 3x3 conv is a ``BinaryConv2d`` (padding 1, no
    bias, zero padding), whose input sign is the activation (a ReLU before the sign would make it all +1),
    and a ReLU follows each binary conv (seed 002 Table 5.9): ``h_k = relu(bconv_k(bn_k(h_{k-1})))``, so the
    concatenated branches are the ReLU outputs. The 1x1 downsample stays real in both versions.
    """

    def __init__(self, in_channels: int, out_channels: int, binary: bool = False,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        if out_channels < 4 or out_channels % 4:
            raise ValueError(f"out_channels must be a positive multiple of 4, got {out_channels}")
        self.binary = binary
        half, quarter = out_channels // 2, out_channels // 4

        def conv3x3(cin: int, cout: int) -> nn.Module:
            if binary:
                return BinaryConv2d(cin, cout, 3, padding=1, backend=backend)
            return nn.Conv2d(cin, cout, 3, padding=1, bias=False)

        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), conv3x3(in_channels, half)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), conv3x3(half, quarter)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), conv3x3(quarter, quarter)
        self.downsample = None if in_channels == out_channels else nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        h, branches = x, []
        for bn, conv in ((self.bn1, self.conv1), (self.bn2, self.conv2), (self.bn3, self.conv3)):
            h = F.relu(conv(bn(h))) if self.binary else conv(F.relu(bn(h)))
            branches.append(h)
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat(branches, 1) + residual


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: ``up = block(x)``, ``low = block(maxpool(x))``, the next level (or a
    block at the bottom), ``block``, then ``up + nearest_upsample(low)`` (FAN's ``HourGlass``)."""

    def __init__(self, depth: int, channels: int, binary: bool = False, backend: Optional[str] = None) -> None:
        super().__init__()
        def block() -> HPMBlock:
            return HPMBlock(channels, channels, binary, backend)
        self.up, self.low1, self.low3 = block(), block(), block()
        self.low2 = Hourglass(depth - 1, channels, binary, backend) if depth > 1 else block()

    def forward(self, x: Tensor) -> Tensor:
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return self.up(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """FAN (seed 002 Fig. 4.2): a stride-4 stem, then ``stacks`` hourglasses, each with a heatmap head; the
    heads are re-injected into the next stack (intermediate supervision).

    Stem: 7x7/2 conv (3 -> channels/2), BN, ReLU, block (-> channels), 2x2 max pool, two blocks. Per stack:
    hourglass, block, 1x1 conv + BN + ReLU (``features``), 1x1 conv to ``num_maps`` maps; between stacks
    ``x + 1x1(features) + 1x1(maps)``. The map heads start at zero: random initial maps cost an MSE model
epochs of unlearning (measured: 118% vs 6.8% validation NME after 3 short epochs). ``forward`` returns ``(maps per stack, last features)``, the maps
    (B, num_maps, S/4, S/4) as raw scores. ``binary=True`` makes every block binary (``BinaryConv2d``); the
    first conv, the 1x1 convs and the map heads stay real, as in seed 002 (first and last layers real).
    """

    def __init__(self, num_maps: int, stacks: int = 2, channels: int = 256, depth: int = 4,
                 binary: bool = False, backend: Optional[str] = None) -> None:
        super().__init__()
        def block(cin: int, cout: int) -> HPMBlock:
            return HPMBlock(cin, cout, binary, backend)
        half = channels // 2
        self.stem = nn.Sequential(nn.Conv2d(3, half, 7, stride=2, padding=3), nn.BatchNorm2d(half), nn.ReLU(),
                                  block(half, channels), nn.MaxPool2d(2), block(channels, channels),
                                  block(channels, channels))
        self.hourglasses = nn.ModuleList(
            nn.Sequential(Hourglass(depth, channels, binary, backend), block(channels, channels),
                          nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU())
            for _ in range(stacks))
        self.heads = nn.ModuleList(zero_init(nn.Conv2d(channels, num_maps, 1)) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.merge_maps = nn.ModuleList(nn.Conv2d(num_maps, channels, 1) for _ in range(stacks - 1))

    def forward(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        x, maps = self.stem(images), []
        for i, (hourglass, head) in enumerate(zip(self.hourglasses, self.heads)):
            features = hourglass(x)
            maps.append(head(features))
            if i < len(self.merge_features):
                x = x + self.merge_features[i](features) + self.merge_maps[i](maps[-1])
        return maps, features
