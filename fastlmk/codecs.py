"""Drop-in keypoint codecs with mmpose 1.3's constructor arguments and results, on the fused ops.

``MSRAHeatmap``, ``UDPHeatmap`` and ``SimCCLabel`` take the arguments of mmpose's classes of the same name
and give their results (docs/codecs.md lists each difference that remains, and its size):

- ``encode(keypoints (N, K, 2), keypoints_visible (N, K))`` and ``decode(heatmaps (K, H, W))`` (SimCC:
  ``decode(simcc_x, simcc_y)``): NumPy in, NumPy out, the same dict keys, shapes and dtypes as mmpose;
- ``batch_decode(heatmaps (B, K, H, W))``: mmpose's batch hook (heads call it when ``support_batch_decoding``),
  one fused decode for the whole batch;
- ``encode_batch``, ``decode_batch`` and ``loss``: tensors in, tensors out, on the tensors' device, for a
  training step that builds no target in the data loader at all (``loss`` renders none either).

Keypoints are in input-image pixels, (x, y). Several instances (N > 1) are merged by max into one heatmap,
as mmpose's bottom-up target (``generate_gaussian_heatmaps``); mmpose's classes accept one instance only.
When mmpose is importable, ``fastlmk.codecs`` registers the classes in its ``KEYPOINT_CODECS`` registry
under the scope ``fastlmk`` (``dict(type='fastlmk.MSRAHeatmap', ...)``).
"""

from __future__ import annotations

import importlib.util
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import _native, ops
from .ops.decode import check_flip_indices
from .ops.encode import simcc_peaks
from .reference.decode import dark_kernel, flip_back

__all__ = ["MSRAHeatmap", "UDPHeatmap", "SimCCLabel"]


def _blur(maps: Tensor, size: int, padding: str, axes: int = 2) -> Tensor:
    """``cv2.GaussianBlur`` of every (H, W) map with the kernel of ``size`` (along W only when ``axes=1``):
    ``padding="zeros"`` as mmpose's ``gaussian_blur`` (which pads with zeros first), ``"reflect"`` as
    OpenCV's default border (reflect-101)."""
    b, k, h, w = maps.shape
    g = dark_kernel(size).to(maps)
    r = size // 2
    ry = r if axes == 2 else 0
    x = maps.reshape(b * k, 1, h, w)
    if padding == "zeros":
        x = F.pad(x, (r, r, ry, ry))
    else:  # reflect-101 needs r < the size; repeat the reflection for tiny maps
        while r > 0:
            step = min(r, h - 1, w - 1)
            if step == 0:
                x = F.pad(x, (r, r, r, r), mode="replicate")
                break
            x = F.pad(x, (step, step, step, step), mode="reflect")
            r -= step
    x = F.conv2d(x, g.view(1, 1, 1, size))
    if axes == 2:
        x = F.conv2d(x, g.view(1, 1, size, 1))
    return x.reshape(b, k, h, w)


