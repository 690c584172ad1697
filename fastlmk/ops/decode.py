"""Decoding: fused argmax + sub-pixel refinement, HIH decoding and the differentiable soft-argmax.

Each op is a ``torch.library`` custom op in the ``fastlmk`` namespace with a CPU kernel (fastlmk._C) and a
CUDA kernel (Triton, fastlmk/kernels/decode.py); the public functions also run the ``reference`` (see
fastlmk/_dispatch.py). Semantics: docs/ops.md 2; the ground truth is
fastlmk/reference/decode.py.
"""

from __future__ import annotations

import functools
import importlib
from numbers import Integral
from typing import Optional, Sequence

import torch
from torch import Tensor

from .. import _checks, _dispatch, _native
from ..reference import decode as ref

__all__ = ["decode", "decode_hih", "decode_simcc", "soft_argmax"]

BACKENDS = ("reference", "cpu", "triton")
METHODS = ref.METHODS


def _triton():
    return importlib.import_module("fastlmk.kernels.decode")


# ----------------------------------------------------------------------------------------------- the flip test

def _flip_inputs(op: str, heatmaps: Tensor, flipped: Optional[Tensor],
                 flip_indices: Optional[Sequence[int]]) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The flip test's buffers, checked: ``flipped`` contiguous in the maps' shape and dtype, and
    ``flip_indices`` (default: the identity) a permutation of 0..K-1 as an int64 tensor on the maps' device."""
    k = heatmaps.shape[1]
    if flipped is None:
        if flip_indices is not None:
            raise ValueError(f"{op}: flip_indices is only used with flipped maps")
        return None, None
    flipped = _checks.raw(op, "flipped", flipped, tuple(heatmaps.shape), heatmaps.device)
    if flipped.dtype != heatmaps.dtype:
        raise TypeError(f"{op}: flipped must have the heatmaps' dtype {heatmaps.dtype}, got {flipped.dtype}")
    indices = check_flip_indices(f"{op}: ", flip_indices, k)
    return flipped, _index_tensor(tuple(indices), heatmaps.device)


def check_flip_indices(prefix: str, flip_indices: Optional[Sequence[int]], k: int) -> list[int]:
    """``flip_indices`` (default: the identity) as a list of ints, checked to be a permutation of 0..K-1
    (also by fastlmk.codecs); ``prefix`` starts the message."""
    if isinstance(flip_indices, Tensor):
        flip_indices = flip_indices.tolist()
    indices = list(range(k)) if flip_indices is None else list(flip_indices)
    ints = set(map(type, indices)) <= {int} or all(  # the first test is the fast one
        isinstance(i, Integral) and not isinstance(i, bool) for i in indices)
    if not ints or sorted(indices) != list(range(k)):
        raise ValueError(f"{prefix}flip_indices must be a permutation of 0..K-1 with K = {k} (the mirrored "
                         f"keypoint of each keypoint), got {indices}")
    return list(map(int, indices))


@functools.lru_cache(maxsize=32)
def _index_tensor(indices: tuple[int, ...], device: torch.device) -> Tensor:
    """``indices`` as an int64 tensor on ``device``, built once per permutation (the kernels only read it)."""
    return torch.tensor(indices, dtype=torch.int64, device=device)


def _flip_args(flipped: Optional[Tensor], flip_indices: Optional[Sequence[int]], shift_heatmap: bool,
               heatmaps: Tensor, k: int) -> Optional[list[int]]:
    """The public check of the flip test's arguments; returns ``flip_indices`` as a list of ints."""
    if not isinstance(shift_heatmap, bool):
        raise TypeError(f"shift_heatmap must be a bool, got {_checks.describe(shift_heatmap)}")
    if flipped is None:
        if flip_indices is not None or shift_heatmap:
            raise ValueError("flip_indices and shift_heatmap need the flipped image's maps (flipped)")
        return None
    _checks.floating("flipped", flipped)
    if flipped.shape != heatmaps.shape:
        raise ValueError(f"flipped must have the heatmaps' shape {tuple(heatmaps.shape)}, "
                         f"got {tuple(flipped.shape)}")
    if flipped.dtype != heatmaps.dtype:
        raise TypeError(f"flipped must have the heatmaps' dtype {heatmaps.dtype}, got {flipped.dtype}")
    _checks.same_device(heatmaps.device, flipped=flipped)
    return None if flip_indices is None else check_flip_indices("", flip_indices, k)


