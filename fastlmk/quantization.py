"""The quantization study: the error of heatmap encodings and decodings alone, with no network in the loop
(the "ideal condition, loss = 0" of seed 000, Table 1).

Image-space landmarks are mapped to heatmap coordinates with the pixel-centre convention
``x_h = (x + 0.5) / s - 0.5`` (``s = image_size / heatmap_size``), encoded as training targets, decoded by
every method straight back to image space (the inverse map goes to the ops' fused ``affine=``), and compared
with the ground truth: NME (%), per-axis RMS and maximum error in heatmap pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import _checks, metrics, ops

__all__ = ["Row", "SOFTMAX_BETA", "synthetic_faces", "load_landmarks", "study", "format_table"]

# soft_argmax temperature on [0, 1] Gaussian maps (sigma 1.5): a scan of beta in [1, 100] on 64 and 32 px maps
# puts the smallest error near 14-16. Smaller beta lets the ~H*W background pixels (softmax weight e^0 each)
# pull the estimate toward the map centre; larger beta sharpens the weights to a Gaussian of sigma/sqrt(beta)
# px, whose sampled centroid snaps toward pixel centres.
SOFTMAX_BETA = 16.0
TOPK = 9
_CHUNK = 1 << 24  # heatmap elements per batch of faces (64 MB of float32 maps)


@dataclass(frozen=True)
class Row:
    """One (encoding, decoding) pair at one heatmap size. ``nme`` is a fraction (x100 for %); ``rms`` and
    ``max_error`` are the root-mean-square and the largest error per axis (over x and y of every landmark),
    in heatmap pixels."""

    encoding: str
    decoding: str
    heatmap_size: int
    nme: float
    rms: float
    max_error: float


# ------------------------------------------------------------------------------------------- landmark sets

def _ellipse(n: int, cx: float, cy: float, rx: float, ry: float, t0: float, t1: float) -> Tensor:
    """``n`` points from angle t0 to t1 (radians, y down: angle pi is the left end, 3pi/2 the top)."""
    t = torch.linspace(t0, t1, n, dtype=torch.float64)
    return torch.stack([cx + rx * torch.cos(t), cy + ry * torch.sin(t)], dim=-1)


def _mirror(points: Tensor) -> Tensor:
    return points * torch.tensor([-1.0, 1.0], dtype=points.dtype)


def _wflw_template() -> Tensor:
    """A 98-point face in the WFLW layout (x right, y down; the jaw spans x in [-1, 1]), centred on its
    bounding box. Outer eye corners 60 and 72, pupils 96 and 97 (``metrics.EYES[98]``)."""
    pi = math.pi
    jaw = _ellipse(33, 0.0, -0.2, 1.0, 1.45, pi, 0.0)  # 0-32: left temple, chin (16), right temple
    brow_top = _ellipse(5, -0.5, -0.35, 0.35, 0.2, pi + 0.15, 2 * pi - 0.15)  # outer -> inner
    brow_low = _ellipse(4, -0.5, -0.3, 0.3, 0.12, 2 * pi - 0.35, pi + 0.35)  # inner -> outer
    bridge = torch.stack([torch.zeros(4, dtype=torch.float64), torch.linspace(-0.2, 0.3, 4, dtype=torch.float64)],
                         dim=-1)
    nx = torch.linspace(-0.22, 0.22, 5, dtype=torch.float64)
    nostrils = torch.stack([nx, 0.38 + 0.08 * (1 - (nx / 0.22) ** 2)], dim=-1)
    eye = _ellipse(8, -0.4, -0.2, 0.2, 0.09, pi, pi + 7 * pi / 4)  # 60 outer corner, over the top, 64 inner
    right_eye = _mirror(eye)[[(4 - i) % 8 for i in range(8)]]  # 68 inner corner, over the top, 72 outer
    mouth = _ellipse(12, 0.0, 0.8, 0.42, 0.16, pi, pi + 11 * pi / 6)  # 76 left corner, upper lip, 82 right
    lips = _ellipse(8, 0.0, 0.8, 0.3, 0.06, pi, pi + 7 * pi / 4)  # 88 left corner, 92 right corner
    pupils = torch.tensor([[-0.4, -0.2], [0.4, -0.2]], dtype=torch.float64)
    face = torch.cat([jaw, brow_top, brow_low, _mirror(brow_top).flip(0), _mirror(brow_low).flip(0), bridge,
                      nostrils, eye, right_eye, mouth, lips, pupils])
    lo, hi = face.amin(0), face.amax(0)
    return face - (lo + hi) / 2


def synthetic_faces(n: int = 500, *, image_size: int = 256, seed: int = 0) -> Tensor:
    """``n`` deterministic WFLW-like faces (n, 98, 2), float64, in a square image of ``image_size`` px, framed
    like aligned crops: the face template under a random similarity (jaw width 60-72% of the image, rotation
    within +-10 degrees, shift within +-2%), a +-5% aspect change and 1%-of-face landmark jitter."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g, dtype=torch.float64)

    face = _wflw_template()
    pts = face + 0.01 * torch.randn(n, *face.shape, generator=g, dtype=torch.float64)
    pts = pts * torch.stack([torch.ones(n, dtype=torch.float64), uniform(0.95, 1.05)], dim=-1)[:, None]
    angle = uniform(-math.pi / 18, math.pi / 18)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (n, 2, 2)
    scale = uniform(0.30, 0.36) * image_size
    shift = uniform(-0.02, 0.02, 2) * image_size + (image_size - 1) / 2
    return scale[:, None, None] * torch.einsum("nij,nkj->nki", rot, pts) + shift[:, None]


