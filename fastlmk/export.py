"""Deployment: the fastlmk ops in exported programs and ONNX graphs.

- ``torch.export``: every public op traces to its ``torch.ops.fastlmk`` op, whose schema names no backend or
  device, so a program exported from CPU tensors runs on CUDA tensors (each op has a kernel per device type).
- ONNX: under ``torch.onnx.export`` the public ops trace their reference formulas (standard operators only;
  fastlmk/_dispatch.py), and ``decompositions()`` rewrites the fastlmk ops of a program already captured
  with ``torch.export`` into the same formulas. ``to_onnx`` does both steps.

``reference(op)`` is the pure-PyTorch formula of a raw op taking the raw op's arguments (the tests' oracle).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .reference import decode as ref_decode
from .reference import encode as ref_encode
from .reference import splat as ref_splat
from .reference import xnor as ref_xnor
from ._checks import cast, compute_dtype


def _cast(dtype: torch.dtype, *tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    return tuple(None if t is None else cast(t, dtype) for t in tensors)


def _normalize(relu: bool) -> str:
    return "relu" if relu else "softmax"


def _render(kind: str) -> Callable[..., Tensor]:
    def formula(keypoints, param, weights, height, width, center, radius, dtype):
        keypoints, param, weights = _cast(compute_dtype(dtype), keypoints, param, weights)
        if kind == "gaussian":
            return ref_encode.render_gaussian(keypoints, (height, width), param, weights=weights, center=center,
                                              radius=radius, dtype=dtype)
        fn = ref_encode.render_disc if kind == "disc" else ref_encode.render_offsets
        return fn(keypoints, (height, width), param, weights=weights, dtype=dtype)
    return formula


def _heatmap_loss(pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    keypoints, sigma, weights = _cast(compute_dtype(pred.dtype), keypoints, sigma, weights)
    return ref_encode.heatmap_loss(pred, keypoints, sigma, kind=kind, weights=weights, center=center,
                                   radius=radius, reduction=reduction, awing=tuple(awing))


def _heatmap_loss_backward(grad, pred, keypoints, sigma, weights, kind, center, radius, reduction, awing):
    keypoints, sigma, weights = _cast(compute_dtype(pred.dtype), keypoints, sigma, weights)
    return ref_encode.heatmap_loss_backward(grad.to(pred.dtype), pred, keypoints, sigma, kind=kind, weights=weights,
                                            center=center, radius=radius, reduction=reduction, awing=tuple(awing))


def _render_simcc(keypoints, weights, wx, hy, kind, sigma, scale, smoothing, dtype):
    keypoints, weights = _cast(compute_dtype(dtype), keypoints, weights)
    return ref_encode.render_simcc(keypoints, (wx, hy), tuple(sigma), kind=kind, smoothing=smoothing,
                                   scale=tuple(scale), weights=weights, dtype=dtype)


def _decode_simcc(simcc_x, simcc_y):
    return ref_decode.decode_simcc(simcc_x, cast(simcc_y, simcc_x.dtype))


def _decode(heatmaps, offsets, affine, method, blur, window, k, flipped=None, flipped_offsets=None,
            flip_indices=None, shift_heatmap=False):
    offsets, affine, flipped_offsets = _cast(compute_dtype(heatmaps.dtype), offsets, affine, flipped_offsets)
    window = min(window, max(heatmaps.shape[2:]) - 1)  # as the kernels: a larger window adds only pixels off the map
    return ref_decode.decode(heatmaps, method, blur=blur, window=window, k=k, offsets=offsets, affine=affine,
                             flipped=flipped, flipped_offsets=flipped_offsets, flip_indices=flip_indices,
                             shift=shift_heatmap)


def _soft_argmax(heatmaps, beta, relu, flipped=None, flip_indices=None, shift_heatmap=False):
    return ref_decode.soft_argmax(heatmaps, beta, _normalize(relu), flipped, flip_indices, shift_heatmap)


def _soft_argmax_backward(grad_coords, grad_stat, heatmaps, coords, stat, beta, relu):
    grad_coords, grad_stat, coords, stat = _cast(compute_dtype(heatmaps.dtype), grad_coords, grad_stat, coords, stat)
    return ref_decode.soft_argmax_backward(grad_coords, grad_stat, heatmaps, coords, stat, beta, _normalize(relu))


def _splat(xy, depth, value, h, w, sigma, radius):
    return ref_splat.splat(xy, depth, value, (h, w), sigma, ref_splat.dtype_radius(radius, xy.dtype))


def _splat_backward(grad_image, xy, value, image, weight_sum, visible, sigma, radius):
    return ref_splat.splat_backward(grad_image.to(xy.dtype), xy, value, image, weight_sum, visible, sigma,
                              ref_splat.dtype_radius(radius, xy.dtype))


def _binary_conv2d(x, weight, alpha, bias, scale, shift, in_channels, stride, padding, dilation, groups, pad_ones,
                   packed_out):
    return ref_xnor.binary_conv2d(x, weight, alpha, in_channels, tuple(stride), tuple(padding), tuple(dilation), groups,
                             bias, scale, shift, "ones" if pad_ones else "zeros", packed_out)


_FORMULAS: dict[str, Callable[..., Any]] = {
    "render_gaussian": _render("gaussian"), "render_disc": _render("disc"), "render_offsets": _render("offsets"),
    "heatmap_loss": _heatmap_loss, "heatmap_loss_backward": _heatmap_loss_backward, "render_simcc": _render_simcc,
    "decode": _decode, "decode_simcc": _decode_simcc,
    "soft_argmax": _soft_argmax, "soft_argmax_backward": _soft_argmax_backward, "splat": _splat,
    "splat_backward": _splat_backward, "pack_bits": ref_xnor.pack_bits, "binary_conv2d": _binary_conv2d,
}
OPS = tuple(_FORMULAS)


def reference(op: str) -> Callable[..., Any]:
    """The reference formula of ``torch.ops.fastlmk.<op>``, called with the op's own arguments."""
    return _FORMULAS[op]


def decompositions() -> dict[Any, Callable[..., Any]]:
    """``{torch.ops.fastlmk.<op>.default: reference(op)}`` for ``ExportedProgram.run_decompositions``: the
    program's fastlmk ops become their reference formulas (standard aten ops, which ONNX expresses)."""
    return {getattr(torch.ops.fastlmk, name).default: formula for name, formula in _FORMULAS.items()}


def to_onnx(model: torch.nn.Module, args: Sequence[Any], path: Optional[Union[str, os.PathLike]] = None, *,
            dynamic_batch: bool = True, input_names: Optional[Sequence[str]] = None,
            output_names: Optional[Sequence[str]] = None) -> "torch.onnx.ONNXProgram":
    """``model(*args)`` as an ONNX program of standard operators (opset 18), saved to ``path`` when given:
    ``torch.export`` (batch size dynamic in every tensor argument with ``dynamic_batch``), the fastlmk ops
    decomposed to their reference formulas, then ``torch.onnx.export(..., dynamo=True)``."""
    dims = tuple({0: torch.export.Dim.DYNAMIC} if isinstance(a, Tensor) else None for a in args) \
        if dynamic_batch else None
    program = torch.export.export(model, tuple(args), dynamic_shapes=dims).run_decompositions(decompositions())
    onnx = torch.onnx.export(program, dynamo=True, input_names=input_names, output_names=output_names,
                             verbose=False)
    if path is not None:
        onnx.save(os.fspath(path))
    return onnx
