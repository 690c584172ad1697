"""3D morphable face models (seed 003, PIFA, Sec. 3.1 and 3.3; docs/ops.md 3).

A :class:`MorphableModel` holds what the visualization layer needs: the mean shape ``S_0``, identity bases
``S^I`` and expression bases ``S^E`` of Eq. 1,

    S_p = S_0 + sum_k p^I_k S^I_k + sum_k p^E_k S^E_k,

the landmark vertex indices ``b`` of Eq. 3, the unit vertex normals ``N_0`` of the mean shape used by the
frontability of Eq. 8, and the contour mask ``a`` of Eq. 11. Shapes are stored vertex-major, ``(Q, 3)`` rows
``(x, y, z)`` (the transpose of Eq. 2), bases as ``(N, Q, 3)``.

Frame (the BFM convention, right-handed): x toward the image right when the face is frontal, y up, z toward
the camera. The subject's right eye is therefore at negative x, where the image-left eye of the 68-point
iBUG/300W layout (points 36-41) lies. Triangles are counter-clockwise seen from outside: the outward normal of
``(a, b, c)`` is ``(b - a) x (c - a)``.

Sources of models:

* :func:`procedural` -- a face built from analytic functions in code (no data files, no downloads).
* :func:`load_bfm` -- a Basel Face Model 2009-style ``.mat`` file.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["MIRROR_68", "SIGMA_N_FRACTION", "MorphableModel", "load_bfm", "nose_mask", "procedural",
           "vertex_normals"]

SIGMA_N_FRACTION = 0.35
"""Default ``sigma_n`` of Eq. 11 as a fraction of the mean shape's x extent (the face width): 0.70 for the
procedural face (width 2.01)."""

MIRROR_68 = (16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw
             26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # brows
             27, 28, 29, 30, 35, 34, 33, 32, 31,  # nose bridge, nostrils
             45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  # eyes
             54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
             64, 63, 62, 61, 60, 67, 66, 65)  # inner lip
"""The 68-point iBUG/300W mirror permutation: point ``k`` of a face is point ``MIRROR_68[k]`` of its mirror
image (0 <-> 16, 17 <-> 26, 36 <-> 45, 48 <-> 54, ...)."""

_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# ----------------------------------------------------------------------------------------------- container

def _float_field(name: str, t: object, dtype: Optional[torch.dtype], device: Optional[torch.device]) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but mean has {dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but mean is on {device}")
    return t


def _index_field(name: str, t: object, rank: int, q: int, device: torch.device) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _INDEX_DTYPES:
        raise TypeError(f"{name} must have an integer dtype, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but mean is on {device}")
    if t.dim() != rank or (rank == 2 and t.shape[1] != 3):
        expected = "(F, 3)" if rank == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= q):
        raise ValueError(f"{name} must hold vertex indices in [0, {q}), got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    return t


def _vertex_count(name: str, t: Tensor, q: int) -> None:
    n = t.shape[1] if t.dim() == 3 else t.shape[0]
    if n != q:
        raise ValueError(f"{name} has {n} vertices but mean has {q}")


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear 3D face model (Eq. 1) with the extras of the PIFA visualization layer.

    Float arrays share one dtype and device (that of ``mean``); index arrays are integer tensors on the same
    device (int64 from the constructors in this module). Construction validates shapes, dtypes and index
    ranges. The instance is immutable; :meth:`to` returns a converted copy.
    """

    mean: Tensor
    """(Q, 3) mean shape S_0."""
    normals: Tensor
    """(Q, 3) unit outward vertex normals of the mean shape (N_0 of Eq. 8)."""
    id_basis: Tensor
    """(N_I, Q, 3) identity bases S^I."""
    exp_basis: Tensor
    """(N_E, Q, 3) expression bases S^E (N_E may be 0)."""
    id_std: Tensor
    """(N_I,) standard deviation of each identity parameter."""
    exp_std: Tensor
    """(N_E,) standard deviation of each expression parameter."""
    triangles: Tensor
    """(F, 3) vertex indices, counter-clockwise seen from outside."""
    landmarks: Tensor
    """(N,) vertex indices of the 2D landmarks (b of Eq. 3)."""
    nose_tip: int
    """Vertex index of the nose tip (the centre of the mask of Eq. 11)."""
    mask: Tensor
    """(Q,) Eq. 11 on the mean shape, normalised to zero mean and unit (population) standard deviation."""

    def __post_init__(self) -> None:
        mean = _float_field("mean", self.mean, None, None)
        if mean.dim() != 2 or mean.shape[1] != 3:
            raise ValueError(f"mean must have shape (Q, 3), got {tuple(mean.shape)}")
        q, dtype, device = mean.shape[0], mean.dtype, mean.device
        for name in ("normals", "id_basis", "exp_basis", "id_std", "exp_std", "mask"):
            _float_field(name, getattr(self, name), dtype, device)
        if self.normals.dim() != 2 or self.normals.shape[1] != 3:
            raise ValueError(f"normals must have shape (Q, 3), got {tuple(self.normals.shape)}")
        _vertex_count("normals", self.normals, q)
        if self.mask.dim() != 1:
            raise ValueError(f"mask must have shape (Q,), got {tuple(self.mask.shape)}")
        _vertex_count("mask", self.mask, q)
        for basis, std in (("id_basis", "id_std"), ("exp_basis", "exp_std")):
            b, s = getattr(self, basis), getattr(self, std)
            if b.dim() != 3 or b.shape[2] != 3:
                raise ValueError(f"{basis} must have shape (N, Q, 3), got {tuple(b.shape)}")
            _vertex_count(basis, b, q)
            if s.dim() != 1 or s.shape[0] != b.shape[0]:
                raise ValueError(f"{std} must have shape ({b.shape[0]},) to match {basis}, got {tuple(s.shape)}")
        _index_field("triangles", self.triangles, 2, q, device)
        _index_field("landmarks", self.landmarks, 1, q, device)
        if isinstance(self.nose_tip, bool) or not isinstance(self.nose_tip, Integral):
            raise TypeError(f"nose_tip must be an int, got {type(self.nose_tip).__name__}")
        if not 0 <= self.nose_tip < q:
            raise ValueError(f"nose_tip must be a vertex index in [0, {q}), got {self.nose_tip}")
        object.__setattr__(self, "nose_tip", int(self.nose_tip))

    def __repr__(self) -> str:
        return (f"MorphableModel(Q={self.num_vertices}, F={self.triangles.shape[0]}, N_I={self.num_id}, "
                f"N_E={self.num_exp}, landmarks={self.landmarks.shape[0]}, nose_tip={self.nose_tip}, "
                f"dtype={self.mean.dtype}, device={self.mean.device})")

    @property
    def num_vertices(self) -> int:
        """Q."""
        return self.mean.shape[0]

    @property
    def num_id(self) -> int:
        """N_I, the number of identity parameters."""
        return self.id_basis.shape[0]

    @property
    def num_exp(self) -> int:
        """N_E, the number of expression parameters."""
        return self.exp_basis.shape[0]

    def shape(self, p: Tensor) -> Tensor:
        """Eq. 1 for a batch: ``p (B, N_I + N_E) = [p^I, p^E]`` -> ``S_p (B, Q, 3)``, differentiable in ``p``.

        Computed as two matrix products on the flattened bases (no concatenated copy of the bases).
        """
        if not isinstance(p, Tensor):
            raise TypeError(f"p must be a torch.Tensor, got {type(p).__name__}")
        ni, ne, q = self.num_id, self.num_exp, self.num_vertices
        if p.dim() != 2 or p.shape[1] != ni + ne:
            raise ValueError(f"p must have shape (B, {ni + ne}) ({ni} identity + {ne} expression parameters), "
                             f"got {tuple(p.shape)}")
        if p.dtype != self.mean.dtype:
            raise TypeError(f"p has dtype {p.dtype} but the model is {self.mean.dtype} (use model.to(dtype=...))")
        if p.device != self.mean.device:
            raise ValueError(f"p is on {p.device} but the model is on {self.mean.device} (use model.to(device=...))")
        flat = torch.addmm(self.mean.reshape(1, 3 * q), p[:, :ni], self.id_basis.reshape(ni, 3 * q))
        flat = torch.addmm(flat, p[:, ni:], self.exp_basis.reshape(ne, 3 * q))
        return flat.view(p.shape[0], q, 3)

    def to(self, device: Union[torch.device, str, None] = None,
           dtype: Optional[torch.dtype] = None) -> "MorphableModel":
        """A copy with the float arrays converted to ``device``/``dtype`` and the index arrays moved."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")

        def conv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype)

        return replace(self, mean=conv(self.mean), normals=conv(self.normals), id_basis=conv(self.id_basis),
                       exp_basis=conv(self.exp_basis), id_std=conv(self.id_std), exp_std=conv(self.exp_std),
                       mask=conv(self.mask), triangles=self.triangles.to(device=device),
                       landmarks=self.landmarks.to(device=device))


# ------------------------------------------------------------------------------------ normals and the mask

def vertex_normals(vertices: Tensor, triangles: Tensor) -> Tensor:
    """(Q, 3) unit vertex normals: the normalised sum over the incident triangles of ``(b - a) x (c - a)``
    (twice the triangle's area times its unit normal, so the sum is area-weighted). A vertex in no triangle
    gets a zero vector."""
    _float_field("vertices", vertices, None, None)
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (Q, 3), got {tuple(vertices.shape)}")
    tri = _index_field("triangles", triangles, 2, vertices.shape[0], vertices.device).long()
    a, b, c = vertices[tri].unbind(1)
    face = torch.linalg.cross(b - a, c - a)
    summed = torch.zeros_like(vertices).index_add_(0, tri.reshape(-1), face.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(summed, dim=1)


def nose_mask(vertices: Tensor, nose_tip: int, sigma_n: float) -> Tensor:
    """(Q,) the mask of Eq. 11, ``a_q = exp(-|v_q - v_nose|^2 / (2 sigma_n^2))``, then normalised to zero mean
    and unit population standard deviation: positive in the middle of the face, negative on the contour."""
    _float_field("vertices", vertices, None, None)
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (Q, 3), got {tuple(vertices.shape)}")
    if isinstance(nose_tip, bool) or not isinstance(nose_tip, Integral):
        raise TypeError(f"nose_tip must be an int, got {type(nose_tip).__name__}")
    if not 0 <= nose_tip < vertices.shape[0]:
        raise ValueError(f"nose_tip must be a vertex index in [0, {vertices.shape[0]}), got {nose_tip}")
    if isinstance(sigma_n, bool) or not isinstance(sigma_n, Real) or not (math.isfinite(sigma_n) and sigma_n > 0):
        raise ValueError(f"sigma_n must be finite and positive, got {sigma_n!r}")
    d2 = (vertices - vertices[nose_tip]).square().sum(1)
    a = torch.exp(d2 / (-2.0 * float(sigma_n) ** 2))
    std = a.std(correction=0)
    if not bool(std > 0):
        raise ValueError("the mask is constant over the vertices (sigma_n too large, or a single vertex)")
    return (a - a.mean()) / std


# ----------------------------------------------------------------------------------------- procedural face
#
# Geometry (units: face width about 2). A grid of step 1/resolution on the parameter ellipse
# u^2 + (v / _B)^2 <= 1 = rho^2 (polar angle phi), with an odd number of columns so that one column lies on
# the midline, is mapped radially, rho -> R = rho + _RADIAL_MIX cos(phi)^2 (sin(rho pi / 2) - rho) (denser
# toward the outline at the sides, where the surface turns away), onto the frontal positions
#     X = R cos(phi) (1 + _EGG Y / _B),  Y = _B R sin(phi)      (an egg: wider forehead, narrower chin)
# and lifted to the height field Z = _DEPTH [P_top(R) + cos(phi)^2 (P_side(R) - P_top(R))] + features, where
# P_side = (1 - min(R, _RIM)^2.5)^(1/2.5) turns almost fully back at the sides (a vertical wall at the outline
# would be sampled by a single grid step, leaving a gap in the renders of turned faces) and
# P_top = 1 - _TOP_DROP R^4 only tilts back at the forehead and under the chin. The features (nose, brows,
# eye sockets, cheekbones, lips, chin) are sums of Gaussians in (|X|, Y), so the mesh is exactly
# mirror-symmetric.

_B = 1.35  # half height (the half width is 1)
_EGG = 0.1
_DEPTH = 0.95
_RADIAL_MIX = 0.4
_RIM = 0.985  # the side profile stops short of vertical: no grid step spans a near-vertical wall
_TOP_DROP = 0.4
_NOSE_TIP_Y, _NASION_Y, _NOSE_HEIGHT = -0.25, 0.33, 0.33
_MOUTH_Y = -0.8
_JAW_RHO, _JAW_START = 0.95, 0.15  # contour landmarks: parameter radius, angle of point 0 above horizontal


def _gauss(t: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-0.5 * (t / s) ** 2)


def _bump(ax: np.ndarray, y: np.ndarray, cy: float, sx: float, sy: float) -> np.ndarray:
    """A Gaussian centred on the midline at height cy."""
    return _gauss(ax, sx) * _gauss(y - cy, sy)


def _pair(ax: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """Two Gaussians at (+-cx, cy): even in x."""
    return (_gauss(ax - cx, sx) + _gauss(ax + cx, sx)) * _gauss(y - cy, sy)


def _pair_out(ax: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """Odd counterpart of :func:`_pair` in |x| (zero on the midline): times sign(x), an x displacement
    pushing both features away from the midline."""
    return (_gauss(ax - cx, sx) - _gauss(ax + cx, sx)) * _gauss(y - cy, sy)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _frontal(u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parameter-disk point (u, w = v / _B) -> (X, Y, R, cos(phi)^2)."""
    rho = np.hypot(u, w)
    safe = np.where(rho > 0, rho, 1.0)
    cu, cw = u / safe, w / safe
    mix = _RADIAL_MIX * cu * cu
    r = (1 - mix) * rho + mix * np.sin(np.minimum(rho, 1.0) * (np.pi / 2))
    y = _B * r * cw
    x = r * cu * (1 + _EGG * r * cw)
    return x, y, r, cu * cu


def _nose(ax: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The nose ridge, 1 at the tip: a steep drop under the tip, a smooth rise from the nasion, a fade above."""
    t = (y - _NOSE_TIP_Y) / (_NASION_Y - _NOSE_TIP_Y)
    s = _smoothstep(t)
    profile = np.where(t < 0, _gauss(y - _NOSE_TIP_Y, 0.065),
                       np.where(t <= 1, 1 - 0.7 * s, 0.3 * _gauss(y - _NASION_Y, 0.08)))
    return profile * _gauss(ax, 0.07 + 0.045 * (1 - s))


def _height(ax: np.ndarray, y: np.ndarray, r: np.ndarray, c2: np.ndarray) -> np.ndarray:
    side = (1 - np.minimum(r, _RIM) ** 2.5) ** 0.4
    top = 1 - _TOP_DROP * r ** 4
    z = _DEPTH * (top + c2 * (side - top))
    return (z + _NOSE_HEIGHT * _nose(ax, y)
            + 0.09 * _pair(ax, y, 0.16, -0.36, 0.06, 0.05)  # nose wings
            + 0.07 * _pair(ax, y, 0.44, 0.47, 0.2, 0.06)  # brow ridges
            + 0.03 * _bump(ax, y, 0.45, 0.1, 0.08)  # glabella
            - 0.16 * _pair(ax, y, 0.44, 0.28, 0.15, 0.1)  # eye sockets
            + 0.07 * _pair(ax, y, 0.44, 0.27, 0.1, 0.05)  # eyelids
            + 0.07 * _pair(ax, y, 0.55, -0.02, 0.18, 0.15)  # cheekbones
            - 0.04 * _pair(ax, y, 0.8, 0.5, 0.12, 0.2)  # temples
            + 0.10 * _bump(ax, y, -0.72, 0.32, 0.25)  # muzzle
            + 0.05 * _bump(ax, y, -0.74, 0.2, 0.04)  # upper lip
            + 0.05 * _bump(ax, y, -0.88, 0.16, 0.045)  # lower lip
            - 0.03 * _bump(ax, y, -0.98, 0.15, 0.04)  # groove above the chin
            + 0.07 * _bump(ax, y, -1.1, 0.18, 0.12))  # chin


def _grid_mesh(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(u, w, triangles, mirror) of the clipped grid: parameter coordinates per vertex, CCW triangles (the
    diagonals mirror across the midline column), and the index of each vertex's mirror image."""
    rows = int(math.floor(_B * n))
    i, j = np.meshgrid(np.arange(rows, -rows - 1, -1), np.arange(-n, n + 1), indexing="ij")  # top row first
    u, w = j / n, i / (n * _B)
    inside = np.hypot(u, w) <= 1 + 1e-9
    index = np.full(inside.shape, -1, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    # cell corners, counter-clockwise in (u, v): bottom-left, bottom-right, top-right, top-left
    bl, br, tr, tl = index[1:, :-1], index[1:, 1:], index[:-1, 1:], index[:-1, :-1]
    corners = np.stack([bl, br, tr, tl], axis=-1).reshape(-1, 4)
    left = np.broadcast_to(np.arange(2 * n) < n, bl.shape).reshape(-1)
    present = corners >= 0
    full = present.all(1)
    tris = [corners[full & left][:, [0, 1, 2]], corners[full & left][:, [0, 2, 3]],  # diagonal BL-TR
            corners[full & ~left][:, [0, 1, 3]], corners[full & ~left][:, [1, 2, 3]]]  # diagonal BR-TL
    for missing in range(4):  # three corners present: one triangle, keeping the cyclic (CCW) order
        sel = (present.sum(1) == 3) & ~present[:, missing]
        tris.append(corners[sel][:, [(missing + k) % 4 for k in (1, 2, 3)]])
    triangles = np.concatenate(tris)
    mirror_grid = np.full(inside.shape, -1, dtype=np.int64)
    mirror_grid[inside] = index[:, ::-1][inside]
    # drop vertices in no triangle (isolated points on the outline): the selection is mirror-symmetric
    used = np.zeros(index.max() + 1, dtype=bool)
    used[triangles.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    mirror = remap[mirror_grid[inside][used]]
    u, w, triangles = u[inside][used], w[inside][used], remap[triangles]
    # vertices on boundary edges (edges of one triangle) move radially onto the outline rho = 1, so that the
    # outline is smooth in 3D (the surface is steep there)
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    boundary = np.unique(unique[count == 1])
    rho = np.hypot(u[boundary], w[boundary])
    u[boundary], w[boundary] = u[boundary] / rho, w[boundary] / rho
    return u, w, triangles, mirror


def _nearest(points: np.ndarray, xy: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each 2D point, the candidate vertex nearest in the frontal (x, y) plane."""
    d2 = ((xy[candidates][None, :, :] - points[:, None, :]) ** 2).sum(-1)
    return candidates[d2.argmin(1)]


def _landmarks(xy: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, float]:
    """The 68 iBUG/300W landmark vertices and the height of the mouth line (between the inner-lip rows).

    Points at x < 0 (the subject's right, image left) and on the midline are placed at the vertex nearest
    to a canonical frontal position (midline points on the midline column); the others are their mirrors.
    """
    midline = np.flatnonzero(xy[:, 0] == 0)
    rows = np.unique(xy[midline, 1])
    lip_up, lip_low = rows[rows > _MOUTH_Y].min(), rows[rows <= _MOUTH_Y].max()
    phi = np.pi - _JAW_START + np.arange(9) * (np.pi / 2 + _JAW_START) / 8
    jaw = np.stack(_frontal(_JAW_RHO * np.cos(phi), _JAW_RHO * np.sin(phi))[:2], axis=1)
    side = {k: jaw[k] for k in range(8)}
    side.update({17: (-0.74, 0.43), 18: (-0.62, 0.51), 19: (-0.47, 0.54), 20: (-0.32, 0.52), 21: (-0.16, 0.48),
                 31: (-0.16, -0.40), 32: (-0.08, -0.43),
                 36: (-0.64, 0.27), 37: (-0.53, 0.33), 38: (-0.37, 0.33), 39: (-0.24, 0.27), 40: (-0.37, 0.22),
                 41: (-0.53, 0.22),
                 48: (-0.36, -0.80), 49: (-0.24, -0.73), 50: (-0.10, -0.69), 58: (-0.10, -0.93), 59: (-0.24, -0.89),
                 60: (-0.30, 0.5 * (lip_up + lip_low)), 61: (-0.10, lip_up), 67: (-0.10, lip_low)})
    middle = {8: jaw[8], 27: (0.0, _NASION_Y), 28: (0.0, 0.14), 29: (0.0, -0.05), 30: (0.0, _NOSE_TIP_Y),
              33: (0.0, -0.45), 51: (0.0, -0.70), 57: (0.0, -0.94), 62: (0.0, lip_up), 66: (0.0, lip_low)}
    out = np.full(68, -1, dtype=np.int64)
    for points, candidates in ((side, np.arange(len(xy))), (middle, midline)):
        keys = sorted(points)
        out[keys] = _nearest(np.array([points[k] for k in keys], dtype=np.float64), xy, candidates)
    for k in side:
        out[MIRROR_68[k]] = mirror[out[k]]
    return out, 0.5 * (lip_up + lip_low)


def _identity(ax: np.ndarray, sx: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Identity displacement fields (dx, dy, dz) and the std of their parameters."""
    zero = np.zeros_like(ax)
    below_nose = _gauss(np.minimum(y + 0.45, 0.0), 0.1)
    cheek = _pair(ax, y, 0.6, -0.35, 0.2, 0.25)
    chin = _bump(ax, y, -1.1, 0.3, 0.2)
    fields = [
        (sx * ax, zero, zero),  # face width
        (zero, y / _B, zero),  # face length
        (sx * ax * _smoothstep((-0.1 - y) / 0.8), zero, zero),  # jaw width
        (zero, -_smoothstep((0.35 - y) / 0.6) * below_nose * _gauss(ax, 0.2), zero),  # nose length
        (sx * _pair_out(ax, y, 0.15, -0.37, 0.08, 0.08), zero, zero),  # nose width
        (zero, zero, _nose(ax, y)),  # nose protrusion
        (sx * _pair_out(ax, y, 0.44, 0.28, 0.18, 0.14), zero, zero),  # eye spacing
        (zero, _pair(ax, y, 0.45, 0.5, 0.22, 0.1), zero),  # brow height
        (0.5 * sx * cheek, zero, cheek),  # cheek fullness
        (zero, -0.6 * chin, 0.8 * chin),  # chin
    ]
    std = [0.05, 0.05, 0.05, 0.04, 0.03, 0.05, 0.03, 0.03, 0.05, 0.05]
    return [np.stack(f, axis=1) for f in fields], std


def _expression(ax: np.ndarray, sx: np.ndarray, y: np.ndarray,
                mouth_y: float) -> tuple[list[np.ndarray], list[float]]:
    """Expression displacement fields (dx, dy, dz) and the std of their parameters."""
    zero = np.zeros_like(ax)
    jaw = _smoothstep((mouth_y + 0.1 - y) / 0.6)  # the lower face drops...
    lips = 0.5 * (1 + np.tanh((mouth_y - y) / 0.012)) * _gauss(ax, 0.22)  # ...and the lips part at the mouth line
    drop = 1 - (1 - jaw) * (1 - lips)
    corners = _pair(ax, y, 0.36, -0.8, 0.12, 0.1)
    cheeks = _pair(ax, y, 0.5, -0.4, 0.15, 0.15)
    pucker = _bump(ax, y, -0.8, 0.3, 0.12)
    brows = _pair(ax, y, 0.42, 0.55, 0.28, 0.15)
    lids = _pair(ax, y, 0.44, 0.33, 0.12, 0.035)
    furrow = _pair(ax, y, 0.3, 0.48, 0.15, 0.1)
    fields = [
        (zero, -drop, -0.3 * drop),  # mouth open (jaw drop)
        (0.4 * sx * corners, 0.8 * corners + 0.3 * cheeks, -0.4 * corners),  # smile
        (-0.8 * sx * ax * pucker, zero, pucker),  # lip pucker
        (zero, brows, zero),  # brow raise
        (zero, -lids, zero),  # eye close (upper lids down)
        (-0.5 * sx * furrow, -furrow, zero),  # brow furrow
    ]
    std = [0.12, 0.08, 0.06, 0.05, 0.05, 0.03]
    return [np.stack(f, axis=1) for f in fields], std


def _unit_bases(fields: list[np.ndarray]) -> np.ndarray:
    """(N, Q, 3), each field scaled to a largest vertex displacement of 1."""
    bases = np.stack(fields)
    return bases / np.linalg.norm(bases, axis=2).max(axis=1)[:, None, None]


@functools.lru_cache(maxsize=8)
def procedural(resolution: int = 32) -> MorphableModel:
    """The shipped face model: analytic, deterministic, mirror-symmetric in x (float32, CPU).

    Mirror symmetry is exact for the mean shape, the bases, the mask and the mesh (for every vertex
    ``(x, y, z)`` there is a vertex ``(-x, y, z)``; one grid column lies on x = 0) and holds to float32
    rounding for the normals.

    ``resolution`` is the number of grid steps from the midline to the outline along x (the grid has
    ``2 * resolution + 1`` columns, one on the midline); the default gives 4,343 vertices and 8,472 triangles
    (about ``4.24 resolution^2`` vertices). Frontal extent: x in [-1.005, 1.005], y in [-1.35, 1.35] (chin to
    hairline); z = 0 on the outline at the sides (the ear plane, so rotations about the origin turn the face
    about a point behind it), 0.57 on the outline at the top; the nose tip (the vertex of largest z, on the
    midline, landmark 30) at (0, -0.25, 1.30).

    * Identity bases (10): face width, face length, jaw width, nose length, nose width, nose protrusion,
      eye spacing, brow height, cheek fullness, chin. Expression bases (6): mouth open (jaw drop with the
      lips parting at the mouth line), smile, lip pucker, brow raise, eye close, brow furrow. All are smooth,
      mirror-symmetric displacement fields scaled to a largest vertex displacement of 1; ``id_std`` and
      ``exp_std`` (0.03-0.12) make ``p ~ N(0, std^2)`` move vertices by a few percent of the face width.
    * ``landmarks``: the 68 iBUG/300W points, each the vertex nearest to a canonical frontal position;
      midline points lie on the midline column and ``landmarks[MIRROR_68[k]]`` is the mirror vertex of
      ``landmarks[k]``.
    * ``mask``: :func:`nose_mask` with ``sigma_n = SIGMA_N_FRACTION`` times the x extent (0.70): positive
      over the nose, eyes and mouth, negative on the contour and the forehead.

    Cached: repeated calls return the same object; do not modify its tensors in place.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, Integral):
        raise TypeError(f"resolution must be an int, got {type(resolution).__name__}")
    if resolution < 16:
        raise ValueError(f"resolution must be at least 16 (the landmarks need distinct vertices), got {resolution}")
    u, w, triangles, mirror = _grid_mesh(int(resolution))
    x, y, r, c2 = _frontal(u, w)
    ax, sx = np.abs(x), np.sign(x)
    mean = np.stack([x, y, _height(ax, y, r, c2)], axis=1)
    landmarks, mouth_y = _landmarks(mean[:, :2], mirror)
    id_fields, id_std = _identity(ax, sx, y)
    exp_fields, exp_std = _expression(ax, sx, y, mouth_y)

    mean_t = torch.from_numpy(mean).float()
    tri_t = torch.from_numpy(triangles)
    nose_tip = int(mean_t[:, 2].argmax())
    extent = float(mean_t[:, 0].max() - mean_t[:, 0].min())
    return MorphableModel(
        mean=mean_t, normals=vertex_normals(mean_t, tri_t),
        id_basis=torch.from_numpy(_unit_bases(id_fields)).float(),
        exp_basis=torch.from_numpy(_unit_bases(exp_fields)).float(),
        id_std=torch.tensor(id_std), exp_std=torch.tensor(exp_std),
        triangles=tri_t, landmarks=torch.from_numpy(landmarks), nose_tip=nose_tip,
        mask=nose_mask(mean_t, nose_tip, SIGMA_N_FRACTION * extent))


# ---------------------------------------------------------------------------------------------- BFM loader

def _mat_field(path: str, data: dict, name: str, required: bool = True) -> Optional[np.ndarray]:
    if name not in data:
        if required:
            raise ValueError(f"{path}: required field '{name}' is missing")
        return None
    value = np.asarray(data[name])
    if not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{path}: field '{name}' must be numeric, got {value.dtype}")
    return value


def _column(path: str, name: str, value: np.ndarray, length: Optional[int] = None) -> np.ndarray:
    """A (n, 1), (1, n) or (n,) array as a vector (of the given length)."""
    if value.ndim > 2 or (value.ndim == 2 and 1 not in value.shape):
        raise ValueError(f"{path}: field '{name}' must be a vector (n, 1), got shape {value.shape}")
    flat = value.reshape(-1)
    if length is not None and flat.shape[0] != length:
        raise ValueError(f"{path}: field '{name}' has {flat.shape[0]} entries, expected {length}")
    return flat


def _basis(path: str, name: str, value: np.ndarray, rows: int) -> np.ndarray:
    if value.ndim != 2 or value.shape[0] != rows:
        raise ValueError(f"{path}: field '{name}' must have shape ({rows}, N) (rows matching shapeMU), "
                         f"got {value.shape}")
    return value.T.reshape(value.shape[1], rows // 3, 3)


def _indices(path: str, name: str, value: np.ndarray, q: int, base: int) -> np.ndarray:
    """Integer-valued vertex indices (``base``-based in the file) as 0-based int64, range-checked."""
    if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
        raise ValueError(f"{path}: field '{name}' must hold integer vertex indices")
    out = np.round(value).astype(np.int64) - base
    if out.size and (out.min() < 0 or out.max() >= q):
        raise ValueError(f"{path}: field '{name}' has vertex indices outside [{base}, {q - 1 + base}] "
                         f"({out.min() + base} .. {out.max() + base})")
    return out


def load_bfm(path: Union[str, os.PathLike], *, landmarks: Optional[Sequence[int]] = None,
             nose_tip: Optional[int] = None, sigma_n: Optional[float] = None) -> MorphableModel:
    """Load a Basel Face Model 2009-style ``.mat`` file (MATLAB v4/v6/v7 via ``scipy.io.loadmat``; MATLAB
    v7.3 / HDF5 files are not supported: re-save them with ``save(..., '-v7')``).

    Top-level variables read (Q vertices, interleaved ``x1 y1 z1 x2 y2 z2 ...``; units as stored, e.g. mm):

    * ``shapeMU`` (3Q, 1): the mean shape. ``shapePC`` (3Q, N_I): identity bases, one per column.
      ``shapeEV`` (N_I, 1): the standard deviation of each identity parameter. ``tl`` (F, 3): triangles,
      1-based vertex indices.
    * Optional expression model: ``expMU`` (3Q, 1) added to the mean; ``expPC`` (3Q, N_E) and ``expEV``
      (N_E, 1), both or neither (then N_E = 0).
    * Optional ``landmarks`` (N, 1): 1-based landmark vertex indices. The ``landmarks=`` argument (0-based)
      overrides it; with neither the model has no landmarks.

    Vectors may also be stored as (1, n) rows. Triangles are re-wound if needed so that they are
    counter-clockwise seen from outside (the summed face normal of a face model points to +z).
    ``nose_tip`` defaults to the vertex of largest z of the mean, ``sigma_n`` (Eq. 11) to
    ``SIGMA_N_FRACTION`` times the mean shape's x extent. Arrays are returned as float32 / int64 on the CPU.
    Missing fields, wrong shapes and out-of-range indices raise ``ValueError`` naming the file and the field.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError("load_bfm needs scipy: pip install scipy") from e
    path = os.fspath(path)
    try:
        data = loadmat(path)
    except NotImplementedError as e:  # scipy's answer to a v7.3 (HDF5) file
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7") from e

    mu = _column(path, "shapeMU", _mat_field(path, data, "shapeMU"))
    rows = mu.shape[0]
    if rows == 0 or rows % 3:
        raise ValueError(f"{path}: field 'shapeMU' has {rows} rows, not a positive multiple of 3 (3Q)")
    q = rows // 3
    id_basis = _basis(path, "shapePC", _mat_field(path, data, "shapePC"), rows)
    id_std = _column(path, "shapeEV", _mat_field(path, data, "shapeEV"), id_basis.shape[0])
    tl = _mat_field(path, data, "tl")
    if tl.ndim != 2 or tl.shape[1] != 3:
        raise ValueError(f"{path}: field 'tl' must have shape (F, 3), got {tl.shape}")
    triangles = _indices(path, "tl", tl, q, 1)

    exp_mu = _mat_field(path, data, "expMU", required=False)
    if exp_mu is not None:
        mu = mu + _column(path, "expMU", exp_mu, rows)
    exp_pc = _mat_field(path, data, "expPC", required=False)
    exp_ev = _mat_field(path, data, "expEV", required=False)
    if (exp_pc is None) != (exp_ev is None):
        raise ValueError(f"{path}: field '{'expEV' if exp_ev is None else 'expPC'}' is missing "
                         "(expPC and expEV come together)")
    if exp_pc is None:
        exp_basis, exp_std = np.zeros((0, q, 3)), np.zeros(0)
    else:
        exp_basis = _basis(path, "expPC", exp_pc, rows)
        exp_std = _column(path, "expEV", exp_ev, exp_basis.shape[0])

    if landmarks is not None:
        lmk = _indices(path, "landmarks", np.asarray(landmarks).reshape(-1), q, 0)
    elif "landmarks" in data:
        lmk = _indices(path, "landmarks", _column(path, "landmarks", _mat_field(path, data, "landmarks")), q, 1)
    else:
        lmk = np.zeros(0, dtype=np.int64)

    mean = torch.from_numpy(mu.reshape(q, 3)).float()
    tri = torch.from_numpy(triangles)
    a, b, c = mean[tri].unbind(1)
    if float(torch.linalg.cross(b - a, c - a)[:, 2].sum()) < 0:
        tri = tri[:, [0, 2, 1]].contiguous()
    if nose_tip is None:
        nose_tip = int(mean[:, 2].argmax())
    if sigma_n is None:
        sigma_n = SIGMA_N_FRACTION * float(mean[:, 0].max() - mean[:, 0].min())
    return MorphableModel(
        mean=mean, normals=vertex_normals(mean, tri),
        id_basis=torch.from_numpy(np.ascontiguousarray(id_basis)).float(),
        exp_basis=torch.from_numpy(np.ascontiguousarray(exp_basis)).float(),
        id_std=torch.from_numpy(id_std).float(), exp_std=torch.from_numpy(exp_std).float(),
        triangles=tri, landmarks=torch.from_numpy(lmk), nose_tip=nose_tip,
        mask=nose_mask(mean, nose_tip, sigma_n))
