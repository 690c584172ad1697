"""Heatmap landmark models on the stacked hourglass: FAN (Gaussian regression, seed 002), its binarized
version, Heatmap-in-Heatmap (seed 000) with a CNN or Transformer decimal head, and H3R (seed 001).

Targets are never rendered: every loss is the fused ``fastlmk.ops.heatmap_loss`` evaluated at the keypoints,
and every prediction is ``fastlmk.ops.decode`` / ``decode_hih`` with the heatmap-to-input affine fused in.
Heatmaps have stride 4: heatmap pixel ``j`` covers input pixels ``[4j - 0.5, 4j + 3.5]``, centre ``4j + 1.5``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .base import LandmarkModel
from .hourglass import StackedHourglass, zero_init

__all__ = ["FAN", "H3R", "HIH", "CNNDecimalHead", "TransformerDecimalHead", "LocalDecimalHead", "STRIDE"]

STRIDE = 4

Outputs = dict[str, Any]


class HeatmapModel(LandmarkModel):
    """A stacked hourglass producing one map per landmark at stride 4, and the coordinate changes between
    input pixels and heatmap pixels."""

    def __init__(self, num_landmarks: int, input_size: int, stacks: int, channels: int, depth: int,
                 binary: bool, backend: Optional[str]) -> None:
        super().__init__()
        if input_size < 16 or input_size % STRIDE:
            raise ValueError(f"input_size must be a multiple of {STRIDE} >= 16, got {input_size}")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be positive, got {num_landmarks}")
        self.num_landmarks, self.input_size, self.map_size = num_landmarks, input_size, input_size // STRIDE
        self.backend = backend
        self.backbone = StackedHourglass(num_landmarks, stacks, channels, depth, binary, backend)
        shift = (STRIDE - 1) / 2
        self.register_buffer("to_input", torch.tensor([[STRIDE, 0.0, shift], [0.0, STRIDE, shift]]),
                             persistent=False)

    def forward(self, images: Tensor) -> Outputs:
        """``{"maps": [(B, K, S/4, S/4) per stack]}``."""
        maps, _ = self.backbone(images)
        return {"maps": maps}

    def heatmap_keypoints(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Landmarks in heatmap pixels ``(x - 1.5) / 4`` and the weights (0 for a missing landmark)."""
        landmarks = batch["landmarks"].to(self.to_input.device, torch.float32)
        return (landmarks - (STRIDE - 1) / 2) / STRIDE, torch.isfinite(landmarks).all(-1).float()

    def affine(self, maps: Tensor) -> Tensor:
        return self.to_input.to(maps.dtype).expand(maps.shape[0], 2, 3)

    def decode(self, maps: Tensor, method: str, **kwargs: Any) -> Tensor:
        coords, _ = ops.decode(maps.detach().float(), method, affine=self.affine(maps.float()),
                               backend=self.backend, **kwargs)
        return coords


class FAN(HeatmapModel):
    """FAN (seed 002 ch. 4): Gaussian heatmap regression with MSE at every stack, decoded by the quarter-pixel
    offset (FAN's decoder); ``binary=True`` is the binarized hourglass (ch. 5). ``predict`` also decodes
    plain argmax, DARK and the parabola fit from the same maps."""

    decoders = ("quarter", "argmax", "dark", "parabola")

    def __init__(self, num_landmarks: int, input_size: int = 128, *, stacks: int = 1, channels: int = 64,
                 depth: int = 3, binary: bool = False, sigma: float = 1.5, backend: Optional[str] = None) -> None:
        super().__init__(num_landmarks, input_size, stacks, channels, depth, binary, backend)
        self.sigma = sigma
        self.config = dict(num_landmarks=num_landmarks, input_size=input_size, stacks=stacks, channels=channels,
                           depth=depth, binary=binary, sigma=sigma)

    def loss(self, outputs: Outputs, batch: dict[str, Tensor]) -> Tensor:
        keypoints, weights = self.heatmap_keypoints(batch)
        return sum(ops.heatmap_loss(m, keypoints, self.sigma, weights=weights, backend=self.backend)
                   for m in outputs["maps"])

    def predict(self, outputs: Outputs) -> dict[str, Tensor]:
        # DARK's blur kernel: the target's own width, 2 ceil(2 sigma) + 1 (7 for sigma 1.5)
        blur = 2 * int(math.ceil(2 * self.sigma)) + 1
        return {name: self.decode(outputs["maps"][-1], name, **({"blur": blur} if name == "dark" else {}))
                for name in self.decoders}


