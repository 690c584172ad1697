"""The visualization splat of PIFA (seed 003 Eq. 9-10) with z-buffer visibility and its backward pass.

``fastlmk::splat`` and ``fastlmk::splat_backward`` are ``torch.library`` custom ops with a CPU kernel
(csrc/splat) and a CUDA kernel (csrc/splat/splat_cuda.cu); the public function also runs the ``reference``
(fastlmk/reference/splat.py, the ground truth). Semantics: docs/ops.md 3.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _checks, _dispatch, _native
from ..reference import splat as ref

__all__ = ["splat"]

BACKENDS = ("reference", "cpu", "cuda")
DTYPES = (torch.float32, torch.float64)
MAX_CELLS = 1 << 30  # z-buffer cells per batch


def _stream(t: Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _same_kind(**tensors: Tensor) -> torch.dtype:
    """The raw ops are public (torch.ops.fastlmk.*): what a kernel would misread is checked again."""
    first = next(iter(tensors.values()))
    for name, t in tensors.items():
        if t.dtype != first.dtype or t.dtype not in DTYPES or t.device != first.device:
            raise ValueError(f"splat: {name} is {t.dtype} on {t.device}; all inputs must share one dtype "
                             f"({_checks.dtype_names(DTYPES)}) and one device")
    return first.dtype


@torch.library.custom_op("fastlmk::splat", mutates_args=())
def _splat_op(xy: Tensor, depth: Tensor, value: Tensor, h: int, w: int, sigma: float,
              radius: float) -> tuple[Tensor, Tensor, Tensor]:
    raise _dispatch.no_kernel("splat", xy)


def _splat_inputs(xy, depth, value, h, w, sigma, radius):
    """The forward kernels' fields shared by both devices (contiguous buffers, checked) and its outputs."""
    b, q = depth.shape if depth.dim() == 2 else (-1, -1)
    if tuple(xy.shape) != (b, q, 2) or tuple(value.shape) != (b, q) or not (sigma > 0 and radius >= 0):
        raise ValueError(f"splat needs xy (B, Q, 2), depth (B, Q), value (B, Q), sigma > 0 and radius >= 0, got "
                         f"xy {tuple(xy.shape)}, depth {tuple(depth.shape)}, value {tuple(value.shape)}, "
                         f"sigma={sigma}, radius={radius}")
    radius = ref.dtype_radius(radius, _same_kind(xy=xy, depth=depth, value=value))
    image = xy.new_empty((b, 1, h, w))
    outputs = image, torch.empty_like(image), torch.empty((b, q), dtype=torch.bool, device=xy.device)
    fields = dict(xy=xy.contiguous(), depth=depth.contiguous(), value=value.contiguous(),
                  dtype=_native.dtype_code(xy.dtype), b=b, q=q, h=h, w=w, sigma=sigma, radius=radius,
                  margin=ref.margin(radius), image=outputs[0], weight_sum=outputs[1], visible=outputs[2])
    return fields, outputs


def _splat_cpu(xy, depth, value, h, w, sigma, radius):
    fields, outputs = _splat_inputs(xy, depth, value, h, w, sigma, radius)
    b, q = depth.shape
    _native.call("splat_forward", **fields, candidates=ref.candidates(fields["radius"]),
                 nthreads=_native.num_threads(b * (h * w + q)))
    return outputs


def _splat_cuda(xy, depth, value, h, w, sigma, radius):
    fields, outputs = _splat_inputs(xy, depth, value, h, w, sigma, radius)
    m = fields["margin"]
    cells = depth.shape[0] * (h + 2 * m) * (w + 2 * m)
    zbuf = torch.empty(cells, dtype=torch.int64, device=xy.device)
    owner = torch.empty(cells, dtype=torch.int32, device=xy.device)
    with torch.cuda.device(xy.device):
        _native.call_cuda("splat_forward", **fields, zbuf=zbuf, owner=owner, stream=_stream(xy))
    return outputs


_dispatch.register(_splat_op, cpu=_splat_cpu, cuda=_splat_cuda, triton=False)


@_splat_op.register_fake
def _(xy, depth, value, h, w, sigma, radius):
    b, q = depth.shape
    image = xy.new_empty((b, 1, h, w))
    return image, torch.empty_like(image), torch.empty((b, q), dtype=torch.bool, device=xy.device)


