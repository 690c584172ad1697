"""Heatmap encoding: Gaussian / disc / offset targets, HIH and H3R encodings, and the fused heatmap loss.

Each op is a ``torch.library`` custom op in the ``fastlmk`` namespace with a CPU kernel (fastlmk._C), a CUDA
kernel (Triton, fastlmk/kernels/encode.py), a fake kernel for torch.compile / torch.export and autograd for
the loss; the public functions also run the ``reference`` (see fastlmk/_dispatch.py).
Semantics: docs/ops.md 1.
"""

from __future__ import annotations

import importlib
import math
from numbers import Real
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .. import _checks, _dispatch, _native, export

__all__ = ["render_gaussian", "render_disc", "render_offsets", "render_simcc", "encode_hih", "randomized_round",
           "encode_h3r", "heatmap_loss", "hih_centers"]

BACKENDS = ("reference", "cpu", "triton")
Param = Union[float, Tensor]
Size = Union[int, tuple[int, int]]

LOSS_KINDS = ("mse", "bce_logits", "awing")
REDUCTIONS = ("none", "sum", "mean")
CENTERS = ("continuous", "rounded", "mmpose", "udp")
SIMCC_KINDS = ("gaussian", "standard")


def _triton():
    return importlib.import_module("fastlmk.kernels.encode")


# ----------------------------------------------------------------------------------------------- render ops

def _raw_keypoints(op: str, keypoints: Tensor, weights: Optional[Tensor], instances: bool, cd: torch.dtype):
    """Keypoints (B, K, 2), or (B, N, K, 2) where the op takes instances, and weights of their leading shape,
    contiguous in the compute dtype; returns (keypoints, weights, B, K, N)."""
    rank = keypoints.dim() if instances and isinstance(keypoints, Tensor) and keypoints.dim() == 4 else 3
    keypoints = _checks.raw(op, "keypoints", keypoints, (None,) * (rank - 1) + (2,), keypoints.device, cd)
    weights = _checks.raw_optional(op, "weights", weights, keypoints.shape[:-1], keypoints.device, cd)
    b, k = keypoints.shape[0], keypoints.shape[-2]
    return keypoints, weights, b, k, keypoints.shape[1] if rank == 4 else 1


def _render_inputs(kind, keypoints, param, weights, height, width, center, dtype):
    """What the render kernels read, checked: (keypoints, param, weights) contiguous in the compute dtype,
    (B, K, N) and the empty output."""
    op = f"render_{kind}"
    if dtype not in _checks.FLOATING:
        raise TypeError(f"{op}: dtype must be one of {_checks.FLOATING}, got {dtype}")
    if height < 1 or width < 1:
        raise ValueError(f"{op}: height and width must be positive, got {(height, width)}")
    _checks.raw_choice(op, "center", center, CENTERS)
    cd = _checks.compute_dtype(dtype)
    keypoints, weights, b, k, n = _raw_keypoints(op, keypoints, weights, kind == "gaussian", cd)
    param = _checks.raw(op, "param", param, (b, k), keypoints.device, cd)
    out = torch.empty(_render_shape(kind, b, k, height, width), dtype=dtype, device=keypoints.device)
    return keypoints, param, weights, (b, k, n), out


def _render_shape(kind: str, b: int, k: int, h: int, w: int) -> tuple[int, ...]:
    return (b, k, 2, h, w) if kind == "offsets" else (b, k, h, w)


def _define_render_op(kind: str):
    name = f"render_{kind}"

    @torch.library.custom_op(f"fastlmk::{name}", mutates_args=())
    def op(keypoints: Tensor, param: Tensor, weights: Optional[Tensor], height: int, width: int, center: str,
           radius: float, dtype: torch.dtype) -> Tensor:
        raise _dispatch.no_kernel(name, keypoints)

    def cpu(keypoints, param, weights, height, width, center, radius, dtype):
        keypoints, param, weights, (b, k, n), out = _render_inputs(kind, keypoints, param, weights, height, width,
                                                                   center, dtype)
        if out.numel():
            _native.call("render", kind=_native.code("render_kind", kind), kp=keypoints, param=param,
                         weight=weights, out=out, compute_dtype=_native.dtype_code(keypoints.dtype),
                         out_dtype=_native.dtype_code(dtype), bk=b * k, k=k, n=n, h=height, w=width,
                         center=_native.code("center", center), radius=radius,
                         nthreads=_native.num_threads(out.numel() * n))
        return out

    def triton(keypoints, param, weights, height, width, center, radius, dtype):
        keypoints, param, weights, _, out = _render_inputs(kind, keypoints, param, weights, height, width, center,
                                                           dtype)
        if out.numel():
            _triton().render(_native.code("render_kind", kind), keypoints, param, weights, out,
                             _native.code("center", center), radius)
        return out

    _dispatch.register(op, cpu=cpu, cuda=triton, triton=True)

    @op.register_fake
    def _(keypoints, param, weights, height, width, center, radius, dtype):
        return keypoints.new_empty(_render_shape(kind, keypoints.shape[0], keypoints.shape[-2], height, width),
                                   dtype=dtype)

    return op


