"""Decoding-family suites: decode (quarter, DARK, top-k) and soft_argmax vs their PyTorch formulations."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _dispatch, ops, reference
from ..ops.decode import BACKENDS
from .harness import Case, Suite

def dark_torch(heatmaps: Tensor, blur: int = 11) -> Tensor:
    """DARK as it is written in pure PyTorch (after mmpose's numpy/OpenCV version): blur every whole map with
    a separable Gaussian (zero border), rescale each to its original maximum, clamp, log, then the Taylor
    step at the argmax from gathered neighbours. Returns (B, K, 2)."""
    b, k, h, w = heatmaps.shape
    r = (blur - 1) // 2
    g = reference.decode.dark_kernel(blur, heatmaps.dtype, heatmaps.device)
    m = heatmaps.reshape(b * k, 1, h, w)
    blurred = F.conv2d(F.conv2d(m, g.view(1, 1, 1, blur), padding=(0, r)), g.view(1, 1, blur, 1), padding=(r, 0))
    top = m.amax(dim=(2, 3), keepdim=True)
    blurred = blurred * (top / blurred.amax(dim=(2, 3), keepdim=True))
    logm = torch.log(blurred.clamp(min=1e-10)).reshape(b * k, h * w)
    idx = m.reshape(b * k, h * w).argmax(1)
    x, y = idx % w, idx // w

    def at(di: int, dj: int) -> Tensor:
        flat = ((y + di).clamp(0, h - 1) * w + (x + dj).clamp(0, w - 1))[:, None]
        return logm.gather(1, flat)[:, 0]

    c = at(0, 0)
    dx, dy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    dxx, dyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2)), 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    det = torch.where(ok, det, torch.ones_like(det))
    ox = torch.where(ok, -(dyy * dx - dxy * dy) / det, torch.zeros_like(det))
    oy = torch.where(ok, -(dxx * dy - dxy * dx) / det, torch.zeros_like(det))
    return torch.stack([x + ox, y + oy], dim=-1).reshape(b, k, 2)


def quarter_torch(heatmaps: Tensor) -> Tensor:
    """The quarter-offset decode as HRNet/FAN write it in PyTorch: argmax, gather the four neighbours (clamped
    to the map), shift 0.25 sign(difference) on interior pixels. Returns (B, K, 2)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    idx = flat.argmax(-1, keepdim=True)
    x, y = idx % w, idx // w

    def at(di: int, dj: int) -> Tensor:
        return flat.gather(-1, (y + di).clamp(0, h - 1) * w + (x + dj).clamp(0, w - 1))

    dx = torch.where((x > 0) & (x < w - 1), 0.25 * torch.sign(at(0, 1) - at(0, -1)), 0.0)
    dy = torch.where((y > 0) & (y < h - 1), 0.25 * torch.sign(at(1, 0) - at(-1, 0)), 0.0)
    return torch.cat([x + dx, y + dy], dim=-1)


def topk_torch(heatmaps: Tensor, k: int = 9) -> Tensor:
    """H3R decoding in PyTorch: torch.topk over each flattened map, softmax of the values, weighted mean."""
    b, kk, h, w = heatmaps.shape
    vals, idx = heatmaps.reshape(b, kk, h * w).topk(k, dim=-1)
    p = torch.softmax(vals, dim=-1)
    return torch.stack([(p * (idx % w)).sum(-1), (p * (idx // w)).sum(-1)], dim=-1)


def suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """decode (quarter, dark, topk; quarter with the flip test) and soft_argmax forward + backward at B=16 (4
    when quick), K=98, 64x64, float32, on Gaussians (sigma 2) at random sub-pixel centres plus noise. The
    floor of a decode is reading the maps once (torch.amax over each map), of the flip test both maps; of
    soft_argmax fwd+bwd, one read and one write (torch.mul)."""
    device = torch.device(device)
    b, k, h, w = (4 if quick else 16), 98, 64, 64
    shape = f"B={b}, K={k}, H=W={h}, float32"
    gen = torch.Generator().manual_seed(0)
    kp = torch.rand(b, k, 2, generator=gen) * (w - 1)
    maps = (ops.render_gaussian(kp, (h, w), 2.0) + 0.01 * torch.rand(b, k, h, w, generator=gen)).to(device)
    logits = (4 * maps).requires_grad_()
    floor = Case("floor: torch.amax (one read)", lambda: torch.amax(maps, dim=(2, 3)), "floor")
    backend = _dispatch.select("decode", BACKENDS, device)

    def suite(method: str, baselines: list[Case]) -> Suite:
        cases = [Case("fastlmk", lambda: ops.decode(maps, method), "fastlmk"), floor, *baselines]
        return Suite(f"decode {method}", shape, cases, baselines[0].name, backend, device)

    def fwd_bwd(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def step() -> None:
            logits.grad = None
            fn(logits).sum().backward()
        return step

    # the flip test: the maps of the flipped image are the mirrored maps, left/right keypoints swapped in
    # pairs (2i + 1 <-> 2i + 2, as COCO's and WFLW's flip_indices swap neighbours)
    pairs = [min(i + 1, k - 1) if i % 2 else max(i - 1, 0) for i in range(k)]
    flipped = maps.flip(-1)[:, pairs].contiguous()

    def unfused() -> object:  # mmpose: flip_heatmaps (flip, permute, shift), the average, then a decode
        back = flipped.flip(-1)[:, pairs].clone()
        back[..., 1:] = back[..., :-1].clone()
        return ops.decode((maps + back) * 0.5, "quarter")

    flip_cases = [
        Case("fastlmk", lambda: ops.decode(maps, "quarter", flipped=flipped, flip_indices=pairs, shift_heatmap=True),
             "fastlmk"),
        Case("floor: torch.amax of both maps (two reads)",
             lambda: (torch.amax(maps, dim=(2, 3)), torch.amax(flipped, dim=(2, 3))), "floor"),
        Case("mmpose flip_heatmaps + average + fastlmk decode", unfused),
        Case("fastlmk plain decode of one map (no flip test)", lambda: ops.decode(maps, "quarter")),
    ]
    soft_cases = [
        Case("fastlmk", fwd_bwd(ops.soft_argmax), "fastlmk"),
        Case("floor: torch.mul (one read, one write)", lambda: torch.mul(maps, 2.0), "floor"),
        Case("torch softmax expectation", fwd_bwd(lambda t: reference.decode.soft_argmax(t)[0])),
    ]
    return [
        suite("quarter", [Case("torch argmax + gather", lambda: quarter_torch(maps)),
                          Case("fastlmk reference (NaN checks, masked gathers)",
                               lambda: reference.decode.decode(maps, "quarter"))]),
        suite("dark", [Case("torch DARK (whole-map blur)", lambda: dark_torch(maps))]),
        suite("topk", [Case("torch.topk + softmax", lambda: topk_torch(maps))]),
        Suite("decode quarter, flip test", shape, flip_cases, flip_cases[2].name, backend, device),
        Suite("soft_argmax fwd+bwd", shape, soft_cases, "torch softmax expectation",
              _dispatch.select("soft_argmax", BACKENDS, device), device),
    ]