class H3R(HeatmapModel):
    """H3R (seed 001): the hourglass maps are logits trained with sigmoid BCE against one-hot targets at the
    randomized rounding of each keypoint (unbiased: the expected target pixel is the keypoint), decoded by a
    softmax over the ``k`` highest logits. The fused loss renders the one-hot target as a Gaussian whose
    window (``radius * sigma = 0.5``) holds only the rounded pixel, exactly 1 there and 0 elsewhere. The
    heads' biases start at the prior logit ``-log(H W - 1)`` of one positive pixel per map."""

    decoders = ("topk", "argmax")

    def __init__(self, num_landmarks: int, input_size: int = 128, *, stacks: int = 1, channels: int = 64,
                 depth: int = 3, binary: bool = False, k: int = 9, backend: Optional[str] = None) -> None:
        super().__init__(num_landmarks, input_size, stacks, channels, depth, binary, backend)
        self.k = k
        self.config = dict(num_landmarks=num_landmarks, input_size=input_size, stacks=stacks, channels=channels,
                           depth=depth, binary=binary, k=k)
        for head in self.backbone.heads:  # start at the prior: one positive pixel per map
            nn.init.constant_(head.bias, -math.log(self.map_size ** 2 - 1))

    def loss(self, outputs: Outputs, batch: dict[str, Tensor]) -> Tensor:
        keypoints, weights = self.heatmap_keypoints(batch)
        total = 0.0
        for m in outputs["maps"]:  # a fresh rounding per stack and step: the targets average to the keypoint
            rounded = ops.randomized_round(keypoints)
            total = total + ops.heatmap_loss(m, rounded, 1.0, kind="bce_logits", radius=0.5, weights=weights,
                                             backend=self.backend)
        return total

    def predict(self, outputs: Outputs) -> dict[str, Tensor]:
        return {"topk": self.decode(outputs["maps"][-1], "topk", k=self.k),
                "argmax": self.decode(outputs["maps"][-1], "argmax")}


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _BasicBlock(nn.Module):
    """ResNet basic block with a stride-2 first conv (HIH's CNN head)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(cin, cout, 2), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class CNNDecimalHead(nn.Module):
    """HIH's CNN decimal head (seed 000 sec. 3.3): conv+BN+ReLU, 2x2 max pool, stride-2 basic blocks down to
    the decimal size, conv+BN+ReLU and a 1x1 conv to one decimal map per landmark: (B, C, H, W) ->
    (B, K, ho, wo). ``H / 2 / ho`` must be a power of two."""

    def __init__(self, in_channels: int, num_landmarks: int, map_size: int, decimal_size: int,
                 width: int = 64) -> None:
        super().__init__()
        steps = math.log2(map_size / 2 / decimal_size)
        if steps < 0 or steps != int(steps):
            raise ValueError(f"the CNN decimal head needs map_size / 2 / decimal_size to be a power of two, got "
                             f"map_size={map_size}, decimal_size={decimal_size}")
        self.body = nn.Sequential(_conv_bn_relu(in_channels, width), nn.MaxPool2d(2),
                                  *(_BasicBlock(width, width) for _ in range(int(steps))),
                                  _conv_bn_relu(width, width), zero_init(nn.Conv2d(width, num_landmarks, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class TransformerDecimalHead(nn.Module):
    """HIH's Transformer decimal head (seed 000 sec. 3.3, ViT-style encoder only): ``p x p`` patches of the
    fused features (``p = H / ho``) linearly embedded to ``dim``, plus a learned position embedding, ``depth``
    pre-norm encoder layers (``heads`` heads, MLP ratio ``mlp_ratio``), reshaped to (dim, ho, wo) and a 1x1
    conv to one decimal map per landmark."""

    def __init__(self, in_channels: int, num_landmarks: int, map_size: int, decimal_size: int, dim: int = 128,
                 depth: int = 2, heads: int = 2, mlp_ratio: int = 3) -> None:
        super().__init__()
        if map_size % decimal_size:
            raise ValueError(f"the Transformer decimal head needs map_size % decimal_size == 0, got "
                             f"map_size={map_size}, decimal_size={decimal_size}")
        patch = map_size // decimal_size
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, decimal_size * decimal_size, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_ratio * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = zero_init(nn.Conv2d(dim, num_landmarks, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        b, d, h, w = x.shape
        tokens = self.norm(self.encoder(x.flatten(2).transpose(1, 2) + self.position))
        return self.head(tokens.transpose(1, 2).reshape(b, d, h, w))


class LocalDecimalHead(nn.Module):
    """A decimal head that looks where the decimal map refines: per landmark, the features and the landmark's
    own integer map in the ``(2 radius + 1)^2`` cells around ``cells`` (its integer map's maximum; zero
    outside the map), through an MLP shared by the landmarks plus a learned per-landmark embedding, to its
    ``decimal_size``-square decimal map: (B, C, H, W), (B, K, H, W), (B, K, 2) -> (B, K, ho, wo).

    The paper's heads (CNN, Transformer) predict each decimal map from the whole image, so they must move
    the fraction of a landmark found anywhere in the integer map to a fixed frame; this one reads it at the
    landmark (benchmarks/RESULTS.md, "Training on the synthetic faces", measures both)."""

    def __init__(self, in_channels: int, num_landmarks: int, decimal_size: int, radius: int = 1,
                 hidden: int = 256) -> None:
        super().__init__()
        self.radius, self.decimal_size = radius, decimal_size
        window = (2 * radius + 1) ** 2
        self.features = nn.Linear(in_channels * window, hidden)
        self.own = nn.Linear(window, hidden, bias=False)
        self.landmark = nn.Parameter(torch.zeros(num_landmarks, hidden))
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 zero_init(nn.Linear(hidden, decimal_size * decimal_size)))

    def _windows(self, x: Tensor, cells: Tensor) -> Tensor:
        """(B, C, H, W), (B, K, 2) -> (B, K, C, P, P): x in the P x P cells centred on each cell."""
        b, _, h, w = x.shape
        r = self.radius
        step = torch.arange(-r, r + 1, device=x.device)
        col = (cells[..., 0].long().clamp(0, w - 1) + r)[..., None, None] + step
        row = (cells[..., 1].long().clamp(0, h - 1) + r)[..., None, None] + step[:, None]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        return F.pad(x, (r, r, r, r)).permute(0, 2, 3, 1)[batch, row, col].permute(0, 1, 4, 2, 3)

    def forward(self, features: Tensor, maps: Tensor, cells: Tensor) -> Tensor:
        b, k, h, w = maps.shape
        shared = self._windows(features, cells).flatten(2)
        own = self._windows(maps.reshape(b * k, 1, h, w), cells.reshape(b * k, 1, 2)).view(b, k, -1)
        hidden = self.features(shared) + self.own(own) + self.landmark
        return self.mlp(hidden).view(b, k, self.decimal_size, self.decimal_size)


class HIH(HeatmapModel):
    """Heatmap in Heatmap (seed 000): the hourglass maps are the integer heatmaps (a Gaussian at
    ``floor(x)`` per stack, MSE), and a decimal head predicts one ``decimal_size``-square decimal map per
    landmark (a Gaussian at the fraction, MSE, weight ``decimal_weight``); decoded by ``decode_hih``.
    ``head``: ``"local"`` (default; :class:`LocalDecimalHead`, whose decimal map refines the argmax cell of
    the last integer map, so its decimal target is the keypoint relative to that cell), or the paper's
    ``"cnn"`` / ``"transformer"`` on ``cat(features, integer maps)`` (decimal target relative to
    ``floor(x)``). ``predict`` also gives ``"integer"``: the integer maps alone (argmax + 0.5, the centre of
    the cell ``[j, j + 1)``). ``convention`` as in ``encode_hih`` (default ``"unbiased"``)."""

    decoders = ("hih", "integer")
    heads = ("local", "cnn", "transformer")

    def __init__(self, num_landmarks: int, input_size: int = 128, *, head: str = "local", stacks: int = 1,
                 channels: int = 64, depth: int = 3, binary: bool = False, sigma: float = 1.5,
                 decimal_size: int = 8, decimal_sigma: float = 1.0, decimal_weight: float = 0.1,
                 convention: str = "unbiased", backend: Optional[str] = None) -> None:
        super().__init__(num_landmarks, input_size, stacks, channels, depth, binary, backend)
        if head not in self.heads:
            raise ValueError(f"head must be one of {list(self.heads)}, got {head!r}")
        if decimal_size < 1:
            raise ValueError(f"decimal_size must be positive, got {decimal_size}")
        self.head = head
        if head == "local":
            self.decimal_head = LocalDecimalHead(channels, num_landmarks, decimal_size)
        else:
            whole_map = CNNDecimalHead if head == "cnn" else TransformerDecimalHead
            self.decimal_head = whole_map(channels + num_landmarks, num_landmarks, self.map_size, decimal_size)
        self.sigma, self.decimal_size, self.decimal_sigma = sigma, decimal_size, decimal_sigma
        self.decimal_weight, self.convention = decimal_weight, convention
        self.config = dict(num_landmarks=num_landmarks, input_size=input_size, head=head, stacks=stacks,
                           channels=channels, depth=depth, binary=binary, sigma=sigma, decimal_size=decimal_size,
                           decimal_sigma=decimal_sigma, decimal_weight=decimal_weight, convention=convention)

    def forward(self, images: Tensor) -> Outputs:
        """``{"maps": [(B, K, S/4, S/4) per stack], "decimal": (B, K, ho, wo)}``, and for the local head
        ``"cells"``: the (x, y) argmax of each last integer map, the cell its decimal map refines."""
        maps, features = self.backbone(images)
        if self.head != "local":
            return {"maps": maps, "decimal": self.decimal_head(torch.cat([features, maps[-1]], 1))}
        cells, _ = ops.decode(maps[-1].detach().float(), "argmax", backend=self.backend)
        return {"maps": maps, "decimal": self.decimal_head(features, maps[-1], cells), "cells": cells}

    def loss(self, outputs: Outputs, batch: dict[str, Tensor]) -> Tensor:
        keypoints, weights = self.heatmap_keypoints(batch)
        whole, _ = ops.hih_centers(keypoints, self.decimal_size, self.convention)
        _, fraction = ops.hih_centers(keypoints, self.decimal_size, self.convention, cells=outputs.get("cells"))
        total = sum(ops.heatmap_loss(m, whole, self.sigma, weights=weights, backend=self.backend)
                    for m in outputs["maps"])
        return total + self.decimal_weight * ops.heatmap_loss(outputs["decimal"], fraction, self.decimal_sigma,
                                                              weights=weights, backend=self.backend)

    def predict(self, outputs: Outputs) -> dict[str, Tensor]:
        maps = outputs["maps"][-1].detach().float()
        coords, _ = ops.decode_hih(maps, outputs["decimal"].detach().float(), convention=self.convention,
                                   affine=self.affine(maps), backend=self.backend)
        return {"hih": coords, "integer": self.decode(maps, "argmax") + 0.5 * STRIDE}