# ----------------------------------------------------------------------------------------------- decode

@torch.library.custom_op("fastlmk::decode", mutates_args=())
def _decode_op(heatmaps: Tensor, offsets: Optional[Tensor], affine: Optional[Tensor], method: str, blur: int,
               window: int, k: int, flipped: Optional[Tensor] = None, flipped_offsets: Optional[Tensor] = None,
               flip_indices: Optional[list[int]] = None, shift_heatmap: bool = False) -> tuple[Tensor, Tensor]:
    raise _dispatch.no_kernel("decode", heatmaps)


def _decode_inputs(heatmaps, offsets, affine, method, blur, window, k, flipped, flipped_offsets, flip_indices):
    """What the decode kernels read, checked: contiguous buffers of the shapes and dtype they assume, the
    method's code, the window clamped to the map, and the flip test's buffers."""
    b, kk, h, w = _checks.raw_maps("decode", "heatmaps", heatmaps)
    _checks.raw_choice("decode", "method", method, METHODS)
    if not ((method != "topk" or 1 <= k <= h * w) and 1 <= blur <= ref.MAX_BLUR and blur % 2 and window >= 0):
        raise ValueError(f"decode: need 1 <= k <= H*W (topk), an odd 1 <= blur <= {ref.MAX_BLUR} and window >= 0, "
                         f"got k={k}, blur={blur}, window={window}")
    window = min(window, max(h, w) - 1)  # a larger window adds only pixels off the map
    cd = _checks.compute_dtype(heatmaps.dtype)
    if method == "offset" and offsets is None:
        raise ValueError("decode: method='offset' needs offsets (B, K, 2, H, W)")
    offsets = _checks.raw_optional("decode", "offsets", offsets, (b, kk, 2, h, w), heatmaps.device, cd)
    affine = _checks.raw_optional("decode", "affine", affine, (b, 2, 3), heatmaps.device, cd)
    flipped, index = _flip_inputs("decode", heatmaps, flipped, flip_indices)
    if (method == "offset" and flipped is not None) != (flipped_offsets is not None):
        raise ValueError("decode: flipped_offsets (B, K, 2, H, W) comes with flipped maps and method='offset', "
                         "and only then")
    flipped_offsets = _checks.raw_optional("decode", "flipped_offsets", flipped_offsets, (b, kk, 2, h, w),
                                           heatmaps.device, cd)
    coords = heatmaps.new_empty((b, kk, 2), dtype=cd)
    scores = heatmaps.new_empty((b, kk), dtype=cd)
    return (heatmaps.contiguous(), offsets, affine, _native.code("decode_method", method), blur, window, flipped,
            flipped_offsets, index, coords, scores)


def _decode_cpu(heatmaps, offsets, affine, method, blur, window, k, flipped=None, flipped_offsets=None,
                flip_indices=None, shift_heatmap=False):
    heatmaps, offsets, affine, code, blur, window, flipped, flipped_offsets, index, coords, scores = _decode_inputs(
        heatmaps, offsets, affine, method, blur, window, k, flipped, flipped_offsets, flip_indices)
    b, kk, h, w = heatmaps.shape
    if coords.numel():
        _native.call("decode", method=code, maps=heatmaps, offsets=offsets, affine=affine,
                     compute_dtype=_native.dtype_code(coords.dtype), map_dtype=_native.dtype_code(heatmaps.dtype),
                     bk=b * kk, k_per_batch=kk, h=h, w=w, blur=blur, window=window, topk=k, coords=coords,
                     scores=scores, flipped=flipped, flipped_offsets=flipped_offsets, flip_index=index,
                     flip_shift=shift_heatmap, nthreads=_native.num_threads(heatmaps.numel()))
    return coords, scores


