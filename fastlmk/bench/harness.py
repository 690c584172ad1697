"""Benchmark harness: ``Case``/``Suite`` definitions, interleaved timing and the markdown report."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tqdm import tqdm

ROLES = ("fastlmk", "floor", "baseline")
MIN_TIME = 0.7  # seconds of timed calls per case, all rounds together
QUICK_MIN_TIME = 0.05
ROUNDS = 7  # interleaved passes over every case
SAMPLE_TIME = 0.02  # a sample times enough back-to-back calls to last this long (timer and scheduler granularity)
UNRELIABLE_SPREAD = 0.2  # a p20-p80 spread over this fraction of the median marks a row unreliable
BUSY = 0.25  # other processes using this fraction of the CPUs just before the run mark it busy
LEGEND = """\
Columns: the cases run in 7 interleaved rounds (a load that comes and goes hits them alike), each round timing
samples of enough back-to-back calls to last 20 ms; `median` is the median over the rounds of each round's
median time per call, `p20-p80` the 20th to 80th percentile of those round medians, and `(!)` marks a row
whose spread exceeds 20% of its median (not to be quoted); `fastlmk is` compares fastlmk's median with that
row's (`3.00x faster`: the row takes 3x fastlmk's time); `x floor` is fastlmk's median over the floor's, the
time of the memory traffic the op cannot avoid (1.00x is the best possible). Before the timed rounds every
case runs untimed (first-call costs: torch._dynamo's import, Triton's compilation, allocator caches)."""


# ------------------------------------------------------------------------------------------------- timing

def calls_per_sample(fn: Callable[[], object], *, device: torch.device, sample_time: float = SAMPLE_TIME) -> int:
    """Warm ``fn`` up (two untimed calls: the first pays one-off costs) and return how many back-to-back calls
    make a sample of about ``sample_time`` seconds, from the time of a third call."""
    fn()
    fn()
    once = measure(fn, device=device, seconds=0.0, number=1)[0]
    return max(1, min(10_000, math.ceil(sample_time / max(once, 1e-7))))


def measure(fn: Callable[[], object], *, device: torch.device, seconds: float, number: int = 1) -> list[float]:
    """Seconds per call of ``fn``, one value per sample of ``number`` back-to-back calls, for samples until they
    add up to ``seconds`` (at least one sample). On CUDA a sample is timed with events on the current stream,
    after the queue has drained."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples: list[float] = []
    while not samples or sum(samples) * number < seconds:
        if cuda:
            start.record()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if cuda:
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            elapsed = time.perf_counter() - t0
        samples.append(elapsed / number)
    return samples


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated (NumPy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


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
    """One measured case: the median and the p20 / p80 of its round times (seconds per call). ``vs_fastlmk`` =
    median / median(fastlmk); ``vs_floor`` = median(fastlmk) / median(floor), on the fastlmk row only (None
    elsewhere, or when the suite has no floor)."""

    op: str
    shape: str
    backend: str
    case: str
    role: str
    seconds: float
    p20: float
    p80: float
    vs_fastlmk: float
    vs_floor: Optional[float]
    reference: bool

    @property
    def unreliable(self) -> bool:
        """Whether the p20-p80 spread exceeds ``UNRELIABLE_SPREAD`` of the median."""
        return self.p80 - self.p20 > UNRELIABLE_SPREAD * self.seconds


def run(suites: list[Suite], progress: bool = True, min_time: float = MIN_TIME, rounds: int = ROUNDS
        ) -> list[Result]:
    """Measure every case of every suite in one process and return one row per case.

    Every case is first warmed up (:func:`calls_per_sample`), then measured in ``rounds`` interleaved passes of
    ``min_time / rounds`` seconds each; a round's time is the median of its samples, and a case's row gives the
    median and the p20 / p80 of its round times.
    """
    cases = [(i, case) for i, suite in enumerate(suites) for case in suite.cases]
    per_round: dict[tuple[int, str], list[float]] = {(i, c.name): [] for i, c in cases}
    with tqdm(total=(rounds + 1) * len(cases), disable=not progress, unit="case", leave=False) as bar:
        number = {}
        for i, case in cases:
            bar.set_description(f"warm-up {suites[i].op}: {case.name}")
            number[i, case.name] = calls_per_sample(case.fn, device=suites[i].device)
            bar.update()
        for _ in range(rounds):
            for i, case in cases:
                bar.set_description(f"{suites[i].op}: {case.name}")
                samples = measure(case.fn, device=suites[i].device, seconds=min_time / rounds,
                                  number=number[i, case.name])
                per_round[i, case.name].append(statistics.median(samples))
                bar.update()
    median = {key: statistics.median(times) for key, times in per_round.items()}
    rows = []
    for i, suite in enumerate(suites):
        by_role = {c.role: median[i, c.name] for c in suite.cases if c.role != "baseline"}
        ours, floor = by_role["fastlmk"], by_role.get("floor")
        for case in suite.cases:
            times = per_round[i, case.name]
            seconds = median[i, case.name]
            vs_floor = ours / floor if case.role == "fastlmk" and floor is not None else None
            rows.append(Result(suite.op, suite.shape, suite.backend, case.name, case.role, seconds,
                               percentile(times, 20), percentile(times, 80), seconds / ours, vs_floor,
                               case.name == suite.reference))
    return rows


# --------------------------------------------------------------------------------------------- reporting

def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model, the instruction set fastlmk's CPU kernels run with and the number of
    threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .. import _native
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    isa = _native.cpu.isa() if _native.cpu is not None else "none (fastlmk._C is not built)"
    return f"{model}; fastlmk ISA {isa}; {torch.get_num_threads()} threads"


def cpu_busy(seconds: float = 0.5) -> Optional[float]:
    """The fraction of the machine's CPU time (all CPUs) that other processes used during ``seconds``: the
    non-idle time of ``/proc/stat`` less this process's own (its threads may still spin after the suites'
    setup); None where there is no /proc."""
    def ticks() -> list[int]:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    try:
        before, own = ticks(), os.times()
        time.sleep(seconds)
        after, own_after = ticks(), os.times()
    except (OSError, ValueError):
        return None
    delta = [b - a for a, b in zip(before, after)]
    if sum(delta) <= 0:
        return None
    idle = delta[3] + (delta[4] if len(delta) > 4 else 0)  # idle + iowait
    mine = (own_after.user + own_after.system - own.user - own.system) * os.sysconf("SC_CLK_TCK")
    return min(1.0, max(0.0, (sum(delta) - idle - mine) / sum(delta)))


def _speed(ratio: float) -> str:
    """``ratio`` = time(row) / time(fastlmk) as fastlmk's speed against the row."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 1e-3 else f"{seconds * 1e3:.2f}"


def format_table(rows: list[Result], device_name: str, busy: Optional[float] = None) -> str:
    """A markdown table of ``rows`` headed by the device, the torch version, the fastlmk backends and ``busy``
    (:func:`cpu_busy` just before the run), a warning when the figures are unreliable (a busy machine, or rows
    whose spread exceeds ``UNRELIABLE_SPREAD``), one headline per op (its speed against its reference
    baseline, its distance to the floor) and the legend."""
    backends = ", ".join(sorted({r.backend for r in rows}))
    header = f"Device: {device_name}; torch {torch.__version__}; fastlmk backend: {backends}"
    if busy is not None:
        header += f"; other processes used {busy:.0%} of the CPUs just before the run"
    lines = [header, ""]
    shaky = [r for r in rows if r.unreliable]
    if (busy is not None and busy > BUSY) or shaky:
        why = ([f"the machine was busy ({busy:.0%} of the CPUs in use before the run)"]
               if busy is not None and busy > BUSY else []) + \
              ([f"{len(shaky)} of {len(rows)} rows spread over {UNRELIABLE_SPREAD:.0%} of their median, marked (!)"]
               if shaky else [])
        lines += [f"**Unreliable figures**: {'; '.join(why)}. Rerun on an idle machine before quoting them.", ""]
    suites = dict.fromkeys((r.op, r.shape) for r in rows)
    lines += [f"- `{op}`: {shape}" for op, shape in suites] + [""]
    lines += ["| op | implementation | median (ms) | p20-p80 (ms) | fastlmk is | x floor |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        name = f"{r.case} (reference)" if r.reference else r.case
        name = f"**{name}**" if r.role == "fastlmk" else name
        spread = f"{_ms(r.p20)}-{_ms(r.p80)}" + (" (!)" if r.unreliable else "")
        speed = "" if r.role == "fastlmk" else _speed(r.vs_fastlmk)
        floor = "" if r.vs_floor is None else f"{r.vs_floor:.2f}x"
        lines.append(f"| {r.op} | {name} | {_ms(r.seconds)} | {spread} | {speed} | {floor} |")
    lines.append("")
    for op, shape in suites:
        suite = [r for r in rows if (r.op, r.shape) == (op, shape)]
        ref = next(r for r in suite if r.reference)
        ours = next(r for r in suite if r.role == "fastlmk")
        floor = "" if ours.vs_floor is None else f", {ours.vs_floor:.2f}x the floor"
        lines.append(f"- `{op}`: fastlmk {_speed(ref.vs_fastlmk)} than {ref.case}{floor}")
    return "\n".join(lines + ["", LEGEND]) + "\n"


def report(suites: list[Suite], device: torch.device, min_time: float = MIN_TIME, progress: bool = True) -> str:
    """:func:`run` the suites and :func:`format_table` the rows, with the machine's load taken just before."""
    busy = cpu_busy()
    return format_table(run(suites, progress=progress, min_time=min_time), device_name(device), busy)


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed, on CUDA, by a synchronize, for timers (pytest-benchmark) that read the host clock."""
    if torch.device(device).type != "cuda":
        return fn

    def call() -> None:
        fn()
        torch.cuda.synchronize(device)
    return call
