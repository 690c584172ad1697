"""Drawing landmarks on images (PNG output of ``fastlmk train`` and ``fastlmk predict``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["draw_landmarks", "grid"]

GREEN, RED = (40, 220, 60), (235, 40, 40)


def _to_pil(image: Tensor) -> "PIL.Image.Image":  # noqa: F821
    from PIL import Image
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


def draw_landmarks(image: Tensor, points: Sequence[Tensor], colors: Sequence[tuple[int, int, int]] = (RED, GREEN),
                   upscale: int = 1) -> "PIL.Image.Image":  # noqa: F821
    """``image`` (3, H, W) (uint8, or float in [0, 1]) with each landmark set (K, 2) drawn as dots of the
    matching colour (pixel ``(i, j)`` centred at ``(x=j, y=i)``; NaN points skipped), enlarged ``upscale``
    times first so that dots on small crops stay readable."""
    from PIL import Image, ImageDraw
    pil = _to_pil(image)
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.NEAREST)
    draw = ImageDraw.Draw(pil)
    r = max(1.0, min(pil.size) / 200)
    for pts, color in zip(points, colors):
        for x, y in (np.asarray(pts.detach().cpu(), dtype=np.float64) + 0.5) * upscale - 0.5:
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    return pil


def grid(images: Sequence["PIL.Image.Image"], columns: int = 4) -> "PIL.Image.Image":  # noqa: F821
    """Images of one size tiled row-major, ``columns`` per row."""
    from PIL import Image
    w, h = images[0].size
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (w * min(columns, len(images)), h * rows))
    for n, im in enumerate(images):
        canvas.paste(im, ((n % columns) * w, (n // columns) * h))
    return canvas
