"""Encoding-family suites: render_gaussian and the fused heatmap loss vs the PyTorch and NumPy ways."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _dispatch, ops, reference
from ..ops.encode import BACKENDS
from .harness import Case, Suite

def render_gaussian_outer(keypoints: Tensor, size: tuple[int, int], sigma: float, radius: float = 3.0) -> Tensor:
    """The best pure-PyTorch Gaussian render: a Gaussian is separable, so the (B, K, H, W) map is the outer
    product of two truncated 1-D Gaussians (B, K, H) x (B, K, W); one write of the output."""
    h, w = size

    def axis(n: int, centre: Tensor) -> Tensor:
        d = torch.arange(n, dtype=keypoints.dtype, device=keypoints.device) - centre[..., None]
        g = torch.exp(-(d * d) / (2 * sigma * sigma))
        return torch.where(d.abs() <= radius * sigma, g, torch.zeros((), dtype=g.dtype, device=g.device))

    gx, gy = axis(w, keypoints[..., 0]), axis(h, keypoints[..., 1])
    return gy[..., :, None] * gx[..., None, :]


def render_gaussian_numpy(keypoints: np.ndarray, size: tuple[int, int], sigma: float,
                          radius: float = 3.0) -> np.ndarray:
    """What dataset pipelines do (the ``draw_gaussian`` of CornerNet/HRNet, with a continuous centre): a Python
    loop over the keypoints, each writing its truncated Gaussian patch into a zeroed float32 array."""
    b, k = keypoints.shape[:2]
    h, w = size
    out = np.zeros((b, k, h, w), np.float32)
    flat = out.reshape(b * k, h, w)
    r = radius * sigma
    for n, (x, y) in enumerate(keypoints.reshape(-1, 2).tolist()):
        x0, x1 = max(math.ceil(x - r), 0), min(math.floor(x + r) + 1, w)
        y0, y1 = max(math.ceil(y - r), 0), min(math.floor(y + r) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = np.arange(x0, x1) - x
        dy = np.arange(y0, y1)[:, None] - y
        flat[n, y0:y1, x0:x1] = np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    return out


def suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """render_gaussian and the fused MSE heatmap loss (forward + backward) at B=16 (4 when quick), K=98,
    64x64, sigma 2, float32, keypoints uniform in [0, 64)."""
    device = torch.device(device)
    b, k, h, w, sigma = (4 if quick else 16), 98, 64, 64, 2.0
    size = (h, w)
    shape = f"B={b}, K={k}, H=W={h}, sigma={sigma:g}, float32"
    gen = torch.Generator().manual_seed(0)
    kp = (torch.rand(b, k, 2, generator=gen) * w).to(device)
    pred = torch.rand(b, k, h, w, generator=gen).to(device).requires_grad_()
    pred_detached = pred.detach()

    render_cases = [
        Case("fastlmk", lambda: ops.render_gaussian(kp, size, sigma), "fastlmk"),
        Case("floor: torch.zeros (one write)", lambda: torch.zeros(b, k, h, w, device=device), "floor"),
        Case("torch outer-product", lambda: render_gaussian_outer(kp, size, sigma)),
        Case("torch naive 2-D", lambda: reference.render_gaussian(kp, size, sigma)),
    ]
    if device.type == "cpu":
        kp_np = kp.numpy()
        render_cases.append(Case("numpy per-keypoint loop",
                                 lambda: torch.from_numpy(render_gaussian_numpy(kp_np, size, sigma))))

    def step(loss: Callable[[], Tensor]) -> Callable[[], None]:
        """One training step's loss work: forward and backward into a fresh ``pred.grad``."""
        def fn() -> None:
            pred.grad = None
            loss().backward()
        return fn

    def mse_to(render: Callable[[Tensor, tuple[int, int], float], Tensor]) -> Callable[[], Tensor]:
        def loss() -> Tensor:
            with torch.no_grad():
                target = render(kp, size, sigma)
            return F.mse_loss(pred, target)
        return loss

    loss_cases = [
        Case("fastlmk", step(lambda: ops.heatmap_loss(pred, kp, sigma)), "fastlmk"),
        Case("floor: torch.mul (one read, one write)", lambda: torch.mul(pred_detached, 2.0), "floor"),
        Case("torch outer-product + F.mse_loss", step(mse_to(render_gaussian_outer))),
        Case("torch naive 2-D + F.mse_loss", step(mse_to(reference.render_gaussian))),
    ]

    def backend(op: str) -> str:
        return _dispatch.select(op, BACKENDS, device)

    return [
        Suite("render_gaussian", shape, render_cases, "torch outer-product", backend("render_gaussian"), device),
        Suite("heatmap_loss mse fwd+bwd", shape, loss_cases, "torch outer-product + F.mse_loss",
              backend("heatmap_loss"), device),
    ]
