"""Training-step suites: FAN (``fastlmk.models.heatmap.FAN``, the default ``fastlmk train`` configuration)
with fastlmk's fused Gaussian loss vs the same model with targets rendered in NumPy per sample and per
landmark (the common practice of landmark data loaders) and a PyTorch MSE; the floor is the same step with
the targets already in memory (the network's own cost). A second suite times the targets + loss alone."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import ops
from .harness import Case, Suite

SIGMA = 1.5


def numpy_targets(keypoints: np.ndarray, size: int, sigma: float = SIGMA) -> np.ndarray:
    """Gaussian targets (K, size, size) of one sample the usual way: per landmark, the ``2 int(3 sigma) + 1``
    patch around the rounded centre, ``exp(-d^2 / 2 sigma^2)`` of the distance to the continuous centre,
    clipped to the map (for sigma 1.5 the same pixels and values as ``render_gaussian(..., radius=3)``)."""
    out = np.zeros((len(keypoints), size, size), np.float32)
    r = int(3 * sigma)
    for k, (x, y) in enumerate(keypoints):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        x0, x1, y0, y1 = max(cx - r, 0), min(cx + r + 1, size), max(cy - r, 0), min(cy + r + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        xs, ys = np.arange(x0, x1), np.arange(y0, y1)[:, None]
        out[k, y0:y1, x0:x1] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma * sigma))
    return out


def _setup(b: int, size: int, device: torch.device):
    from ..models.heatmap import FAN, STRIDE
    gen = torch.Generator().manual_seed(0)
    model = FAN(68, size).to(device)
    images = torch.rand(b, 3, size, size, generator=gen).to(device)
    maps = size // STRIDE
    keypoints = torch.rand(b, 68, 2, generator=gen) * (maps - 1)  # heatmap pixels
    target = torch.from_numpy(np.stack([numpy_targets(kp, maps) for kp in keypoints.numpy()])).to(device)
    return model, images, keypoints, target, maps


def suites(device: torch.device, quick: bool) -> list[Suite]:
    b, size = (4, 64) if quick else (16, 128)
    model, images, keypoints, target, maps = _setup(b, size, device)
    kp_dev, kp_np = keypoints.to(device), keypoints.numpy()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)

    def fused(pred: Tensor) -> Tensor:
        return ops.heatmap_loss(pred, kp_dev, SIGMA)

    def numpy(pred: Tensor) -> Tensor:
        t = torch.from_numpy(np.stack([numpy_targets(kp, maps) for kp in kp_np])).to(device)
        return F.mse_loss(pred, t)

    def given(pred: Tensor) -> Tensor:
        return F.mse_loss(pred, target)

    def step(loss: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss(model.backbone(images)[0][-1]).backward()
            optimizer.step()
        return run

    pred = torch.randn(b, 68, maps, maps, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_()

    def alone(loss: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            pred.grad = None
            loss(pred).backward()
        return run

    shape = f"B={b}, {size}px, K=68, maps {maps}x{maps}"
    names = ("fastlmk fused heatmap_loss", "floor: MSE to targets already in memory",
             "NumPy per-sample targets + MSE")
    return [Suite(op, shape, [Case(names[0], wrap(fused), "fastlmk"), Case(names[1], wrap(given), "floor"),
                              Case(names[2], wrap(numpy))], names[2], "cpu" if device.type == "cpu" else "triton",
                  device)
            for op, wrap in (("FAN train step (fwd + bwd + Adam)", step), ("targets + loss (fwd + bwd)", alone))]
