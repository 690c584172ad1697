"""XNOR bit-packed binary convolution (seed 002 Eq. 5.1-5.2, docs/ops.md 4).

``fastlmk::pack_bits`` and ``fastlmk::binary_conv2d`` are ``torch.library`` custom ops with a CPU kernel
(csrc/xnor: 64-bit words, popcount with AVX-512 VPOPCNTQ / AVX2 / scalar chosen at run time, OpenMP) and a
CUDA kernel (csrc/xnor/xnor_cuda.cu); the public functions also run the ``reference``
(fastlmk/reference/xnor.py, the spec). ``binary_linear``
runs on the same core as a 1x1 convolution. These ops are not differentiable: train with
``fastlmk.nn.BinaryConv2d``, whose training mode is a float convolution with the straight-through estimator.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .. import _checks, _dispatch, _native
from ..reference import xnor as ref

__all__ = ["pack_bits", "unpack_bits", "binary_conv2d", "binary_linear"]

BACKENDS = ("reference", "cpu", "cuda")
AFFINE_DTYPES = (torch.float32, torch.float64)
IntPair = Union[int, Sequence[int]]


def _stream(t: Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _no_nan(x: Tensor) -> None:
    if _checks.checkable(x) and bool(torch.isnan(x).any()):
        raise ValueError("x contains NaN, whose sign is undefined")


@torch.library.custom_op("fastlmk::pack_bits", mutates_args=())
def _pack_op(x: Tensor) -> Tensor:
    raise _dispatch.no_kernel("pack_bits", x)


def _pack_inputs(x: Tensor) -> tuple[dict, Tensor]:
    """The pack kernels' fields (x as (N, C, P) with a unit stride along C or P) and the output."""
    if x.dim() < 2 or x.dtype not in _checks.FLOATING:
        raise ValueError(f"pack_bits: x must be a floating (N, C, ...) tensor, got {x.dtype} {tuple(x.shape)}")
    n, c = x.shape[:2]
    out = torch.empty((n, *x.shape[2:], ref.words(c)), dtype=torch.int64, device=x.device)
    if out.numel() == 0:
        return {}, out
    flat = x.reshape(n, c, out.numel() // (n * out.shape[-1]))  # a view whenever the spatial dims can be merged
    if not (flat.stride(2) == 1 or flat.stride(1) == 1):
        flat = flat.contiguous()
    fields = dict(x=flat, dtype=_native.dtype_code(x.dtype), n=n, c=c, p=flat.shape[2], stride_n=flat.stride(0),
                  stride_c=flat.stride(1), stride_p=flat.stride(2), out=out)
    return fields, out


def _pack_cpu(x):
    fields, out = _pack_inputs(x)
    if fields and _native.call("pack_bits", **fields, nthreads=_native.num_threads(x.numel())):
        raise ValueError("x contains NaN, whose sign is undefined")
    return out


def _pack_cuda(x):
    fields, out = _pack_inputs(x)
    if fields:
        with torch.cuda.device(x.device):
            _native.call_cuda("pack_bits", **fields, stream=_stream(x))
    return out


_dispatch.register(_pack_op, cpu=_pack_cpu, cuda=_pack_cuda, triton=False)


@_pack_op.register_fake
def _(x):
    return x.new_empty((x.shape[0], *x.shape[2:], ref.words(x.shape[1])), dtype=torch.int64)


def _out_hw(h: int, w: int, kh: int, kw: int, stride: Sequence[int], padding: Sequence[int],
            dilation: Sequence[int]) -> tuple[int, int]:
    return ((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


LIMIT = 1 << 31  # the kernels index padded rows, windows and dot products with 32-bit-safe arithmetic


def _geometry(h: int, w: int, kh: int, kw: int, cg: int, stride: Sequence[int], padding: Sequence[int],
              dilation: Sequence[int]) -> tuple[int, int]:
    """(Ho, Wo), after checking the ranges (also for the raw op, which the kernels trust)."""
    for name, pair, minimum in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        if min(pair) < minimum or max(pair) >= LIMIT:
            raise ValueError(f"{name} must be in [{minimum}, 2^31), got {tuple(pair)}")
    if max(h + 2 * padding[0], w + 2 * padding[1], dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1) >= LIMIT:
        raise ValueError(f"the padded map {(h + 2 * padding[0], w + 2 * padding[1])} or the dilated kernel must "
                         f"span fewer than 2^31 pixels")
    if kh * kw * cg >= LIMIT:
        raise ValueError(f"a window of {kh}x{kw} taps x {cg} channels exceeds the 2^31 - 1 integer range")
    ho, wo = _out_hw(h, w, kh, kw, stride, padding, dilation)
    if ho < 1 or wo < 1:
        raise ValueError(f"x of spatial size {(h, w)} is smaller than the dilated kernel {(kh, kw)} "
                         f"(padding {tuple(padding)}, dilation {tuple(dilation)})")
    return ho, wo


@torch.library.custom_op("fastlmk::binary_conv2d", mutates_args=())
def _conv_op(x: Tensor, weight: Tensor, alpha: Tensor, bias: Optional[Tensor], scale: Optional[Tensor],
             shift: Optional[Tensor], in_channels: int, stride: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int], groups: int, pad_ones: bool, packed_out: bool) -> Tensor:
    raise _dispatch.no_kernel("binary_conv2d", x)


def _conv_inputs(x, weight, alpha, bias, scale, shift, in_channels, stride, padding, dilation, groups, pad_ones,
                 packed_out) -> tuple[dict, Tensor]:
    """The convolution kernels' fields, after checking every layout and range they rely on, and the output."""
    if (x.dim() != 4 or weight.dim() != 4 or groups < 1
            or not all(len(p) == 2 for p in (stride, padding, dilation))):
        raise ValueError("binary_conv2d: x and weight must be packed 4-D tensors, groups positive and stride, "
                         "padding and dilation pairs")
    n, h, w, xw = x.shape
    o, kh, kw, ww = weight.shape
    c = in_channels
    ho, wo = _geometry(h, w, kh, kw, c // groups, stride, padding, dilation)
    affine = [t for t in (bias, scale, shift) if t is not None]
    if (x.dtype != torch.int64 or weight.dtype != torch.int64 or xw != ref.words(c) or ww != ref.words(c // groups)
            or c % groups or o % groups or alpha.dtype not in AFFINE_DTYPES or tuple(alpha.shape) != (o,)
            or any(t.dtype != alpha.dtype or tuple(t.shape) != (o,) for t in affine)
            or any(t.device != x.device for t in (weight, alpha, *affine))):
        raise ValueError("binary_conv2d: inputs do not match packed (N, H, W, words) / (O, KH, KW, words) "
                         "layouts with per-channel (O,) float32/float64 affine tensors on one device")
    out = _empty_out(x, o, ho, wo, alpha.dtype, packed_out)
    bias, scale, shift = (None if t is None else t.contiguous() for t in (bias, scale, shift))
    fields = dict(x=x.contiguous(), weight=weight.contiguous(), alpha=alpha.contiguous(), bias=bias, scale=scale,
                  shift=shift, dtype=_native.dtype_code(alpha.dtype), n=n, c=c, h=h, w=w, o=o, kh=kh, kw=kw,
                  groups=groups, stride_h=stride[0], stride_w=stride[1], pad_h=padding[0], pad_w=padding[1],
                  dil_h=dilation[0], dil_w=dilation[1], ho=ho, wo=wo, pad_ones=pad_ones, packed_out=packed_out,
                  out=out)
    return fields, out


def _conv_cpu(*args):
    fields, out = _conv_inputs(*args)
    if out.numel():
        f = fields
        _native.call("binary_conv2d", **f, nthreads=_native.num_threads(f["n"] * f["ho"] * f["wo"] * f["o"] * f["kh"]
                                                                          * f["kw"] * f["weight"].shape[-1]))
    return out


def _conv_cuda(*args):
    fields, out = _conv_inputs(*args)
    if out.numel():
        with torch.cuda.device(out.device):
            _native.call_cuda("binary_conv2d", **fields, stream=_stream(out))
    return out


_dispatch.register(_conv_op, cpu=_conv_cpu, cuda=_conv_cuda, triton=False)


def _empty_out(x: Tensor, o: int, ho: int, wo: int, dtype: torch.dtype, packed_out: bool) -> Tensor:
    if packed_out:
        return x.new_empty((x.shape[0], ho, wo, ref.words(o)), dtype=torch.int64)
    return x.new_empty((x.shape[0], o, ho, wo), dtype=dtype)


@_conv_op.register_fake
def _(x, weight, alpha, bias, scale, shift, in_channels, stride, padding, dilation, groups, pad_ones, packed_out):
    _, h, w, _ = x.shape
    o, kh, kw, _ = weight.shape
    ho, wo = _out_hw(h, w, kh, kw, stride, padding, dilation)
    return _empty_out(x, o, ho, wo, alpha.dtype, packed_out)


def _pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {_checks.describe(value)}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _affine(name: str, t: Optional[Tensor], o: int, alpha: Tensor) -> Optional[Tensor]:
    if t is None:
        return None
    _checks.floating(name, t, AFFINE_DTYPES)
    if t.dtype != alpha.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but alpha has {alpha.dtype}")
    if tuple(t.shape) != (o,):
        raise ValueError(f"{name} must have shape (O,) = ({o},), got {tuple(t.shape)}")
    _checks.finite(name, t)
    return t


def pack_bits(x: Tensor, *, backend: Optional[str] = None) -> Tensor:
    """Signs of ``x (N, C, *S)`` packed as bits: ``(N, *S, ceil(C / 64))`` int64, channel ``c`` in bit
    ``c % 64`` of word ``c // 64``, set where ``x < 0`` (sign(0) = +1; bits past C are 0).

    One pass over ``x`` in any float dtype, NCHW or channels-last. NaN has no sign: an error on CPU; on a GPU
    (where checking would synchronise) NaN packs as +1. ``pack_bits(weight)`` of a conv weight
    ``(O, C/g, KH, KW)`` gives the ``(O, KH, KW, words)`` layout ``binary_conv2d`` takes.
    """
    _checks.floating("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("x must have at least one channel (dim 1)")
    backend = _dispatch.select("pack_bits", BACKENDS, x.device, backend)
    if backend == "reference":
        _no_nan(x)
        return ref.pack_bits(x)
    return _pack_op(x)


def unpack_bits(packed: Tensor, channels: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Inverse of ``pack_bits`` up to the sign: ``(N, *S, words)`` -> ``(N, C, *S)`` of +-1 (pure PyTorch,
    any device; for tests and debugging)."""
    _packed("packed", packed, channels, packed.dim() if isinstance(packed, Tensor) else 0)
    return ref.unpack_bits(packed, channels, _checks.dtype(dtype))


def _packed(name: str, t: object, channels: int, rank: int, layouts: str = "") -> Tensor:
    """``t``, int64 signs of ``channels`` channels packed by pack_bits into ``rank`` dims; ``layouts`` starts
    the message of a wrong word count."""
    if not isinstance(t, Tensor) or t.dtype != torch.int64:
        raise TypeError(f"{name} must be a packed int64 tensor (from pack_bits), got "
                        f"{t.dtype if isinstance(t, Tensor) else type(t).__name__}")
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise ValueError(f"the channel count of {name} must be a positive int, got {_checks.describe(channels)}")
    if t.dim() != rank or t.dim() < 2:
        raise ValueError(f"{name} must have {rank} dims (N, ..., words), got shape {tuple(t.shape)}")
    if t.shape[-1] != ref.words(channels):
        raise ValueError(f"{layouts}{name} has {t.shape[-1]} words per position but {channels} channels pack into "
                         f"{ref.words(channels)}: not packed for this channel count (or not channels-last)")
    return t


def _input_channels(x: Tensor, channels: Optional[int], arg: str) -> int:
    """The channel count of binary_conv2d's x (N, C, H, W) / (N, H, W, words) or binary_linear's x (N, C) /
    (N, words), whose rank is checked: a floating x is packed here, an int64 one is taken for pack_bits'
    output, which needs the channel count ``arg`` (its last dimension must be the word count of it)."""
    conv = x.dim() == 4
    layouts = (f"x must have a floating dtype ({_checks.dtype_names(_checks.FLOATING)}) as "
               f"{'(N, C, H, W)' if conv else '(N, C)'}, or be the int64 packed signs "
               f"({'N, H, W' if conv else 'N'}, ceil({arg}/64)) from pack_bits; got {x.dtype} of shape "
               f"{tuple(x.shape)}")
    if x.dtype == torch.int64:
        if channels is None:
            raise ValueError(f"{layouts}: {arg} is required with a packed x (the word count does not give it)")
        _packed("x", x, channels, x.dim(), f"{layouts}: ")
        return channels
    if x.dtype not in _checks.FLOATING:
        raise TypeError(layouts)
    if channels is not None and channels != x.shape[1]:
        raise ValueError(f"{arg}={_checks.describe(channels)} but x has {x.shape[1]} "
                         f"{'channels' if conv else 'features'}")
    return x.shape[1]


def binary_conv2d(x: Tensor, weight_packed: Tensor, alpha: Tensor, *, in_channels: Optional[int] = None,
                  stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
                  bias: Optional[Tensor] = None, scale: Optional[Tensor] = None, shift: Optional[Tensor] = None,
                  padding_mode: str = "zeros", out: str = "float", backend: Optional[str] = None) -> Tensor:
    """XNOR convolution ``y = (alpha[o] conv2d(sign(x), sign(W))[o] + bias[o]) scale[o] + shift[o]``.

    ``x``: float ``(N, C, H, W)`` (packed here) or packed ``(N, H, W, ceil(C/64))`` int64, which needs
    ``in_channels``. ``weight_packed``: ``pack_bits(W)`` of ``W (O, C/groups, KH, KW)``, i.e.
    ``(O, KH, KW, ceil(C/groups/64))``. ``alpha (O,)`` (Eq. 5.2: mean |W[o]|), optional ``bias``, ``scale``,
    ``shift`` (O,): one float dtype (float32 or float64), which is the output's. ``scale``/``shift`` fold a
    batch norm. The integer sums are exact, ``n_valid - 2 popcount(x xor w)``: ``padding_mode="zeros"``
    counts only in-map taps (equal to the float convolution of the sign tensors with zero padding),
    ``"ones"`` pads with +1. ``out="float"`` returns ``(N, O, Ho, Wo)``; ``out="packed"`` returns
    ``pack_bits(y)``, ``(N, Ho, Wo, ceil(O/64))``, for the next binary layer.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D: float (N, C, H, W) or packed (N, H, W, words), got {tuple(x.shape)}")
    c = _input_channels(x, in_channels, "in_channels")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {_checks.describe(groups)}")
    if c % groups:
        raise ValueError(f"groups={groups} does not divide the {c} input channels")
    _packed("weight_packed", weight_packed, c // groups, 4)
    o, kh, kw = weight_packed.shape[:3]
    if o == 0 or kh == 0 or kw == 0 or o % groups:
        raise ValueError(f"weight_packed (O, KH, KW, words) = {tuple(weight_packed.shape)} needs O, KH, KW > 0 "
                         f"and groups={groups} dividing O")
    _checks.floating("alpha", alpha, AFFINE_DTYPES)
    if tuple(alpha.shape) != (o,):
        raise ValueError(f"alpha must have shape (O,) = ({o},), got {tuple(alpha.shape)}")
    _checks.finite("alpha", alpha)
    bias, scale, shift = (_affine(name, t, o, alpha) for name, t in (("bias", bias), ("scale", scale),
                                                                       ("shift", shift)))
    _checks.same_device(x.device, weight_packed=weight_packed, alpha=alpha, bias=bias, scale=scale, shift=shift)
    stride, padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
    dilation = _pair("dilation", dilation, 1)
    _checks.choice("padding_mode", padding_mode, ("zeros", "ones"))
    _checks.choice("out", out, ("float", "packed"))
    h, w = x.shape[1:3] if x.dtype == torch.int64 else x.shape[2:]
    _geometry(h, w, kh, kw, c // groups, stride, padding, dilation)
    backend = _dispatch.select("binary_conv2d", BACKENDS, x.device, backend)
    if x.dtype != torch.int64:
        x = pack_bits(x, backend=backend)
    if backend == "reference":
        return ref.binary_conv2d(x, weight_packed, alpha, c, stride, padding, dilation, groups, bias, scale, shift,
                                 padding_mode, out == "packed")
    return _conv_op(x, weight_packed, alpha, bias, scale, shift, c, stride, padding, dilation, groups,
                    padding_mode == "ones", out == "packed")


def binary_linear(x: Tensor, weight_packed: Tensor, alpha: Tensor, *, in_features: Optional[int] = None,
                  bias: Optional[Tensor] = None, scale: Optional[Tensor] = None, shift: Optional[Tensor] = None,
                  out: str = "float", backend: Optional[str] = None) -> Tensor:
    """XNOR linear layer ``y = (alpha[o] (sign(x) . sign(W[o])) + bias[o]) scale[o] + shift[o]``, the
    ``binary_conv2d`` core on a 1 x N map. ``x``: float ``(N, C)`` or packed ``(N, ceil(C/64))`` (with
    ``in_features``); ``weight_packed``: ``pack_bits(W)`` of ``W (O, C)``, i.e. ``(O, ceil(C/64))``.
    Returns ``(N, O)`` float, or packed ``(N, ceil(O/64))`` with ``out="packed"``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (N, C) or packed (N, words), got {tuple(x.shape)}")
    if not isinstance(weight_packed, Tensor) or weight_packed.dim() != 2:
        raise ValueError("weight_packed must be a packed (O, words) tensor (pack_bits of an (O, C) weight)")
    in_features = _input_channels(x, in_features, "in_features")
    if x.dtype != torch.int64:
        x = pack_bits(x, backend=backend)
    # the batch as one row of N pixels, so the kernels tile over it (an empty batch as one pixel, dropped)
    row = x[None, None] if x.shape[0] else x.new_zeros((1, 1, 1, x.shape[1]))
    y = binary_conv2d(row, weight_packed[:, None, None, :], alpha, in_channels=in_features, bias=bias,
                      scale=scale, shift=shift, out=out, backend=backend)
    y = y[0, 0] if out == "packed" else y[0, :, 0].t().contiguous()
    return y[:x.shape[0]]