def _decode_triton(heatmaps, offsets, affine, method, blur, window, k, flipped=None, flipped_offsets=None,
                   flip_indices=None, shift_heatmap=False):
    heatmaps, offsets, affine, code, blur, window, flipped, flipped_offsets, index, coords, scores = _decode_inputs(
        heatmaps, offsets, affine, method, blur, window, k, flipped, flipped_offsets, flip_indices)
    b, kk, h, w = heatmaps.shape
    if coords.numel():
        _triton().decode(code, heatmaps.view(b * kk, h, w), offsets, affine, kk, blur, window, k,
                         None if flipped is None else flipped.view(b * kk, h, w), flipped_offsets, index,
                         shift_heatmap, coords.view(b * kk, 2), scores.view(b * kk))
    return coords, scores


_dispatch.register(_decode_op, cpu=_decode_cpu, cuda=_decode_triton, triton=True)


@_decode_op.register_fake
def _(heatmaps, offsets, affine, method, blur, window, k, flipped=None, flipped_offsets=None, flip_indices=None,
      shift_heatmap=False):
    b, kk = heatmaps.shape[:2]
    cd = _checks.compute_dtype(heatmaps.dtype)
    return heatmaps.new_empty((b, kk, 2), dtype=cd), heatmaps.new_empty((b, kk), dtype=cd)


def _maps(name: str, t: object) -> tuple[int, int, int, int]:
    """(B, K, H, W) heatmaps with a non-empty spatial size."""
    _checks.floating(name, t)
    if t.dim() != 4:
        raise ValueError(f"{name} must have shape (B, K, H, W), got {tuple(t.shape)}")
    _checks.size2(tuple(t.shape[2:]), f"{name} spatial size")
    return tuple(t.shape)


def _int(name: str, value: object, low: int) -> int:
    _checks.python_number(name, value, "int")
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _affine(affine: Optional[Tensor], b: int, device: torch.device) -> None:
    """The public check of ``affine`` (B, 2, 3): finite, where ``_checks.checkable``."""
    if affine is None:
        return
    _checks.floating("affine", affine)
    if tuple(affine.shape) != (b, 2, 3):
        raise ValueError(f"affine must have shape (B, 2, 3) = ({b}, 2, 3), got {tuple(affine.shape)}")
    _checks.same_device(device, affine=affine)
    _checks.finite("affine", affine)