_RENDER_OPS = {kind: _define_render_op(kind) for kind in ("gaussian", "disc", "offsets")}


def _render(kind: str, backend: str, keypoints: Tensor, param: Tensor, weights: Optional[Tensor], size, dtype,
            center: str = "continuous", radius: float = 0.0) -> Tensor:
    """The render ``kind`` of validated inputs by ``backend``: the reference, or the op's kernel."""
    if backend == "reference":
        return export.reference(f"render_{kind}")(keypoints, param, weights, size[0], size[1], center, radius, dtype)
    with _dispatch.kernel(backend):
        return _RENDER_OPS[kind](keypoints, param, weights, size[0], size[1], center, radius, dtype)


def _prepare(op: str, keypoints: Tensor, size: Size, param: Param, param_name: str, weights: Optional[Tensor],
             dtype: Optional[torch.dtype], backend: Optional[str], positive: bool, instances: bool = False):
    """Validate the common render arguments; returns (keypoints, param, weights, (H, W), dtype, backend), the
    tensors in their own dtypes (the ops cast them to the compute dtype)."""
    b, k = _checks.keypoints(keypoints, instances=instances)
    h, w = _checks.size2(size)
    dtype = _checks.dtype(dtype)
    cd = _checks.compute_dtype(dtype)
    device = keypoints.device
    prm = _checks.per_keypoint(param_name, param, b, k, keypoints, cd, positive=positive)
    wts = _checks.weights(weights, b, k, device, keypoints.shape[1] if keypoints.dim() == 4 else None)
    backend = _dispatch.select(op, BACKENDS, device, backend)
    return keypoints, prm, wts, (h, w), dtype, backend


def render_gaussian(keypoints: Tensor, size: Size, sigma: Param, *, weights: Optional[Tensor] = None,
                    center: str = "continuous", radius: float = 3.0, dtype: Optional[torch.dtype] = None,
                    backend: Optional[str] = None) -> Tensor:
    """Gaussian heatmaps (B, K, H, W).

    ``exp(-((j - cx)^2 + (i - cy)^2) / (2 sigma^2))`` on the window of the keypoint, else 0, times
    ``weights[b, k]`` when given. With r = ``radius * sigma``, ``center`` places centre and window per axis:

    - ``"continuous"``: the keypoint itself (unbiased), the pixels ``|j - cx| <= r``;
    - ``"rounded"``: ``floor(x + 0.5)``, the same window (the classic quantized target);
    - ``"mmpose"``: mmpose's ``generate_gaussian_heatmaps`` patch: ``mu = trunc(x + 0.5)``, the pixels
      ``[trunc(mu - r), trunc(mu + r + 1))``, the centre at ``trunc(mu - r) + floor(r + 0.5)`` (``mu`` itself
      when r is a whole or half number and ``mu >= r``);
    - ``"udp"``: as ``"mmpose"`` shifted by ``x - mu`` (``generate_udp_gaussian_heatmaps``).

    ``keypoints`` (B, N, K, 2) holds N instances per image, with ``weights`` (B, N, K): each pixel is the
    maximum over the instances of non-zero weight whose window holds it, 0 where none does (mmpose's
    multi-instance target). ``sigma``: scalar, (K,) or (B, K). A non-finite keypoint adds nothing.
    ``dtype``: float32 (default), float64, float16 or bfloat16 (computed in float32).
    """
    center = _checks.choice("center", center, CENTERS)
    radius = _checks.nonneg_float("radius", radius)
    kp, s, wts, (h, w), dtype, backend = _prepare("render_gaussian", keypoints, size, sigma, "sigma", weights,
                                                  dtype, backend, positive=True, instances=True)
    return _render("gaussian", backend, kp, s, wts, (h, w), dtype, center, radius)


