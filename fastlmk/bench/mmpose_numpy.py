"""mmpose 1.3's codec loops written out in NumPy from their formulas: the baseline of the codec benchmark
where mmpose is not installed, and the oracle of tests/test_codecs.py (checked against mmpose itself by
tests/test_codecs_mmpose.py when it is importable).

Per keypoint, in float32 as mmpose: the Gaussian patch of ``generate_gaussian_heatmaps`` (integer centre
``mu = int(x + 0.5)``, the patch ``[int(mu - 3 sigma), int(mu + 3 sigma + 1))`` with its centre at
``(6 sigma + 1) // 2`` from its start), UDP's patch shifted by ``x - mu``, DARK's whole-map Gaussian, instances
merged by max; decoding by argmax (-1 where the maximum is <= 0), the quarter offset, DARK and UDP's DARK.
The blur is OpenCV's ``GaussianBlur`` kernel applied separably (fastlmk.reference.decode.dark_kernel).
"""

from __future__ import annotations

from itertools import product
from typing import Optional

import numpy as np

from ..reference.decode import dark_kernel


def _patch_bounds(x: float, radius: float) -> tuple[int, int, int]:
    """(mu, first, end) of one axis: the integer centre and the patch [first, end)."""
    mu = int(np.float32(x) + np.float32(0.5))
    return mu, int(mu - radius), int(mu + radius + 1)