def _sample(keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """mmpose's (N, K, 2) keypoints as contiguous float32 and (N, K) visibilities (ones when not given)."""
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 2:
        raise ValueError(f"keypoints must have shape (N, K, 2), got {keypoints.shape}")
    kp = np.ascontiguousarray(keypoints[..., :2], dtype=np.float32)
    if keypoints_visible is None:
        return kp, np.ones(kp.shape[:2], np.float32)
    vis = np.asarray(keypoints_visible)
    if vis.shape != kp.shape[:2]:
        raise ValueError(f"keypoints_visible must have shape (N, K) = {kp.shape[:2]}, got {vis.shape}")
    return kp, vis


def _encode_sample(fn: str, kp: np.ndarray, vis: np.ndarray, **fields) -> np.ndarray:
    """Runs the per-sample codec encoding ``fastlmk._C.<fn>`` (csrc/codecs: the target rule and the render
    in one call, without torch's dispatcher) on ``_sample``'s arrays and the output buffers in ``fields``;
    returns keypoint_weights in the visibilities' dtype, as mmpose (which copies them)."""
    given = vis.dtype
    if given not in (np.float32, np.float64):  # e.g. bool or int visibilities: weights are 0 or the value
        vis = vis.astype(np.float64)
    vis = np.ascontiguousarray(vis)
    weights = np.empty_like(vis)
    _native.call(fn, kp=kp, visible=vis, visible_dtype=_native.dtype_code(torch.float64 if vis.dtype == np.float64 else torch.float32), weights=weights,
                 n=kp.shape[0], k=kp.shape[1], nthreads=1, **fields)
    return weights.astype(given, copy=False)


def _encode_on_torch(codec, kp: np.ndarray, vis: np.ndarray) -> dict[str, np.ndarray]:
    """A per-sample ``encode`` by the codec's batched tensor path (UDP "combined", and every codec when
    fastlmk._C failed to build)."""
    out = codec.encode_batch(torch.from_numpy(kp[None]), torch.from_numpy(np.ascontiguousarray(vis[None])))
    return {key: _numpy(value[0]) for key, value in out.items()}


def _visibility(keypoints: Tensor, keypoints_visible: Optional[Tensor]) -> Tensor:
    """(B, N, K) visibilities, ones when not given, checked against (B, N, K, 2) keypoints."""
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (B, N, K, 2), got {tuple(keypoints.shape)}")
    if keypoints_visible is None:
        return keypoints.new_ones(keypoints.shape[:-1], dtype=torch.float32)
    if tuple(keypoints_visible.shape) != tuple(keypoints.shape[:-1]):
        raise ValueError(f"keypoints_visible must have shape (B, N, K) = {tuple(keypoints.shape[:-1])}, "
                         f"got {tuple(keypoints_visible.shape)}")
    return keypoints_visible


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class _GaussianCodec:
    """What the Gaussian heatmap codecs share: mmpose's codec attributes, the visibility rule, the NumPy
    and batch entry points around ``encode_batch`` / ``decode_batch``."""

    auxiliary_encode_keys: set = set()
    field_mapping_table = dict(heatmaps="heatmaps")
    instance_mapping_table: dict = dict()
    label_mapping_table = dict(keypoint_weights="keypoint_weights")
    support_batch_decoding = True

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float
    scale_factor: np.ndarray
    _center: str  # the render_gaussian centre rule

    def _init_sizes(self, input_size: Sequence[int], heatmap_size: Sequence[int], sigma: float,
                    blur_kernel_size: int) -> None:
        if len(input_size) != 2 or len(heatmap_size) != 2 or min(heatmap_size) < 1:
            raise ValueError(f"input_size and heatmap_size must be (W, H) pairs, got {input_size}, {heatmap_size}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            raise ValueError(f"blur_kernel_size must be odd and positive, got {blur_kernel_size}")
        self.input_size = tuple(input_size)
        self.heatmap_size = tuple(int(v) for v in heatmap_size)
        self.sigma = sigma
        self.blur_kernel_size = blur_kernel_size
        self._size = np.array(self.heatmap_size, np.float32)  # (W, H), against (x, y)

    def _scale(self, like: Tensor) -> Tensor:
        return torch.as_tensor(self.scale_factor, device=like.device)

    def _targets(self, keypoints: Tensor, keypoints_visible: Optional[Tensor]) -> tuple[Tensor, Tensor, float]:
        """(heatmap keypoints with the instances left out of the target set to NaN, keypoint_weights, the
        window radius in sigmas) for (B, N, K, 2) input-image keypoints: the rule of csrc/codecs/codecs.h
        (which the per-sample ``encode`` runs natively), in float32."""
        vis = _visibility(keypoints, keypoints_visible)
        kp = keypoints.to(torch.float32) / self._scale(keypoints)
        w, h = self.heatmap_size
        r = 3.0 * self.sigma
        if self._center == "continuous":  # mmpose: the whole map for every keypoint within 3 sigma + 1
            lo, hi, radius = kp - r, kp + r + 1, (max(w, h) + r + 2) / self.sigma
        else:  # mmpose: the patch [trunc(mu - r), trunc(mu + r + 1)) of mu = trunc(x + 0.5)
            mu = torch.trunc(kp + 0.5)
            lo, hi, radius = torch.trunc(mu - r), torch.trunc(mu + r + 1), 3.0
        # NaN compares false and +-inf falls outside, so a non-finite keypoint is never inside
        inside = ((lo < torch.as_tensor(self._size, device=kp.device)) & (hi >= 0)).all(-1)
        seen = vis >= 0.5
        weights = torch.where(seen & ~inside, torch.zeros_like(vis), vis)
        kp = torch.where((seen & inside)[..., None], kp, float("nan"))
        return kp, weights, radius

    def encode_batch(self, keypoints: Tensor, keypoints_visible: Optional[Tensor] = None) -> dict[str, Tensor]:
        """``heatmaps`` (B, K, H, W) float32 and ``keypoint_weights`` (B, N, K) from keypoints (B, N, K, 2) in
        input-image pixels and visibilities (B, N, K), on their device: one fused render for the batch."""
        kp, weights, radius = self._targets(keypoints, keypoints_visible)
        w, h = self.heatmap_size
        heatmaps = ops.render_gaussian(kp, (h, w), self.sigma, center=self._center, radius=radius)
        return dict(heatmaps=heatmaps, keypoint_weights=weights)

    def encode(self, keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """mmpose's ``encode``: ``heatmaps`` (K, H, W) float32 and ``keypoint_weights`` (N, K), in one native
        call (csrc/codecs)."""
        kp, vis = _sample(keypoints, keypoints_visible)
        if _native.cpu_error:
            return _encode_on_torch(self, kp, vis)
        w, h = self.heatmap_size
        heatmaps = np.empty((kp.shape[1], h, w), np.float32)
        weights = _encode_sample("encode_heatmap_codec", kp, vis, heatmaps=heatmaps, h=h, w=w, scale=self.scale_factor,
                                 sigma=float(self.sigma), center=_native.code("center", self._center))
        return dict(heatmaps=heatmaps, keypoint_weights=weights)

    def loss(self, pred: Tensor, keypoints: Tensor, keypoints_visible: Optional[Tensor] = None,
             use_target_weight: bool = True) -> Tensor:
        """mmpose's ``KeypointMSELoss`` of ``pred`` (B, K, H, W) against this codec's target of ``keypoints``
        (B, N, K, 2), ``mean(w (pred - target)^2)`` with w the keypoint weights (one instance; with several,
        ``use_target_weight=False``), in one fused kernel that renders no target."""
        kp, weights, radius = self._targets(keypoints, keypoints_visible)
        if kp.shape[1] == 1:
            kp, weights = kp[:, 0], weights[:, 0]
        elif use_target_weight:
            raise ValueError("use_target_weight needs one instance per image; several are merged into one target")
        return ops.heatmap_loss(pred, kp, self.sigma, weights=weights if use_target_weight else None,
                                center=self._center, radius=radius)

    def decode_batch(self, heatmaps: Tensor, flipped: Optional[Tensor] = None, *,
                     flip_indices: Optional[Sequence[int]] = None,
                     shift_heatmap: bool = False) -> tuple[Tensor, Tensor]:
        """Keypoints (B, K, 2) in input-image pixels and scores (B, K): each codec's own decoding. With
        ``flipped`` (the maps of the horizontally flipped image), of the flip test's average, as mmpose's
        heads compute it from ``test_cfg`` (``flip_heatmaps`` with the codec's flip mode, then the mean)."""
        raise NotImplementedError

    def decode(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mmpose's ``decode``: keypoints (1, K, 2) in input-image pixels and scores (1, K)."""
        encoded = np.asarray(encoded)
        if encoded.ndim != 3:
            raise ValueError(f"heatmaps must have shape (K, H, W), got {encoded.shape}")
        keypoints, scores = self.decode_batch(torch.from_numpy(np.ascontiguousarray(encoded))[None])
        return _numpy(keypoints), _numpy(scores)

    def batch_decode(self, batch_heatmaps: Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """mmpose's batch hook: per sample, keypoints (1, K, 2) and scores (1, K), from one fused decode."""
        keypoints, scores = self.decode_batch(batch_heatmaps.detach())
        return [_numpy(k[None]) for k in keypoints], [_numpy(s[None]) for s in scores]


def _maxima(heatmaps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """mmpose's ``get_heatmap_maximum`` as the fused argmax decode: (x, y) pixel indices (int64) and scores."""
    coords, scores = ops.decode(heatmaps, "argmax")
    xy = coords.round().long()
    return xy[..., 0], xy[..., 1], scores


class MSRAHeatmap(_GaussianCodec):
    """mmpose's ``MSRAHeatmap``: Gaussians of ``sigma`` heatmap pixels on a ``heatmap_size`` (W, H) map of an
    ``input_size`` (W, H) image, ``scale_factor = input_size / heatmap_size``.

    ``unbiased=False``: the Gaussian on mmpose's integer patch (``render_gaussian(center="mmpose")``), decoded
    by argmax + a quarter pixel toward the higher neighbour; ``unbiased=True`` (DARK): the Gaussian at the
    keypoint itself on the whole map, decoded by DARK with ``blur_kernel_size``. Scores <= 0 decode to -1
    (times the scale), as mmpose.
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float,
                 unbiased: bool = False, blur_kernel_size: int = 11) -> None:
        self._init_sizes(input_size, heatmap_size, sigma, blur_kernel_size)
        self.unbiased = unbiased
        self._center = "continuous" if unbiased else "mmpose"
        self.scale_factor = (np.array(input_size) / heatmap_size).astype(np.float32)

    def decode_batch(self, heatmaps: Tensor, flipped: Optional[Tensor] = None, *,
                     flip_indices: Optional[Sequence[int]] = None,
                     shift_heatmap: bool = False) -> tuple[Tensor, Tensor]:
        """Keypoints (B, K, 2) in input-image pixels and scores (B, K) from heatmaps (B, K, H, W), one fused
        decode on their device (float32; float64 maps decode in float64). The flip test (``flipped``,
        ``flip_indices``, ``shift_heatmap``, mmpose's ``flip_mode="heatmap"``) is fused into that decode."""
        flip = dict(flipped=flipped, flip_indices=flip_indices, shift_heatmap=shift_heatmap)
        if self.unbiased:
            coords, scores = ops.decode(heatmaps, "dark", blur=self.blur_kernel_size, **flip)
        else:  # the fused quarter offset, without it where mmpose's refine_keypoints skips a pixel
            coords, scores = ops.decode(heatmaps, "quarter", **flip)
            xy = torch.floor(coords + 0.5)
            x, y = xy[..., 0], xy[..., 1]
            keep_x = (x >= 2) & (y >= 1)  # mmpose: 1 < x < W - 1 and 0 < y < H
            keep_y = (y >= 2) & (x >= 1)
            coords = torch.stack([torch.where(keep_x, coords[..., 0], x), torch.where(keep_y, coords[..., 1], y)], -1)
        coords = torch.where((scores <= 0)[..., None], torch.full_like(coords, -1.0), coords)
        return coords * self._scale(coords).to(coords.dtype), scores


class UDPHeatmap(_GaussianCodec):
    """mmpose's ``UDPHeatmap`` (unbiased data processing): ``scale_factor = (input_size - 1) / (heatmap_size
    - 1)``.

    ``heatmap_type="gaussian"``: the Gaussian at the keypoint on mmpose's patch (``render_gaussian(center=
    "udp")``), decoded by argmax + UDP's DARK step (blur, clip to [1e-3, 50], log, one Newton step on the
    edge-padded map); ``"combined"``: per keypoint a disc of radius ``radius_factor * max(W, H)`` and the x, y
    offsets to the keypoint divided by that radius (3K channels), decoded by blurring the discs, argmax and
    the offset there.
    """

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], heatmap_type: str = "gaussian",
                 sigma: float = 2.0, radius_factor: float = 0.0546875, blur_kernel_size: int = 11) -> None:
        if heatmap_type not in ("gaussian", "combined"):
            raise ValueError(f"heatmap_type must be 'gaussian' or 'combined', got {heatmap_type!r}")
        self._init_sizes(input_size, heatmap_size, sigma, blur_kernel_size)
        if min(self.heatmap_size) < 2:
            raise ValueError(f"UDPHeatmap needs a heatmap of at least 2 x 2 pixels, got {heatmap_size}")
        self.heatmap_type = heatmap_type
        self.radius_factor = radius_factor
        self._center = "udp"
        self.scale_factor = ((np.array(input_size) - 1) / (np.array(heatmap_size) - 1)).astype(np.float32)

    def encode_batch(self, keypoints: Tensor, keypoints_visible: Optional[Tensor] = None) -> dict[str, Tensor]:
        """As ``_GaussianCodec.encode_batch``; ``"combined"`` gives heatmaps (B, 3K, H, W) and needs N = 1."""
        if self.heatmap_type == "gaussian":
            return super().encode_batch(keypoints, keypoints_visible)
        vis = _visibility(keypoints, keypoints_visible)
        if keypoints.shape[1] != 1:
            raise ValueError(f"heatmap_type='combined' takes one instance per image, got {keypoints.shape[1]}")
        # as mmpose: the keypoints scaled in float32, the offsets and the disc test in float64
        kp = (keypoints[:, 0].to(torch.float32) / self._scale(keypoints)).to(torch.float64)
        seen = vis[:, 0] >= 0.5
        w, h = self.heatmap_size
        radius = self.radius_factor * max(w, h)
        b, k = kp.shape[:2]
        j = torch.arange(w, dtype=torch.float64, device=kp.device)
        i = torch.arange(h, dtype=torch.float64, device=kp.device)
        ox = ((kp[..., 0, None] - j) / radius)[..., None, :].expand(b, k, h, w)
        oy = ((kp[..., 1, None] - i) / radius)[..., :, None].expand(b, k, h, w)
        disc = (ox * ox + oy * oy <= 1).to(torch.float64)
        zero = torch.zeros((), dtype=torch.float64, device=kp.device)
        maps = torch.stack([torch.where(seen[..., None, None], m, zero) for m in (disc, ox, oy)], 2)
        return dict(heatmaps=maps.reshape(b, 3 * k, h, w).to(torch.float32), keypoint_weights=vis)

    def encode(self, keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        if self.heatmap_type == "gaussian":
            return super().encode(keypoints, keypoints_visible)
        return _encode_on_torch(self, *_sample(keypoints, keypoints_visible))

    def loss(self, pred: Tensor, keypoints: Tensor, keypoints_visible: Optional[Tensor] = None,
             use_target_weight: bool = True) -> Tensor:
        if self.heatmap_type != "gaussian":
            raise ValueError("UDPHeatmap.loss renders the Gaussian target; heatmap_type='combined' has none")
        return super().loss(pred, keypoints, keypoints_visible, use_target_weight)

    def decode_batch(self, heatmaps: Tensor, flipped: Optional[Tensor] = None, *,
                     flip_indices: Optional[Sequence[int]] = None,
                     shift_heatmap: bool = False) -> tuple[Tensor, Tensor]:
        """Keypoints (B, K, 2) in input-image pixels (float64, as mmpose's) and scores (B, K). The flip test
        (``flipped``, ``flip_indices``, ``shift_heatmap``; ``flip_mode`` "heatmap" for the Gaussian type,
        "udp_combined" for the combined one) builds the average here: both decodings blur the whole map."""
        w, h = self.heatmap_size
        maps = heatmaps.detach().to(torch.float32)
        if flipped is not None:
            if flipped.shape != heatmaps.shape:
                raise ValueError(f"flipped must have the heatmaps' shape {tuple(heatmaps.shape)}, "
                                 f"got {tuple(flipped.shape)}")
            maps = (maps + self._flip_back(flipped.detach().to(torch.float32), flip_indices, shift_heatmap)) * 0.5
        if self.heatmap_type == "gaussian":
            x, y, scores = _maxima(maps)
            coords = self._refine_dark_udp(maps, x, y, scores)
        else:
            coords, scores = self._decode_combined(maps)
        size = torch.tensor(self.input_size, dtype=torch.float64, device=coords.device)
        return coords / torch.tensor([w - 1, h - 1], dtype=torch.float64, device=coords.device) * size, scores

    def _flip_back(self, flipped: Tensor, flip_indices: Optional[Sequence[int]], shift: bool) -> Tensor:
        """mmpose's ``flip_heatmaps`` in this codec's flip mode: ``"udp_combined"`` flips the (disc, x offset,
        y offset) groups of the combined maps together and negates the x offsets."""
        b, c, h, w = flipped.shape
        groups = 1 if self.heatmap_type == "gaussian" else 3
        if c % groups:
            raise ValueError(f"heatmap_type='combined' needs 3K channels, got {c}")
        if flip_indices is not None:
            flip_indices = check_flip_indices("", flip_indices, c // groups)
        back = flip_back(flipped.reshape(b, c // groups, groups, h, w), flip_indices, shift)
        if groups == 3:
            back = back * torch.tensor([1.0, -1.0, 1.0], device=back.device).view(1, 1, 3, 1, 1)
        return back.reshape(b, c, h, w)

    def _refine_dark_udp(self, maps: Tensor, x: Tensor, y: Tensor, scores: Tensor) -> Tensor:
        """mmpose's ``refine_keypoints_dark_udp`` at the maxima (x, y) (-1 where the score is <= 0)."""
        blurred = _blur(maps, self.blur_kernel_size, "zeros")
        peak = maps.amax((-2, -1), keepdim=True)
        blurred = blurred * (peak / blurred.amax((-2, -1), keepdim=True))
        logs = F.pad(torch.log(blurred.clamp(1e-3, 50.0)), (1, 1, 1, 1), mode="replicate")
        valid = scores > 0
        b, k, hp, wp = logs.shape
        x = torch.where(valid, x, -torch.ones_like(x)) + 1  # into the padded map
        y = torch.where(valid, y, -torch.ones_like(y)) + 1
        # mmpose indexes the flattened maps of all K keypoints: at x = y = -1 (score <= 0) the neighbours
        # before the first map wrap around to the last, as NumPy's negative indices do
        flat = logs.reshape(b, k * hp * wp)
        index = y * wp + x + hp * wp * torch.arange(k, device=logs.device)

        def at(dy: int, dx: int) -> Tensor:
            return flat.gather(1, (index + dy * wp + dx) % (k * hp * wp)).double()

        c, xp, xm, yp, ym = at(0, 0), at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
        dx, dy = 0.5 * (xp - xm), 0.5 * (yp - ym)
        eps = float(np.finfo(np.float32).eps)
        dxx = xp - 2 * c + xm + eps
        dyy = yp - 2 * c + ym + eps
        dxy = 0.5 * (at(1, 1) - xp - yp + c + c - xm - ym + at(-1, -1))
        det = dxx * dyy - dxy * dxy
        ox = (dyy * dx - dxy * dy) / det
        oy = (dxx * dy - dxy * dx) / det
        start = torch.stack([x - 1, y - 1], -1).double()
        return start - torch.stack([ox, oy], -1)

    def _decode_combined(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = maps.shape
        if c % 3:
            raise ValueError(f"heatmap_type='combined' needs 3K channels, got {c}")
        k = c // 3
        grouped = maps.reshape(b, k, 3, h, w)
        cls = _blur(grouped[:, :, 0].contiguous(), 2 * self.blur_kernel_size + 1, "reflect")
        x, y, scores = _maxima(cls)
        x = torch.where(scores > 0, x, -torch.ones_like(x))
        y = torch.where(scores > 0, y, -torch.ones_like(y))
        radius = self.radius_factor * max(w, h)
        # mmpose indexes the flattened offsets of all K maps, so x = y = -1 (score <= 0) wraps as NumPy does
        index = (x + y * w + h * w * torch.arange(k, device=maps.device)) % (k * h * w)
        ox = grouped[:, :, 1].reshape(b, k * h * w).gather(1, index) * radius
        oy = grouped[:, :, 2].reshape(b, k * h * w).gather(1, index) * radius
        return torch.stack([x + ox, y + oy], -1).double(), scores


class SimCCLabel:
    """mmpose's ``SimCCLabel`` (Li et al. 2022): per keypoint one label vector per axis over
    ``round(input_size * simcc_split_ratio)`` bins, centred at the bin ``round(keypoint * simcc_split_ratio)``
    (half to even, as NumPy).

    ``smoothing_type="gaussian"``: a Gaussian of ``sigma`` bins (one value or (x, y)) over the whole vector,
    divided by ``sigma sqrt(2 pi)`` when ``normalize``; ``"standard"``: one-hot with ``label_smooth_weight``
    spread over the other bins. Decoded by the fused argmax of both vectors (the score the smaller maximum, -1
    where it is <= 0), ``use_dark`` refining each axis by 1-D DARK (blur ``(20 sigma - 7) // 3``, made odd),
    ``decode_visibility`` adding the softmax maxima of ``simcc * decode_beta * sigma``. One label per
    instance, as mmpose.
    """

    auxiliary_encode_keys: set = set()
    field_mapping_table: dict = dict()
    instance_mapping_table: dict = dict()
    label_mapping_table = dict(keypoint_x_labels="keypoint_x_labels", keypoint_y_labels="keypoint_y_labels",
                               keypoint_weights="keypoint_weights")
    support_batch_decoding = True

    def __init__(self, input_size: tuple[int, int], smoothing_type: str = "gaussian",
                 sigma: Union[float, tuple[float, float]] = 6.0, simcc_split_ratio: float = 2.0,
                 label_smooth_weight: float = 0.0, normalize: bool = True, use_dark: bool = False,
                 decode_visibility: bool = False, decode_beta: float = 150.0) -> None:
        if smoothing_type not in ("gaussian", "standard"):
            raise ValueError(f"smoothing_type must be 'gaussian' or 'standard', got {smoothing_type!r}")
        if smoothing_type == "gaussian" and label_smooth_weight > 0:
            raise ValueError("label_smooth_weight is only used by smoothing_type='standard'")
        if not 0.0 <= label_smooth_weight <= 1.0:
            raise ValueError(f"label_smooth_weight must be in [0, 1], got {label_smooth_weight}")
        if len(input_size) != 2 or not simcc_split_ratio > 0:
            raise ValueError(f"input_size must be (W, H) and simcc_split_ratio positive, got {input_size}, "
                             f"{simcc_split_ratio}")
        self.input_size = tuple(input_size)
        self.smoothing_type = smoothing_type
        self.simcc_split_ratio = simcc_split_ratio
        self.label_smooth_weight = label_smooth_weight
        self.normalize = normalize
        self.use_dark = use_dark
        self.decode_visibility = decode_visibility
        self.decode_beta = decode_beta
        self.sigma = np.array([sigma, sigma] if isinstance(sigma, (int, float)) else sigma, dtype=np.float64)
        if self.sigma.shape != (2,) or not (self.sigma > 0).all():
            raise ValueError(f"sigma must be positive, one value or (x, y), got {sigma!r}")
        blurs = [int((s * 20 - 7) // 3) for s in self.sigma]
        self._blurs = [b - (b % 2 == 0) for b in blurs]
        if use_dark and min(self._blurs) < 1:
            raise ValueError(f"use_dark needs sigma >= 0.5 (a blur of at least one bin), got {sigma!r}")
        self._bins = tuple(int(np.around(n * simcc_split_ratio)) for n in input_size)
        self._peaks = simcc_peaks(self.sigma, smoothing_type, normalize)

    def _targets(self, keypoints: Tensor, keypoints_visible: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(bins (B, N, K, 2), the render weights (1 where a label is drawn), keypoint_weights): the rule of
        csrc/codecs/codecs.h (which the per-sample ``encode`` runs natively)."""
        vis = _visibility(keypoints, keypoints_visible)
        mu = torch.round(keypoints.to(torch.float32) * self.simcc_split_ratio)
        wx, hy = self._bins
        if self.smoothing_type == "gaussian":
            r = torch.as_tensor(3 * self.sigma, device=mu.device)
            lo, hi = mu - r, mu + r + 1
        else:
            lo, hi = mu, mu
        inside = ((lo[..., 0] < wx) & (lo[..., 1] < hy) & (hi[..., 0] >= 0) & (hi[..., 1] >= 0)
                  & torch.isfinite(mu).all(-1))
        seen = vis >= 0.5
        return mu, (seen & inside).to(torch.float32), torch.where(seen & ~inside, torch.zeros_like(vis), vis)

    def encode_batch(self, keypoints: Tensor, keypoints_visible: Optional[Tensor] = None) -> dict[str, Tensor]:
        """``keypoint_x_labels`` (B, N, K, Wx), ``keypoint_y_labels`` (B, N, K, Hy) float32 and
        ``keypoint_weights`` (B, N, K) from keypoints (B, N, K, 2) in input-image pixels, one fused render."""
        bins, drawn, weights = self._targets(keypoints, keypoints_visible)
        b, n, k = drawn.shape
        wx, hy = self._bins
        x, y = ops.render_simcc(bins.reshape(b * n, k, 2), (wx, hy), tuple(float(v) for v in self.sigma),
                                kind=self.smoothing_type, smoothing=self.label_smooth_weight,
                                normalize=self.normalize, weights=drawn.reshape(b * n, k))
        return dict(keypoint_x_labels=x.reshape(b, n, k, wx), keypoint_y_labels=y.reshape(b, n, k, hy),
                    keypoint_weights=weights)

    def encode(self, keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """mmpose's ``encode``: ``keypoint_x_labels`` (N, K, Wx), ``keypoint_y_labels`` (N, K, Hy),
        ``keypoint_weights`` (N, K), in one native call (csrc/codecs)."""
        kp, vis = _sample(keypoints, keypoints_visible)
        if _native.cpu_error:
            return _encode_on_torch(self, kp, vis)
        n, k = kp.shape[:2]
        wx, hy = self._bins
        x, y = np.empty((n, k, wx), np.float32), np.empty((n, k, hy), np.float32)
        weights = _encode_sample("encode_simcc_codec", kp, vis, out_x=x, out_y=y, wx=wx, hy=hy,
                                 split=float(self.simcc_split_ratio), kind=_native.code("simcc_kind", self.smoothing_type),
                                 sigma=self.sigma, scale=self._peaks, smoothing=float(self.label_smooth_weight))
        return dict(keypoint_x_labels=x, keypoint_y_labels=y, keypoint_weights=weights)

    def decode_batch(self, simcc_x: Tensor, simcc_y: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """(keypoints (B, K, 2) in input-image pixels, scores (B, K), visibility (B, K) or None) from the
        vectors (B, K, Wx) and (B, K, Hy), on their device."""
        simcc_x, simcc_y = simcc_x.detach().to(torch.float32), simcc_y.detach().to(torch.float32)
        locs, scores = ops.decode_simcc(simcc_x, simcc_y)
        locs = torch.where((scores <= 0)[..., None], torch.full_like(locs, -1.0), locs)
        if self.use_dark:
            locs = torch.stack([_refine_simcc_dark(locs[..., a], v, blur)
                                for a, (v, blur) in enumerate(((simcc_x, self._blurs[0]), (simcc_y, self._blurs[1])))],
                               -1)
        keypoints = locs / self.simcc_split_ratio
        visibility = None
        if self.decode_visibility:
            sx = torch.softmax(simcc_x * float(self.decode_beta * self.sigma[0]), -1)
            sy = torch.softmax(simcc_y * float(self.decode_beta * self.sigma[1]), -1)
            visibility = ops.decode_simcc(sx, sy)[1]
        return keypoints, scores, visibility

    def decode(self, simcc_x: np.ndarray, simcc_y: np.ndarray):
        """mmpose's ``decode`` of (K, Wx) and (K, Hy) vectors (or (N, K, .)): keypoints (N, K, 2) and scores
        (N, K), or ``(keypoints, (scores, visibility))`` with ``decode_visibility``."""
        x, y = (torch.from_numpy(np.ascontiguousarray(v)) for v in (simcc_x, simcc_y))
        if x.dim() == 2:
            x, y = x[None], y[None]
        if x.dim() != 3 or y.dim() != 3:
            raise ValueError(f"simcc_x and simcc_y must have shape (K, bins) or (N, K, bins), got "
                             f"{tuple(simcc_x.shape)} and {tuple(simcc_y.shape)}")
        keypoints, scores, visibility = self.decode_batch(x, y)
        if visibility is not None:
            return _numpy(keypoints), (_numpy(scores), _numpy(visibility))
        return _numpy(keypoints), _numpy(scores)

    def batch_decode(self, simcc_x: Tensor, simcc_y: Tensor):
        """mmpose's batch hook: per sample keypoints (1, K, 2) and scores (1, K) (with visibilities under
        ``decode_visibility``), from one fused decode of the batch."""
        keypoints, scores, visibility = self.decode_batch(simcc_x, simcc_y)
        points = [_numpy(k[None]) for k in keypoints]
        confidences = [_numpy(s[None]) for s in scores]
        if visibility is None:
            return points, confidences
        return points, (confidences, [_numpy(v[None]) for v in visibility])


def _refine_simcc_dark(locs: Tensor, vectors: Tensor, blur: int) -> Tensor:
    """mmpose's ``refine_simcc_dark`` of one axis: blur (zero padding) rescaled to the vector's maximum, clip
    to [1e-3, 50], log, edge-pad by 2, one Newton step with step-1 central differences at ``int(loc + 2.5)``."""
    n = vectors.shape[-1]
    blurred = _blur(vectors[:, :, None], blur, "zeros", axes=1)[:, :, 0]
    blurred = blurred * (vectors.amax(-1, keepdim=True) / blurred.amax(-1, keepdim=True))
    logs = F.pad(torch.log(blurred.clamp(1e-3, 50.0)), (2, 2), mode="replicate")
    at = torch.trunc(locs + 2.5).long()

    def v(d: int) -> Tensor:  # at a -1 location, index -1 wraps to the last bin as NumPy's does in mmpose
        return logs.gather(-1, ((at + d) % (n + 4))[..., None])[..., 0]

    dx = 0.5 * (v(1) - v(-1))
    dxx = 1e-9 + 0.25 * (v(2) - 2 * v(0) + v(-2))
    return locs - dx / dxx


def _register_mmpose() -> None:
    """Registers the codecs in mmpose's KEYPOINT_CODECS under the scope ``fastlmk``, when mmpose is
    importable (mmpose is never a dependency)."""
    if importlib.util.find_spec("mmpose") is None:
        return
    try:
        from mmengine.registry import Registry
        from mmpose.registry import KEYPOINT_CODECS
    except Exception:  # an mmpose that does not import (e.g. without mmcv) is not ours to fix
        return
    scope = next((r for name, r in KEYPOINT_CODECS.children.items() if name == "fastlmk"), None)
    if scope is None:
        scope = Registry("keypoint codec", parent=KEYPOINT_CODECS, scope="fastlmk")
    for cls in (MSRAHeatmap, UDPHeatmap, SimCCLabel):
        scope.register_module(module=cls, force=True)


_register_mmpose()
