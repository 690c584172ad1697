"""Renders of the procedural face by fastlmk.nn.VisualizationLayer (PIFA's visualization layer), written to
benchmarks/visualization_renders.png: the yaws of the picture test (-60, 0, 60 degrees) plus -30 and 30, and
below them the same poses with an open-mouth smile (expression parameters at +2 std).

Colours: red = positive (middle of the face: mask a > 0 times frontability g), blue = negative (contour),
white = 0 (also the background, where no vertex reaches).

    pip install ".[viz]"   # Pillow
    python benchmarks/visualization_renders.py [--size 128] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastlmk.geometry.morphable import procedural
from fastlmk.nn import VisualizationLayer, frontal_projection

YAWS = (-60.0, -30.0, 0.0, 30.0, 60.0)


def diverging(image: np.ndarray) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8: white at 0, red up to +max|v|, blue down to -max|v|."""
    t = image / max(float(np.abs(image).max()), 1e-12)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], -1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("visualization_renders.png"))
    args = parser.parse_args()

    model = procedural()
    layer = VisualizationLayer(model, args.size, sigma=1.0)
    yaw = torch.tensor([math.radians(a) for a in YAWS])
    m = frontal_projection(yaw, 0.3 * args.size, ((args.size - 1) / 2, (args.size - 1) / 2))
    p = torch.zeros(len(YAWS), model.num_id + model.num_exp)
    smile = torch.zeros_like(p)
    smile[:, model.num_id + 0] = 2 * model.exp_std[0]  # mouth open
    smile[:, model.num_id + 1] = 2 * model.exp_std[1]  # smile
    with torch.no_grad():
        rows = [layer(m, p)[:, 0], layer(m, smile)[:, 0]]
    grid = np.concatenate([np.concatenate([diverging(v.numpy()) for v in row], 1) for row in rows], 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.out)
    print(f"wrote {args.out} (yaw {', '.join(f'{a:g}' for a in YAWS)} degrees; bottom row: mouth open + smile)")


if __name__ == "__main__":
    main()