def decode(heatmaps: Tensor, method: str = "argmax", *, blur: int = 11, window: int = 1, k: int = 9,
           offsets: Optional[Tensor] = None, affine: Optional[Tensor] = None, flipped: Optional[Tensor] = None,
           flip_indices: Optional[Sequence[int]] = None, shift_heatmap: bool = False,
           flipped_offsets: Optional[Tensor] = None, backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Keypoints from heatmaps (B, K, H, W) in one pass: ``(coords (B, K, 2) as (x, y), scores (B, K))``.

    Every method starts at the first maximum in row-major order (as ``torch.argmax``); the score is the
    maximum value. ``method``:

    - ``"argmax"``: the maximum's pixel centre.
    - ``"quarter"``: ``+ 0.25 sign(h[y, x+1] - h[y, x-1])`` per axis, interior pixels only (HRNet / FAN).
    - ``"wsm"``: a quarter pixel toward the second maximum (HIH Eq. 8).
    - ``"parabola"``: per-axis vertex of the 3-point parabola, clamped to [-0.5, 0.5].
    - ``"dark"``: DARK (mmpose's ``refine_keypoints_dark``): Gaussian blur of odd size ``blur`` around the
      maximum only, rescale, clamp at 1e-10, log, one Newton step; applied where ``1 < x < W-2`` and
      ``1 < y < H-2``. The rescale uses the blurred maximum of the 5x5 patch (it only matters through the clamp).
    - ``"local_softargmax"``: mean of the pixel centres in the ``(2 window + 1)^2`` window around the
      maximum, weighted by ``max(h, 0)``.
    - ``"topk"``: H3R: softmax over the ``k`` highest values of their pixel centres (ties: lower index).
    - ``"offset"``: ``argmax + offsets[b, k, :, y, x]`` with ``offsets`` (B, K, 2, H, W) as written by
      ``render_offsets``.

    Limits: odd ``blur <= 127``; any ``window >= 0`` (a window past the map's edge adds nothing); ``1 <= k <= H W``.
    On the GPU, ``dark`` and ``local_softargmax`` walk their patch in 16 x 16 tiles and ``topk`` with ``k > 32``
    selects the k-th value in 34 (float64: 66) more passes over the map, so large settings cost time, not registers.

    ``affine`` (B, 2, 3) maps the result to image space, ``A @ (x, y, 1)``, in the same kernel. Results are
    float64 for float64 maps, else float32, and carry no gradient (use ``soft_argmax`` to differentiate). A
    channel containing NaN decodes to NaN coordinates and score.

    The flip test: ``flipped`` holds the maps (B, K, H, W) the network gave for the horizontally flipped
    image. The maps decoded are then ``(heatmaps + F(flipped)) / 2`` (in the compute dtype), where F flips
    back as mmpose's ``flip_heatmaps``: ``F(f)[k, i, j] = f[flip_indices[k], i, W - 1 - j]``, or
    ``f[flip_indices[k], i, W - max(j, 1)]`` with ``shift_heatmap``; ``flip_indices`` (a permutation of
    0..K-1, the mirrored keypoint of each keypoint) defaults to the identity. Every method reads the average
    where it reads the map, in the same kernel, so no average is written. ``method="offset"`` also takes
    ``flipped_offsets`` (B, K, 2, H, W), flipped back the same way with its x negated (mmpose's
    ``flip_mode="udp_combined"``).
    """
    b, kk, h, w = _maps("heatmaps", heatmaps)
    method = _checks.choice("method", method, METHODS)
    blur = _int("blur", blur, 1)
    if blur % 2 == 0 or blur > ref.MAX_BLUR:
        raise ValueError(f"blur must be an odd kernel size <= {ref.MAX_BLUR}, got {blur}")
    window = _int("window", window, 0)
    k = _int("k", k, 1)
    if method == "topk" and k > h * w:
        raise ValueError(f"k must be at most H*W = {h * w}, got {k}")
    if method == "offset":
        if offsets is None:
            raise ValueError("method='offset' needs offsets (B, K, 2, H, W)")
        _checks.floating("offsets", offsets)
        if tuple(offsets.shape) != (b, kk, 2, h, w):
            raise ValueError(f"offsets must have shape (B, K, 2, H, W) = ({b}, {kk}, 2, {h}, {w}), "
                             f"got {tuple(offsets.shape)}")
        _checks.same_device(heatmaps.device, offsets=offsets)
    elif offsets is not None:
        raise ValueError(f"offsets is only used by method='offset', not {method!r}")
    _affine(affine, b, heatmaps.device)
    flip_indices = _flip_args(flipped, flip_indices, shift_heatmap, heatmaps, kk)
    if method == "offset" and flipped is not None:
        if flipped_offsets is None:
            raise ValueError("method='offset' with flipped maps needs flipped_offsets (B, K, 2, H, W)")
        _checks.floating("flipped_offsets", flipped_offsets)
        if flipped_offsets.shape != offsets.shape:
            raise ValueError(f"flipped_offsets must have the offsets' shape {tuple(offsets.shape)}, "
                             f"got {tuple(flipped_offsets.shape)}")
        _checks.same_device(heatmaps.device, flipped_offsets=flipped_offsets)
    elif flipped_offsets is not None:
        raise ValueError("flipped_offsets is only used by method='offset' with flipped maps")
    backend = _dispatch.select("decode", BACKENDS, heatmaps.device, backend)
    heatmaps = heatmaps.detach()
    flipped = None if flipped is None else flipped.detach()
    if backend == "reference":
        return ref.decode(heatmaps, method, blur=blur, window=window, k=k, offsets=offsets, affine=affine,
                          flipped=flipped, flipped_offsets=flipped_offsets, flip_indices=flip_indices,
                          shift=shift_heatmap)
    with _dispatch.kernel(backend):
        return _decode_op(heatmaps, offsets, affine, method, blur, window, k, flipped, flipped_offsets,
                          flip_indices, shift_heatmap)


# ----------------------------------------------------------------------------------------------- decode_simcc

def _simcc_decode_inputs(x, y):
    """What the SimCC decode kernels read, checked: both vectors contiguous in x's dtype, at least one bin
    each, and the empty outputs."""
    op = "decode_simcc"
    x = _checks.raw(op, "simcc_x", x, (None, None, None), x.device)
    y = _checks.raw(op, "simcc_y", y, (x.shape[0], x.shape[1], None), x.device, x.dtype)
    if min(x.shape[-1], y.shape[-1]) < 1:
        raise ValueError(f"{op}: simcc_x and simcc_y need at least one bin, got {tuple(x.shape)}, {tuple(y.shape)}")
    cd = _checks.compute_dtype(x.dtype)
    b, k = x.shape[:2]
    return x, y, x.new_empty((b, k, 2), dtype=cd), x.new_empty((b, k), dtype=cd)


@torch.library.custom_op("fastlmk::decode_simcc", mutates_args=())
def _decode_simcc_op(simcc_x: Tensor, simcc_y: Tensor) -> tuple[Tensor, Tensor]:
    raise _dispatch.no_kernel("decode_simcc", simcc_x)


def _decode_simcc_cpu(simcc_x, simcc_y):
    x, y, locs, scores = _simcc_decode_inputs(simcc_x, simcc_y)
    if scores.numel():
        _native.call("decode_simcc", x=x, y=y, compute_dtype=_native.dtype_code(locs.dtype),
                     map_dtype=_native.dtype_code(x.dtype), bk=scores.numel(), wx=x.shape[-1], hy=y.shape[-1],
                     locs=locs, scores=scores, nthreads=_native.num_threads(x.numel() + y.numel()))
    return locs, scores


def _decode_simcc_triton(simcc_x, simcc_y):
    x, y, locs, scores = _simcc_decode_inputs(simcc_x, simcc_y)
    if scores.numel():
        _triton().decode_simcc(x.view(-1, x.shape[-1]), y.view(-1, y.shape[-1]), locs.view(-1, 2), scores.view(-1))
    return locs, scores


_dispatch.register(_decode_simcc_op, cpu=_decode_simcc_cpu, cuda=_decode_simcc_triton, triton=True)


@_decode_simcc_op.register_fake
def _(simcc_x, simcc_y):
    b, k = simcc_x.shape[:2]
    cd = _checks.compute_dtype(simcc_x.dtype)
    return simcc_x.new_empty((b, k, 2), dtype=cd), simcc_x.new_empty((b, k), dtype=cd)


def decode_simcc(simcc_x: Tensor, simcc_y: Tensor, *, backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """SimCC decoding of the x vectors (B, K, WX) and y vectors (B, K, HY) in one pass: ``(locs (B, K, 2),
    scores (B, K))``, locs the bins of each vector's first maximum and the score the smaller of the two maxima
    (mmpose's ``get_simcc_maximum`` before its -1 rule). float64 for float64 input, else float32; NaN where a
    vector holds NaN. No gradient."""
    for name, t in (("simcc_x", simcc_x), ("simcc_y", simcc_y)):
        _checks.floating(name, t)
        if t.dim() != 3 or t.shape[-1] < 1:
            raise ValueError(f"{name} must have shape (B, K, bins) with bins >= 1, got {tuple(t.shape)}")
    if simcc_x.shape[:2] != simcc_y.shape[:2]:
        raise ValueError(f"simcc_x and simcc_y must share (B, K), got {tuple(simcc_x.shape[:2])} and "
                         f"{tuple(simcc_y.shape[:2])}")
    _checks.same_device(simcc_x.device, simcc_y=simcc_y)
    if simcc_y.dtype != simcc_x.dtype:
        raise TypeError(f"simcc_y must have simcc_x's dtype {simcc_x.dtype}, got {simcc_y.dtype}")
    backend = _dispatch.select("decode_simcc", BACKENDS, simcc_x.device, backend)
    simcc_x, simcc_y = simcc_x.detach(), simcc_y.detach()
    if backend == "reference":
        return ref.decode_simcc(simcc_x, simcc_y)
    with _dispatch.kernel(backend):
        return _decode_simcc_op(simcc_x, simcc_y)


def decode_hih(integer_maps: Tensor, decimal_maps: Tensor, *, convention: str = "paper",
               affine: Optional[Tensor] = None, backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Heatmap-in-Heatmap decoding (seed 000, Eq. 4), the inverse of ``encode_hih``.

    ``integer_maps`` (B, K, H, W), ``decimal_maps`` (B, K, ho, wo). ``convention="paper"``:
    ``argmax(integer) + argmax(decimal) / (wo, ho)``; ``"unbiased"``: ``+ (argmax(decimal) + 0.5) / (wo, ho)``
    (see ``encode_hih`` for the error of each). The score is the integer map's maximum; ``affine`` as in
    ``decode``. Two fused argmax passes; the combination and the affine map are elementwise PyTorch.
    """
    b, kk, _, _ = _maps("integer_maps", integer_maps)
    db, dk, ho, wo = _maps("decimal_maps", decimal_maps)
    if (db, dk) != (b, kk):
        raise ValueError(f"decimal_maps has (B, K) = ({db}, {dk}) but integer_maps has ({b}, {kk})")
    _checks.same_device(integer_maps.device, decimal_maps=decimal_maps)
    convention = _checks.choice("convention", convention, ("paper", "unbiased"))
    _affine(affine, b, integer_maps.device)
    coarse, score = decode(integer_maps, "argmax", backend=backend)
    fine, _ = decode(decimal_maps, "argmax", backend=backend)
    fine = _checks.cast(fine, coarse.dtype) + (0.5 if convention == "unbiased" else 0.0)
    coords = coarse + torch.stack([fine[..., 0] / wo, fine[..., 1] / ho], dim=-1)
    return (coords if affine is None else ref.apply_affine(coords, affine)), score


# ------------------------------------------------------------------------------------------ soft_argmax

@torch.library.custom_op("fastlmk::soft_argmax", mutates_args=())
def _soft_argmax_op(heatmaps: Tensor, beta: float, relu: bool, flipped: Optional[Tensor] = None,
                    flip_indices: Optional[list[int]] = None, shift_heatmap: bool = False) -> tuple[Tensor, Tensor]:
    raise _dispatch.no_kernel("soft_argmax", heatmaps)


def _soft_argmax_outputs(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    b, k, _, _ = _checks.raw_maps("soft_argmax", "heatmaps", heatmaps)
    cd = _checks.compute_dtype(heatmaps.dtype)
    return heatmaps.new_empty((b, k, 2), dtype=cd), heatmaps.new_empty((b, k), dtype=cd)


def _soft_argmax_cpu_call(fn: str, heatmaps: Tensor, beta: float, relu: bool, **buffers: Tensor) -> None:
    b, k, h, w = heatmaps.shape
    _native.call(fn, maps=heatmaps, compute_dtype=_native.dtype_code(_checks.compute_dtype(heatmaps.dtype)),
                 map_dtype=_native.dtype_code(heatmaps.dtype), bk=b * k, h=h, w=w, beta=beta, relu=relu,
                 nthreads=_native.num_threads(heatmaps.numel()), **buffers)


def _soft_argmax_cpu(heatmaps, beta, relu, flipped=None, flip_indices=None, shift_heatmap=False):
    coords, stat = _soft_argmax_outputs(heatmaps)
    flipped, index = _flip_inputs("soft_argmax", heatmaps, flipped, flip_indices)
    if stat.numel():
        _soft_argmax_cpu_call("soft_argmax_forward", heatmaps.contiguous(), beta, relu, coords=coords, stat=stat,
                              k_per_batch=heatmaps.shape[1], flipped=flipped, flip_index=index,
                              flip_shift=shift_heatmap)
    return coords, stat


def _soft_argmax_triton(heatmaps, beta, relu, flipped=None, flip_indices=None, shift_heatmap=False):
    coords, stat = _soft_argmax_outputs(heatmaps)
    flipped, index = _flip_inputs("soft_argmax", heatmaps, flipped, flip_indices)
    b, k, h, w = heatmaps.shape
    if stat.numel():
        _triton().soft_argmax_forward(heatmaps.contiguous().view(b * k, h, w), beta, relu,
                                      None if flipped is None else flipped.view(b * k, h, w), index, k,
                                      shift_heatmap, coords.view(b * k, 2), stat.view(b * k))
    return coords, stat


_dispatch.register(_soft_argmax_op, cpu=_soft_argmax_cpu, cuda=_soft_argmax_triton, triton=True)


@_soft_argmax_op.register_fake
def _(heatmaps, beta, relu, flipped=None, flip_indices=None, shift_heatmap=False):
    b, k = heatmaps.shape[:2]
    cd = _checks.compute_dtype(heatmaps.dtype)
    return heatmaps.new_empty((b, k, 2), dtype=cd), heatmaps.new_empty((b, k), dtype=cd)


@torch.library.custom_op("fastlmk::soft_argmax_backward", mutates_args=())
def _soft_argmax_backward_op(grad_coords: Tensor, grad_stat: Tensor, heatmaps: Tensor, coords: Tensor,
                             stat: Tensor, beta: float, relu: bool) -> Tensor:
    raise _dispatch.no_kernel("soft_argmax_backward", heatmaps)


def _soft_argmax_backward_inputs(grad_coords, grad_stat, heatmaps, coords, stat):
    op = "soft_argmax_backward"
    b, k, h, w = _checks.raw_maps(op, "heatmaps", heatmaps)
    cd, device = _checks.compute_dtype(heatmaps.dtype), heatmaps.device
    grad_coords, coords = (_checks.raw(op, name, t, (b, k, 2), device, cd)
                           for name, t in (("grad_coords", grad_coords), ("coords", coords)))
    grad_stat, stat = (_checks.raw(op, name, t, (b, k), device, cd) for name, t in (("grad_stat", grad_stat),
                                                                                     ("stat", stat)))
    heatmaps = heatmaps.contiguous()
    return grad_coords, grad_stat, heatmaps, coords, stat, torch.empty_like(heatmaps)


def _soft_argmax_backward_cpu(grad_coords, grad_stat, heatmaps, coords, stat, beta, relu):
    grad_coords, grad_stat, heatmaps, coords, stat, grad = _soft_argmax_backward_inputs(grad_coords, grad_stat,
                                                                                        heatmaps, coords, stat)
    if grad.numel():
        _soft_argmax_cpu_call("soft_argmax_backward", heatmaps, beta, relu, coords=coords, stat=stat,
                              grad_coords=grad_coords, grad_stat=grad_stat, grad_maps=grad)
    return grad


def _soft_argmax_backward_triton(grad_coords, grad_stat, heatmaps, coords, stat, beta, relu):
    grad_coords, grad_stat, heatmaps, coords, stat, grad = _soft_argmax_backward_inputs(grad_coords, grad_stat,
                                                                                        heatmaps, coords, stat)
    b, k, h, w = heatmaps.shape
    if grad.numel():
        _triton().soft_argmax_backward(heatmaps.view(b * k, h, w), coords.view(b * k, 2), stat.view(b * k),
                                       grad_coords.view(b * k, 2), grad_stat.view(b * k), beta, relu,
                                       grad.view(b * k, h, w))
    return grad


_dispatch.register(_soft_argmax_backward_op, cpu=_soft_argmax_backward_cpu, cuda=_soft_argmax_backward_triton,
                   triton=True)


@_soft_argmax_backward_op.register_fake
def _(grad_coords, grad_stat, heatmaps, coords, stat, beta, relu):
    return torch.empty_like(heatmaps)


def _soft_argmax_setup(ctx, inputs, output):
    heatmaps, ctx.beta, ctx.relu, flipped, ctx.flip_indices, ctx.shift = inputs
    ctx.kernel = _dispatch.current()
    ctx.flip = flipped is not None
    ctx.save_for_backward(heatmaps, flipped if ctx.flip else heatmaps, *output)


def _soft_argmax_backward(ctx, grad_coords, grad_stat):
    """The flip test's backward builds the average (the forward does not) and splits its gradient: half to
    the maps, half flipped forward (the adjoint of the flip back) to the flipped maps."""
    heatmaps, flipped, coords, stat = ctx.saved_tensors
    grad_coords = torch.zeros_like(coords) if grad_coords is None else grad_coords
    grad_stat = torch.zeros_like(stat) if grad_stat is None else grad_stat
    maps = ref.flip_average(heatmaps, flipped, ctx.flip_indices, ctx.shift) if ctx.flip else heatmaps
    with _dispatch.kernel(ctx.kernel):
        grad = _soft_argmax_backward_op(grad_coords, grad_stat, maps, coords, stat, ctx.beta, ctx.relu)
    if not ctx.flip:
        return grad, None, None, None, None, None
    half = grad * 0.5
    return (half.to(heatmaps.dtype), None, None,
            ref.flip_back_adjoint(half, ctx.flip_indices, ctx.shift).to(flipped.dtype), None, None)


_soft_argmax_op.register_autograd(_soft_argmax_backward, setup_context=_soft_argmax_setup)


def _soft_argmax_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5])
    ctx.beta, ctx.relu = inputs[5], inputs[6]


def _soft_argmax_double_backward(ctx, grad):
    """The double backward, through the differentiable reference formula of the backward."""
    fn = functools.partial(ref.soft_argmax_backward, beta=ctx.beta, normalize="relu" if ctx.relu else "softmax")
    _, vjp = torch.func.vjp(fn, *ctx.saved_tensors)
    return (*vjp(grad), None, None)


_soft_argmax_backward_op.register_autograd(_soft_argmax_double_backward, setup_context=_soft_argmax_backward_setup)


def soft_argmax(heatmaps: Tensor, *, beta: float = 1.0, normalize: str = "softmax",
                flipped: Optional[Tensor] = None, flip_indices: Optional[Sequence[int]] = None,
                shift_heatmap: bool = False, backend: Optional[str] = None) -> Tensor:
    """Differentiable integral regression: ``sum_p w_p (j_p, i_p)`` over each map, (B, K, H, W) -> (B, K, 2).

    ``normalize="softmax"``: ``w = softmax(beta h)`` over the map. ``"relu"``: ``w = relu(h) / sum relu(h)``
    (``beta`` has no effect; a channel with no positive value gives the map centre and zero gradient).
    Forward and backward are one fused kernel each; the backward keeps only the maps and the (B, K) outputs
    (coordinates and the normaliser ``logsumexp(beta h)`` or ``sum relu(h)``), so no (B, K, H, W)
    intermediate is saved. Twice differentiable (the double backward is the PyTorch formula).
    Results are float64 for float64 maps, else float32.

    The flip test: with ``flipped`` (the maps of the horizontally flipped image) h is the average of the maps
    and the flipped-back maps, as in ``decode`` (``flip_indices``, ``shift_heatmap``), read in the same
    forward kernel; the gradient flows to both (the backward builds the average).
    """
    _maps("heatmaps", heatmaps)
    flip_indices = _flip_args(flipped, flip_indices, shift_heatmap, heatmaps, heatmaps.shape[1])
    normalize = _checks.choice("normalize", normalize, ("softmax", "relu"))
    beta = _checks.positive_float("beta", beta)
    backend = _dispatch.select("soft_argmax", BACKENDS, heatmaps.device, backend)
    if backend == "reference":
        return ref.soft_argmax(heatmaps, beta, normalize, flipped, flip_indices, shift_heatmap)[0]
    with _dispatch.kernel(backend):
        # a copy: the op's own output is saved for backward, so the caller may modify what it gets in place
        return _soft_argmax_op(heatmaps.contiguous(), beta, normalize == "relu",
                               None if flipped is None else flipped.contiguous(), flip_indices,
                               shift_heatmap)[0].clone()
