"""Training pairs for low-resolution landmark detection by hallucination (SHT, seed 004 section 4.1): one face
under two random similarities, each view as its high-resolution face, its low-resolution input and its
landmarks."""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .transforms import apply_affine, warp

__all__ = ["HallucinationPairs", "split_labelled"]


def _truncated_normal(generator: torch.Generator, mean: float, std: float, low: float, high: float) -> float:
    """A draw of N(mean, std^2) conditioned on [low, high] (by rejection: at 2 std, 95% of draws pass)."""
    while True:
        v = mean + std * float(torch.randn((), generator=generator, dtype=torch.float64))
        if low <= v <= high:
            return v


class HallucinationPairs(Dataset):
    """Pairs of views of the faces of ``source`` (items with ``"image"`` (3, S, S) and ``"landmarks"`` (K, 2),
    as ``SyntheticFaces`` or ``LandmarkDataset`` give them, square and of side ``hr_size``).

    Each view rotates the face about the image centre by an angle and scales it by a factor drawn from
    normal distributions truncated to ``rotation`` degrees and ``scale`` (the paper samples both "from a
    standard Gaussian" within +-30 degrees and 0.8-1.2; decision: N(0, (rotation / 2)^2) and N(1, ((hi - lo)
    / 4)^2), so the bounds are 2 std). ``pair[i]`` is a dict of tensors stacked over the two views:

    * ``"face"`` (2, 3, hr, hr): the high-resolution face (the target of the hallucination stream);
    * ``"low"`` (2, 3, lr, lr): the face reduced (bicubic, antialiased) to ``lr_size``;
    * ``"input"`` (2, 3, net, net): ``low`` resized (bicubic) to ``net_size``, the network's input, as the
      paper resizes its 16x16 faces to 64x64;
    * ``"landmarks"`` (2, K, 2): in the pixels of the network's ``net_size`` maps (NaN for an unlabelled
      source, ``labelled=False``);
    * ``"labelled"``: a bool tensor, gamma_1 = 1 or 0 of Eqs. 4 and 10.

    Draws depend on ``(seed, index)`` only. ``hr_size`` must be a multiple of ``net_size``; ``lr_size`` at
    most ``net_size``.
    """

    def __init__(self, source: Dataset, hr_size: int, net_size: int, lr_size: int, *, labelled: bool = True,
                 rotation: float = 30.0, scale: tuple[float, float] = (0.8, 1.2), seed: int = 0) -> None:
        for name, value in (("hr_size", hr_size), ("net_size", net_size), ("lr_size", lr_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 4:
                raise ValueError(f"{name} must be an int of at least 4, got {value!r}")
        if hr_size % net_size:
            raise ValueError(f"the network's size {net_size} must divide the high-resolution size {hr_size} "
                             "(the hallucinated face is an integer upscale of it)")
        if lr_size > net_size:
            raise ValueError(f"lr_size {lr_size} must be at most net_size {net_size}")
        if not (rotation >= 0 and 0 < scale[0] <= 1 <= scale[1]):
            raise ValueError(f"need rotation >= 0 and scale[0] <= 1 <= scale[1], got {rotation}, {scale}")
        self.source, self.hr, self.net, self.lr = source, hr_size, net_size, lr_size
        self.labelled, self.rotation, self.scale, self.seed = labelled, float(rotation), tuple(scale), int(seed)

    def __len__(self) -> int:
        return len(self.source)

    def view(self, image: Tensor, landmarks: Tensor, generator: torch.Generator
             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(face, low, input, landmarks in net pixels) of one random view of ``image`` (3, hr, hr)."""
        lo, hi = self.scale
        angle = math.radians(_truncated_normal(generator, 0.0, self.rotation / 2, -self.rotation, self.rotation)
                             if self.rotation else 0.0)
        s = _truncated_normal(generator, 1.0, (hi - lo) / 4, lo, hi) if hi > lo else lo
        linear = s * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = np.full(2, (self.hr - 1) / 2)
        affine = np.hstack([linear, (centre - linear @ centre)[:, None]])
        face = warp(image, affine, self.hr)
        low = F.interpolate(face[None], size=self.lr, mode="bicubic", align_corners=False, antialias=True)
        net_input = F.interpolate(low, size=self.net, mode="bicubic", align_corners=False)[0]
        points = apply_affine(affine, landmarks.numpy().astype(np.float64))
        points = (points + 0.5) * (self.net / self.hr) - 0.5  # pixel centres of the hr image -> of the net maps
        if not self.labelled:
            points = np.full_like(points, np.nan)
        return face, low[0], net_input, torch.from_numpy(points.astype(np.float32))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.source[i]
        image, landmarks = item["image"], item["landmarks"]
        if tuple(image.shape) != (3, self.hr, self.hr):
            raise ValueError(f"source images must be (3, {self.hr}, {self.hr}), got {tuple(image.shape)}")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        views = [self.view(image, landmarks, generator) for _ in range(2)]
        face, low, net_input, points = (torch.stack(v) for v in zip(*views))
        return dict(face=face, low=low, input=net_input, landmarks=points, labelled=torch.tensor(self.labelled))


def split_labelled(count: int, unlabelled: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices ``0..count-1`` split into (labelled, unlabelled), the fraction ``unlabelled`` at random."""
    if not 0.0 <= unlabelled < 1.0:
        raise ValueError(f"unlabelled must be in [0, 1), got {unlabelled}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    m = int(round(unlabelled * count))
    return sorted(order[m:]), sorted(order[:m])

