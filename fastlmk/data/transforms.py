"""Crops, warps and augmentation as (2, 3) float64 affines on ``(x, y)`` pixel coordinates.

Convention (docs/conventions.md): pixel ``(row i, col j)`` is centred at ``(x=j, y=i)``, so an S-pixel crop
covers ``[-0.5, S-0.5]^2``. An affine ``A`` maps a point ``p`` to ``A @ (x, y, 1)``; the content of an image
at original ``(x, y)`` lands at crop ``A @ (x, y, 1)`` after :func:`warp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.morphable import MIRROR_68

__all__ = ["FLIP_PERMUTATIONS", "Augment", "apply_affine", "box_from_landmarks", "check_box", "crop_affine",
           "invert_affine", "warp"]

ArrayLike = Union[np.ndarray, Sequence[Sequence[float]], Tensor]


def _from_pairs(k: int, pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(k))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


_WFLW_PAIRS = [
    *((i, 32 - i) for i in range(16)),  # jaw 0-32, chin 16
    *((33 + i, 46 - i) for i in range(5)), *((38 + i, 50 - i) for i in range(4)),  # brows: upper, lower arcs
    (55, 59), (56, 58),  # nostrils (bridge 51-54 and 57 on the midline)
    *((60 + i, 72 - i) for i in range(5)), *((65 + i, 75 - i) for i in range(3)),  # eyes: corners/upper, lower
    *((76 + i, 82 - i) for i in range(3)), (83, 87), (84, 86),  # outer lip (79, 85 on the midline)
    (88, 92), (89, 91), (93, 95),  # inner lip (90, 94 on the midline)
    (96, 97),  # pupils
]
# COFW (LFPW 29-point layout): brows 0-7, eye corners 8-11, lids 12-15, pupils 16-17, nose 18-21,
# mouth corners 22-23, lip midpoints 24-27, chin 28
_COFW_PAIRS = [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23)]

FLIP_PERMUTATIONS: dict[int, tuple[int, ...]] = {
    68: tuple(MIRROR_68),
    98: _from_pairs(98, _WFLW_PAIRS),
    29: _from_pairs(29, _COFW_PAIRS),
}
"""Horizontal-flip permutations by landmark count (68 iBUG/300W, 98 WFLW, 29 COFW): landmark ``k`` of a
mirrored face is landmark ``perm[k]`` of the original. Each is an involution."""


def _affine(a: ArrayLike, name: str = "affine") -> np.ndarray:
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    if a.shape != (2, 3):
        raise ValueError(f"{name} must have shape (2, 3), got {a.shape}")
    return a


def _homogeneous(a: np.ndarray) -> np.ndarray:
    return np.vstack([a, [0.0, 0.0, 1.0]])


def invert_affine(affine: ArrayLike) -> np.ndarray:
    """The inverse (2, 3) float64 affine."""
    return np.linalg.inv(_homogeneous(_affine(affine)))[:2]


def apply_affine(affine: ArrayLike, points: ArrayLike) -> np.ndarray:
    """``affine @ (x, y, 1)`` for points (..., 2) as float64; NaN points stay NaN."""
    a = _affine(affine)
    return np.asarray(points, dtype=np.float64) @ a[:, :2].T + a[:, 2]


def box_from_landmarks(landmarks: ArrayLike) -> np.ndarray:
    """``x_min, y_min, x_max, y_max`` (4,) float64 of the finite landmarks (K, 2)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("landmarks: no finite landmark to take a box from")
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def crop_affine(box: ArrayLike, size: int, scale: float = 1.25) -> np.ndarray:
    """Original -> crop (2, 3) float64 affine: the square of side ``scale * max(w, h)`` centred on the box
    ``x_min, y_min, x_max, y_max`` maps exactly onto the crop's ``[-0.5, size-0.5]^2``."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64).reshape(4)
    side = scale * max(x1 - x0, y1 - y0)
    if not (size > 0 and math.isfinite(side) and side > 0):
        raise ValueError(f"crop_affine: need size > 0 and a box of positive extent, got size={size}, "
                         f"box=({x0:g}, {y0:g}, {x1:g}, {y1:g}), scale={scale:g}")
    s = size / side
    return np.array([[s, 0.0, s * (side / 2 - (x0 + x1) / 2) - 0.5],
                     [0.0, s, s * (side / 2 - (y0 + y1) / 2) - 0.5]])


def check_box(box: ArrayLike, width: int, height: int, name: str = "box") -> np.ndarray:
    """``box`` ``(x_min, y_min, x_max, y_max)`` as float64 (4,), checked against a ``width`` x ``height`` image:
    finite, ``x_min < x_max`` and ``y_min < y_max``, and overlapping the image's pixels ``[-0.5, width - 0.5]
    x [-0.5, height - 0.5]`` (a box may reach past the border, as a face at the edge of a photo does).
    ``ValueError`` naming ``name`` otherwise."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    text = " ".join(f"{v:g}" for v in b)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"{name} must be 4 finite numbers X0 Y0 X1 Y1, got {text}")
    x0, y0, x1, y1 = b
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"{name} {text}: need X0 < X1 and Y0 < Y1 (corners top-left, then bottom-right)")
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        raise ValueError(f"{name} {text} lies outside the {width}x{height} image")
    return b


