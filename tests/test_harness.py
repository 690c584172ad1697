"""The benchmark harness (fastlmk.bench.harness): warm-up outside the timings, medians and p20-p80 spreads over
interleaved rounds, and a report that reads right (faster / slower, the legend, the unreliable-run warning)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fastlmk import bench
from fastlmk.bench.harness import Result

CPU = torch.device("cpu")


def test_percentile_is_numpys_linear():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 17):
        values = rng.random(n).tolist()
        for q in (0, 20, 50, 80, 100):
            assert bench.percentile(values, q) == pytest.approx(np.percentile(values, q), abs=1e-15)


def test_first_call_costs_stay_out_of_the_timings():
    """A case whose first call costs 0.3 s (torch._dynamo's import, a Triton compile) is timed at its steady
    cost; samples batch enough calls to last SAMPLE_TIME, and every round adds samples."""
    calls = []

    def slow_first() -> None:
        calls.append(None)
        time.sleep(0.3 if len(calls) == 1 else 0.001)

    suite = bench.Suite("op", "shape", [bench.Case("fastlmk", slow_first, "fastlmk"),
                                        bench.Case("ref", lambda: time.sleep(0.002))], "ref", "cpu", CPU)
    rows = bench.run([suite], progress=False, min_time=0.1, rounds=2)
    ours = next(r for r in rows if r.role == "fastlmk")
    assert 0.001 <= ours.p20 <= ours.seconds <= ours.p80 < 0.05
    calls.clear()
    assert bench.calls_per_sample(slow_first, device=CPU) >= 5  # sized on a warm call, not the first
    samples = bench.measure(lambda: time.sleep(0.002), device=CPU, seconds=0.02, number=3)
    assert len(samples) >= 3 and all(s >= 0.002 for s in samples)


def _row(case: str, role: str, seconds: float, spread: float = 0.0, ours: float = 1e-3) -> Result:
    return Result("op", "B=1", "cpu", case, role, seconds, seconds * (1 - spread / 2), seconds * (1 + spread / 2),
                  seconds / ours, 2.5 if role == "fastlmk" else None, case == "ref")


def test_report_reads_faster_and_slower_and_explains_its_columns():
    rows = [_row("fastlmk", "fastlmk", 1e-3), _row("floor", "floor", 4e-4), _row("ref", "baseline", 3e-3),
            _row("peer", "baseline", 5e-4)]
    table = bench.format_table(rows, "Test CPU; fastlmk ISA avx2; 2 threads", busy=0.05)
    assert "| op | peer | 0.5 | 0.5-0.5 | 2.00x slower |  |" in table
    assert "| op | ref (reference) | 3.00 | 3.00-3.00 | 3.00x faster |  |" in table
    assert "| op | **fastlmk** | 1.00 | 1.00-1.00 |  | 2.50x |" in table
    assert "- `op`: fastlmk 3.00x faster than ref, 2.50x the floor" in table
    assert "fastlmk ISA avx2; 2 threads" in table and "other processes used 5% of the CPUs" in table
    assert "Unreliable" not in table and "(!) |" not in table and "0.50x" not in table
    assert bench.LEGEND in table
    for column in ("`median`", "`p20-p80`", "`fastlmk is`", "`x floor`", "`(!)`"):
        assert column in bench.LEGEND


@pytest.mark.parametrize("busy, spread, why", [
    (0.6, 0.0, "the machine was busy (60% of the CPUs in use before the run)"),
    (0.0, 0.5, "1 of 2 rows spread over 20% of their median, marked (!)"),
    (None, 0.5, "1 of 2 rows spread over 20% of their median, marked (!)"),
])
def test_report_warns_when_the_figures_are_unreliable(busy, spread, why):
    rows = [_row("fastlmk", "fastlmk", 1e-3), _row("ref", "baseline", 3e-3, spread)]
    table = bench.format_table(rows, "Test CPU", busy=busy)
    assert f"**Unreliable figures**: {why}. Rerun on an idle machine" in table
    assert ("(!) |" in table) == (spread > bench.harness.UNRELIABLE_SPREAD)


def test_cpu_busy_sees_another_process():
    """A busy-looping child process shows in cpu_busy (at least a quarter of one CPU of the machine's)."""
    import os
    import subprocess
    import sys
    if bench.cpu_busy(0.05) is None:
        pytest.skip("no /proc/stat")
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        assert bench.cpu_busy(0.5) >= 0.25 / (os.cpu_count() or 1)
    finally:
        child.kill()
        child.wait()


def test_bench_help_has_the_legend(capsys):
    from fastlmk import cli
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert " ".join(bench.LEGEND.replace("`", "").split()) in out