def load_landmarks(path: Union[str, Path]) -> Tensor:
    """Image-space landmarks (N, K, 2) from a ``.npy`` or ``.pt`` file, as float64."""
    path = Path(path)
    if path.suffix == ".npy":
        data = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"landmarks file must be a .npy or .pt file, got {str(path)!r}")
    if not isinstance(data, Tensor) or data.dim() != 3 or data.shape[-1] != 2 or data.shape[0] == 0:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"landmarks file {str(path)!r} must hold an (N, K, 2) array, got {shape}")
    if data.dtype == torch.bool or data.is_complex():
        raise TypeError(f"landmarks file {str(path)!r} must hold real numbers, got {data.dtype}")
    return data.to(torch.float64)


# -------------------------------------------------------------------------------------------------- study

def _to_image(coords: Tensor, affine: Tensor) -> Tensor:
    return torch.einsum("bij,bkj->bki", affine[..., :2].to(coords.dtype), coords) + affine[:, None, :, 2]


def _h3r_logits(keypoints: Tensor, size: int) -> Tensor:
    """Logits (float32) of the expected H3R one-hot target, which a BCE-trained model converges to: the
    bilinear probabilities ``p = max(0, 1 - |j - x|) * max(0, 1 - |i - y|)`` (nonzero on at most 4 pixels),
    ``logit(clamp(p, 1e-12, 1 - 1e-12))`` computed in float64."""
    b, k = keypoints.shape[:2]
    kp = keypoints.to(torch.float64).reshape(b * k, 2)
    base = torch.floor(kp)
    frac = kp - base
    out = torch.full((b * k, size * size), math.log(1e-12 / (1 - 1e-12)), dtype=torch.float32,
                     device=keypoints.device)
    rows = torch.arange(b * k, device=keypoints.device)
    for dy in (0, 1):
        for dx in (0, 1):
            p = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            x, y = base[:, 0] + dx, base[:, 1] + dy
            ok = (p > 0) & (x >= 0) & (x < size) & (y >= 0) & (y < size)  # False for missing keypoints
            out[rows[ok], (y * size + x)[ok].long()] = torch.logit(p[ok], eps=1e-12).to(torch.float32)
    return out.view(b, k, size, size)


def _cases(kp: Tensor, size: int, affine: Tensor, sigma: float, generator: torch.Generator,
           backend: Optional[str]) -> Iterator[tuple[str, str, Tensor]]:
    """(encoding, decoding, image-space prediction) for every row, for one batch of heatmap-space keypoints."""

    def decode(maps: Tensor, method: str, **kwargs) -> Tensor:
        return ops.decode(maps, method, affine=affine, backend=backend, **kwargs)[0]

    rounded = ops.render_gaussian(kp, size, sigma, center="rounded", backend=backend)
    enc = "Gaussian, rounded centre"
    yield enc, "argmax (DIRECT)", decode(rounded, "argmax")
    yield enc, "quarter", decode(rounded, "quarter")
    yield enc, "wsm", decode(rounded, "wsm")
    offsets = ops.render_offsets(kp, size, backend=backend)
    yield "offset maps (WOM), rounded Gaussian", "offset", decode(rounded, "offset", offsets=offsets)
    del rounded, offsets
    continuous = ops.render_gaussian(kp, size, sigma, backend=backend)
    enc = "Gaussian, continuous centre"
    yield enc, "argmax", decode(continuous, "argmax")
    yield enc, "quarter", decode(continuous, "quarter")
    yield enc, "wsm", decode(continuous, "wsm")
    yield enc, "parabola", decode(continuous, "parabola")
    yield enc, "dark (blur 11)", decode(continuous, "dark")
    window = math.ceil(2 * sigma)
    yield enc, f"local_softargmax ({2 * window + 1}x{2 * window + 1})", decode(continuous, "local_softargmax",
                                                                             window=window)
    yield enc, f"topk (k={TOPK})", decode(continuous, "topk", k=TOPK)
    yield enc, f"soft_argmax (softmax, beta={SOFTMAX_BETA:g})", _to_image(
        ops.soft_argmax(continuous, beta=SOFTMAX_BETA, backend=backend), affine)
    yield enc, "soft_argmax (relu)", _to_image(ops.soft_argmax(continuous, normalize="relu", backend=backend),
                                               affine)
    del continuous
    yield ("H3R one-hot (randomized rounding)", "argmax",
           decode(ops.encode_h3r(kp, size, generator=generator, backend=backend), "argmax"))
    yield "H3R expected (bilinear), logits", f"topk (k={TOPK})", decode(_h3r_logits(kp, size), "topk", k=TOPK)
    for convention in ("paper", "unbiased"):
        integer, decimal = ops.encode_hih(kp, size, sigma=sigma, convention=convention, backend=backend)
        yield (f"HIH {convention}, decimal 8x8", "integer + decimal argmax",
               ops.decode_hih(integer, decimal, convention=convention, affine=affine, backend=backend)[0])