def render_disc(keypoints: Tensor, size: Size, radius: Param, *, weights: Optional[Tensor] = None,
                dtype: Optional[torch.dtype] = None, backend: Optional[str] = None) -> Tensor:
    """Binary disc targets (B, K, H, W) (CALE detection stage): ``weights[b, k]`` (default 1) where
    ``(j - x)^2 + (i - y)^2 <= radius^2``, else 0. ``radius``: scalar, (K,) or (B, K), >= 0."""
    kp, r, wts, (h, w), dtype, backend = _prepare("render_disc", keypoints, size, radius, "radius", weights,
                                                  dtype, backend, positive=False)
    return _render("disc", backend, kp, r, wts, (h, w), dtype)


def render_offsets(keypoints: Tensor, size: Size, radius: Param = 1.5, *, weights: Optional[Tensor] = None,
                   dtype: Optional[torch.dtype] = None, backend: Optional[str] = None) -> Tensor:
    """Offset fields (B, K, 2, H, W) (the WOM baseline of HIH): ``(x - j, y - i)`` at pixels with
    ``|j - x| <= radius`` and ``|i - y| <= radius``, else 0, so ``argmax + offset[argmax]`` recovers the
    keypoint. ``weights`` only masks (a channel with weight 0 is all zero); offsets are never scaled."""
    kp, r, wts, (h, w), dtype, backend = _prepare("render_offsets", keypoints, size, radius, "radius", weights,
                                                  dtype, backend, positive=False)
    return _render("offsets", backend, kp, r, wts, (h, w), dtype)


# ----------------------------------------------------------------------------------------------- render_simcc

def _simcc_inputs(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype):
    """What the SimCC kernels read, checked: keypoints and weights contiguous in the compute dtype, and the two
    empty outputs."""
    op = "render_simcc"
    if dtype not in _checks.FLOATING:
        raise TypeError(f"{op}: dtype must be one of {_checks.FLOATING}, got {dtype}")
    if not (1 <= wx < 2**31 and 1 <= hy < 2**31):
        raise ValueError(f"{op}: the bin counts must be positive (and below 2^31), got {(wx, hy)}")
    _checks.raw_choice(op, "kind", kind, SIMCC_KINDS)
    if len(sigma) != 2 or len(scale) != 2:
        raise ValueError(f"{op}: sigma and scale hold one value per axis, got {sigma}, {scale}")
    cd = _checks.compute_dtype(dtype)
    keypoints = _checks.raw(op, "keypoints", keypoints, (None, None, 2), keypoints.device, cd)
    b, k = keypoints.shape[:2]
    weights = _checks.raw_optional(op, "weights", weights, (b, k), keypoints.device, cd)
    return (keypoints, weights, keypoints.new_empty((b, k, wx), dtype=dtype),
            keypoints.new_empty((b, k, hy), dtype=dtype))


