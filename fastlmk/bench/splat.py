"""Splat-family suites: the visualization splat forward and forward + backward vs the pure-PyTorch scatter
(fastlmk.reference.splat: ``index_add`` over every vertex's window candidates, autograd for the backward)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .. import _dispatch, ops, reference
from ..ops.splat import BACKENDS
from .harness import Case, Suite


def cloud(b: int, q: int, size: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``q`` vertices per batch uniform over a ``size`` x ``size`` map, random depths and values."""
    xy = torch.rand(b, q, 2, generator=gen) * size - 0.5
    return xy.to(device), torch.rand(b, q, generator=gen).to(device), torch.randn(b, q, generator=gen).to(device)


def suite(b: int, q: int, size: int, sigma: float, device: torch.device, forward_only: bool) -> Suite:
    gen = torch.Generator().manual_seed(0)
    xy, depth, value = cloud(b, q, size, gen, device)
    grad = torch.randn(b, 1, size, size, generator=gen).to(device)
    radius = 3.0 * sigma
    xy_g, value_g = xy.clone().requires_grad_(), value.clone().requires_grad_()

    def ours() -> Tensor:
        return ops.splat(xy_g, depth, value_g, size, sigma=sigma)

    def torch_scatter() -> Tensor:
        return reference.splat.splat(xy_g, depth, value_g, (size, size), sigma, radius)[0]

    def step(fn: Callable[[], Tensor]) -> Callable[[], None]:
        def run() -> None:
            xy_g.grad = value_g.grad = None
            fn().backward(grad)
        return run

    if forward_only:
        cases = [Case("fastlmk", lambda: ops.splat(xy, depth, value, size, sigma=sigma), "fastlmk"),
                 Case("floor: torch.zeros (write the image)", lambda: torch.zeros(b, 1, size, size, device=device),
                      "floor"),
                 Case("torch scatter (index_add)",
                      lambda: reference.splat.splat(xy, depth, value, (size, size), sigma, radius)[0])]
    else:
        cases = [Case("fastlmk", step(ours), "fastlmk"),
                 Case("floor: torch.zeros (write the image and the gradients)",
                      lambda: (torch.zeros(b, 1, size, size, device=device), torch.zeros(b, q, 3, device=device)),
                      "floor"),
                 Case("torch scatter (index_add) + autograd", step(torch_scatter))]
    op = "splat fwd" if forward_only else "splat fwd+bwd"
    shape = f"B={b}, Q={q}, H=W={size}, sigma={sigma:g}, float32, vertices uniform over the map"
    return Suite(op, shape, cases, cases[2].name, _dispatch.select("splat", BACKENDS, device), device)


def suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """splat forward, and forward + backward, at B=8 (2 when quick), Q=5000, 128x128, sigma 1; on a GPU also
    forward + backward at B=32, Q=53,000 (a Basel-sized face model)."""
    device = torch.device(device)
    b = 2 if quick else 8
    out = [suite(b, 5000, 128, 1.0, device, True), suite(b, 5000, 128, 1.0, device, False)]
    if device.type == "cuda" and not quick:
        out.append(suite(32, 53000, 128, 1.0, device, False))
    return out
