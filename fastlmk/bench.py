"""Benchmark harness: fastlmk against pure PyTorch (and the peers a user would otherwise pick) and the
physical floor, all measured in one run (DESIGN.md 6).

An op family contributes a ``*_suites(device, quick)`` function to ``FAMILIES``; each ``Suite`` is one op at
one shape with its cases: exactly one ``fastlmk`` case, at most one ``floor`` (the memory traffic the op
cannot avoid, e.g. writing its output once) and any number of ``baseline`` cases, one of them the suite's
``reference`` for the headline speed-up. Every input is built when the suite is built, so a case's callable
times exactly the work it names.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from . import _dispatch, ops, reference
from .ops.decode import BACKENDS as DECODE_BACKENDS
from .ops.encode import BACKENDS as ENCODE_BACKENDS

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


# -------------------------------------------------------------------------------------- encoding baselines

def render_gaussian_outer(keypoints: Tensor, size: tuple[int, int], sigma: float, radius: float = 3.0) -> Tensor:
    """The best pure-PyTorch Gaussian render: a Gaussian is separable, so the (B, K, H, W) map is the outer
    product of two truncated 1-D Gaussians (B, K, H) x (B, K, W); one write of the output."""
    h, w = size

    def axis(n: int, centre: Tensor) -> Tensor:
        d = torch.arange(n, dtype=keypoints.dtype, device=keypoints.device) - centre[..., None]
        g = torch.exp(-(d * d) / (2 * sigma * sigma))
        return torch.where(d.abs() <= radius * sigma, g, torch.zeros((), dtype=g.dtype, device=g.device))

    gx, gy = axis(w, keypoints[..., 0]), axis(h, keypoints[..., 1])
    return gy[..., :, None] * gx[..., None, :]


def render_gaussian_numpy(keypoints: np.ndarray, size: tuple[int, int], sigma: float,
                          radius: float = 3.0) -> np.ndarray:
    """What dataset pipelines do (the ``draw_gaussian`` of CornerNet/HRNet, with a continuous centre): a Python
    loop over the keypoints, each writing its truncated Gaussian patch into a zeroed float32 array."""
    b, k = keypoints.shape[:2]
    h, w = size
    out = np.zeros((b, k, h, w), np.float32)
    flat = out.reshape(b * k, h, w)
    r = radius * sigma
    for n, (x, y) in enumerate(keypoints.reshape(-1, 2).tolist()):
        x0, x1 = max(math.ceil(x - r), 0), min(math.floor(x + r) + 1, w)
        y0, y1 = max(math.ceil(y - r), 0), min(math.floor(y + r) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = np.arange(x0, x1) - x
        dy = np.arange(y0, y1)[:, None] - y
        flat[n, y0:y1, x0:x1] = np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    return out


# ------------------------------------------------------------------------------------------ encoding suites

def encode_suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """render_gaussian and the fused MSE heatmap loss (forward + backward) at B=16 (4 when quick), K=98,
    64x64, sigma 2, float32, keypoints uniform in [0, 64)."""
    device = torch.device(device)
    b, k, h, w, sigma = (4 if quick else 16), 98, 64, 64, 2.0
    size = (h, w)
    shape = f"B={b}, K={k}, H=W={h}, sigma={sigma:g}, float32"
    gen = torch.Generator().manual_seed(0)
    kp = (torch.rand(b, k, 2, generator=gen) * w).to(device)
    pred = torch.rand(b, k, h, w, generator=gen).to(device).requires_grad_()
    pred_detached = pred.detach()

    render_cases = [
        Case("fastlmk", lambda: ops.render_gaussian(kp, size, sigma), "fastlmk"),
        Case("floor: torch.zeros (one write)", lambda: torch.zeros(b, k, h, w, device=device), "floor"),
        Case("torch outer-product", lambda: render_gaussian_outer(kp, size, sigma)),
        Case("torch naive 2-D", lambda: reference.render_gaussian(kp, size, sigma)),
    ]
    if device.type == "cpu":
        kp_np = kp.numpy()
        render_cases.append(Case("numpy per-keypoint loop",
                                 lambda: torch.from_numpy(render_gaussian_numpy(kp_np, size, sigma))))

    def step(loss: Callable[[], Tensor]) -> Callable[[], None]:
        """One training step's loss work: forward and backward into a fresh ``pred.grad``."""
        def fn() -> None:
            pred.grad = None
            loss().backward()
        return fn

    def mse_to(render: Callable[[Tensor, tuple[int, int], float], Tensor]) -> Callable[[], Tensor]:
        def loss() -> Tensor:
            with torch.no_grad():
                target = render(kp, size, sigma)
            return F.mse_loss(pred, target)
        return loss

    loss_cases = [
        Case("fastlmk", step(lambda: ops.heatmap_loss(pred, kp, sigma)), "fastlmk"),
        Case("floor: torch.mul (one read, one write)", lambda: torch.mul(pred_detached, 2.0), "floor"),
        Case("torch outer-product + F.mse_loss", step(mse_to(render_gaussian_outer))),
        Case("torch naive 2-D + F.mse_loss", step(mse_to(reference.render_gaussian))),
    ]

    def backend(op: str) -> str:
        return _dispatch.select(op, ENCODE_BACKENDS, device)

    return [
        Suite("render_gaussian", shape, render_cases, "torch outer-product", backend("render_gaussian"), device),
        Suite("heatmap_loss mse fwd+bwd", shape, loss_cases, "torch outer-product + F.mse_loss",
              backend("heatmap_loss"), device),
    ]