def warp(image: Tensor, affine: ArrayLike, size: int) -> Tensor:
    """Resample ``image`` (C, H, W) (uint8, scaled by 1/255, or float, taken as is) into a (C, size, size)
    float32 crop with one bilinear ``grid_sample`` (zeros outside): original ``(x, y)`` lands at crop
    ``affine @ (x, y, 1)`` (``affine`` original -> crop)."""
    if not isinstance(image, Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a (C, H, W) tensor, got {getattr(image, 'shape', type(image).__name__)}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    img = image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)
    c, h, w = img.shape
    # crop pixel <- normalised output (u = (2j+1)/S - 1), normalised input <- original pixel
    from_norm = np.array([[size / 2, 0.0, (size - 1) / 2], [0.0, size / 2, (size - 1) / 2], [0.0, 0.0, 1.0]])
    to_norm = np.array([[2 / w, 0.0, 1 / w - 1], [0.0, 2 / h, 1 / h - 1], [0.0, 0.0, 1.0]])
    theta = (to_norm @ np.linalg.inv(_homogeneous(_affine(affine))) @ from_norm)[:2]
    grid = F.affine_grid(torch.from_numpy(theta)[None], [1, c, size, size], align_corners=False)
    grid = grid.to(device=img.device, dtype=torch.float32)
    return F.grid_sample(img[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


@dataclass(frozen=True)
class Augment:
    """Random crop -> crop similarity about the crop centre: horizontal flip with probability ``flip``,
    rotation uniform in ``+-rotation`` degrees, zoom uniform in ``scale`` (> 1 enlarges the face), shift
    uniform in ``+-translation`` of the crop size per axis. ``permutations`` (default
    :data:`FLIP_PERMUTATIONS`) relabel the landmarks of a flipped face."""

    flip: float = 0.5
    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translation: float = 0.0
    permutations: Optional[dict[int, Sequence[int]]] = None

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0.0 <= self.flip <= 1.0 and self.rotation >= 0.0 and 0.0 < lo <= hi and self.translation >= 0.0):
            raise ValueError(f"Augment: need 0 <= flip <= 1, rotation >= 0, 0 < scale[0] <= scale[1] and "
                             f"translation >= 0, got {self}")

    def permutation(self, k: int) -> np.ndarray:
        """The flip permutation for ``k`` landmarks; ``ValueError`` when there is none."""
        table = FLIP_PERMUTATIONS if self.permutations is None else self.permutations
        if k not in table:
            raise ValueError(f"Augment: no flip permutation for {k} landmarks (known: {sorted(table)}); "
                             f"pass permutations= or flip=0")
        return np.asarray(table[k], dtype=np.int64)

    def sample_affine(self, size: int, generator: torch.Generator) -> tuple[np.ndarray, bool]:
        """A crop -> crop (2, 3) float64 affine and whether it flips; always 5 draws from ``generator``."""
        u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        flipped = u[0] < self.flip
        angle = math.radians(self.rotation * (2 * u[1] - 1))
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u[2]
        f = -1.0 if flipped else 1.0
        linear = s * np.array([[math.cos(angle) * f, -math.sin(angle)], [math.sin(angle) * f, math.cos(angle)]])
        centre = np.full(2, (size - 1) / 2)
        shift = centre + self.translation * size * (2 * np.array(u[3:]) - 1) - linear @ centre
        return np.hstack([linear, shift[:, None]]), flipped
