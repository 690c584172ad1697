"""Landmark metrics: normalised mean error (NME), cumulative error distribution (CED), AUC and failure rate;
and the face-hallucination metrics PSNR and SSIM on the Y channel.

Landmarks are ``(N, K, 2)`` tensors of ``(x, y)``; a non-finite target landmark is missing and is left out.
Errors are fractions of the normaliser (multiply by 100 for the "%" of the papers). Images are ``(N, 3, H, W)``
RGB in [0, 1].
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = ["EYES", "NORMS", "normalizer", "nme", "auc", "failure_rate", "ced", "luma", "psnr", "ssim"]

Indices = tuple[int, ...]

# Per landmark convention (keyed by K): (left, right) index groups of the outer eye corners and of the eye
# centres; a group of several indices is averaged (300W has no pupil landmarks: the mean of each eye's six).
EYES: dict[int, dict[str, tuple[Indices, Indices]]] = {
    68: {"inter_ocular": ((36,), (45,)), "inter_pupil": (tuple(range(36, 42)), tuple(range(42, 48)))},  # 300W
    98: {"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,))},  # WFLW
    29: {"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))},  # COFW
    19: {"inter_ocular": ((6,), (11,)), "inter_pupil": ((7,), (10,))},  # AFLW
}
NORMS = ("inter_ocular", "inter_pupil", "bbox", "diagonal", "width")
Norm = Union[str, Tensor]


def _landmarks(name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    if t.dim() != 3 or t.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {tuple(t.shape)}")
    return t


def _compute(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def normalizer(target: Tensor, norm: Norm = "inter_ocular") -> Tensor:
    """Per-image normaliser ``d`` (N,) of the target landmarks (N, K, 2).

    ``"inter_ocular"``: distance between the outer eye corners; ``"inter_pupil"``: between the eye centres
    (indices in ``EYES`` by K: 68 300W, 98 WFLW, 29 COFW, 19 AFLW); ``"bbox"``: ``sqrt(w * h)`` of the
    bounding box of the visible target landmarks; ``"diagonal"``: ``sqrt(w^2 + h^2)`` of that box; ``"width"``:
    its width ``w`` (the face width of NME_wid, as the face-hallucination papers of seed 004 use); a tensor
    (N,) of positive finite values is used as given. A missing eye landmark gives NaN.
    """
    target = _landmarks("target", target)
    n, k = target.shape[:2]
    t = target.to(_compute(target))
    if isinstance(norm, Tensor):
        if not norm.is_floating_point():
            raise TypeError(f"norm must have a floating dtype, got {norm.dtype}")
        if tuple(norm.shape) != (n,):
            raise ValueError(f"norm must have shape (N,) = ({n},), got {tuple(norm.shape)}")
        if norm.device != target.device:
            raise ValueError(f"norm is on {norm.device} but target is on {target.device}")
        if not bool((torch.isfinite(norm) & (norm > 0)).all()):
            raise ValueError("norm must be finite and positive")
        return norm.to(t.dtype)
    if not isinstance(norm, str):
        raise TypeError(f"norm must be one of {NORMS} or a tensor (N,), got {type(norm).__name__}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS} or a tensor (N,), got {norm!r}")
    if norm in ("inter_ocular", "inter_pupil"):
        if k not in EYES:
            raise ValueError(f"norm={norm!r} needs a known landmark convention, K in {sorted(EYES)}, got K={k}")
        left, right = EYES[k][norm]
        return torch.linalg.vector_norm(t[:, list(left)].mean(1) - t[:, list(right)].mean(1), dim=-1)
    visible = torch.isfinite(t).all(-1, keepdim=True)
    inf = torch.tensor(math.inf, dtype=t.dtype, device=t.device)
    w, h = (torch.where(visible, t, -inf).amax(1) - torch.where(visible, t, inf).amin(1)).unbind(-1)
    d = w if norm == "width" else torch.sqrt(w * h) if norm == "bbox" else torch.hypot(w, h)
    return torch.where(visible.any(1)[:, 0], d, torch.full_like(d, math.nan))


def nme(pred: Tensor, target: Tensor, *, norm: Norm = "inter_ocular", reduction: str = "mean") -> Tensor:
    """Normalised mean error (seed 000, Eq. 7, as a fraction): per image ``NME = mean_k ||p_k - t_k||_2 / d``.

    The mean runs over the landmarks with a finite target (missing ones are excluded); a non-finite
    prediction of a visible landmark makes the image's NME NaN. ``d`` is ``normalizer(target, norm)``.
    ``reduction``: ``"mean"`` (over the images with at least one visible landmark; a scalar) or ``"none"``
    ((N,), NaN for an image without visible landmarks). Computed in float32 or wider.
    """
    pred = _landmarks("pred", pred)
    target = _landmarks("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be one of ('mean', 'none'), got {reduction!r}")
    d = normalizer(target, norm)
    dtype = _compute(pred, target)
    p, t = pred.to(dtype), target.to(dtype)
    visible = torch.isfinite(t).all(-1)
    err = torch.where(visible, torch.linalg.vector_norm(p - t, dim=-1), torch.zeros((), dtype=dtype,
                                                                                       device=t.device))
    count = visible.sum(1)
    per_image = err.sum(1) / (count * d.to(dtype))  # 0 / 0 = NaN without visible landmarks
    if reduction == "none":
        return per_image
    valid = count > 0
    return torch.where(valid, per_image, torch.zeros_like(per_image)).sum() / valid.sum()


def _errors(errors: object) -> Tensor:
    """1-D float errors with NaN read as +inf (a failed prediction)."""
    if not isinstance(errors, Tensor):
        raise TypeError(f"errors must be a torch.Tensor, got {type(errors).__name__}")
    if not errors.is_floating_point():
        raise TypeError(f"errors must have a floating dtype, got {errors.dtype}")
    if errors.dim() != 1 or errors.numel() == 0:
        raise ValueError(f"errors must be a non-empty 1-D tensor (N,), got shape {tuple(errors.shape)}")
    return torch.nan_to_num(errors.to(_compute(errors)), nan=math.inf)


def _threshold(threshold: object) -> float:
    if not isinstance(threshold, Real) or isinstance(threshold, bool) or not math.isfinite(threshold) \
            or threshold <= 0:
        raise ValueError(f"threshold must be a finite positive number, got {threshold!r}")
    return float(threshold)


def auc(errors: Tensor, threshold: float = 0.1) -> float:
    """Area under the cumulative error distribution up to ``threshold``, normalised to [0, 1].

    Exact closed form ``AUC = (1/t) int_0^t CED(x) dx = mean(max(t - e, 0)) / t``, the limit of the usual
    trapezoid rule over a fine grid of thresholds. ``errors`` (N,) are per-image NMEs (fractions, e.g.
    ``nme(..., reduction="none")``); NaN counts as a failure.
    """
    e = _errors(errors)
    t = _threshold(threshold)
    return float((t - e).clamp(min=0).mean() / t)


def failure_rate(errors: Tensor, threshold: float = 0.1) -> float:
    """Fraction of the images with error ``e > threshold`` (``1 - CED(threshold)``); NaN counts as a failure."""
    e = _errors(errors)
    t = _threshold(threshold)
    return float((e > t).to(e.dtype).mean())


def ced(errors: Tensor, thresholds: Union[Tensor, Sequence[float]]) -> Tensor:
    """Cumulative error distribution ``CED(x) = fraction of errors e <= x`` at each threshold (same shape as
    ``thresholds``); NaN errors never count."""
    e = _errors(errors)
    try:
        x = torch.as_tensor(thresholds, dtype=e.dtype, device=e.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"thresholds must be a tensor or a sequence of numbers, got {thresholds!r}") from exc
    if x.dim() > 1:
        raise ValueError(f"thresholds must be a scalar or 1-D, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("thresholds must be finite")
    return torch.searchsorted(torch.sort(e).values, x, right=True).to(e.dtype) / e.numel()


def _images(name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(t.shape)}")
    return t


def luma(images: Tensor) -> Tensor:
    """The Y channel (N, 1, H, W) of YCbCr (ITU-R BT.601, studio range, as MATLAB's ``rgb2ycbcr`` on which the
    super-resolution papers' numbers rest): ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for RGB in
    [0, 1], so Y is in [16/255, 235/255]."""
    images = _images("images", images)
    coeffs = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (images * coeffs).sum(1, keepdim=True)) / 255.0


def _pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    pred, target = _images("pred", pred), _images("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    dtype = torch.promote_types(_compute(pred, target), torch.float64)
    return luma(pred.to(dtype).clamp(0, 1)), luma(target.to(dtype))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio (N,) in dB on the Y channel: ``10 log10(1 / mean((Y_pred - Y_target)^2))``
    (peak 1; ``pred`` clamped to [0, 1] first, as a saved image would be); inf for equal images."""
    yp, yt = _pair(pred, target)
    return 10 * torch.log10(1.0 / (yp - yt).square().mean((1, 2, 3)))


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural similarity (N,) on the Y channel (Wang et al. 2004): the mean over the valid 11x11 windows of
    ``(2 mu_p mu_t + C1)(2 cov + C2) / ((mu_p^2 + mu_t^2 + C1)(var_p + var_t + C2))``, the statistics weighted
    by a Gaussian of std 1.5, ``C1 = (0.01)^2``, ``C2 = (0.03)^2`` (peak 1); ``pred`` clamped to [0, 1]."""
    yp, yt = _pair(pred, target)
    if min(yp.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11 x 11 pixels, got {tuple(yp.shape[-2:])}")
    x = torch.arange(11, dtype=yp.dtype, device=yp.device) - 5
    g = torch.exp(-x.square() / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).view(1, 1, 11, 11)

    def blur(t: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(t, window)

    mp, mt = blur(yp), blur(yt)
    vp, vt, cov = blur(yp * yp) - mp * mp, blur(yt * yt) - mt * mt, blur(yp * yt) - mp * mt
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mp * mt + c1) * (2 * cov + c2) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))
    return s.mean((1, 2, 3))
