"""One-line swaps for face-alignment's and kornia's heatmap decoders, on the fused ops.

- ``get_preds_fromhm(hm, center, scale)``: face-alignment 1.5's function of the same name (its FAN decoder),
  argmax + quarter offset, 1-based pixel coordinates minus 0.5, and the box mapping back to the image.
- ``spatial_soft_argmax2d(input, temperature, normalized_coordinates)``: kornia 0.9's, the expectation of the
  pixel coordinates under the softmax of each whole map; differentiable.

Where they differ from their peers (docs/codecs.md): face-alignment takes the row of the maximum as
``index // H`` and refines only where ``0 < x < 63`` and ``0 < y < 63`` (its 64 x 64 maps); this one uses
``index // W`` and the map's own size, so the two agree on 64 x 64 maps (face-alignment's only size) and
this one is right on others.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from . import ops

__all__ = ["get_preds_fromhm", "spatial_soft_argmax2d"]

Array = Union[np.ndarray, Tensor]


def get_preds_fromhm(hm: Array, center: Optional[Array] = None,
                     scale: Optional[float] = None) -> tuple[Array, Array, Array]:
    """``(preds, preds_orig, scores)`` from heatmaps (B, K, H, W), as face-alignment 1.5.

    ``preds`` (B, K, 2): the argmax pixel ``(j, i)`` plus ``0.25 sign`` of the neighbour difference per axis
    where ``0 < j < W - 1`` and ``0 < i < H - 1`` (both), plus 0.5 (face-alignment's 1-based coordinates minus 0.5). ``preds_orig``: with
    ``center`` (x, y) and ``scale`` of the face box (side ``200 scale``), ``trunc(preds * 200 scale / H + center
    - 100 scale)`` (face-alignment's inverse ``transform``, rounded toward zero as its int32 cast), else zeros.
    ``scores`` (B, K): the maxima. NumPy in, NumPy out (float32); a tensor in gives tensors on its device,
    from one fused decode."""
    numpy_in = isinstance(hm, np.ndarray)
    maps = torch.from_numpy(np.ascontiguousarray(hm)) if numpy_in else hm.detach()
    if maps.dim() != 4:
        raise ValueError(f"hm must have shape (B, K, H, W), got {tuple(maps.shape)}")
    h, w = maps.shape[-2:]
    coords, scores = ops.decode(maps, "quarter")
    pixel = torch.floor(coords + 0.5)  # the argmax (the quarter offset is +-0.25 or 0)
    inside = ((pixel > 0) & (pixel < torch.tensor([w - 1, h - 1], device=pixel.device))).all(-1, keepdim=True)
    preds = torch.where(inside, coords, pixel) + 0.5  # face-alignment refines only interior maxima
    if center is not None and scale is not None:
        side = 200.0 * float(scale)
        c = torch.as_tensor(center, dtype=torch.float64).to(coords.device).reshape(2)
        preds_orig = torch.trunc(preds.double() * (side / h) + c - side / 2).to(preds.dtype)
    else:
        preds_orig = torch.zeros_like(preds)
    if numpy_in:
        return preds.numpy(), preds_orig.numpy(), scores.numpy().astype(hm.dtype, copy=False)
    return preds, preds_orig, scores


def spatial_soft_argmax2d(input: Tensor, temperature: Optional[Union[Tensor, float]] = None,
                          normalized_coordinates: bool = True) -> Tensor:
    """Kornia 0.9's ``spatial_soft_argmax2d``: ``sum_p softmax(input / temperature)_p (x_p, y_p)`` per map,
    (B, N, H, W) -> (B, N, 2) as (x, y); pixel coordinates, or with ``normalized_coordinates`` the corner-aligned
    ``2 x / (W - 1) - 1`` (0 for a one-pixel axis, as kornia). The fused ``soft_argmax`` with ``beta = 1 / temperature``;
    differentiable in ``input`` (not in a tensor ``temperature``, taken as a number)."""
    t = 1.0 if temperature is None else float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    coords = ops.soft_argmax(input, beta=1.0 / t)
    if not normalized_coordinates:
        return coords.to(input.dtype)
    h, w = input.shape[-2:]
    size = torch.tensor([w, h], dtype=coords.dtype, device=coords.device)
    normalized = coords * (2.0 / (size - 1).clamp(min=1)) - 1
    return torch.where(size > 1, normalized, torch.zeros_like(normalized)).to(input.dtype)
