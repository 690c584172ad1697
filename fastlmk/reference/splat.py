"""Pure-PyTorch reference of the visualization splat (seed 003 Eq. 9-10, docs/ops.md 3): the ground truth of
the tests and the baseline of the benchmark.

Conventions shared by every backend, so that they agree on which pixels and vertices take part:

- Visibility: a vertex with finite ``xy`` and ``depth`` falls in the cell ``(floor(x + 0.5), floor(y + 0.5))``
  (its nearest pixel, possibly off the map). Cells within ``m = floor(radius + 0.5)`` of the map form the
  z-buffer; a vertex whose cell lies further out cannot reach any pixel and is dropped. Per cell only the
  smallest depth survives, ties to the lowest vertex index.
- Window: pixel column ``u`` belongs to vertex ``q`` when ``|u - x_q| <= radius``, tested for the
  ``floor(2 radius) + 2`` candidates ``u = floor(x_q - radius) + k``; rows alike. Arithmetic in the input dtype,
  with ``radius`` first rounded to it (so that the margin and the window test agree).
- ``V = sum_q value_q w_q / sum_q w_q`` with ``w_q = exp(-((u - x_q)^2 + (v - y_q)^2) / (2 sigma^2))``;
  ``V = 0`` where the sum of weights is 0.

The forward is a scatter (``index_add``) over the (B, Q, n, n) window candidates: differentiable by
autograd, and the "pure-PyTorch scatter" the benchmark compares with. ``splat_backward`` is the analytic
gradient as a per-vertex gather, the formula the native backends implement.
"""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor


_STRUCT_FORMATS = {torch.float64: "d", torch.float32: "f", torch.float16: "e"}


def dtype_radius(radius: float, dtype: torch.dtype) -> float:
    """``radius`` rounded to the data dtype, the value every window test and the margin use (rounded in
    Python, so that a traced program holds no tensor constant)."""
    return struct.unpack(_STRUCT_FORMATS[dtype], struct.pack(_STRUCT_FORMATS[dtype], radius))[0]


def margin(radius: float) -> int:
    """Cells beyond the map (each side) whose vertices can still reach a pixel: floor(radius + 0.5)."""
    return int(math.floor(radius + 0.5))


def candidates(radius: float) -> int:
    """Window candidates per axis: floor(2 radius) + 2."""
    return int(math.floor(2 * radius)) + 2


def visibility(xy: Tensor, depth: Tensor, size: tuple[int, int], radius: float) -> Tensor:
    """(B, Q) bool: the vertices that survive the z-buffer (see the module docstring)."""
    b, q = depth.shape
    h, w = size
    m = margin(dtype_radius(radius, xy.dtype))
    finite = torch.isfinite(xy).all(-1) & torch.isfinite(depth)
    cell = torch.floor(torch.where(finite[..., None], xy, torch.zeros_like(xy)) + 0.5)
    inside = (finite & (cell[..., 0] >= -m) & (cell[..., 0] <= w - 1 + m)
              & (cell[..., 1] >= -m) & (cell[..., 1] <= h - 1 + m))
    gh, gw = h + 2 * m, w + 2 * m
    dump = b * gh * gw  # the cell of the skipped vertices
    c = torch.where(inside[..., None], cell, torch.zeros_like(cell)).long() + m
    batch = torch.arange(b, device=depth.device)[:, None]
    key = torch.where(inside, (batch * gh + c[..., 1]) * gw + c[..., 0], dump).reshape(-1)
    # per cell the smallest depth, then the lowest index among the vertices holding it (as the z-buffers)
    d = torch.where(inside, depth, torch.full_like(depth, math.inf)).reshape(-1)
    nearest = torch.full((dump + 1,), math.inf, dtype=depth.dtype, device=depth.device).scatter_reduce(
        0, key, d, "amin")
    index = torch.arange(q, device=depth.device).repeat(b)
    holds = inside.reshape(-1) & (d == nearest[key])
    owner = torch.full((dump + 1,), q, dtype=torch.int64, device=depth.device).scatter_reduce(
        0, key, torch.where(holds, index, q), "amin")
    visible = holds & (owner[key] == index)
    return visible.view(b, q)


