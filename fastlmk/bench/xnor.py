"""XNOR-family suites: the packed binary convolution against float convolution (what a binary layer replaces)
and against the pure-PyTorch XNOR emulation (conv2d of sign tensors), the sign + pack pass, a binary linear
layer, and a binarized hourglass block against its float version."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _dispatch, ops
from ..models.hourglass import HPMBlock
from ..ops.xnor import BACKENDS
from ..reference import xnor as ref
from .harness import Case, Suite


@contextlib.contextmanager
def fp32_convolutions() -> Iterator[None]:
    """cuDNN convolutions in true float32 (TF32 off) inside, as the issue's GPU baseline asks."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


def float_conv(x: Tensor, w: Tensor) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with fp32_convolutions():
            return F.conv2d(x, w, padding=1)
    return run


def sign_conv_torch(x: Tensor, w: Tensor, alpha: Tensor) -> Tensor:
    """The pure-PyTorch XNOR layer: float convolution of the sign tensors, scaled per channel (float32; the
    sums are small integers, so exact)."""
    with fp32_convolutions():
        return F.conv2d(ref.sign(x), ref.sign(w), padding=1) * alpha.view(1, -1, 1, 1)


def conv_suites(n: int, c: int, size: int, device: torch.device, backend: str) -> list[Suite]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, size, size, generator=gen).to(device)
    w = torch.randn(c, c, 3, 3, generator=gen).to(device)
    alpha, scale, shift = w.abs().mean((1, 2, 3)), torch.rand(c).to(device) + 0.5, torch.randn(c).to(device)
    packed_x, packed_w = ops.pack_bits(x), ops.pack_bits(w)
    x16, w16 = x.bfloat16(), w.bfloat16()
    shape = f"N={n}, {c}->{c}, 3x3, {size}x{size}, stride 1, padding 1"
    floor = Case("floor: torch.zeros (write the float output)",
                 lambda: torch.zeros(n, c, size, size, device=device), "floor")
    conv = Suite("binary_conv2d", shape + ", packed input, float32 output", [
        Case("fastlmk", lambda: ops.binary_conv2d(packed_x, packed_w, alpha, in_channels=c, padding=1), "fastlmk"),
        floor,
        Case("F.conv2d float32 (TF32 off)", float_conv(x, w)),
        Case("F.conv2d bfloat16", lambda: F.conv2d(x16, w16, padding=1)),
        Case("torch XNOR emulation: conv2d(sign x, sign W) * alpha", lambda: sign_conv_torch(x, w, alpha)),
    ], "F.conv2d float32 (TF32 off)", backend, device)

    def bn_sign_torch() -> Tensor:
        with fp32_convolutions():
            y = F.conv2d(x, w, padding=1) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        return torch.sign(y)

    packed = Suite("binary_conv2d packed out", shape + ", packed input, folded BN + sign -> packed output", [
        Case("fastlmk", lambda: ops.binary_conv2d(packed_x, packed_w, alpha, in_channels=c, padding=1, scale=scale,
                                                  shift=shift, out="packed"), "fastlmk"),
        Case("floor: torch.zeros (write the packed output)",
             lambda: torch.zeros(n, size, size, ref.words(c), dtype=torch.int64, device=device), "floor"),
        Case("F.conv2d float32 + BN + sign", bn_sign_torch),
    ], "F.conv2d float32 + BN + sign", backend, device)

    pack = Suite("pack_bits", f"N={n}, C={c}, {size}x{size}, float32 NCHW", [
        Case("fastlmk", lambda: ops.pack_bits(x), "fastlmk"),
        Case("floor: torch.amax (read the input)", lambda: torch.amax(x), "floor"),
        Case("torch: sign + shift-and-sum", lambda: ref.pack_bits(x)),
        Case("torch.sign (float signs only, no packing)", lambda: torch.sign(x)),
    ], "torch: sign + shift-and-sum", backend, device)
    return [conv, packed, pack]


def linear_suite(n: int, features: int, device: torch.device, backend: str) -> Suite:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=gen).to(device)
    w = torch.randn(features, features, generator=gen).to(device)
    alpha, packed_x, packed_w = w.abs().mean(1), ops.pack_bits(x), ops.pack_bits(w)
    return Suite("binary_linear", f"N={n}, {features}->{features}, packed input, float32 output", [
        Case("fastlmk", lambda: ops.binary_linear(packed_x, packed_w, alpha, in_features=features), "fastlmk"),
        Case("floor: torch.zeros (write the output)", lambda: torch.zeros(n, features, device=device), "floor"),
        Case("F.linear float32", lambda: F.linear(x, w)),
    ], "F.linear float32", backend, device)


def block_suite(n: int, c: int, size: int, device: torch.device, backend: str) -> Suite:
    """The hierarchical, parallel & multi-scale block in eval mode: binary (packed kernels) vs real."""
    torch.manual_seed(0)
    x = torch.randn(n, c, size, size).to(device)
    real, binary = HPMBlock(c, c).to(device).eval(), HPMBlock(c, c, binary=True).to(device).eval()

    def run(block: HPMBlock) -> Callable[[], Tensor]:
        def forward() -> Tensor:
            with torch.no_grad(), fp32_convolutions():
                return block(x)
        return forward

    run(binary)()  # packs the weights once
    return Suite("HPM block (eval)", f"N={n}, {c}->{c}, {size}x{size}, seed 002 Fig. 5.1b", [
        Case("fastlmk", run(binary), "fastlmk"),
        Case("floor: torch.zeros (write the output)", lambda: torch.zeros(n, c, size, size, device=device), "floor"),
        Case("float block (nn.Conv2d float32)", run(real)),
    ], "float block (nn.Conv2d float32)", backend, device)


def suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """binary_conv2d (float and packed output) and pack_bits at N=8 (2 when quick; 32 on a GPU), 128->128, 3x3,
    64x64; binary_linear at N=64, 2048->2048; the HPM block at N=8, 128 channels, 64x64."""
    device = torch.device(device)
    n = 2 if quick else 32 if device.type == "cuda" else 8
    backend = _dispatch.select("binary_conv2d", BACKENDS, device)
    return [*conv_suites(n, 128, 64, device, backend), linear_suite(64, 2048, device, backend),
            block_suite(2 if quick else 8, 128, 64, device, backend)]
