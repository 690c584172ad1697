"""XNOR binary convolution, pure PyTorch (docs/ops.md 4, seed 002 Eq. 5.1-5.2): the spec of the packed kernels.

Packed layout: the channel dimension (dim 1) of a ``(N, C, *S)`` tensor moves innermost and is cut into
64-bit words, ``(N, *S, ceil(C / 64))`` int64; channel ``c`` is bit ``c % 64`` of word ``c // 64``, set where
the value is negative (sign(0) = +1, so a zero word is all +1). Bits past ``C`` in the last word are 0.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

WORD = 64


def words(channels: int) -> int:
    """64-bit words holding ``channels`` bits."""
    return (channels + WORD - 1) // WORD


def _shifts(device: torch.device) -> Tensor:
    return torch.arange(WORD, dtype=torch.int64, device=device)


def pack_bits(x: Tensor) -> Tensor:
    """(N, C, *S) float -> (N, *S, ceil(C/64)) int64, bit set where x < 0."""
    c = x.shape[1]
    neg = (x < 0).movedim(1, -1).to(torch.int64)
    neg = F.pad(neg, (0, words(c) * WORD - c)).unflatten(-1, (words(c), WORD))
    # distinct powers of two: the sum is their OR, bit 63 included (two's complement)
    return (neg << _shifts(x.device)).sum(-1)


def unpack_bits(packed: Tensor, channels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(N, *S, ceil(C/64)) int64 -> (N, C, *S) of +-1 in ``dtype``."""
    bits = (packed.unsqueeze(-1) >> _shifts(packed.device)) & 1
    bits = bits.flatten(-2)[..., :channels]
    return (1 - 2 * bits).to(dtype).movedim(-1, 1)


def sign(x: Tensor) -> Tensor:
    """+1 where x >= 0, -1 where x < 0 (in x's dtype)."""
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)


def sign_conv2d(xs: Tensor, ws: Tensor, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int], groups: int, padding_mode: str) -> Tensor:
    """``conv2d`` of sign tensors with ``padding_mode`` "zeros" (off-map taps count 0) or "ones" (+1)."""
    if padding_mode == "ones":
        xs = F.pad(xs, (padding[1], padding[1], padding[0], padding[0]), value=1.0)
        padding = (0, 0)
    return F.conv2d(xs, ws, None, stride, padding, dilation, groups)


def epilogue(dot: Tensor, alpha: Tensor, bias: Optional[Tensor], scale: Optional[Tensor],
             shift: Optional[Tensor]) -> Tensor:
    """``((alpha dot + bias) scale + shift)`` per output channel (dim 1), each step rounded in alpha's dtype
    in this order (the kernels do the same, without fused multiply-adds)."""
    view = (1, -1) + (1,) * (dot.dim() - 2)
    y = dot.to(alpha.dtype) * alpha.view(view)
    for t, add in ((bias, True), (scale, False), (shift, True)):
        if t is not None:
            y = y + t.view(view) if add else y * t.view(view)
    return y


def binary_conv2d(x: Tensor, weight: Tensor, alpha: Tensor, in_channels: int, stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int], groups: int, bias: Optional[Tensor],
                  scale: Optional[Tensor], shift: Optional[Tensor], padding_mode: str, packed_out: bool) -> Tensor:
    """``conv2d(sign(x), sign(W))`` with exact integer sums (computed in float64), then the epilogue.

    ``x``: (N, C, H, W) float, or packed (N, H, W, ceil(C/64)); ``weight``: packed (O, KH, KW, ceil(C/g/64)).
    ``padding_mode="zeros"`` counts only the valid taps; ``"ones"`` pads the sign image with +1.
    """
    xs = unpack_bits(x, in_channels, torch.float64) if x.dtype == torch.int64 else sign(x.to(torch.float64))
    ws = unpack_bits(weight, in_channels // groups, torch.float64)
    dot = sign_conv2d(xs, ws, stride, padding, dilation, groups, padding_mode)
    y = epilogue(dot.contiguous(), alpha, bias, scale, shift)
    return pack_bits(y) if packed_out else y
