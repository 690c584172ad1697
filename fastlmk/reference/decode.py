"""Pure-PyTorch reference of the decoding family: the ground truth of every test and benchmark.

Heatmaps are (B, K, H, W); pixel (i, j) has its centre at (x=j, y=i). Every method starts from the first
maximum in row-major order (as ``torch.argmax``) and returns ``(coords (B, K, 2), scores (B, K))`` in the
compute dtype (float64 for float64 maps, else float32); the score is the maximum value. A channel holding a
NaN decodes to NaN coordinates and a NaN score. Written for clarity, vectorised over channels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .._checks import compute_dtype

METHODS = ("argmax", "quarter", "wsm", "parabola", "dark", "local_softargmax", "topk", "offset")
MAX_BLUR = 127  # largest DARK kernel (a 131x131 patch around the maximum)


_OPENCV_SMALL = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                 7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}


def dark_sigma(blur: int) -> float:
    """Standard deviation of DARK's ``blur x blur`` Gaussian kernel (OpenCV's rule for sigma = 0)."""
    return 0.3 * ((blur - 1) * 0.5 - 1) + 0.8


def dark_kernel(blur: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The normalised 1-D Gaussian of size ``blur`` that DARK applies along each axis: OpenCV's kernel for
    ``cv2.GaussianBlur(..., (blur, blur), 0)``, a fixed table for sizes up to 7, else of ``dark_sigma(blur)``."""
    t = torch.arange(blur, dtype=torch.float64, device=device)
    if blur in _OPENCV_SMALL:  # built from scalars: a tensor constant would not trace
        g = torch.zeros_like(t)
        for i, v in enumerate(_OPENCV_SMALL[blur]):
            g = torch.where(t == i, v, g)
        return g.to(dtype)
    t = t - (blur - 1) / 2
    g = torch.exp(-t * t / (2 * dark_sigma(blur) ** 2))
    return (g / g.sum()).to(dtype)


def _at(maps: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """maps[c, y[c], x[c]] per channel, and whether (y, x) lies inside the map (0 where it does not)."""
    n, h, w = maps.shape
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1))
    v = maps.reshape(n, h * w).gather(1, flat[:, None])[:, 0]
    return torch.where(inside, v, torch.zeros_like(v)), inside


def _quarter(maps, x, y):
    h, w = maps.shape[1:]
    dx = 0.25 * torch.sign(_at(maps, y, x + 1)[0] - _at(maps, y, x - 1)[0])
    dy = 0.25 * torch.sign(_at(maps, y + 1, x)[0] - _at(maps, y - 1, x)[0])
    zero = torch.zeros_like(dx)
    return (torch.where((x >= 1) & (x <= w - 2), dx, zero), torch.where((y >= 1) & (y <= h - 2), dy, zero))