def gaussian_heatmaps(heatmap_size: tuple[int, int], keypoints: np.ndarray, visible: np.ndarray, sigma: float,
                      kind: str = "msra") -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (K, H, W) and weights (N, K) of keypoints (N, K, 2) in heatmap pixels; ``kind`` "msra"
    (``generate_gaussian_heatmaps``), "udp" or "unbiased"."""
    n_inst, k_pts = keypoints.shape[:2]
    w, h = heatmap_size
    maps = np.zeros((k_pts, h, w), np.float32)
    weights = visible.copy()
    radius = 3 * sigma
    size = 2 * radius + 1
    grid = np.arange(0, size, 1, dtype=np.float32)
    for n, k in product(range(n_inst), range(k_pts)):
        if visible[n, k] < 0.5:
            continue
        x, y = keypoints[n, k]
        if kind == "unbiased":
            if x - radius >= w or y - radius >= h or x + radius + 1 < 0 or y + radius + 1 < 0:
                weights[n, k] = 0
                continue
            gx = (np.arange(w, dtype=np.float32) - x) ** 2
            gy = (np.arange(h, dtype=np.float32)[:, None] - y) ** 2
            np.maximum(maps[k], np.exp(-(gx + gy) / (2 * sigma ** 2)), out=maps[k])
            continue
        mx, x0, x1 = _patch_bounds(x, radius)
        my, y0, y1 = _patch_bounds(y, radius)
        if x0 >= w or y0 >= h or x1 < 0 or y1 < 0:
            weights[n, k] = 0
            continue
        cx = cy = size // 2
        if kind == "udp":
            cx, cy = cx + (x - mx), cy + (y - my)
        patch = np.exp(-((grid - cx) ** 2 + (grid[:, None] - cy) ** 2) / (2 * sigma ** 2))
        a0, a1, b0, b1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
        region = maps[k, b0:b1, a0:a1]
        np.maximum(region, patch[b0 - y0:b1 - y0, a0 - x0:a1 - x0], out=region)
    return maps, weights


def offset_heatmaps(heatmap_size: tuple[int, int], keypoints: np.ndarray, visible: np.ndarray,
                    radius_factor: float) -> np.ndarray:
    """UDP's "combined" target (3K, H, W): a disc of radius ``radius_factor * max(W, H)`` and the offsets to the
    keypoint divided by that radius, per visible keypoint (the last instance wins, as mmpose)."""
    w, h = heatmap_size
    k_pts = keypoints.shape[1]
    maps = np.zeros((k_pts, 3, h, w), np.float32)
    radius = radius_factor * max(w, h)
    for n, k in product(range(keypoints.shape[0]), range(k_pts)):
        if visible[n, k] < 0.5:
            continue
        ox = (keypoints[n, k, 0] - np.arange(w)) / radius
        oy = (keypoints[n, k, 1] - np.arange(h)[:, None]) / radius
        maps[k, 0] = np.where(ox ** 2 + oy ** 2 <= 1, 1.0, 0.0)
        maps[k, 1] = ox
        maps[k, 2] = oy
    return maps.reshape(3 * k_pts, h, w)


def maxima(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) float32 argmax locations, -1 where the maximum is <= 0, and the maxima (K,)."""
    k_pts, h, w = maps.shape
    flat = maps.reshape(k_pts, -1)
    idx = np.argmax(flat, axis=1)
    locs = np.stack([idx % w, idx // w], -1).astype(np.float32)
    vals = np.amax(flat, axis=1)
    locs[vals <= 0] = -1
    return locs, vals


def blur(maps: np.ndarray, size: int, zero_padded: bool = True) -> np.ndarray:
    """Each (H, W) map blurred by OpenCV's kernel of ``size``; zero padding, or reflect-101 (OpenCV's border)."""
    g = dark_kernel(size).numpy()
    r = size // 2
    out = np.empty_like(maps)
    for k in range(maps.shape[0]):
        m = np.pad(maps[k].astype(np.float64), r, mode="constant" if zero_padded else "reflect")
        m = np.apply_along_axis(lambda v: np.convolve(v, g, mode="valid"), 1, m)
        out[k] = np.apply_along_axis(lambda v: np.convolve(v, g, mode="valid"), 0, m)
    return out


def _modulated(maps: np.ndarray, size: int) -> np.ndarray:
    """mmpose's ``gaussian_blur``: blur with zero padding, then rescale each map to its former maximum."""
    blurred = blur(maps, size)
    for k in range(maps.shape[0]):
        blurred[k] *= maps[k].max() / blurred[k].max()
    return blurred


def refine_quarter(locs: np.ndarray, maps: np.ndarray) -> np.ndarray:
    h, w = maps.shape[1:]
    out = locs.copy()
    for k, (x, y) in enumerate(locs.astype(int)):
        dx = maps[k, y, x + 1] - maps[k, y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
        dy = maps[k, y + 1, x] - maps[k, y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
        out[k] += np.sign([dx, dy]).astype(np.float32) * 0.25
    return out


def refine_dark(locs: np.ndarray, maps: np.ndarray, size: int) -> np.ndarray:
    h, w = maps.shape[1:]
    logs = np.log(np.maximum(_modulated(maps, size), 1e-10))
    out = locs.copy()
    for k, (x, y) in enumerate(locs.astype(int)):
        if not (1 < x < w - 2 and 1 < y < h - 2):
            continue
        m = logs[k]
        dx, dy = 0.5 * (m[y, x + 1] - m[y, x - 1]), 0.5 * (m[y + 1, x] - m[y - 1, x])
        dxx = 0.25 * (m[y, x + 2] - 2 * m[y, x] + m[y, x - 2])
        dyy = 0.25 * (m[y + 2, x] - 2 * m[y, x] + m[y - 2, x])
        dxy = 0.25 * (m[y + 1, x + 1] - m[y - 1, x + 1] - m[y + 1, x - 1] + m[y - 1, x - 1])
        det = dxx * dyy - dxy ** 2
        if det != 0:
            out[k] += -np.array([dyy * dx - dxy * dy, dxx * dy - dxy * dx]) / det
    return out


def refine_dark_udp(locs: np.ndarray, maps: np.ndarray, size: int) -> np.ndarray:
    """UDP's DARK on the edge-padded log maps, read through one flat index over all K maps as mmpose does
    (at a -1 location the neighbours before the first map wrap around to the last one)."""
    k_pts, h, w = maps.shape
    wp = w + 2
    logs = np.pad(np.log(np.clip(_modulated(maps, size), 1e-3, 50.0)), ((0, 0), (1, 1), (1, 1)), mode="edge")
    flat = logs.ravel().astype(np.float64)
    out = locs.astype(np.float64)
    eps = np.finfo(np.float32).eps
    for k, (x, y) in enumerate(locs.astype(int)):
        at = (y + 1) * wp + x + 1 + k * (h + 2) * wp
        c, xp, xm, yp, ym = flat[at], flat[at + 1], flat[at - 1], flat[at + wp], flat[at - wp]
        dxx = xp - 2 * c + xm + eps
        dyy = yp - 2 * c + ym + eps
        dxy = 0.5 * (flat[at + wp + 1] - xp - yp + 2 * c - xm - ym + flat[at - wp - 1])
        out[k] -= np.linalg.solve(np.array([[dxx, dxy], [dxy, dyy]]), [0.5 * (xp - xm), 0.5 * (yp - ym)])
    return out


def msra_encode(input_size, heatmap_size, sigma, keypoints, visible: Optional[np.ndarray] = None,
                unbiased: bool = False) -> dict:
    visible = np.ones(keypoints.shape[:2], np.float32) if visible is None else visible
    scale = (np.array(input_size) / heatmap_size).astype(np.float32)
    maps, weights = gaussian_heatmaps(heatmap_size, keypoints / scale, visible, sigma,
                                      "unbiased" if unbiased else "msra")
    return dict(heatmaps=maps, keypoint_weights=weights)


def msra_decode(input_size, heatmap_size, maps, unbiased: bool = False, blur_kernel_size: int = 11):
    locs, vals = maxima(maps)
    locs = refine_dark(locs, maps, blur_kernel_size) if unbiased else refine_quarter(locs, maps)
    return locs[None] * (np.array(input_size) / heatmap_size).astype(np.float32), vals[None]


def udp_encode(input_size, heatmap_size, keypoints, visible: Optional[np.ndarray] = None,
               heatmap_type: str = "gaussian", sigma: float = 2.0, radius_factor: float = 0.0546875) -> dict:
    visible = np.ones(keypoints.shape[:2], np.float32) if visible is None else visible
    scale = ((np.array(input_size) - 1) / (np.array(heatmap_size) - 1)).astype(np.float32)
    if heatmap_type == "gaussian":
        maps, weights = gaussian_heatmaps(heatmap_size, keypoints / scale, visible, sigma, "udp")
    else:
        maps, weights = offset_heatmaps(heatmap_size, keypoints / scale, visible, radius_factor), visible.copy()
    return dict(heatmaps=maps, keypoint_weights=weights)


def udp_decode(input_size, heatmap_size, maps, heatmap_type: str = "gaussian", radius_factor: float = 0.0546875,
               blur_kernel_size: int = 11):
    w, h = heatmap_size
    if heatmap_type == "gaussian":
        locs, vals = maxima(maps)
        locs = refine_dark_udp(locs, maps, blur_kernel_size)
    else:
        k_pts = maps.shape[0] // 3
        cls = blur(maps[::3], 2 * blur_kernel_size + 1, zero_padded=False).astype(np.float32)
        locs, vals = maxima(cls)
        index = (locs[:, 0] + locs[:, 1] * w + w * h * np.arange(k_pts)).astype(int)
        radius = radius_factor * max(w, h)
        locs = locs + np.stack([maps[1::3].ravel()[index], maps[2::3].ravel()[index]], -1) * radius
    return locs[None] / [w - 1, h - 1] * np.array(input_size), vals[None]


def simcc_encode(input_size, keypoints, visible: Optional[np.ndarray] = None, smoothing_type: str = "gaussian",
                 sigma=6.0, simcc_split_ratio: float = 2.0, label_smooth_weight: float = 0.0,
                 normalize: bool = True) -> dict:
    """SimCCLabel's labels: per visible keypoint in range, a Gaussian over each axis' bins at the rounded bin
    (or a smoothed one-hot), else zeros and weight 0."""
    visible = np.ones(keypoints.shape[:2], np.float32) if visible is None else visible
    sigmas = np.array([sigma, sigma] if np.isscalar(sigma) else sigma, np.float64)
    n_inst, k_pts = keypoints.shape[:2]
    wx, hy = (int(np.around(v * simcc_split_ratio)) for v in input_size)
    bins = np.around(keypoints * simcc_split_ratio).astype(np.int64)
    labels = [np.zeros((n_inst, k_pts, wx), np.float32), np.zeros((n_inst, k_pts, hy), np.float32)]
    weights = visible.copy()
    axes = [np.arange(wx, dtype=np.float32), np.arange(hy, dtype=np.float32)]
    for n, k in product(range(n_inst), range(k_pts)):
        if visible[n, k] < 0.5:
            continue
        mx, my = bins[n, k]
        if smoothing_type == "gaussian":
            out = (mx - 3 * sigmas[0] >= wx or my - 3 * sigmas[1] >= hy or mx + 3 * sigmas[0] + 1 < 0
                   or my + 3 * sigmas[1] + 1 < 0)
        else:
            out = mx >= wx or my >= hy or mx < 0 or my < 0
        if out:
            weights[n, k] = 0
            continue
        for a, (mu, size) in enumerate(((mx, wx), (my, hy))):
            if smoothing_type == "gaussian":
                labels[a][n, k] = np.exp(-((axes[a] - mu) ** 2) / (2 * sigmas[a] ** 2))
            else:
                if label_smooth_weight > 0:
                    labels[a][n, k] = label_smooth_weight / (size - 1)
                labels[a][n, k, mu] = 1.0 - label_smooth_weight
    if smoothing_type == "gaussian" and normalize:
        for a in range(2):
            labels[a] /= sigmas[a] * np.sqrt(np.pi * 2)
    return dict(keypoint_x_labels=labels[0], keypoint_y_labels=labels[1], keypoint_weights=weights)


def _refine_simcc_dark(locs: np.ndarray, vectors: np.ndarray, size: int) -> np.ndarray:
    """1-D DARK per vector (K, n) at locs (K,): blur, rescale, clip, log, edge-pad 2, one Newton step."""
    g = dark_kernel(size).numpy().astype(np.float32)
    r = size // 2
    out = locs.copy()
    for k in range(vectors.shape[0]):  # in float32, as mmpose (OpenCV) computes it
        v = vectors[k].astype(np.float32)
        blurred = np.convolve(np.pad(v, r), g, mode="valid").astype(np.float32)
        blurred *= v.max() / blurred.max()
        logs = np.pad(np.log(np.clip(blurred, 1e-3, 50.0)), 2, mode="edge")
        p = int(locs[k] + 2.5)
        at = [logs[(p + d) % logs.size] for d in (-2, -1, 0, 1, 2)]
        out[k] -= np.float32(0.5) * (at[3] - at[1]) / (np.float32(1e-9) + np.float32(0.25) * (at[4] - 2 * at[2] + at[0]))
    return out


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray, sigma=6.0, simcc_split_ratio: float = 2.0,
                 use_dark: bool = False):
    """(1, K, 2) keypoints and (1, K) scores of (K, Wx), (K, Hy) vectors: argmax per axis, the smaller
    maximum as score (-1 where it is <= 0), 1-D DARK, divided by the split ratio."""
    sigmas = np.array([sigma, sigma] if np.isscalar(sigma) else sigma, np.float64)
    locs = np.stack([np.argmax(simcc_x, 1), np.argmax(simcc_y, 1)], -1).astype(np.float32)
    vals = np.minimum(simcc_x.max(1), simcc_y.max(1))
    locs[vals <= 0] = -1
    if use_dark:
        for a, v in enumerate((simcc_x, simcc_y)):
            blur = int((sigmas[a] * 20 - 7) // 3)
            locs[:, a] = _refine_simcc_dark(locs[:, a], v, blur - (blur % 2 == 0))
    return locs[None] / simcc_split_ratio, vals[None]
