"""Triton kernels of the heatmap-encoding family (GPU backend; also runs on CPU under TRITON_INTERPRET=1).

Grid: (channel, block of pixels). Every program recomputes its channel's keypoint parameters and writes its
block densely, so the render is a single pass over the output (the write floor); the fused loss reads
``pred`` once and writes per-block partial sums that are added in a fixed order (deterministic). Float
arguments (radius, the Adaptive Wing parameters) are annotated ``tl.float64`` and converted to the compute
dtype in the kernel (``common.scalar``), so float64 losses and targets are exact.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from fastlmk.kernels.common import enum, scalar

# the codes, as the C++ kernels define them (csrc/encode/encode.h)
GAUSSIAN, DISC, OFFSETS = enum("render_kind", "gaussian", "disc", "offsets")
MSE, BCE_LOGITS, AWING = enum("loss_kind", "mse", "bce_logits", "awing")
NONE, SUM, MEAN = enum("reduction", "none", "sum", "mean")
CONTINUOUS, ROUNDED, MMPOSE, UDP = enum("center", "continuous", "rounded", "mmpose", "udp")
SIMCC_GAUSSIAN, SIMCC_STANDARD = enum("simcc_kind", "gaussian", "standard")

BLOCK = 1024
_COMPUTE = {torch.float32: tl.float32, torch.float64: tl.float64}


@triton.jit
def _trunc(v):
    return tl.where(v >= 0, tl.floor(v), tl.ceil(v))


@triton.jit
def _axis(offs, x, r, CENTER: tl.constexpr):
    """d = p - c at pixel coordinates ``offs`` and whether the window of the centre rule CENTER holds p
    (csrc/encode/encode.h, Center)."""
    if CENTER == CONTINUOUS or CENTER == ROUNDED:
        if CENTER == ROUNDED:
            x = tl.floor(x + 0.5)
        d = offs.to(x.dtype) - x
        inside = tl.abs(d) <= r  # false for a non-finite keypoint
    else:  # mmpose's patch: [trunc(mu - r), trunc(mu + r + 1)), centred at its start + floor(r + 0.5)
        mu = _trunc(x + 0.5)
        r64 = r.to(tl.float64)
        first = _trunc(mu.to(tl.float64) - r64)
        last = _trunc(mu.to(tl.float64) + r64 + 1.0) - 1.0
        c = (first + tl.floor(r64 + 0.5)).to(x.dtype)
        if CENTER == UDP:
            c = c + (x - mu)
        p = offs.to(tl.float64)
        d = offs.to(x.dtype) - c
        inside = (p >= first) & (p <= last)
    return d, inside


@triton.jit
def _window_offsets(offs, W, x, y, r, CENTER: tl.constexpr):
    """dx = j - cx, dy = i - cy at flat pixel indices ``offs``, and whether the window holds the pixel."""
    dx, in_x = _axis(offs % W, x, r, CENTER)
    dy, in_y = _axis(offs // W, y, r, CENTER)
    return dx, dy, in_x & in_y


@triton.jit
def _gaussian(offs, W, kp_ptr, w_ptr, c, K, N, s, radius, CENTER: tl.constexpr, HAS_W: tl.constexpr):
    """Channel c = b K + k of the merged Gaussian target: at each pixel the maximum over the instances of
    non-zero weight whose window holds it (keypoints (B, N, K, 2), weights (B, N, K)), else 0."""
    first = (c // K) * N * K + c % K
    val = tl.zeros(offs.shape, s.dtype)
    covered = offs < 0
    for q in range(0, N):
        at = first + q * K
        x = tl.load(kp_ptr + 2 * at)
        y = tl.load(kp_ptr + 2 * at + 1)
        dx, dy, inside = _window_offsets(offs, W, x, y, radius * s, CENTER)
        g = tl.exp(-(dx * dx + dy * dy) / (2 * s * s))
        if HAS_W:
            wt = tl.load(w_ptr + at)
            g = g * wt
            inside = inside & ((dy * 0 + wt) != 0)
        val = tl.where(inside, tl.where(covered, tl.maximum(val, g), g), val)
        covered = covered | inside
    return val


@triton.jit
def _render_kernel(kp_ptr, param_ptr, w_ptr, out_ptr, HW, W, K, N, radius: tl.float64,
                   KIND: tl.constexpr, CENTER: tl.constexpr, HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    p = tl.load(param_ptr + c)
    radius = scalar(radius, p.dtype)
    ty = out_ptr.dtype.element_ty
    if KIND == GAUSSIAN:  # Gaussian, p = sigma, N instances
        val = _gaussian(offs, W, kp_ptr, w_ptr, c, K, N, p, radius, CENTER, HAS_W)
        tl.store(out_ptr + c * HW + offs, val.to(ty), mask=mask)
    else:
        x = tl.load(kp_ptr + 2 * c)
        y = tl.load(kp_ptr + 2 * c + 1)
        wt = tl.load(w_ptr + c) if HAS_W else 1.0
        dx, dy, inside = _window_offsets(offs, W, x, y, p, CONTINUOUS)
        if KIND == DISC:  # disc, p = radius
            val = tl.where(inside & (dx * dx + dy * dy <= p * p), wt, 0.0)
            tl.store(out_ptr + c * HW + offs, val.to(ty), mask=mask)
        else:  # offsets (x - j, y - i), p = radius; the weight only masks
            if HAS_W:
                inside = inside & ((dx * 0 + wt) != 0)  # broadcast the channel's weight to the block
            tl.store(out_ptr + 2 * c * HW + offs, tl.where(inside, -dx, 0.0).to(ty), mask=mask)
            tl.store(out_ptr + (2 * c + 1) * HW + offs, tl.where(inside, -dy, 0.0).to(ty), mask=mask)


@triton.jit
def _simcc_vector(out_ptr, offs, n, c, wt, sigma, scale, smoothing, valid, KIND: tl.constexpr):
    """Bins offs < n of one SimCC label vector centred at c (csrc/encode/encode.h, SimccArgs)."""
    j = offs.to(c.dtype)
    if KIND == SIMCC_GAUSSIAN:
        val = wt * scale * tl.exp(-(j - c) * (j - c) / (2 * sigma * sigma))
    else:
        rest = tl.where(n > 1, wt * smoothing / tl.maximum(n - 1, 1).to(c.dtype), 0.0)
        val = tl.where(j == tl.floor(c + 0.5), wt * (1 - smoothing), rest)
    tl.store(out_ptr + offs, tl.where(valid, val, 0.0).to(out_ptr.dtype.element_ty), mask=offs < n)


@triton.jit
def _simcc_kernel(kp_ptr, w_ptr, x_ptr, y_ptr, WX, HY, sigma_x: tl.float64, sigma_y: tl.float64,
                  scale_x: tl.float64, scale_y: tl.float64, smoothing: tl.float64, KIND: tl.constexpr,
                  HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(kp_ptr + 2 * c)
    y = tl.load(kp_ptr + 2 * c + 1)
    wt = tl.load(w_ptr + c) if HAS_W else tl.zeros([], x.dtype) + 1
    valid = (wt != 0) & (tl.abs(x) < float("inf")) & (tl.abs(y) < float("inf"))  # false for NaN too
    sm = scalar(smoothing, x.dtype)
    _simcc_vector(x_ptr + c * WX, offs, WX, x, wt, scalar(sigma_x, x.dtype), scalar(scale_x, x.dtype), sm, valid,
                  KIND)
    _simcc_vector(y_ptr + c * HY, offs, HY, y, wt, scalar(sigma_y, x.dtype), scalar(scale_y, x.dtype), sm, valid,
                  KIND)


@triton.jit
def _compute(radius, alpha, omega, eps, theta, COMPUTE: tl.constexpr):
    return (scalar(radius, COMPUTE), scalar(alpha, COMPUTE), scalar(omega, COMPUTE), scalar(eps, COMPUTE),
            scalar(theta, COMPUTE))


@triton.jit
def _loss_value(p, t, alpha, omega, eps, theta, KIND: tl.constexpr):
    if KIND == MSE:  # mse
        out = (p - t) * (p - t)
    elif KIND == BCE_LOGITS:  # bce on logits, stable form
        out = tl.maximum(p, 0.0) - p * t + tl.log(1 + tl.exp(-tl.abs(p)))
    else:  # Adaptive Wing; x^e = exp(e log x), 0^e = 0 for e > 0
        d = tl.abs(p - t)
        e = alpha - t
        ue = tl.exp(e * tl.log(theta / eps))
        a = omega * e * tl.exp((e - 1) * tl.log(theta / eps)) / (eps * (1 + ue))
        cc = theta * a - omega * tl.log(1 + ue)
        near = omega * tl.log(1 + tl.exp(e * tl.log(d / eps)))
        out = tl.where(d < theta, near, a * d - cc)
    return out


@triton.jit
def _loss_grad(p, t, alpha, omega, eps, theta, KIND: tl.constexpr):
    if KIND == MSE:
        out = 2 * (p - t)
    elif KIND == BCE_LOGITS:
        out = 1 / (1 + tl.exp(-p)) - t
    else:
        d = tl.abs(p - t)
        e = alpha - t
        sgn = tl.where(p > t, 1.0, tl.where(p < t, -1.0, 0.0))
        lu = tl.log(d / eps)
        near = omega * e * tl.exp((e - 1) * lu) / (eps * (1 + tl.exp(e * lu)))
        lt = tl.log(theta / eps)
        far = omega * e * tl.exp((e - 1) * lt) / (eps * (1 + tl.exp(e * lt)))
        out = sgn * tl.where(d < theta, near, far)
    return out


@triton.jit
def _loss_fwd_kernel(pred_ptr, kp_ptr, sigma_ptr, w_ptr, iw_ptr, out_ptr, HW, W, K, N, radius: tl.float64,
                     alpha: tl.float64, omega: tl.float64, eps: tl.float64, theta: tl.float64,
                     KIND: tl.constexpr, CENTER: tl.constexpr, HAS_W: tl.constexpr, HAS_IW: tl.constexpr,
                     REDUCE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """REDUCE: out[c, block] = the block's weighted loss sum; else out = the weighted per-pixel loss."""
    c = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    s = tl.load(sigma_ptr + c)
    radius, alpha, omega, eps, theta = _compute(radius, alpha, omega, eps, theta, COMPUTE)
    wt = tl.load(w_ptr + c) if HAS_W else 1.0
    t = _gaussian(offs, W, kp_ptr, iw_ptr, c, K, N, s, radius, CENTER, HAS_IW)
    p = tl.load(pred_ptr + c * HW + offs, mask=mask, other=0.0).to(COMPUTE)
    val = _loss_value(p, t, alpha, omega, eps, theta, KIND)
    if REDUCE:
        total = tl.sum(tl.where(mask, val, 0.0), axis=0) * wt
        tl.store(out_ptr + c * tl.num_programs(1) + blk, total)
    else:
        tl.store(out_ptr + c * HW + offs, (val * wt).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _loss_bwd_kernel(grad_ptr, pred_ptr, kp_ptr, sigma_ptr, w_ptr, iw_ptr, gp_ptr, HW, W, K, N, radius: tl.float64,
                     alpha: tl.float64, omega: tl.float64, eps: tl.float64, theta: tl.float64, KIND: tl.constexpr,
                     CENTER: tl.constexpr, HAS_W: tl.constexpr, HAS_IW: tl.constexpr, REDUCE: tl.constexpr,
                     COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """grad_pred = grad * weight * dl/dp; REDUCE: grad is one (already scaled) element."""
    c = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    s = tl.load(sigma_ptr + c)
    radius, alpha, omega, eps, theta = _compute(radius, alpha, omega, eps, theta, COMPUTE)
    wt = tl.load(w_ptr + c) if HAS_W else 1.0
    t = _gaussian(offs, W, kp_ptr, iw_ptr, c, K, N, s, radius, CENTER, HAS_IW)
    p = tl.load(pred_ptr + c * HW + offs, mask=mask, other=0.0).to(COMPUTE)
    if REDUCE:
        g = tl.load(grad_ptr).to(COMPUTE)
    else:
        g = tl.load(grad_ptr + c * HW + offs, mask=mask, other=0.0).to(COMPUTE)
    val = g * wt * _loss_grad(p, t, alpha, omega, eps, theta, KIND)
    tl.store(gp_ptr + c * HW + offs, val.to(gp_ptr.dtype.element_ty), mask=mask)


def _grid(bk: int, hw: int) -> tuple[int, int]:
    return bk, triton.cdiv(hw, BLOCK)


def _weight_args(weights: Optional[Tensor], fallback: Tensor) -> tuple[Tensor, bool]:
    return (fallback, False) if weights is None else (weights, True)


def _instances(keypoints: Tensor) -> tuple[int, int]:
    """(K, N) of keypoints (B, K, 2) or (B, N, K, 2)."""
    return keypoints.shape[-2], keypoints.shape[1] if keypoints.dim() == 4 else 1


def render(kind: int, keypoints: Tensor, param: Tensor, weights: Optional[Tensor], out: Tensor, center: int,
           radius: float) -> None:
    """Writes the targets of ``kind`` (0 Gaussian, 1 disc, 2 offsets) into ``out`` (B, K, [2,] H, W)."""
    h, w = out.shape[-2:]
    bk = param.numel()
    wts, has_w = _weight_args(weights, param)
    _render_kernel[_grid(bk, h * w)](keypoints, param, wts, out, h * w, w, *_instances(keypoints), radius,
                                     KIND=kind, CENTER=center, HAS_W=has_w, BLOCK=BLOCK)


def render_simcc(kind: int, keypoints: Tensor, weights: Optional[Tensor], out_x: Tensor, out_y: Tensor,
                 sigma: list[float], scale: list[float], smoothing: float) -> None:
    """Writes SimCC labels ``out_x (B, K, WX)`` and ``out_y (B, K, HY)`` of ``kind`` (0 Gaussian, 1 standard)."""
    wx, hy = out_x.shape[-1], out_y.shape[-1]
    bk = out_x.numel() // wx
    wts, has_w = _weight_args(weights, keypoints)
    _simcc_kernel[_grid(bk, max(wx, hy))](keypoints, wts, out_x, out_y, wx, hy, *sigma, *scale, smoothing,
                                          KIND=kind, HAS_W=has_w, BLOCK=BLOCK)


def heatmap_loss_forward(kind: int, pred: Tensor, keypoints: Tensor, sigma: Tensor, weights: Optional[Tensor],
                         instance_weights: Optional[Tensor], center: int, radius: float, reduction: int,
                         awing: list[float], out: Tensor) -> None:
    """Fused loss; ``reduction`` 0 none, 1 sum, 2 mean (see fastlmk.ops.heatmap_loss)."""
    b, k, h, w = pred.shape
    grid = _grid(b * k, h * w)
    wts, has_w = _weight_args(weights, sigma)
    iws, has_iw = _weight_args(instance_weights, sigma)
    compute = keypoints.dtype
    dst = out if reduction == NONE else torch.empty(grid, dtype=compute, device=pred.device)
    _loss_fwd_kernel[grid](pred, keypoints, sigma, wts, iws, dst, h * w, w, *_instances(keypoints), radius, *awing,
                           KIND=kind, CENTER=center, HAS_W=has_w, HAS_IW=has_iw, REDUCE=reduction != NONE,
                           COMPUTE=_COMPUTE[compute], BLOCK=BLOCK)
    if reduction != NONE:
        total = dst.sum()
        out.copy_(total / pred.numel() if reduction == MEAN else total)


def heatmap_loss_backward(kind: int, pred: Tensor, keypoints: Tensor, sigma: Tensor, weights: Optional[Tensor],
                          instance_weights: Optional[Tensor], center: int, radius: float, reduction: int,
                          awing: list[float], grad: Tensor, grad_pred: Tensor) -> None:
    b, k, h, w = pred.shape
    wts, has_w = _weight_args(weights, sigma)
    iws, has_iw = _weight_args(instance_weights, sigma)
    if reduction != NONE:
        grad = grad.to(keypoints.dtype) / (pred.numel() if reduction == MEAN else 1)
    _loss_bwd_kernel[_grid(b * k, h * w)](grad, pred, keypoints, sigma, wts, iws, grad_pred, h * w, w,
                                          *_instances(keypoints), radius, *awing, KIND=kind, CENTER=center,
                                          HAS_W=has_w, HAS_IW=has_iw, REDUCE=reduction != NONE,
                                          COMPUTE=_COMPUTE[keypoints.dtype], BLOCK=BLOCK)