def _wsm(maps, idx, x, y):
    """0.25 px toward the second maximum: the first maximum in row-major order of the other pixels."""
    n, h, w = maps.shape
    if h * w == 1:  # no second maximum
        return torch.zeros_like(maps[:, 0, 0]), torch.zeros_like(maps[:, 0, 0])
    flat = maps.reshape(n, h * w)
    others = torch.arange(h * w, device=maps.device) != idx[:, None]
    top = torch.where(others, flat, float("-inf")).amax(1, keepdim=True)
    idx2 = ((flat == top) & others).int().argmax(1)
    dx = (idx2 % w - x).to(maps.dtype)
    dy = (idx2 // w - y).to(maps.dtype)
    norm = torch.sqrt(dx * dx + dy * dy)
    return 0.25 * dx / norm, 0.25 * dy / norm


def _parabola_axis(left, centre, right, interior):
    denom = left - 2 * centre + right
    ok = interior & (denom != 0) & torch.isfinite(denom)  # flat, or an infinite value among the three: 0
    off = 0.5 * (left - right) / torch.where(ok, denom, torch.ones_like(denom))
    return torch.where(ok, off.clamp(-0.5, 0.5), torch.zeros_like(off))


def _parabola(maps, x, y):
    h, w = maps.shape[1:]
    c = _at(maps, y, x)[0]
    dx = _parabola_axis(_at(maps, y, x - 1)[0], c, _at(maps, y, x + 1)[0], (x >= 1) & (x <= w - 2))
    dy = _parabola_axis(_at(maps, y - 1, x)[0], c, _at(maps, y + 1, x)[0], (y >= 1) & (y <= h - 2))
    return dx, dy


def _dark(maps, x, y, blur):
    """mmpose's refine_keypoints_dark, in float64. The whole map is blurred here (the reference); the rescale
    uses the blurred maximum over the 5x5 patch around the argmax (it only matters through the 1e-10 clamp)."""
    n, h, w = maps.shape
    m = maps.to(torch.float64)
    b = _band(blur, h, maps.device) @ m @ _band(blur, w, maps.device)  # the separable blur, zero padding
    peak = _at(m, y, x)[0]
    patch_max = torch.full_like(peak, float("-inf"))
    for di in range(-2, 3):
        for dj in range(-2, 3):
            v, inside = _at(b, y + di, x + dj)
            patch_max = torch.where(inside, torch.maximum(patch_max, v), patch_max)
    scale = torch.where(patch_max > 0, peak / patch_max, torch.ones_like(peak))

    def L(di: int, dj: int) -> Tensor:
        return torch.log(torch.clamp(_at(b, y + di, x + dj)[0] * scale, min=1e-10))

    c = L(0, 0)
    dx = 0.5 * (L(0, 1) - L(0, -1))
    dy = 0.5 * (L(1, 0) - L(-1, 0))
    dxx = 0.25 * (L(0, 2) - 2 * c + L(0, -2))
    dyy = 0.25 * (L(2, 0) - 2 * c + L(-2, 0))
    dxy = 0.25 * (L(1, 1) - L(-1, 1) - L(1, -1) + L(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(dyy * dx - dxy * dy) / safe
    oy = -(dxx * dy - dxy * dx) / safe
    zero = torch.zeros_like(ox)
    return torch.where(ok, ox, zero).to(maps.dtype), torch.where(ok, oy, zero).to(maps.dtype)


def _band(blur: int, n: int, device) -> Tensor:
    """(n, n) matrix of the 1-D DARK blur with zero padding, symmetric: ``M[i, j] = g[j - i + r]`` for
    ``|j - i| <= r``. A product with it is the convolution (a MatMul, which ONNX runs in float64 where its
    Conv does not)."""
    r = (blur - 1) // 2
    offset = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None] + r
    inside = (offset >= 0) & (offset < blur)
    return torch.where(inside, dark_kernel(blur, device=device)[offset.clamp(0, blur - 1)],
                       torch.zeros((), dtype=torch.float64, device=device))


def _local_softargmax(maps, x, y, window):
    """Mean of the pixel centres in the (2r+1)^2 window around the maximum, weighted by max(h, 0)."""
    sw = torch.zeros_like(maps[:, 0, 0])
    sx = torch.zeros_like(sw)
    sy = torch.zeros_like(sw)
    for di in range(-window, window + 1):
        for dj in range(-window, window + 1):
            v = _at(maps, y + di, x + dj)[0].clamp(min=0)
            sw = sw + v
            sx = sx + v * dj
            sy = sy + v * di
    ok = sw > 0
    safe = torch.where(ok, sw, torch.ones_like(sw))
    return torch.where(ok, sx / safe, torch.zeros_like(sx)), torch.where(ok, sy / safe, torch.zeros_like(sy))


def _topk(maps, k):
    """H3R: softmax over the k highest values (ties: lower row-major index first) of their pixel centres."""
    n, h, w = maps.shape
    flat = maps.reshape(n, h * w)
    if torch.compiler.is_exporting():  # ONNX has no stable sort; its TopK also puts the lower index first
        vals, idx = torch.topk(flat, k, dim=1)
    else:
        vals, idx = torch.sort(flat, dim=1, descending=True, stable=True)
        vals, idx = vals[:, :k], idx[:, :k]
    p = torch.softmax(vals, dim=1)
    return (p * (idx % w).to(maps.dtype)).sum(1), (p * (idx // w).to(maps.dtype)).sum(1)


def flip_columns(w: int, shift: bool, device=None) -> Tensor:
    """The column of the flipped image's map that lands on each column j of the original: ``W - 1 - j``, or
    ``W - max(j, 1)`` with ``shift`` (mmpose's ``shift_heatmap``, which moves the flipped map one pixel right)."""
    j = torch.arange(w, device=device)
    return w - j.clamp(min=1) if shift else w - 1 - j


def flip_back(flipped: Tensor, flip_indices: Optional[Sequence[int]] = None, shift: bool = False) -> Tensor:
    """The maps (B, K, ..., W) of the horizontally flipped image, flipped back onto the original: channel k
    takes channel ``flip_indices[k]`` (the mirrored keypoint), column j takes ``flip_columns(W, shift)[j]``.
    mmpose's ``flip_heatmaps(flip_mode="heatmap")``."""
    if flip_indices is not None:
        flipped = flipped.index_select(1, torch.tensor(list(flip_indices), dtype=torch.int64, device=flipped.device))
    return flipped.index_select(-1, flip_columns(flipped.shape[-1], shift, flipped.device))


def flip_back_adjoint(grad: Tensor, flip_indices: Optional[Sequence[int]] = None, shift: bool = False) -> Tensor:
    """The transpose of ``flip_back`` (the gradient w.r.t. the flipped maps): column j's value goes to column
    ``flip_columns(W, shift)[j]`` (two land on W - 1 with ``shift``, none on 0), channel k's to
    ``flip_indices[k]``."""
    out = torch.zeros_like(grad).index_add(-1, flip_columns(grad.shape[-1], shift, grad.device), grad)
    if flip_indices is None:
        return out
    return out.index_copy(1, torch.tensor(list(flip_indices), dtype=torch.int64, device=grad.device), out)


def flip_average(heatmaps: Tensor, flipped: Tensor, flip_indices: Optional[Sequence[int]] = None,
                 shift: bool = False) -> Tensor:
    """The flip test's maps: ``(heatmaps + flip_back(flipped)) / 2`` in the compute dtype, as mmpose averages
    the maps and the flipped-back maps before decoding."""
    cd = compute_dtype(heatmaps.dtype)
    return (heatmaps.to(cd) + flip_back(flipped, flip_indices, shift).to(cd)) * 0.5


def decode(heatmaps: Tensor, method: str = "argmax", *, blur: int = 11, window: int = 1, k: int = 9,
           offsets: Optional[Tensor] = None, affine: Optional[Tensor] = None, flipped: Optional[Tensor] = None,
           flipped_offsets: Optional[Tensor] = None, flip_indices: Optional[Sequence[int]] = None,
           shift: bool = False) -> tuple[Tensor, Tensor]:
    """Coordinates (B, K, 2) and scores (B, K) of the maxima of ``heatmaps``, refined by ``method``
    (docs/ops.md 2); ``offsets (B, K, 2, H, W)`` for ``method="offset"``; ``affine (B, 2, 3)`` maps the
    result to image space. The flip test: with ``flipped`` the maps decoded are ``flip_average``, and the
    offsets the average of ``offsets`` and ``flip_back(flipped_offsets)`` with its x negated."""
    b, kk, h, w = heatmaps.shape
    cd = compute_dtype(heatmaps.dtype)
    if flipped is not None:
        heatmaps = flip_average(heatmaps, flipped, flip_indices, shift)
        if flipped_offsets is not None:
            sign = torch.tensor([-1.0, 1.0], dtype=cd, device=heatmaps.device).view(1, 1, 2, 1, 1)
            offsets = (offsets.to(cd) + flip_back(flipped_offsets, flip_indices, shift).to(cd) * sign) * 0.5
    maps = heatmaps.reshape(b * kk, h, w).to(cd)
    n = maps.shape[0]
    nan = torch.isnan(maps.reshape(n, h * w)).any(1)
    idx = maps.reshape(n, h * w).argmax(1)
    score = maps.reshape(n, h * w).gather(1, idx[:, None])[:, 0]
    x, y = idx % w, idx // w
    xf, yf = x.to(cd), y.to(cd)
    if method == "argmax":
        dx = dy = torch.zeros_like(xf)
    elif method == "quarter":
        dx, dy = _quarter(maps, x, y)
    elif method == "wsm":
        dx, dy = _wsm(maps, idx, x, y)
    elif method == "parabola":
        dx, dy = _parabola(maps, x, y)
    elif method == "dark":
        dx, dy = _dark(maps, x, y, blur)
    elif method == "local_softargmax":
        dx, dy = _local_softargmax(maps, x, y, window)
    elif method == "topk":
        tx, ty = _topk(maps, k)
        dx, dy = tx - xf, ty - yf
    elif method == "offset":
        off = offsets.reshape(n, 2, h, w).to(cd)
        dx = _at(off[:, 0], y, x)[0]
        dy = _at(off[:, 1], y, x)[0]
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    coords = torch.stack([xf + dx, yf + dy], dim=-1)
    coords = torch.where(nan[:, None], torch.full_like(coords, float("nan")), coords).reshape(b, kk, 2)
    score = torch.where(nan, torch.full_like(score, float("nan")), score).reshape(b, kk)
    if affine is not None:
        coords = apply_affine(coords, affine)
    return coords, score


def apply_affine(coords: Tensor, affine: Tensor) -> Tensor:
    """``A[b] @ (x, y, 1)`` for every keypoint: (B, K, 2) coordinates mapped by (B, 2, 3) matrices."""
    a = affine.to(coords.dtype)
    return torch.einsum("bij,bkj->bki", a[..., :2], coords) + a[:, None, :, 2]


def decode_hih(integer_maps: Tensor, decimal_maps: Tensor, *, convention: str = "paper",
               affine: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """HIH (seed 000, Eq. 4): ``argmax(integer) + argmax(decimal) / (wo, ho)`` (``"paper"``) or
    ``+ (argmax(decimal) + 0.5) / (wo, ho)`` (``"unbiased"``); the score is the integer map's maximum."""
    coarse, score = decode(integer_maps, "argmax")
    fine, _ = decode(decimal_maps, "argmax")
    ho, wo = decimal_maps.shape[2:]
    fine = fine + (0.5 if convention == "unbiased" else 0.0)
    coords = coarse + torch.stack([fine[..., 0] / wo, fine[..., 1] / ho], dim=-1)
    if affine is not None:
        coords = apply_affine(coords, affine)
    return coords, score


# ----------------------------------------------------------------------------------------------- soft-argmax

def _grid(h: int, w: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    return (torch.arange(w, dtype=dtype, device=device).repeat(h),
            torch.arange(h, dtype=dtype, device=device).repeat_interleave(w))


def soft_argmax(heatmaps: Tensor, beta: float = 1.0, normalize: str = "softmax", flipped: Optional[Tensor] = None,
                flip_indices: Optional[Sequence[int]] = None, shift: bool = False) -> tuple[Tensor, Tensor]:
    """Integral regression: ``(coords (B, K, 2), stat (B, K))`` with coords = sum_p w_p (j_p, i_p).

    ``"softmax"``: w = softmax(beta * h) over the map, stat = logsumexp(beta * h).
    ``"relu"``: w = relu(h) / S, stat = S = sum relu(h); a channel with S = 0 gives the map centre (NaN in a
    channel gives NaN coordinates in both modes).
    With ``flipped``, h is ``flip_average(heatmaps, flipped, flip_indices, shift)`` (the flip test).
    Differentiable (PyTorch autograd); computed in the compute dtype, and in float64 in an exported graph
    (whose runtime would add the error of its own float32 sums over the map to the kernels').
    """
    if flipped is not None:
        heatmaps = flip_average(heatmaps, flipped, flip_indices, shift)
    b, k, h, w = heatmaps.shape
    cd = compute_dtype(heatmaps.dtype)
    work = torch.float64 if torch.compiler.is_exporting() else cd
    flat = heatmaps.reshape(b, k, h * w).to(work)
    gx, gy = _grid(h, w, work, heatmaps.device)
    if normalize == "softmax":
        z = beta * flat
        stat = torch.logsumexp(z, dim=-1)
        p = torch.exp(z - stat[..., None])
        coords = torch.stack([(p * gx).sum(-1), (p * gy).sum(-1)], dim=-1)
    else:
        r = torch.relu(flat)
        stat = r.sum(-1)
        ok = stat != 0  # NaN passes, to NaN coordinates
        safe = torch.where(ok, stat, torch.ones_like(stat))
        centre = torch.stack([torch.full_like(stat, (w - 1) / 2), torch.full_like(stat, (h - 1) / 2)], dim=-1)
        coords = torch.stack([(r * gx).sum(-1), (r * gy).sum(-1)], dim=-1) / safe[..., None]
        coords = torch.where(ok[..., None], coords, centre)
    return coords.to(cd), stat.to(cd)


def soft_argmax_backward(grad_coords: Tensor, grad_stat: Tensor, heatmaps: Tensor, coords: Tensor, stat: Tensor,
                         beta: float = 1.0, normalize: str = "softmax") -> Tensor:
    """Gradient of ``soft_argmax`` w.r.t. the heatmaps from the saved outputs (coords, stat):
    softmax: ``beta p (g . (pos - coords) + g_stat)``; relu: ``[h > 0] (g . (pos - coords) / S + g_stat)``.
    Written with differentiable PyTorch ops (it is also the double backward)."""
    b, k, h, w = heatmaps.shape
    cd = coords.dtype
    flat = heatmaps.reshape(b, k, h * w).to(cd)
    gx, gy = _grid(h, w, cd, heatmaps.device)
    dot = grad_coords[..., 0, None] * (gx - coords[..., 0, None]) + grad_coords[..., 1, None] * (
        gy - coords[..., 1, None])
    if normalize == "softmax":
        p = torch.exp(beta * flat - stat[..., None])
        grad = beta * p * (dot + grad_stat[..., None])
    else:
        ok = stat != 0
        safe = torch.where(ok, stat, torch.ones_like(stat))
        grad = torch.where((flat > 0) & ok[..., None], dot / safe[..., None] + grad_stat[..., None],
                           torch.zeros_like(dot))
    return grad.reshape(b, k, h, w).to(heatmaps.dtype)


def decode_simcc(simcc_x: Tensor, simcc_y: Tensor) -> tuple[Tensor, Tensor]:
    """SimCC decoding: ``(locs (B, K, 2), scores (B, K))`` with locs the first maximum's bin of each vector and
    the score the smaller of the two maxima, in the compute dtype; NaN where a vector holds NaN."""
    cd = compute_dtype(simcc_x.dtype)

    def first_max(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        v = v.to(cd)
        nan = torch.isnan(v).any(-1)
        top = v.amax(-1)
        index = (v == top[..., None]).int().argmax(-1).to(cd)
        return torch.where(nan, float("nan"), index), top, nan

    x, mx, nx = first_max(simcc_x)
    y, my, ny = first_max(simcc_y)
    return torch.stack([x, y], -1), torch.where(nx | ny, float("nan"), torch.minimum(mx, my))