def _window(xy: Tensor, visible: Tensor, size: tuple[int, int], radius: float):
    """Per vertex, the (n, n) window candidates: flat pixel index, (u - x, v - y) and the in-window mask."""
    b, q, _ = xy.shape
    h, w = size
    radius = dtype_radius(radius, xy.dtype)
    n = candidates(radius)
    r = radius  # a Python float: the subtractions and comparisons below run in xy's dtype
    safe = torch.where(visible[..., None], xy, torch.zeros_like(xy))  # no NaN reaches autograd
    k = torch.arange(n, dtype=xy.dtype, device=xy.device)
    u = torch.floor(safe[..., 0:1].detach() - r) + k  # (B, Q, n)
    v = torch.floor(safe[..., 1:2].detach() - r) + k
    dx, dy = u - safe[..., 0:1], v - safe[..., 1:2]
    okx = (dx.abs() <= r) & (u >= 0) & (u <= w - 1)
    oky = (dy.abs() <= r) & (v >= 0) & (v <= h - 1)
    ok = visible[..., None, None] & oky[..., :, None] & okx[..., None, :]  # (B, Q, n(rows), n(cols))
    batch = torch.arange(b, device=xy.device).view(b, 1, 1, 1)
    idx = (batch * h + v.clamp(0, h - 1).long()[..., :, None]) * w + u.clamp(0, w - 1).long()[..., None, :]
    return idx, dx[..., None, :], dy[..., :, None], ok


def splat(xy: Tensor, depth: Tensor, value: Tensor, size: tuple[int, int], sigma: float,
          radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(image (B, 1, H, W), weight_sum (B, 1, H, W), visible (B, Q))``; image and weight sum are
    differentiable in ``xy`` and ``value`` by autograd."""
    visible = visibility(xy, depth, size, radius)
    return (*accumulate(xy, value, visible, size, sigma, radius), visible)


def accumulate(xy: Tensor, value: Tensor, visible: Tensor, size: tuple[int, int], sigma: float,
               radius: float) -> tuple[Tensor, Tensor]:
    """``(image, weight_sum)`` of the ``visible`` vertices: the scatter half of ``splat``."""
    b = xy.shape[0]
    h, w = size
    idx, dx, dy, ok = _window(xy, visible, size, radius)
    wgt = torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    wgt = torch.where(ok, wgt, torch.zeros_like(wgt)).reshape(-1)  # a pixel outside the window gets +0
    idx = idx.expand(ok.shape).reshape(-1)
    vals = value[..., None, None].expand(ok.shape).reshape(-1)
    zeros = xy.new_zeros(b * h * w)
    num = zeros.index_add(0, idx, vals * wgt)
    den = zeros.index_add(0, idx, wgt)
    filled = den > 0
    image = torch.where(filled, num / torch.where(filled, den, torch.ones_like(den)), zeros)
    return image.view(b, 1, h, w), den.view(b, 1, h, w)


def splat_backward(grad_image: Tensor, xy: Tensor, value: Tensor, image: Tensor, weight_sum: Tensor,
                   visible: Tensor, sigma: float, radius: float) -> tuple[Tensor, Tensor]:
    """``(grad_xy, grad_value)`` by a gather over each visible vertex's window (no scatter):

    ``dL/dvalue_q = sum_p w_qp T_p`` and ``dL/dx_q = sum_p w_qp (u_p - x_q) / sigma^2 (value_q T_p - S_p)``
    (``y`` alike), with ``T = G / D`` and ``S = T V`` per pixel (0 where ``D = 0``), ``G`` the incoming
    gradient, ``D`` the weight sum and ``V`` the image. Hidden and skipped vertices get 0.
    """
    h, w = image.shape[-2:]
    g, d = grad_image.reshape(-1), weight_sum.reshape(-1)
    t = torch.where(d > 0, g / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
    s = t * image.reshape(-1)
    idx, dx, dy, ok = _window(xy, visible, (h, w), radius)
    wgt = torch.where(ok, torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)), torch.zeros_like(dx))
    tq, sq = t[idx], s[idx]
    grad_value = (wgt * tq).sum((-2, -1))
    common = wgt * (value[..., None, None] * tq - sq) / (sigma * sigma)
    grad_xy = torch.stack([(common * dx).sum((-2, -1)), (common * dy).sum((-2, -1))], -1)
    return grad_xy, grad_value