@torch.library.custom_op("fastlmk::render_simcc", mutates_args=())
def _render_simcc_op(keypoints: Tensor, weights: Optional[Tensor], wx: int, hy: int, kind: str, sigma: list[float],
                     scale: list[float], smoothing: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    raise _dispatch.no_kernel("render_simcc", keypoints)


def _render_simcc_cpu(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype):
    keypoints, weights, out_x, out_y = _simcc_inputs(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype)
    if keypoints.numel():
        _native.call("render_simcc", kind=_native.code("simcc_kind", kind), kp=keypoints, weight=weights,
                     out_x=out_x, out_y=out_y, compute_dtype=_native.dtype_code(keypoints.dtype),
                     out_dtype=_native.dtype_code(dtype), bk=out_x.shape[0] * out_x.shape[1], wx=wx, hy=hy,
                     sigma=list(sigma), scale=list(scale), smoothing=smoothing,
                     nthreads=_native.num_threads(out_x.numel() + out_y.numel()))
    return out_x, out_y


def _render_simcc_triton(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype):
    keypoints, weights, out_x, out_y = _simcc_inputs(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype)
    if keypoints.numel():
        _triton().render_simcc(_native.code("simcc_kind", kind), keypoints, weights, out_x, out_y, list(sigma),
                               list(scale), smoothing)
    return out_x, out_y


_dispatch.register(_render_simcc_op, cpu=_render_simcc_cpu, cuda=_render_simcc_triton, triton=True)


@_render_simcc_op.register_fake
def _(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype):
    b, k = keypoints.shape[:2]
    return keypoints.new_empty((b, k, wx), dtype=dtype), keypoints.new_empty((b, k, hy), dtype=dtype)


def simcc_peaks(sigmas: Sequence[float], kind: str, normalize: bool) -> list[float]:
    """The SimCC labels' peak per axis: ``1 / (sigma sqrt(2 pi))`` for normalized Gaussians, else 1."""
    return [1.0 / (s * math.sqrt(2 * math.pi)) if normalize and kind == "gaussian" else 1.0 for s in sigmas]


def render_simcc(keypoints: Tensor, bins: tuple[int, int], sigma: Union[float, tuple[float, float]] = 6.0, *,
                 kind: str = "gaussian", smoothing: float = 0.0, normalize: bool = False,
                 weights: Optional[Tensor] = None, dtype: Optional[torch.dtype] = None,
                 backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """SimCC labels (Li et al. 2022) of keypoints (B, K, 2) given in bins: ``(x_labels (B, K, bins[0]),
    y_labels (B, K, bins[1]))``, one fused kernel for both axes.

    ``kind="gaussian"``: ``exp(-(j - c)^2 / (2 sigma_a^2))`` over every bin j of axis a (no truncation),
    divided by ``sigma_a sqrt(2 pi)`` when ``normalize``; ``sigma``: one value or (x, y). ``"standard"``:
    ``1 - smoothing`` at bin ``floor(c + 0.5)`` (none when it lies off the axis) and ``smoothing / (n - 1)``
    at every other bin. Times ``weights[b, k]``; a non-finite keypoint or a zero weight gives zero vectors.
    """
    _checks.keypoints(keypoints)
    b, k = keypoints.shape[:2]
    if (not isinstance(bins, (tuple, list)) or len(bins) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in bins)):
        raise ValueError(f"bins must be a pair of positive ints (x bins, y bins), got {_checks.describe(bins)}")
    sigmas = (sigma, sigma) if isinstance(sigma, Real) else tuple(sigma) if isinstance(sigma, (tuple, list)) else ()
    if len(sigmas) != 2:
        error = ValueError if isinstance(sigma, (tuple, list)) else TypeError
        raise error(f"sigma must be a Python number or a pair (x, y), got {_checks.describe(sigma)}")
    sigmas = tuple(_checks.positive_float("sigma", v) for v in sigmas)
    kind = _checks.choice("kind", kind, SIMCC_KINDS)
    _checks.python_number("smoothing", smoothing)
    smoothing = float(smoothing)
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    if kind == "gaussian" and smoothing:
        raise ValueError("smoothing is only used by kind='standard'")
    dtype = _checks.dtype(dtype)
    wts = _checks.weights(weights, b, k, keypoints.device)
    scale = simcc_peaks(sigmas, kind, normalize)
    backend = _dispatch.select("render_simcc", BACKENDS, keypoints.device, backend)
    args = (keypoints, wts, int(bins[0]), int(bins[1]), kind, list(sigmas), scale, smoothing, dtype)
    if backend == "reference":
        return export.reference("render_simcc")(*args)
    with _dispatch.kernel(backend):
        return _render_simcc_op(*args)


def encode_hih(keypoints: Tensor, size: Size, *, sigma: Param = 1.5, decimal_size: Size = (8, 8),
               decimal_sigma: Param = 1.0, convention: str = "paper", radius: float = 3.0,
               weights: Optional[Tensor] = None, dtype: Optional[torch.dtype] = None,
               backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Heatmap-in-Heatmap targets (seed 000, Eq. 1-4): ``(integer (B, K, H, W), decimal (B, K, ho, wo))``.

    The integer map is a Gaussian at ``floor(x), floor(y)``; the decimal map encodes ``frac = x - floor(x)``
    per axis. ``convention="paper"``: decimal centre at ``frac * wo``, decode ``argmax_int + argmax_dec / wo``
    (error up to 1/wo px: fractions above 1 - 1/(2 wo) fold onto the last cell; mean error -1/(2 wo^2));
    ``"unbiased"``: centre at ``frac * wo - 0.5``, decode ``argmax_int + (argmax_dec + 0.5) / wo`` (error at
    most 1/(2 wo), mean 0, RMS 1/(wo sqrt 12)).
    """
    whole, dec_center = hih_centers(keypoints, decimal_size, convention)
    ho, wo = _checks.size2(decimal_size, "decimal_size")
    integer = render_gaussian(whole, size, sigma, weights=weights, radius=radius, dtype=dtype, backend=backend)
    decimal = render_gaussian(dec_center, (ho, wo), decimal_sigma, weights=weights, radius=radius, dtype=dtype,
                              backend=backend)
    return integer, decimal


def hih_centers(keypoints: Tensor, decimal_size: Size = (8, 8), convention: str = "paper",
                cells: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The centres of ``encode_hih``'s Gaussians: ``(c, (x - c) * (wo, ho))``, ``- 0.5`` for
    ``convention="unbiased"``, both (B, K, 2), where ``c`` is the integer cell the decimal map refines:
    ``floor(x)`` (``encode_hih``), or ``cells`` (B, K, 2) given, e.g. each integer map's argmax (then a
    centre may fall outside the decimal map). For losses that never render the maps."""
    _checks.keypoints(keypoints)
    convention = _checks.choice("convention", convention, ("paper", "unbiased"))
    ho, wo = _checks.size2(decimal_size, "decimal_size")
    if cells is None:
        cells = torch.floor(keypoints)
    elif cells.shape != keypoints.shape:
        raise ValueError(f"cells must have the keypoints' shape {tuple(keypoints.shape)}, got {tuple(cells.shape)}")
    frac = keypoints - _checks.cast(cells, keypoints.dtype)
    scaled = torch.stack([frac[..., 0] * wo, frac[..., 1] * ho], dim=-1)
    return cells, scaled - (0.5 if convention == "unbiased" else 0.0)


def randomized_round(keypoints: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """H3R randomized rounding (seed 001): per axis, ``floor(x) + 1`` with probability ``x - floor(x)``, else
    ``floor(x)``; the expectation is ``x``. Non-finite keypoints stay non-finite."""
    _checks.keypoints(keypoints)
    whole = torch.floor(keypoints)
    u = torch.rand_like(keypoints, generator=generator)
    return whole + torch.where(u < keypoints - whole, torch.ones_like(whole), torch.zeros_like(whole))


def encode_h3r(keypoints: Tensor, size: Size, *, generator: Optional[torch.Generator] = None,
               target: str = "onehot", sigma: Param = 1.0, weights: Optional[Tensor] = None,
               dtype: Optional[torch.dtype] = None, backend: Optional[str] = None) -> Tensor:
    """H3R targets (B, K, H, W): randomized rounding of each keypoint (seeded by ``generator``), then a one-hot
    map at the rounded pixel (``target="onehot"``, for a BCE loss) or a Gaussian there (``"gaussian"``)."""
    target = _checks.choice("target", target, ("onehot", "gaussian"))
    rounded = randomized_round(keypoints, generator)
    if target == "onehot":  # a disc of radius 0 at an integer centre is exactly one pixel
        return render_disc(rounded, size, 0.0, weights=weights, dtype=dtype, backend=backend)
    return render_gaussian(rounded, size, sigma, weights=weights, dtype=dtype, backend=backend)


# ------------------------------------------------------------------------------------------- heatmap_loss

def _loss_shape(pred: Tensor, reduction: str) -> tuple[int, ...]:
    return tuple(pred.shape) if reduction == "none" else ()


def _loss_inputs(op: str, pred: Tensor, keypoints: Tensor, sigma: Tensor, weights: Optional[Tensor], kind: str,
                 center: str, reduction: str, awing: list[float]) -> tuple[Tensor, ...]:
    """The loss ops' tensors as their kernels read them: pred contiguous, the rest contiguous in pred's compute
    dtype, the weights split into (channel weights, instance weights) by the keypoints' rank."""
    b, k, _, _ = _checks.raw_maps(op, "pred", pred)
    _checks.raw_choice(op, "kind", kind, LOSS_KINDS)
    _checks.raw_choice(op, "center", center, CENTERS)
    _checks.raw_choice(op, "reduction", reduction, REDUCTIONS)
    if len(awing) != 4:
        raise ValueError(f"{op}: awing must hold (alpha, omega, epsilon, theta), got {awing}")
    cd = _checks.compute_dtype(pred.dtype)
    keypoints, weights, kb, kk, _ = _raw_keypoints(op, keypoints, weights, True, cd)
    if (kb, kk) != (b, k):
        raise ValueError(f"{op}: keypoints have (B, K) = {(kb, kk)} but pred has {(b, k)}")
    if keypoints.device != pred.device:
        raise ValueError(f"{op}: keypoints is on {keypoints.device} but pred is on {pred.device}")
    sigma = _checks.raw(op, "sigma", sigma, (b, k), pred.device, cd)
    instances = keypoints.dim() == 4
    return pred.contiguous(), keypoints, sigma, None if instances else weights, weights if instances else None


def _loss_cpu_call(fn: str, kind: str, pred: Tensor, keypoints: Tensor, sigma: Tensor, weights: Optional[Tensor],
                   instance_weights: Optional[Tensor], center: str, radius: float, reduction: str, awing: list[float],
                   **buffers: Tensor) -> None:
    n = keypoints.shape[1] if keypoints.dim() == 4 else 1
    _native.call(fn, kind=_native.code("loss_kind", kind), pred=pred, kp=keypoints, param=sigma, weight=weights,
                 instance_weight=instance_weights, compute_dtype=_native.dtype_code(keypoints.dtype),
                 pred_dtype=_native.dtype_code(pred.dtype), bk=pred.shape[0] * pred.shape[1], k=pred.shape[1], n=n,
                 h=pred.shape[2], w=pred.shape[3], center=_native.code("center", center), radius=radius,
                 awing=awing, reduction=_native.code("reduction", reduction),
                 nthreads=_native.num_threads(pred.numel() * n), **buffers)


@torch.library.custom_op("fastlmk::heatmap_loss", mutates_args=())
def _heatmap_loss_op(pred: Tensor, keypoints: Tensor, sigma: Tensor, weights: Optional[Tensor], kind: str,
                     center: str, radius: float, reduction: str, awing: list[float]) -> Tensor:
    raise _dispatch.no_kernel("heatmap_loss", pred)


def _heatmap_loss_cpu(pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    tensors = _loss_inputs("heatmap_loss", pred, keypoints, sigma, weights, kind, center, reduction, awing)
    out = pred.new_empty(_loss_shape(pred, reduction))
    _loss_cpu_call("heatmap_loss_forward", kind, *tensors, center, radius, reduction, awing, out=out)
    return out


def _heatmap_loss_triton(pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    tensors = _loss_inputs("heatmap_loss", pred, keypoints, sigma, weights, kind, center, reduction, awing)
    out = pred.new_empty(_loss_shape(pred, reduction))
    _triton().heatmap_loss_forward(_native.code("loss_kind", kind), *tensors, _native.code("center", center), radius,
                                   _native.code("reduction", reduction), awing, out)
    return out


_dispatch.register(_heatmap_loss_op, cpu=_heatmap_loss_cpu, cuda=_heatmap_loss_triton, triton=True)


@_heatmap_loss_op.register_fake
def _(pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    return pred.new_empty(_loss_shape(pred, reduction))


@torch.library.custom_op("fastlmk::heatmap_loss_backward", mutates_args=())
def _heatmap_loss_backward_op(grad: Tensor, pred: Tensor, keypoints: Tensor, sigma: Tensor,
                              weights: Optional[Tensor], kind: str, center: str, radius: float, reduction: str,
                              awing: list[float]) -> Tensor:
    raise _dispatch.no_kernel("heatmap_loss_backward", pred)


def _loss_backward_inputs(grad, pred, keypoints, sigma, weights, kind, center, reduction, awing):
    tensors = _loss_inputs("heatmap_loss_backward", pred, keypoints, sigma, weights, kind, center, reduction, awing)
    pred = tensors[0]
    grad = _checks.raw("heatmap_loss_backward", "grad", grad, _loss_shape(pred, reduction), pred.device, pred.dtype)
    return grad, tensors


def _heatmap_loss_backward_cpu(grad, pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    grad, tensors = _loss_backward_inputs(grad, pred, keypoints, sigma, weights, kind, center, reduction, awing)
    grad_pred = torch.empty_like(tensors[0])
    _loss_cpu_call("heatmap_loss_backward", kind, *tensors, center, radius, reduction, awing, grad_out=grad,
                   grad_pred=grad_pred)
    return grad_pred


def _heatmap_loss_backward_triton(grad, pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    grad, tensors = _loss_backward_inputs(grad, pred, keypoints, sigma, weights, kind, center, reduction, awing)
    grad_pred = torch.empty_like(tensors[0])
    _triton().heatmap_loss_backward(_native.code("loss_kind", kind), *tensors, _native.code("center", center),
                                    radius, _native.code("reduction", reduction), awing, grad, grad_pred)
    return grad_pred


_dispatch.register(_heatmap_loss_backward_op, cpu=_heatmap_loss_backward_cpu, cuda=_heatmap_loss_backward_triton,
                   triton=True)


@_heatmap_loss_backward_op.register_fake
def _(grad, pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    return torch.empty_like(pred)


def _loss_setup(ctx, inputs, output):
    pred, keypoints, sigma, weights = inputs[:4]
    ctx.save_for_backward(pred, keypoints, sigma, weights)
    ctx.args = inputs[4:]
    ctx.kernel = _dispatch.current()


def _loss_backward(ctx, grad):
    pred, keypoints, sigma, weights = ctx.saved_tensors
    with _dispatch.kernel(ctx.kernel):
        grad_pred = _heatmap_loss_backward_op(grad, pred, keypoints, sigma, weights, *ctx.args)
    return (grad_pred,) + (None,) * 8


_heatmap_loss_op.register_autograd(_loss_backward, setup_context=_loss_setup)


def heatmap_loss(pred: Tensor, keypoints: Tensor, sigma: Param, *, kind: str = "mse",
                 weights: Optional[Tensor] = None, center: str = "continuous", radius: float = 3.0,
                 reduction: str = "mean", alpha: float = 2.1, omega: float = 14.0, epsilon: float = 1.0,
                 theta: float = 0.5, backend: Optional[str] = None) -> Tensor:
    """Loss between ``pred (B, K, H, W)`` and the Gaussian target of ``render_gaussian(keypoints, (H, W), sigma,
    center=center, radius=radius)``, without materialising the target; forward and backward are one fused
    kernel each. Differentiable in ``pred``.

    ``kind``: ``"mse"`` (p - t)^2, ``"bce_logits"`` (sigmoid BCE on logits), ``"awing"`` (Adaptive Wing with
    ``alpha, omega, epsilon, theta``). ``weights[b, k]`` multiplies channel (b, k)'s per-pixel loss. With
    instances, ``keypoints`` (B, N, K, 2), the target merges them by max as ``render_gaussian`` does and
    ``weights`` (B, N, K) weight the instances of the target (0 leaves an instance out), not the loss;
    ``reduction``: ``"mean"`` (divides by B*K*H*W), ``"sum"`` or ``"none"`` (B, K, H, W). Half-precision
    ``pred`` is computed in float32.
    """
    _checks.floating("pred", pred)
    if pred.dim() != 4:
        raise ValueError(f"pred must have shape (B, K, H, W), got {tuple(pred.shape)}")
    b, k = _checks.keypoints(keypoints, instances=True)
    if tuple(pred.shape[:2]) != (b, k):
        raise ValueError(f"pred has (B, K) = {tuple(pred.shape[:2])} but keypoints has ({b}, {k})")
    _checks.size2(tuple(pred.shape[2:]), "pred spatial size")
    _checks.same_device(pred.device, keypoints=keypoints)
    kind = _checks.choice("kind", kind, LOSS_KINDS)
    center = _checks.choice("center", center, CENTERS)
    reduction = _checks.choice("reduction", reduction, REDUCTIONS)
    radius = _checks.nonneg_float("radius", radius)
    awing = dict(alpha=alpha, omega=omega, epsilon=epsilon, theta=theta)
    for name, value in awing.items():
        _checks.python_number(name, value)
    awing = [float(v) for v in awing.values()]
    if kind == "awing" and not (awing[1] > 0 and awing[2] > 0 and awing[3] > 0):
        raise ValueError(f"omega, epsilon and theta must be positive, got {awing[1:]}")
    cd = _checks.compute_dtype(pred.dtype)
    s = _checks.per_keypoint("sigma", sigma, b, k, pred, cd)
    wts = _checks.weights(weights, b, k, pred.device, keypoints.shape[1] if keypoints.dim() == 4 else None)
    backend = _dispatch.select("heatmap_loss", BACKENDS, pred.device, backend)
    if backend == "reference":
        return export.reference("heatmap_loss")(pred, keypoints, s, wts, kind, center, radius, reduction, awing)
    with _dispatch.kernel(backend):
        return _heatmap_loss_op(pred, keypoints, s, wts, kind, center, radius, reduction, awing)