@torch.library.custom_op("fastlmk::splat_backward", mutates_args=())
def _splat_backward_op(grad_image: Tensor, xy: Tensor, value: Tensor, image: Tensor, weight_sum: Tensor,
                       visible: Tensor, sigma: float, radius: float) -> tuple[Tensor, Tensor]:
    raise _dispatch.no_kernel("splat_backward", xy)


def _splat_backward_inputs(grad_image, xy, value, image, weight_sum, visible, sigma, radius):
    b, q, h, w = (*value.shape, *image.shape[2:]) if value.dim() == 2 and image.dim() == 4 else (-1,) * 4
    if not (tuple(xy.shape) == (b, q, 2) and tuple(visible.shape) == (b, q) and visible.dtype == torch.bool
            and tuple(grad_image.shape) == tuple(image.shape) == tuple(weight_sum.shape) == (b, 1, h, w)
            and visible.device == xy.device):
        got = ", ".join(f"{name} {tuple(t.shape)}" for name, t in (("grad_image", grad_image), ("image", image),
                        ("weight_sum", weight_sum), ("xy", xy), ("value", value), ("visible", visible)))
        raise ValueError("splat_backward: the shapes do not match those of a splat forward: grad_image, image and "
                         "weight_sum (B, 1, H, W), xy (B, Q, 2), value (B, Q) and visible (B, Q) bool on xy's "
                         f"device; got {got} ({visible.dtype} on {visible.device})")
    grad_image = grad_image.to(xy.dtype)
    radius = ref.dtype_radius(radius, _same_kind(grad_image=grad_image, xy=xy, value=value, image=image,
                                                 weight_sum=weight_sum))
    grad_xy, grad_value = torch.empty_like(xy, memory_format=torch.contiguous_format), value.new_empty((b, q))
    fields = dict(grad_image=grad_image.contiguous(), xy=xy.contiguous(), value=value.contiguous(),
                  image=image.contiguous(), weight_sum=weight_sum.contiguous(), visible=visible.contiguous(),
                  dtype=_native.dtype_code(xy.dtype), b=b, q=q, h=h, w=w, sigma=sigma, radius=radius,
                  grad_xy=grad_xy, grad_value=grad_value)
    return fields, (grad_xy, grad_value)


def _splat_backward_cpu(grad_image, xy, value, image, weight_sum, visible, sigma, radius):
    fields, outputs = _splat_backward_inputs(grad_image, xy, value, image, weight_sum, visible, sigma, radius)
    candidates = ref.candidates(fields["radius"])
    _native.call("splat_backward", **fields, candidates=candidates,
                 nthreads=_native.num_threads(fields["b"] * fields["q"] * candidates ** 2))
    return outputs


def _splat_backward_cuda(grad_image, xy, value, image, weight_sum, visible, sigma, radius):
    fields, outputs = _splat_backward_inputs(grad_image, xy, value, image, weight_sum, visible, sigma, radius)
    with torch.cuda.device(xy.device):
        _native.call_cuda("splat_backward", **fields, stream=_stream(xy))
    return outputs


_dispatch.register(_splat_backward_op, cpu=_splat_backward_cpu, cuda=_splat_backward_cuda, triton=False)


@_splat_backward_op.register_fake
def _(grad_image, xy, value, image, weight_sum, visible, sigma, radius):
    return xy.new_empty(xy.shape), value.new_empty(value.shape)


def _setup(ctx, inputs, output):
    xy, _, value, _, _, ctx.sigma, ctx.radius = inputs
    image, weight_sum, visible = output
    ctx.mark_non_differentiable(weight_sum, visible)
    ctx.save_for_backward(xy, value, image, weight_sum, visible)


def _backward(ctx, grad_image, _grad_weight_sum, _grad_visible):
    xy, value, image, weight_sum, visible = ctx.saved_tensors
    if grad_image is None:
        return None, None, None, None, None, None, None
    grad_xy, grad_value = _splat_backward_op(grad_image, xy, value, image, weight_sum, visible, ctx.sigma,
                                             ctx.radius)
    return grad_xy, None, grad_value, None, None, None, None


_splat_op.register_autograd(_backward, setup_context=_setup)


def _backward_setup(ctx, inputs, output):
    grad_image, xy, value, image, _, visible, ctx.sigma, ctx.radius = inputs
    ctx.size = tuple(image.shape[-2:])
    ctx.save_for_backward(grad_image, xy, value, visible)


