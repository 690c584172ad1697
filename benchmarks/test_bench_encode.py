"""pytest-benchmark timings of the encoding suites of fastlmk.bench (full size), one test per case, grouped by
op so pytest-benchmark compares fastlmk with its baselines and floor:

    pytest benchmarks/
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

import fastlmk
from fastlmk import bench

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SUITES = {suite.op: suite for suite in bench.encode_suites(DEVICE)}
RENDER, LOSS = "render_gaussian", "heatmap_loss mse fwd+bwd"
WARMUP = {"warmup": True, "warmup_iterations": 5}  # the first custom-op call imports torch._dynamo (~1 s)


def _case(op: str, name: str) -> Callable[[], object]:
    """The suite's callable; on CUDA followed by a synchronize, so the kernels are timed and not their launch."""
    fn = next(case.fn for case in SUITES[op].cases if case.name == name)
    if DEVICE.type != "cuda":
        return fn

    def synced() -> None:
        fn()
        torch.cuda.synchronize()
    return synced


def _names(op: str) -> list[str]:
    return [case.name for case in SUITES[op].cases]


@pytest.mark.benchmark(group=RENDER, **WARMUP)
@pytest.mark.parametrize("name", _names(RENDER))
def test_render_gaussian(benchmark, name: str) -> None:
    benchmark(_case(RENDER, name))


@pytest.mark.benchmark(group=LOSS, **WARMUP)
@pytest.mark.parametrize("name", _names(LOSS))
def test_heatmap_loss(benchmark, name: str) -> None:
    benchmark(_case(LOSS, name))


def test_baselines_compute_the_reference() -> None:
    """The baselines do the same work as fastlmk: equal to the reference render up to rounding."""
    kp = torch.rand(4, 98, 2) * 80 - 8  # some keypoints off the map
    ref = fastlmk.reference.render_gaussian(kp, (64, 64), 2.0)
    torch.testing.assert_close(bench.render_gaussian_outer(kp, (64, 64), 2.0), ref, rtol=0, atol=1e-6)
    numpy = torch.from_numpy(bench.render_gaussian_numpy(kp.numpy(), (64, 64), 2.0))
    torch.testing.assert_close(numpy, ref, rtol=0, atol=1e-6)
