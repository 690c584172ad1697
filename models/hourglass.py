"""Hourglass building blocks (seed 002 chapter 5): the hierarchical, parallel & multi-scale block, real or
binary."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.binary import BinaryConv2d

__all__ = ["HPMBlock"]


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