def _double_backward(ctx, grad_grad_xy, grad_grad_value):
    """Through the PyTorch formulas: the splat (with the saved visibility, which is piecewise constant) and
    the gather backward, both recomputed from (grad_image, xy, value)."""
    grad_image, xy, value, visible = ctx.saved_tensors

    def backward(g: Tensor, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        image, weight_sum = ref.accumulate(x, v, visible, ctx.size, ctx.sigma, ctx.radius)
        return ref.splat_backward(g, x, v, image, weight_sum, visible, ctx.sigma, ctx.radius)

    _, vjp = torch.func.vjp(backward, grad_image.to(xy.dtype), xy, value)
    grads = (torch.zeros_like(xy) if grad_grad_xy is None else grad_grad_xy,
             torch.zeros_like(value) if grad_grad_value is None else grad_grad_value)
    d_grad_image, d_xy, d_value = vjp(grads)
    return d_grad_image, d_xy, d_value, None, None, None, None, None


_splat_backward_op.register_autograd(_double_backward, setup_context=_backward_setup)


def _per_vertex(name: str, t: object, b: int, q: int, dtype: torch.dtype) -> Tensor:
    _checks.floating(name, t, DTYPES)
    if t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but xy has {dtype}")
    if tuple(t.shape) != (b, q):
        raise ValueError(f"{name} must have shape (B, Q) = ({b}, {q}), got {tuple(t.shape)}")
    return t


def splat(xy: Tensor, depth: Tensor, value: Tensor, size: int | tuple[int, int], *, sigma: float = 1.0,
          radius: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """Visualization image (B, 1, H, W) of a vertex cloud (PIFA Eq. 9-10 with z-buffer visibility).

    ``V(u, v) = sum_q value_q w_q / sum_q w_q`` with ``w_q = exp(-((u - x_q)^2 + (v - y_q)^2) / (2 sigma^2))``
    over the visible vertices whose square window ``|u - x_q| <= radius, |v - y_q| <= radius`` holds the pixel
    (``radius`` defaults to ``3 sigma``); 0 where no vertex reaches. ``xy (B, Q, 2)`` in pixels (pixel
    ``(i, j)`` centred at ``(x=j, y=i)``), ``depth (B, Q)`` (smaller is nearer), ``value (B, Q)``, all float32
    or float64. Visibility: among vertices whose nearest pixel ``(floor(x + 0.5), floor(y + 0.5))`` is the
    same, only the smallest depth survives (ties: lowest index). A vertex with a non-finite ``xy`` or
    ``depth`` is skipped: that is how callers prune back-facing vertices.

    Differentiable in ``xy`` and ``value`` (``depth`` gets no gradient; window edges and visibility changes
    are ignored, as for any piecewise function). The backward gathers over each visible vertex's window using
    the saved image and weight sum, so it needs no atomics; memory is O(B H W + B Q). Twice differentiable
    (the double backward is the PyTorch formula).
    """
    _checks.floating("xy", xy, DTYPES)
    if xy.dim() != 3 or xy.shape[-1] != 2:
        raise ValueError(f"xy must have shape (B, Q, 2), got {tuple(xy.shape)}")
    b, q = xy.shape[:2]
    _per_vertex("depth", depth, b, q, xy.dtype)
    _per_vertex("value", value, b, q, xy.dtype)
    _checks.same_device(xy.device, depth=depth, value=value)
    h, w = _checks.size2(size)
    sigma = _checks.positive_float("sigma", sigma)
    radius = 3.0 * sigma if radius is None else _checks.nonneg_float("radius", radius)
    m = ref.margin(radius)
    if (h + 2 * m) * (w + 2 * m) > MAX_CELLS or q >= 1 << 31:
        raise ValueError(f"radius {radius} with size {(h, w)} needs a z-buffer of {(h + 2 * m) * (w + 2 * m)} "
                         f"cells per batch (at most {MAX_CELLS}), or Q = {q} >= 2^31")
    _checks.finite("value", value, " (skip a vertex with a non-finite xy or depth instead)")
    backend = _dispatch.select("splat", BACKENDS, xy.device, backend)
    if backend == "reference":
        return ref.splat(xy, depth.detach(), value, (h, w), sigma, ref.dtype_radius(radius, xy.dtype))[0]
    # a copy: the op's own output is saved for backward, so the caller may modify what it gets in place
    return _splat_op(xy, depth.detach(), value, h, w, sigma, radius)[0].clone()
