"""Benchmark harness: ``Case``/``Suite`` definitions, interleaved timing and the markdown report."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tqdm import tqdm

ROLES = ("fastlmk", "floor", "baseline")
MIN_TIME = 0.3
QUICK_MIN_TIME = 0.05


# ------------------------------------------------------------------------------------------------- timing

def measure(fn: Callable[[], object], *, device: torch.device, min_time: float = MIN_TIME, min_repeats: int = 5,
            warmup: int = 3) -> float:
    """Median seconds per call of ``fn`` on ``device``: ``warmup`` untimed calls, then timed calls until they
    add up to ``min_time`` seconds and number at least ``min_repeats``. On CUDA each call is timed with
    events on the current stream, after the queue has drained."""
    for _ in range(warmup):
        fn()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times: list[float] = []
    while sum(times) < min_time or len(times) < min_repeats:
        if cuda:
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class Case:
    """One implementation of a suite's op: ``fn()`` does the work once; ``role`` is one of ``ROLES``."""

    name: str
    fn: Callable[[], object]
    role: str = "baseline"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass
class Suite:
    """One op at one shape: its cases and the name of the baseline case the headline speed-up is quoted against."""

    op: str
    shape: str
    cases: list[Case]
    reference: str
    backend: str
    device: torch.device

    def __post_init__(self) -> None:
        if len({c.name for c in self.cases}) != len(self.cases):
            raise ValueError(f"suite {self.op}: case names must be unique")
        roles = [c.role for c in self.cases]
        if roles.count("fastlmk") != 1 or roles.count("floor") > 1:
            raise ValueError(f"suite {self.op}: needs exactly one fastlmk case and at most one floor, got {roles}")
        if self.reference not in {c.name for c in self.cases if c.role == "baseline"}:
            raise ValueError(f"suite {self.op}: reference {self.reference!r} is not one of its baseline cases")


@dataclass
class Result:
    """One measured case. ``vs_fastlmk`` = time / time(fastlmk); ``vs_floor`` = time(fastlmk) / time(floor),
    on the fastlmk row only (None elsewhere, or when the suite has no floor)."""

    op: str
    shape: str
    backend: str
    case: str
    role: str
    seconds: float
    vs_fastlmk: float
    vs_floor: Optional[float]
    reference: bool


def run(suites: list[Suite], progress: bool = True, min_time: float = MIN_TIME, rounds: int = 3) -> list[Result]:
    """Measure every case of every suite in one process and return one row per case.

    The cases are measured in ``rounds`` interleaved passes of ``min_time / rounds`` seconds each and a case's
    time is the median over the passes, so a load that comes and goes (a shared machine) skews the ratios less.
    """
    samples: dict[tuple[int, str], list[float]] = {}
    total = rounds * sum(len(s.cases) for s in suites)
    with tqdm(total=total, disable=not progress, unit="case", leave=False) as bar:
        for _ in range(rounds):
            for i, suite in enumerate(suites):
                for case in suite.cases:
                    bar.set_description(f"{suite.op}: {case.name}")
                    seconds = measure(case.fn, device=suite.device, min_time=min_time / rounds)
                    samples.setdefault((i, case.name), []).append(seconds)
                    bar.update()
    timed = {key: statistics.median(times) for key, times in samples.items()}
    rows = []
    for i, suite in enumerate(suites):
        by_role = {c.role: timed[i, c.name] for c in suite.cases if c.role != "baseline"}
        ours, floor = by_role["fastlmk"], by_role.get("floor")
        for case in suite.cases:
            seconds = timed[i, case.name]
            vs_floor = ours / floor if case.role == "fastlmk" and floor is not None else None
            rows.append(Result(suite.op, suite.shape, suite.backend, case.name, case.role, seconds, seconds / ours,
                               vs_floor, case.name == suite.reference))
    return rows


# --------------------------------------------------------------------------------------------- reporting

def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model and the number of threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def format_table(rows: list[Result], device_name: str) -> str:
    """A markdown table of ``rows`` headed by the device, the torch version and the fastlmk backends, followed
    by one headline per op (speed-up over its reference baseline, distance to the floor)."""
    backends = ", ".join(sorted({r.backend for r in rows}))
    lines = [f"Device: {device_name}; torch {torch.__version__}; fastlmk backend: {backends}", ""]
    suites = dict.fromkeys((r.op, r.shape) for r in rows)
    lines += [f"- `{op}`: {shape}" for op, shape in suites] + [""]
    lines += ["| op | implementation | time (ms) | vs fastlmk | x floor |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        name = f"{r.case} (reference)" if r.reference else r.case
        name = f"**{name}**" if r.role == "fastlmk" else name
        floor = "" if r.vs_floor is None else f"{r.vs_floor:.2f}x"
        lines.append(f"| {r.op} | {name} | {r.seconds * 1e3:.3f} | {r.vs_fastlmk:.2f}x | {floor} |")
    lines.append("")
    for op, shape in suites:
        suite = [r for r in rows if (r.op, r.shape) == (op, shape)]
        ref = next(r for r in suite if r.reference)
        ours = next(r for r in suite if r.role == "fastlmk")
        floor = "" if ours.vs_floor is None else f", {ours.vs_floor:.2f}x the floor"
        lines.append(f"- `{op}`: fastlmk {ref.vs_fastlmk:.2f}x faster than {ref.case}{floor}")
    return "\n".join(lines) + "\n"


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed, on CUDA, by a synchronize, for timers (pytest-benchmark) that read the host clock."""
    if torch.device(device).type != "cuda":
        return fn

    def call() -> None:
        fn()
        torch.cuda.synchronize(device)
    return call
