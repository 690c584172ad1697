"""A deterministic synthetic 68-point face dataset shipped in code (no download): :class:`SyntheticFaces`.

Faces of the procedural morphable model (``fastlmk.geometry.morphable.procedural()``) at random identities,
expressions and poses, shaded, coloured and drawn by ``fastlmk.ops.splat`` (PIFA's visualization splat, the
C++ kernel on the CPU) over a random smooth background. The 68 landmarks are the weak-perspective projections
of the model's landmark vertices, ``landmarks == camera @ [S_p; 1]`` at ``model.landmarks`` with
``S_p = model.shape(params)``; contour landmarks of a self-occluded jaw side are still the projected vertices
(the 300W convention).

Rendering (every random quantity of a sample comes from that sample's own stream, seeded by
``(seed, split, index)``):

* geometry: ``S_p`` on the model's mesh, refined for images above 96 px by the midpoints of its edges (the
  splat then leaves no holes and its nearest-pixel z-buffer hides the occluded surface; no midpoint spans the
  mouth line, so parted lips open a gap); vertices whose mean-shape normal faces away are pruned;
* appearance: a per-vertex material map built once from the mean shape and its landmarks (skin, eye whites
  and irises inside the eye contours, brows along the brow landmarks, lips inside the outer lip contour with
  a darker mouth line, hair above a hairline), recoloured per image (skin tone, hair, brow, iris, lip
  colours), times Lambertian shading ``ambient + diffuse * max(0, n . l)`` (mean-shape normals, a random
  light); the mouth interior, seen where the lips part, is dark;
* a background of low-frequency cosines (a muted random colour, brightness and colour variations), 1-px
  soft face edges, Gaussian pixel noise (sigma 0.005-0.03); images stored as uint8.

A chunk of 32 consecutive indices is always rendered together (whole chunks, whatever ``count``), and the
tensor work runs on one thread (the splat on the caller's threads; it is bitwise reproducible for any number),
so a sample is bitwise the same whatever ``count`` and the thread setting.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from numbers import Integral
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..geometry.morphable import MIRROR_68, MorphableModel, procedural
from ..ops.splat import splat

__all__ = ["SyntheticFaces", "DEFAULT_COUNTS"]

DEFAULT_COUNTS = {"train": 2000, "test": 200}
"""Default number of samples per split."""

_SPLITS = {"train": 0, "test": 1}
_DOMAIN = 0x53594E46  # a constant mixed into every seed: streams of this module only
_REFINE_ABOVE = 96  # image sizes above this render on the refined mesh (edge midpoints added)
_CHUNK = 32  # samples rendered together; index i always renders in chunk i // _CHUNK with the same neighbours

# pose and framing
_MAX_YAW, _MAX_PITCH, _MAX_ROLL = 45.0, 20.0, 20.0  # degrees, uniform in +-
_FACE_FRACTION = (0.45, 0.7)  # larger side of the posed landmark box over the image size, uniform
_CENTER_JITTER = 0.1  # landmark-box centre, uniform +- this fraction of the size around the image centre


def _stream_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit torch seed that depends on (seed, split, index) only."""
    state = np.random.SeedSequence([_DOMAIN, seed, _SPLITS[split], index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# ------------------------------------------------------------------------------------------ the render mesh

def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of (N, 2) points against a closed (K, 2) polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[None, :, 0], polygon[None, :, 1]
    bx, by = np.roll(ax, -1, axis=1), np.roll(ay, -1, axis=1)
    crosses = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = ax + (y - ay) * (bx - ax) / (by - ay)
    return (crosses & (x < xc)).sum(1) % 2 == 1


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of (N, 2) points to an open (K, 2) polyline."""
    a, b = line[None, :-1], line[None, 1:]
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    return np.linalg.norm(points[:, None] - (a + t[..., None] * ab), axis=-1).min(1)


# materials of the albedo map, in the order of the colour table of _draw
_SKIN, _SCLERA, _IRIS, _BROW, _LIP, _HAIR, _MOUTH = range(7)


@functools.lru_cache(maxsize=1)
def _render_mesh() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The refined render mesh: the model's Q vertices, then the midpoints of its edges. Returns its mean
    ``(R * 3,)``, bases ``(P, R * 3)`` (identity then expression), unit normals of the mean ``(R, 3)`` and
    material weights ``(R, 7)``, float32; the first Q vertices are the model's own, bitwise."""
    model = procedural()
    tri = model.triangles.numpy()
    edges = np.unique(np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    mean = model.mean.numpy().astype(np.float64)
    lm = mean[model.landmarks.numpy(), :2]
    # no midpoints on the edges across the mouth line: where the lips part they would fill the opening
    mouth_y = 0.5 * (lm[62, 1] + lm[66, 1])  # the parting line of the mouth-open basis
    ya, yb = mean[edges[:, 0], 1] - mouth_y, mean[edges[:, 1], 1] - mouth_y
    across = (ya * yb < 0) & (np.abs(mean[edges, 0]).max(1) < 0.6)
    edges = edges[~across]
    q = model.num_vertices
    ia = np.concatenate([np.arange(q), edges[:, 0]])
    ib = np.concatenate([np.arange(q), edges[:, 1]])
    xy = 0.5 * (mean[ia, :2] + mean[ib, :2])
    ax, y = np.abs(xy[:, 0]), xy[:, 1]

    w = np.zeros((len(ia), 7))
    eye = np.zeros(len(ia), dtype=bool)
    iris = np.zeros(len(ia), dtype=bool)
    for ring in (lm[36:42], lm[42:48]):
        inside = _inside(xy, ring)
        centre = ring.mean(0)
        height = np.ptp(ring[:, 1])
        eye |= inside
        iris |= inside & (np.hypot(xy[:, 0] - centre[0], (xy[:, 1] - centre[1])) < 0.62 * height)
    # brows: a band along the brow landmarks (slightly below them), soft at its edge
    brow_d = np.minimum(_polyline_distance(xy, lm[17:22] - [0, 0.02]), _polyline_distance(xy, lm[22:27] - [0, 0.02]))
    brow = np.clip((0.045 - brow_d) / 0.015, 0.0, 1.0)
    # lips: inside the outer lip contour (the inner contour holds no vertex of the mean shape: its rows are
    # the lips' inner edges), darker along the mouth line
    lips = _inside(xy, lm[48:60])
    line = np.clip(1 - np.abs(y - mouth_y) / 0.035, 0, 1) * (ax < np.abs(lm[60, 0]))
    hair = np.clip((y - (0.95 - 0.3 * ax ** 2)) / 0.06, 0.0, 1.0) * (y > 0.5)  # above a curved hairline

    w[iris, _IRIS] = 1.0
    w[eye & ~iris, _SCLERA] = 1.0
    rest = ~eye
    w[rest, _LIP] = lips[rest].astype(np.float64)
    w[rest, _MOUTH] = 0.6 * line[rest] * lips[rest]
    w[rest, _LIP] -= w[rest, _MOUTH]
    w[rest, _BROW] = brow[rest] * (1 - w[rest, _LIP] - w[rest, _MOUTH])
    w[rest, _HAIR] = hair[rest] * (1 - w[rest].sum(1))
    w[:, _SKIN] = 1 - w.sum(1)

    ia, ib = torch.from_numpy(ia), torch.from_numpy(ib)
    bases = torch.cat([model.id_basis, model.exp_basis])
    mean_d = 0.5 * (model.mean[ia] + model.mean[ib])  # exact for the model's own vertices (ia == ib)
    bases_d = 0.5 * (bases[:, ia] + bases[:, ib])
    normals_d = F.normalize(model.normals[ia] + model.normals[ib], dim=1)
    return (mean_d.reshape(-1).contiguous(), bases_d.reshape(len(bases), -1).contiguous(), normals_d,
            torch.from_numpy(w).float())


# ---------------------------------------------------------------------------------------------- sampling

def _rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """(B, 3, 3) camera-frame rotation (x right, y up, z toward the camera) of ``frontal_projection``:
    ``roll (z) @ pitch (x) @ yaw (about y, positive turns the face to image right)``."""
    def rot(axis: int, angle: Tensor) -> Tensor:
        c, s = torch.cos(angle), torch.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype)
        r[:, axis, axis] = 1
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
        return r

    return rot(2, roll) @ rot(0, pitch) @ rot(1, -yaw)


def _bg_amplitude(k: int) -> Tensor:
    """(k, k) amplitudes of the background's cosine terms: 0.25 / (k + l)^1.5, 1 for the constant term."""
    f = torch.arange(k, dtype=torch.float32)
    s = f[:, None] + f[None, :]
    return torch.where(s > 0, 0.25 / s.clamp_min(1) ** 1.5, torch.ones(()))


_BG_FREQ = 6  # cosine frequencies 0..5 per axis
_BG_AMPLITUDE = _bg_amplitude(_BG_FREQ)


def _draw(seed: int, split: str, index: int, size: int, id_std: Tensor, exp_std: Tensor) -> dict:
    """Every random quantity of one sample, from the stream of (seed, split, index), in a fixed order."""
    g = torch.Generator().manual_seed(_stream_seed(seed, split, index))
    uniform = iter(torch.rand(32, generator=g, dtype=torch.float64).tolist())
    normal = torch.randn(len(id_std) + len(exp_std) + 4, generator=g)
    background = torch.rand(4, _BG_FREQ, _BG_FREQ, generator=g)  # brightness, then colour per channel
    noise = torch.randn(3, size, size, generator=g)

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * next(uniform)

    d: dict = {}
    d["angles"] = (u(-_MAX_YAW, _MAX_YAW), u(-_MAX_PITCH, _MAX_PITCH), u(-_MAX_ROLL, _MAX_ROLL))
    d["fraction"] = u(*_FACE_FRACTION)
    d["center"] = (u(-_CENTER_JITTER, _CENTER_JITTER), u(-_CENTER_JITTER, _CENTER_JITTER))
    ni, ne = len(id_std), len(exp_std)
    p_id = normal[:ni].clamp(-2.5, 2.5) * id_std
    p_exp = normal[ni:ni + ne].clamp(-2.0, 2.0) * exp_std
    if ne:  # mouth open: not negative (a negative jaw drop pushes the lips through each other)
        p_exp[0] = p_exp[0].abs() * (u(0, 1) < 0.6)
    d["params"] = torch.cat([p_id, p_exp])
    # light (camera frame, toward the light), ambient and diffuse strengths
    light = (u(-1.0, 1.0), u(-1.0, 1.0), u(0.4, 1.2))
    norm = math.sqrt(sum(c * c for c in light))
    d["light"] = tuple(c / norm for c in light)
    d["ambient"] = u(0.3, 0.55)
    d["diffuse"] = (1 - d["ambient"]) * u(0.8, 1.15)
    # colours (RGB in [0, 1]), one per material
    jitter = normal[ni + ne:].tolist()

    def mix(a: tuple, b: tuple, t: float) -> list:
        return [x * (1 - t) + y * t for x, y in zip(a, b)]

    skin = [c * (1 + 0.05 * j) for c, j in zip(mix((0.96, 0.80, 0.69), (0.45, 0.29, 0.20), u(0, 1)), jitter)]
    hair = [c * (1 + 0.1 * jitter[3]) for c in mix((0.08, 0.06, 0.05), (0.55, 0.42, 0.25), u(0, 1))]
    if u(0, 1) < 0.15:  # no hair: a skin-coloured forehead
        hair = [0.95 * c for c in skin]
    brow = [c * u(0.5, 0.9) for c in hair] if u(0, 1) < 0.7 else [c * u(0.3, 0.5) for c in skin]
    iris_dark, iris_blue = u(0.3, 1.2), u(0, 1)
    iris = [0.25 * iris_dark, 0.15 * iris_dark + 0.1 * iris_blue, 0.08 * iris_dark + 0.2 * iris_blue]
    lip_tone = u(0.75, 1.0)
    lip = [c * f * lip_tone for c, f in zip(skin, (0.85, 0.55, 0.55))]
    sclera = [c * u(0.8, 1.0) for c in (0.92, 0.90, 0.86)]
    mouth = [c * u(0.4, 1.0) for c in (0.25, 0.08, 0.08)]
    d["colours"] = [skin, sclera, iris, brow, lip, hair, mouth]
    # background: a smooth random field (low-frequency cosines, the constant term a muted colour)
    grey = u(0.15, 0.85)
    coef = ((2 * background[:1] - 1) + 0.4 * (2 * background[1:] - 1)) * _BG_AMPLITUDE
    coef[:, 0, 0] = grey + 0.5 * (background[1:, 0, 0] - grey)
    d["background"] = coef
    d["noise"] = noise * u(0.005, 0.03)
    return d


@contextlib.contextmanager
def _threads(n: int):
    """torch's intra-op threads set to n meanwhile (the small tensor ops of a chunk run fastest on one
    thread, and then give the same bits whatever the caller's setting; the splat uses the caller's threads)."""
    old = torch.get_num_threads()
    if old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _polygon_mask(polygon: Tensor, h: int, w: int, x0: int, y0: int) -> Tensor:
    """(h, w) even-odd inside test of the pixel centres (x0 + j, y0 + i) against a (K, 2) polygon (x, y)."""
    y = torch.arange(y0, y0 + h, dtype=polygon.dtype).view(h, 1, 1)
    x = torch.arange(x0, x0 + w, dtype=polygon.dtype).view(1, w, 1)
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = ax.roll(-1), ay.roll(-1)
    crosses = (ay > y) != (by > y)
    xc = ax + (y - ay) * (bx - ax) / torch.where(by == ay, torch.ones_like(by), by - ay)
    return ((crosses & (x < xc)).sum(-1) % 2) == 1


def _blur(x: Tensor) -> Tensor:
    """Separable [1, 2, 1] / 4 blur of (B, C, H, W), edges replicated."""
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    x = 0.25 * (x[..., :-2] + x[..., 2:]) + 0.5 * x[..., 1:-1]
    return 0.25 * (x[..., :-2, :] + x[..., 2:, :]) + 0.5 * x[..., 1:-1, :]


def _background(draws: list, size: int) -> Tensor:
    """(B, 3, size, size) backgrounds: ``sum_kl c_kl cos(pi k (x + 1/2) / size) cos(pi l (y + 1/2) / size)``."""
    freq = torch.arange(_BG_FREQ, dtype=torch.float32)
    basis = torch.cos(math.pi * (torch.arange(size, dtype=torch.float32)[:, None] + 0.5) / size * freq)
    coef = torch.stack([d["background"] for d in draws])  # (B, 3, K, K), [k (x), l (y)]
    return (basis @ coef.transpose(2, 3) @ basis.T).contiguous()  # (B, 3, y, x)


def _render_chunk(model: MorphableModel, draws: list, size: int,
                  splat_threads: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(images uint8 (B, 3, H, W), landmarks (B, 68, 2), params (B, P), camera (B, 2, 4)) of one chunk."""
    mean_d, bases_d, normals_d, weights = _render_mesh()
    if size <= _REFINE_ABOVE:  # the model's own vertices are dense enough (under 0.8 px apart)
        q = model.num_vertices
        mean_d, bases_d, normals_d, weights = mean_d[:3 * q], bases_d[:, :3 * q], normals_d[:q], weights[:q]
    b = len(draws)
    params = torch.stack([d["params"] for d in draws])
    angles = torch.tensor([d["angles"] for d in draws], dtype=torch.float64) * (math.pi / 180)
    rot = _rotation(angles[:, 0], angles[:, 1], angles[:, 2]).float()  # (B, 3, 3)
    dense = torch.addmm(mean_d, params, bases_d).view(b, -1, 3)  # S_p on the render mesh (B, R, 3)
    lmk_shape = dense[:, model.landmarks]  # model vertices: S_p = model.shape(params) at the landmarks

    # weak perspective: the larger side of the posed landmark box is `fraction` of the image, its centre at
    # the jittered image centre
    unit = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]) @ rot  # (B, 2, 3)
    lmk0 = lmk_shape @ unit.transpose(1, 2)
    extent = (lmk0.amax(1) - lmk0.amin(1)).amax(1)
    scale = torch.tensor([d["fraction"] * size for d in draws]) / extent
    linear = scale[:, None, None] * unit
    lmk1 = lmk_shape @ linear.transpose(1, 2)
    box_centre = 0.5 * (lmk1.amin(1) + lmk1.amax(1))
    target = (size - 1) / 2 + torch.tensor([d["center"] for d in draws]) * size
    camera = torch.cat([linear, (target - box_centre)[:, :, None]], dim=2)  # (B, 2, 4)
    landmarks = lmk_shape @ camera[:, :, :3].transpose(1, 2) + camera[:, None, :, 3]

    # visibility: vertices whose mean-shape normal faces away are pruned (as in VisualizationLayer), the
    # nearest-pixel z-buffer of the splat hides the rest of the occluded surface
    view = rot[:, 2]  # toward the camera, in the model frame
    facing = view @ normals_d.T  # (B, R)
    depth = torch.where(facing > 0, -(dense @ view[:, :, None]).squeeze(2), torch.full_like(facing, math.inf))
    xy = torch.baddbmm(camera[:, None, :, 3], dense, camera[:, :, :3].transpose(1, 2))

    # Lambertian shading with the mean-shape normals, albedo from the per-image material colours
    light = (torch.tensor([d["light"] for d in draws])[:, None] @ rot).squeeze(1)  # (B, 3) in the model frame
    ambient = torch.tensor([d["ambient"] for d in draws])[:, None]
    diffuse = torch.tensor([d["diffuse"] for d in draws])[:, None]
    shade = torch.addcmul(ambient, diffuse, (light @ normals_d.T).clamp_min_(0))  # (B, R)
    colours = torch.tensor([d["colours"] for d in draws]).clamp(0.0, 1.0)  # (B, 7, 3)
    value = (colours.transpose(1, 2).reshape(3 * b, -1) @ weights.T).view(b, 3, -1).mul_(shade[:, None])
    value.clamp_min_(1e-3)  # > 0: the splat is 0 only where nothing covers

    radius = max(1.0, 1.5 * size / 128)
    with _threads(splat_threads):
        face = splat(xy.repeat_interleave(3, dim=0), depth.repeat_interleave(3, dim=0), value.view(3 * b, -1),
                     size, sigma=0.5 * radius, radius=radius).view(b, 3, size, size)
    covered = (face[:, :1] > 0).to(face.dtype)

    under = _background(draws, size)

    # the mouth interior under the face (seen where the parted lips leave no surface)
    lips = landmarks[:, 48:60]
    low = lips.amin(1).floor().clamp(0, size - 1).long()
    high = lips.amax(1).ceil().clamp(0, size - 1).long()
    mouth_level = (0.7 + 0.3 * shade.mean(1)).tolist()
    for k in range(b):
        (x0, y0), (x1, y1) = low[k].tolist(), high[k].tolist()
        inside = _polygon_mask(lips[k], y1 - y0 + 1, x1 - x0 + 1, x0, y0)
        region = under[k, :, y0:y1 + 1, x0:x1 + 1]
        dark = colours[k, _MOUTH, :, None, None] * mouth_level[k]
        region.copy_(torch.where(inside, dark, region))

    # composite: inside the covered area the face as splatted, outside a blurred fringe over the background
    soft = _blur(torch.cat([face, covered], 1))
    fringe = soft[:, :3] + (1 - soft[:, 3:]) * under
    image = torch.where(covered > 0, face, fringe)
    image += torch.stack([d["noise"] for d in draws])
    images = image.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return images, landmarks, params, camera


# ----------------------------------------------------------------------------------------------- dataset

class SyntheticFaces(Dataset):
    """Procedural 68-point faces rendered in code: deterministic, downloaded from nowhere.

    ``split`` is ``"train"`` (2,000 samples by default) or ``"test"`` (200 by default); ``count`` overrides
    the number, ``size`` is the square image side in pixels (at least 16), ``seed`` (>= 0) picks another
    dataset. The sample at ``(seed, split, index)`` depends on nothing else: not on ``count`` (a small set is
    a prefix of a large one), not on the thread setting; the splits draw from disjoint streams; at another
    ``size`` it is the same face (parameters, pose, framing, colours) scaled. Everything is rendered at
    construction (about 7 ms a sample at size 128 on a busy 2-core CPU: the default train and test sets in
    about 15 s) and kept as uint8 (98 MB for the default train set at 128).

    ``dataset[i]`` is a dict:

    * ``"image"`` float32 (3, size, size) in [0, 1];
    * ``"landmarks"`` float32 (68, 2), (x, y) in image pixels, pixel (row i, col j) centred at (x=j, y=i);
      the iBUG/300W 68-point layout, all inside the image;
    * ``"affine"`` float64 (2, 3), the identity (the image is its own original);
    * ``"index"`` int64 scalar tensor;
    * ``"params"`` float32 (P,), the identity then expression parameters ``p`` of the face (P = 16 for the
      procedural model);
    * ``"camera"`` float32 (2, 4), the weak-perspective ``M`` (model coordinates to image pixels, y down; a
      scaled rotation as built by ``fastlmk.nn.frontal_projection``): ``landmarks = M @ [S_p; 1]`` at
      ``model.landmarks``, ``S_p = model.shape(params)``, ``model = fastlmk.geometry.morphable.procedural()``;
      ``VisualizationLayer(model, size)(camera, params)`` renders PIFA's visualization of the same face.

    Distribution: yaw uniform in +-45 degrees, pitch and roll in +-20 (``frontal_projection``'s angles); the
    larger side of the landmark bounding box is 45-70 % of the image, its centre within +-10 % of the image
    centre (so the landmarks stay at least 5 % inside); identity parameters ``N(0, id_std^2)`` clipped to
    2.5 std; expression ``N(0, exp_std^2)`` clipped to 2 std, the mouth-open one non-negative and non-zero
    in 60 % of the faces.
    """

    num_landmarks = 68
    flip_permutation = MIRROR_68
    """Point ``k`` of a horizontally mirrored sample is point ``flip_permutation[k]``."""

    def __init__(self, split: str = "train", count: Optional[int] = None, size: int = 128, seed: int = 0) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if count is None:
            count = DEFAULT_COUNTS[split]
        for name, value, low in (("count", count, 0), ("size", size, 16), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        self.split, self.count, self.size, self.seed = split, int(count), int(size), int(seed)
        model = procedural()
        self.num_params = model.num_id + model.num_exp
        n = self.count
        self.images = torch.empty(n, 3, self.size, self.size, dtype=torch.uint8)
        self.landmarks = torch.empty(n, 68, 2)
        self.params = torch.empty(n, self.num_params)
        self.camera = torch.empty(n, 2, 4)
        threads = torch.get_num_threads()
        with torch.no_grad(), _threads(1):
            for start in range(0, n, _CHUNK):  # whole chunks: a sample never depends on count
                draws = [_draw(self.seed, split, i, self.size, model.id_std, model.exp_std)
                         for i in range(start, start + _CHUNK)]
                rendered = _render_chunk(model, draws, self.size, threads)
                stop = min(start + _CHUNK, n)
                for store, value in zip((self.images, self.landmarks, self.params, self.camera), rendered):
                    store[start:stop] = value[:stop - start]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        i = operator.index(i)
        if not -self.count <= i < self.count:
            raise IndexError(f"index {i} out of range for {self.count} samples")
        i = i % self.count
        return {
            "image": self.images[i].float().div_(255.0),
            "landmarks": self.landmarks[i].clone(),
            "affine": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64),
            "index": torch.tensor(i, dtype=torch.int64),
            "params": self.params[i].clone(),
            "camera": self.camera[i].clone(),
        }

    def __repr__(self) -> str:
        return f"SyntheticFaces(split={self.split!r}, count={self.count}, size={self.size}, seed={self.seed})"