def study(landmarks: Optional[Tensor] = None, *, image_size: int = 256, heatmap_sizes: Sequence[int] = (64, 32),
          norm: metrics.Norm = "inter_ocular", sigma: float = 1.5, seed: int = 0,
          device: Union[str, torch.device] = "cpu", backend: Optional[str] = None) -> list[Row]:
    """Quantization error of every (encoding, decoding) pair at each heatmap size.

    ``landmarks`` (N, K, 2) in image pixels of a square ``image_size`` image (default:
    ``synthetic_faces(500, image_size=image_size, seed=seed)``); ``sigma`` of the Gaussian targets in heatmap
    pixels; ``norm`` as in ``metrics.nme``; ``seed`` also seeds H3R's randomized rounding (one generator per
    heatmap size). Non-finite landmarks are missing: left out of every statistic, except that an image whose
    normalising landmarks (e.g. the eye corners) are missing has no NME and makes the NME column NaN.

    Decoder settings: DARK blur 11; local soft-argmax window ``ceil(2 sigma)`` (7x7 at sigma 1.5); top-k
    k = 9; soft-argmax ``beta = SOFTMAX_BETA`` and the relu-normalised centroid; offset fields of radius 1.5;
    HIH integer map of ``sigma``, decimal map 8x8 with sigma 1 (the authors' defaults).
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if landmarks is None:
        landmarks = synthetic_faces(image_size=image_size, seed=seed)
    _checks.keypoints(landmarks, "landmarks")
    metrics.normalizer(landmarks, norm)  # validates norm against the landmark convention before any work
    if not heatmap_sizes or any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in heatmap_sizes):
        raise ValueError(f"heatmap_sizes must be positive ints, got {heatmap_sizes!r}")
    if not isinstance(sigma, Real) or isinstance(sigma, bool) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
    device = torch.device(device)
    target = landmarks.to(device=device, dtype=torch.float64)
    n, k = target.shape[:2]
    visible = torch.isfinite(target).all(-1)
    rows = []
    for size in heatmap_sizes:
        s = image_size / size
        affine = torch.tensor([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2]], dtype=torch.float32, device=device)
        generator = torch.Generator(device).manual_seed(seed)
        chunk = max(1, _CHUNK // (k * size * size))
        preds: dict[tuple[str, str], list[Tensor]] = {}
        for start in range(0, n, chunk):
            kp = (target[start:start + chunk] + 0.5) / s - 0.5
            batch_affine = affine.expand(kp.shape[0], 2, 3)
            for enc, dec, pred in _cases(kp, size, batch_affine, sigma, generator, backend):
                preds.setdefault((enc, dec), []).append(pred.to(torch.float64))
        for (enc, dec), parts in preds.items():
            pred = torch.cat(parts)
            diff = (pred - target)[visible] / s
            rows.append(Row(enc, dec, size, float(metrics.nme(pred, target, norm=norm)),
                            float(diff.square().mean().sqrt()), float(diff.abs().max())))
    return rows


def format_table(rows: Sequence[Row], caption: str = "") -> str:
    """Markdown table (after ``caption``, if any): one line per (encoding, decoding), and NME (%) / RMS px /
    max px columns per heatmap size."""
    sizes = list(dict.fromkeys(r.heatmap_size for r in rows))
    cells = {(r.encoding, r.decoding, r.heatmap_size): r for r in rows}
    header = ["encoding", "decoding"] + [f"{name} @{h}" for h in sizes for name in ("NME %", "RMS px", "max px")]
    lines = [caption, ""] if caption else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (3 * len(sizes))]
    for enc, dec in dict.fromkeys((r.encoding, r.decoding) for r in rows):
        values = []
        for h in sizes:
            r = cells.get((enc, dec, h))
            values += [""] * 3 if r is None else [f"{100 * r.nme:.3f}", f"{r.rms:.4f}", f"{r.max_error:.4f}"]
        lines.append("| " + " | ".join([enc, dec] + values) + " |")
    return "\n".join(lines) + "\n"
