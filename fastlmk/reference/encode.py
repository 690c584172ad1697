"""Pure-PyTorch reference of the heatmap-encoding family: the ground truth of every test and benchmark.

Conventions (docs/conventions.md): keypoints (B, K, 2) as (x, y) in heatmap pixels, pixel (i, j) centred at
(x=j, y=i), or (B, N, K, 2) for N instances per image (Gaussians only); per-keypoint parameters broadcast to
(B, K); a non-finite keypoint gives an all-zero channel. Written for clarity, on the full (B, [N,] K, H, W)
grid.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import compute_dtype


def _offsets(keypoints: Tensor, size: tuple[int, int], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """dx = j - x and dy = i - y on the pixel grid, shaped (B, K, H, W) by broadcasting."""
    h, w = size
    j = torch.arange(w, device=keypoints.device, dtype=dtype)
    i = torch.arange(h, device=keypoints.device, dtype=dtype)
    x = keypoints[..., 0, None, None].to(dtype)
    y = keypoints[..., 1, None, None].to(dtype)
    return j - x, i[:, None] - y


def _param(value, keypoints: Tensor, dtype: torch.dtype) -> Tensor:
    """A scalar, (K,) or (B, K) parameter as (B, K, 1, 1) for keypoints (B, [N,] K, 2)."""
    b, k = keypoints.shape[0], keypoints.shape[-2]
    return torch.as_tensor(value, dtype=dtype, device=keypoints.device).expand(b, k)[..., None, None]


def _weighted(out: Tensor, weights: Optional[Tensor]) -> Tensor:
    return out if weights is None else out * weights[..., None, None].to(out.dtype)


def _trunc(v: Tensor) -> Tensor:
    return torch.where(v >= 0, torch.floor(v), torch.ceil(v))


def _axis(coord: Tensor, r: Tensor, n: int, center: str) -> tuple[Tensor, Tensor]:
    """Per pixel p of an axis of n pixels: (p - c, whether the window holds p) for centres ``coord`` (...,)
    and window radii ``r`` (...,) under the centre rule ``center`` (csrc/encode/encode.h, Center)."""
    p = torch.arange(n, device=coord.device, dtype=coord.dtype)
    if center in ("continuous", "rounded"):
        c = torch.floor(coord + 0.5) if center == "rounded" else coord
        d = p - c[..., None]
        return d, d.abs() <= r[..., None]
    mu = _trunc(coord + 0.5)  # mmpose's patch, its bounds in float64 as mmpose computes them
    r64 = r.to(torch.float64)
    first = _trunc(mu.to(torch.float64) - r64)
    last = _trunc(mu.to(torch.float64) + r64 + 1) - 1
    c = (first + torch.floor(r64 + 0.5)).to(coord.dtype)
    if center == "udp":
        c = c + (coord - mu)
    p64 = p.to(torch.float64)
    return p - c[..., None], (p64 >= first[..., None]) & (p64 <= last[..., None])


def render_gaussian(keypoints: Tensor, size: tuple[int, int], sigma, *, weights: Optional[Tensor] = None,
                    center: str = "continuous", radius: float = 3.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """exp(-((j-cx)^2 + (i-cy)^2) / 2 sigma^2) * weight on the window of the centre rule ``center``
    (continuous, rounded: |j-cx|, |i-cy| <= radius*sigma; mmpose, udp: mmpose's patch), else 0. With
    instances (B, N, K, 2) and weights (B, N, K), each pixel is the maximum over the instances of non-zero
    weight whose window holds it, 0 where none does."""
    cd = compute_dtype(dtype)
    kp = keypoints.to(cd)
    if kp.dim() == 3:
        kp = kp[:, None]
        weights = None if weights is None else weights[:, None]
    h, w = size
    s = _param(sigma, kp, cd)[:, None]  # (B, 1, K, 1, 1)
    r = radius * s[..., 0, 0]
    finite = torch.isfinite(kp).all(-1)[..., None, None]
    dx, in_x = _axis(kp[..., 0], r, w, center)
    dy, in_y = _axis(kp[..., 1], r, h, center)
    inside = in_y[..., :, None] & in_x[..., None, :] & finite
    g = torch.exp(-(dx[..., None, :] ** 2 + dy[..., :, None] ** 2) / (2 * s * s))
    if weights is not None:
        wt = weights.to(cd)[..., None, None]
        g = g * wt
        inside = inside & (wt != 0)
    if kp.shape[1] == 0:  # no instance: amax has nothing to reduce
        return torch.zeros(kp.shape[0], kp.shape[2], h, w, dtype=dtype, device=kp.device)
    merged = torch.where(inside, g, float("-inf")).amax(1)
    return torch.where(inside.any(1), merged, torch.zeros((), dtype=cd, device=kp.device)).to(dtype)


def render_disc(keypoints: Tensor, size: tuple[int, int], radius, *, weights: Optional[Tensor] = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """1 where (j-x)^2 + (i-y)^2 <= radius^2, else 0; times weights."""
    cd = compute_dtype(dtype)
    dx, dy = _offsets(keypoints, size, cd)
    r = _param(radius, keypoints, cd)
    inside = (dx.abs() <= r) & (dy.abs() <= r) & (dx * dx + dy * dy <= r * r)
    return _weighted(inside.to(cd), weights).to(dtype)


def render_offsets(keypoints: Tensor, size: tuple[int, int], radius, *, weights: Optional[Tensor] = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, K, 2, H, W): (x - j, y - i) where |j-x|, |i-y| <= radius, else 0; channels with weight 0 are 0."""
    cd = compute_dtype(dtype)
    dx, dy = _offsets(keypoints, size, cd)
    r = _param(radius, keypoints, cd)
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    if weights is not None:
        inside = inside & (weights != 0)[..., None, None]
    zero = torch.zeros((), dtype=cd, device=keypoints.device)
    ox = torch.where(inside, -dx, zero)
    oy = torch.where(inside, -dy.expand_as(ox), zero)
    return torch.stack([ox, oy], dim=2).to(dtype)


def elementwise_loss(kind: str, pred: Tensor, target: Tensor, awing: tuple[float, float, float, float]) -> Tensor:
    """Per-pixel loss l(pred, target) for kind mse, bce_logits or awing (alpha, omega, epsilon, theta)."""
    if kind == "mse":
        return (pred - target) ** 2
    if kind == "bce_logits":
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    alpha, omega, eps, theta = awing
    d = (pred - target).abs()
    e = alpha - target
    ue = (theta / eps) ** e
    a = omega * e * (theta / eps) ** (e - 1) / (eps * (1 + ue))
    c = theta * a - omega * torch.log1p(ue)
    return torch.where(d < theta, omega * torch.log1p((d / eps) ** e), a * d - c)


def elementwise_loss_grad(kind: str, pred: Tensor, target: Tensor, awing: tuple[float, float, float, float]) -> Tensor:
    """d elementwise_loss / d pred."""
    if kind == "mse":
        return 2 * (pred - target)
    if kind == "bce_logits":
        return torch.sigmoid(pred) - target
    alpha, omega, eps, theta = awing
    d = (pred - target).abs()
    e = alpha - target
    sgn = torch.sign(pred - target)
    u = d / eps
    near = omega * e * u ** (e - 1) / (eps * (1 + u ** e))
    far = omega * e * (theta / eps) ** (e - 1) / (eps * (1 + (theta / eps) ** e))
    return sgn * torch.where(d < theta, near, far)


def _target(pred: Tensor, keypoints: Tensor, sigma, weights: Optional[Tensor], center: str,
            radius: float) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """(pred, target, channel weights) in the compute dtype: (B, K) weights weight the channels' losses,
    (B, N, K) weights (with (B, N, K, 2) keypoints) scale the instances of the target."""
    cd = compute_dtype(pred.dtype)
    instance = weights if keypoints.dim() == 4 else None
    target = render_gaussian(keypoints, tuple(pred.shape[-2:]), sigma, weights=instance, center=center,
                             radius=radius, dtype=cd)
    return pred.to(cd), target, None if keypoints.dim() == 4 else weights


def heatmap_loss(pred: Tensor, keypoints: Tensor, sigma, *, kind: str = "mse", weights: Optional[Tensor] = None,
                 center: str = "continuous", radius: float = 3.0, reduction: str = "mean",
                 awing: tuple[float, float, float, float] = (2.1, 14.0, 1.0, 0.5)) -> Tensor:
    """Render the Gaussian target, apply the loss per pixel, weight channel (b, k) by weights[b, k] (or, for
    instances (B, N, K, 2), weight the instances of the target by weights (B, N, K)), reduce ("mean" divides
    by B*K*H*W). Differentiable in pred through autograd."""
    p, t, weights = _target(pred, keypoints, sigma, weights, center, radius)
    loss = _weighted(elementwise_loss(kind, p, t, awing), weights)
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.mean()
    return loss.to(pred.dtype)


def heatmap_loss_backward(grad: Tensor, pred: Tensor, keypoints: Tensor, sigma, *, kind: str = "mse",
                          weights: Optional[Tensor] = None, center: str = "continuous", radius: float = 3.0,
                          reduction: str = "mean",
                          awing: tuple[float, float, float, float] = (2.1, 14.0, 1.0, 0.5)) -> Tensor:
    """Gradient of heatmap_loss with respect to pred, given the gradient of its output."""
    p, t, weights = _target(pred, keypoints, sigma, weights, center, radius)
    g = grad.to(p.dtype)
    if reduction == "mean":
        g = g / pred.numel()
    return _weighted(g * elementwise_loss_grad(kind, p, t, awing), weights).to(pred.dtype)


def render_simcc(keypoints: Tensor, bins: tuple[int, int], sigma: tuple[float, float], *, kind: str = "gaussian",
                 smoothing: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), weights: Optional[Tensor] = None,
                 dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """SimCC labels (B, K, bins[0]) and (B, K, bins[1]) of keypoints (B, K, 2) in bins: per axis a, the Gaussian
    ``weight * scale[a] * exp(-(j - c)^2 / (2 sigma[a]^2))`` over every bin, or (``kind="standard"``) the
    one-hot ``weight * (1 - smoothing)`` at bin ``floor(c + 0.5)`` over ``weight * smoothing / (n - 1)``.
    A non-finite keypoint or a zero weight gives zero vectors."""
    cd = compute_dtype(dtype)
    kp = keypoints.to(cd)
    valid = torch.isfinite(kp).all(-1)
    wt = torch.ones_like(kp[..., 0]) if weights is None else weights.to(cd)
    valid = valid & (wt != 0)
    out = []
    for axis, n in enumerate(bins):
        c = kp[..., axis, None]
        j = torch.arange(n, dtype=cd, device=kp.device)
        if kind == "gaussian":
            v = scale[axis] * torch.exp(-(j - c) ** 2 / (2 * sigma[axis] ** 2))
        else:
            rest = smoothing / (n - 1) if n > 1 else 0.0
            v = torch.where(j == torch.floor(c + 0.5), 1.0 - smoothing, rest + torch.zeros_like(c))
        out.append(torch.where(valid[..., None], v * wt[..., None], torch.zeros((), dtype=cd, device=kp.device))
                   .to(dtype))
    return out[0], out[1]
