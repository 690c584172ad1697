"""pytest-benchmark timings of every suite of fastlmk.bench (full size), one test per case, grouped by op so
pytest-benchmark compares fastlmk with its baselines and floor:

    pytest benchmarks/ [-k decode]
"""

from __future__ import annotations

import pytest
import torch

from fastlmk import bench

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SUITES = [suite for family in bench.FAMILIES.values() for suite in family(DEVICE, False)]
CASES = [pytest.param(suite, case, id=f"{suite.op}: {case.name}",
                      marks=pytest.mark.benchmark(group=suite.op, warmup=True, warmup_iterations=5))
         for suite in SUITES for case in suite.cases]  # warm-up: the first custom-op call imports torch._dynamo


@pytest.mark.parametrize("suite, case", CASES)
def test_bench(benchmark, suite: bench.Suite, case: bench.Case) -> None:
    benchmark(bench.synchronized(case.fn, suite.device))