# -------------------------------------------------------------------------------------- decoding baselines

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


# ------------------------------------------------------------------------------------------ decoding suites

def decode_suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """decode (quarter, dark, topk) and soft_argmax forward + backward at B=16 (4 when quick), K=98, 64x64,
    float32, on Gaussians (sigma 2) at random sub-pixel centres plus noise. The floor of a decode is reading
    the maps once (torch.amax over each map); of soft_argmax fwd+bwd, one read and one write (torch.mul)."""
    device = torch.device(device)
    b, k, h, w = (4 if quick else 16), 98, 64, 64
    shape = f"B={b}, K={k}, H=W={h}, float32"
    gen = torch.Generator().manual_seed(0)
    kp = torch.rand(b, k, 2, generator=gen) * (w - 1)
    maps = (ops.render_gaussian(kp, (h, w), 2.0) + 0.01 * torch.rand(b, k, h, w, generator=gen)).to(device)
    logits = (4 * maps).requires_grad_()
    floor = Case("floor: torch.amax (one read)", lambda: torch.amax(maps, dim=(2, 3)), "floor")
    backend = _dispatch.select("decode", DECODE_BACKENDS, device)

    def suite(method: str, baselines: list[Case]) -> Suite:
        cases = [Case("fastlmk", lambda: ops.decode(maps, method), "fastlmk"), floor, *baselines]
        return Suite(f"decode {method}", shape, cases, baselines[0].name, backend, device)

    def fwd_bwd(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def step() -> None:
            logits.grad = None
            fn(logits).sum().backward()
        return step

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
        Suite("soft_argmax fwd+bwd", shape, soft_cases, "torch softmax expectation",
              _dispatch.select("soft_argmax", DECODE_BACKENDS, device), device),
    ]


FAMILIES: dict[str, Callable[[torch.device, bool], list[Suite]]] = {"encode": encode_suites,
                                                                    "decode": decode_suites}


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed, on CUDA, by a synchronize, for timers (pytest-benchmark) that read the host clock."""
    if torch.device(device).type != "cuda":
        return fn

    def call() -> None:
        fn()
        torch.cuda.synchronize(device)
    return call


def script(family: str, doc: str, argv: Optional[Sequence[str]] = None) -> None:
    """Command line of the ``benchmarks/bench_<family>.py`` scripts: the family's suites at full size, printed
    as a markdown table (``--markdown PATH`` also writes it)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    table = format_table(run(FAMILIES[family](device, False)), device_name(device))
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
