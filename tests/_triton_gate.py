"""Ahead-of-time compile gate for the Triton kernels (driver of tests/test_triton_compile.py; runs without a GPU).

1. Record: with ``JITFunction.run`` patched to record instead of launch, the launch wrappers of
   ``fastlmk.kernels.encode`` / ``.decode`` are called with small CPU tensors over every case of ``_cases``
   (each dtype, render kind, loss kind and reduction, decode method with and without affine and the flip
   test, flag, and the size parameters: dark blur up to MAX_BLUR, local_softargmax window up to 63, top-k k
   from 1 to H*W). Each
   launch is specialised by Triton's own binder for the target, so pointer dtypes, ``i32`` / ``i64`` /
   ``fp32`` / ``fp64`` scalars (annotations included), the ``== 1`` and divisible-by-16 integer
   specialisations and every constexpr are what a GPU launch compiles; then deduplicated. The kernels' own
   code decides what is launched, so the gate follows changes of ``kernels/*.py`` without being edited; a
   kernel of ``fastlmk.kernels`` that no case launches is a failure.
2. Compile: every distinct (kernel, specialisation, target) goes through ``triton.compile(ASTSource(...),
   target=GPUTarget("cuda", cc, 32))`` down to a cubin, in worker processes (a per-item timeout kills a
   worker with its ptxas and starts a fresh one). The ``ptxas -v`` log of that compile (Triton's own ptxas and
   flags; re-run by hand on a cache hit) gives registers, spill stores / loads and the stack frame;
   ``FASTLMK_GATE_PTXAS=/path/to/ptxas`` also runs a second ptxas (e.g. CUDA 13's on PATH) on each PTX.
   Fails on a compile error, spills above --max-spill bytes (default 64) or a stack frame above --max-stack.

Triton 3.3 to 3.9 (the ASTSource(fn, signature, constexprs, attrs) API). Must run WITHOUT
``TRITON_INTERPRET`` (the interpreter replaces JITFunction): the test starts it in a subprocess with that
variable removed. Usage::

    python tests/_triton_gate.py [--targets 90,80] [--jobs N] [--json report.json] [--subset default|full]
                                 [--item-timeout 300] [--max-stack 256] [--max-spill 64] [--list] [--only TEXT]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, Optional

MAX_STACK = 256  # bytes: the largest stack frame a specialisation may have (the gate fails above it)
# bytes of spill stores + loads a specialisation may have. Not 0: with every Triton from 3.4 to 3.9, ptxas saves
# 4 to 36 bytes of live registers in a few specialisations at 32 to 96 registers, mostly around the calls of
# its own slow-path subroutines (the float64 division ``__cuda_sm20_div_rn_f64_full``, 64-bit integer
# division; Triton 3.9's --regAllocOptLevel=2 adds a few on sm_90); a kernel that runs out of registers spills
# far more. Those are listed as WARN lines; FASTLMK_GATE_MAX_SPILL=0 fails on them too.
MAX_SPILL = 64

_FASTLMK_DTYPES = ("float32", "float64", "float16", "bfloat16")


# ---------------------------------------------------------------------------------------------- cases

SUBSETS = ("default", "full")


def _cases(subset: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """(label, call) for every launch the ops can make, by calling the kernels' own wrappers.

    The inputs mirror what fastlmk.ops passes: keypoints / params / weights / coords / offsets / affine in the
    compute dtype (float64 for float64, else float32), maps / pred / out / grad in the data dtype, contiguous.

    Shapes (B, K, H, W): MAIN (64 x 48: H*W, H and W divisible by 16, BLOCK = 1024, K = 3), and two edge
    shapes: 7 x 9 with K = 1 (no divisibility, a small BLOCK, k_per_batch = 1) and 1 x 1 (H*W = W = 1,
    BLOCK = 1). ``subset="full"`` crosses every axis (shape x dtype x kind / method x flags x size parameter).
    ``subset="default"`` (the gate) keeps every value of every axis but crosses less: MAIN x {float32,
    float64} x everything; MAIN x {float16, bfloat16} x everything, except the loss flags (center, weights,
    reduce) only all off / all on; the edge shapes x {float32, float64} x every kind / method / size
    parameter with the flags all off / all on (decode: affine and the flip test both ways).
    """
    import torch

    from fastlmk.kernels import decode as kd
    from fastlmk.kernels import encode as ke
    from fastlmk.reference.decode import MAX_BLUR, METHODS

    def cd(dt):
        return torch.float64 if dt == torch.float64 else torch.float32

    dtypes = [getattr(torch, n) for n in _FASTLMK_DTYPES]
    main, shapes = (2, 3, 64, 48), [(2, 3, 64, 48), (1, 1, 7, 9), (1, 2, 1, 1)]

    def keep(shape, dt, *flags, half_corners=False) -> bool:
        """full: everything; default: every flag combination on MAIN in float32 / float64 (for the loss with
        half-precision pred only the corners: its half types differ only in the pred / out conversions);
        the other shapes in float32 / float64 with the flags all off or all on."""
        corners = all(flags) or not any(flags)
        if subset == "full" or (shape == main and dt in (torch.float32, torch.float64)):
            return True
        if shape == main:
            return corners or not half_corners
        return dt in (torch.float32, torch.float64) and corners

    def dims(shape):
        return "x".join(map(str, shape))

    # -- encode: render (the centre rules of render_gaussian; "mmpose" and "udp" with two instances)
    for shape, dt, kind, center, has_w in itertools.product(shapes, dtypes, (0, 1, 2), (0, 1, 2, 3),
                                                            (False, True)):
        if (center and kind != 0) or not keep(shape, dt, center or kind != 0, has_w):
            continue  # only render_gaussian has a centre rule
        c = cd(dt)

        def call(shape=shape, dt=dt, kind=kind, center=center, has_w=has_w, c=c):
            b, k, h, w = shape
            lead = (b, 2, k) if center >= 2 else (b, k)
            kp = torch.rand(*lead, 2, dtype=c) * w
            prm = torch.full((b, k), 1.5, dtype=c)
            wts = torch.ones(lead, dtype=c) if has_w else None
            out = torch.empty((b, k, 2, h, w) if kind == 2 else (b, k, h, w), dtype=dt)
            ke.render(kind, kp, prm, wts, out, center, 3.0 if kind == 0 else 0.0)

        yield f"render kind={kind} {dt} center={center} weights={has_w} {dims(shape)}", call

    # -- encode: fused loss forward / backward (reduction 1 "sum" and 2 "mean" launch the same kernels);
    # centres 2 and 3 with two instances, their weights the instance weights
    for shape, dt, kind, center, has_w, red in itertools.product(shapes, dtypes, (0, 1, 2), (0, 1, 2, 3),
                                                                 (False, True), (0, 1, 2)):
        if not keep(shape, dt, center, has_w, red, half_corners=True):
            continue
        c = cd(dt)

        def inputs(shape, dt, center, has_w, c):
            b, k, h, w = shape
            lead = (b, 2, k) if center >= 2 else (b, k)
            wts = torch.ones(lead, dtype=c) if has_w else None
            channel, instance = (None, wts) if center >= 2 else (wts, None)
            return (torch.rand(b, k, h, w, dtype=dt), torch.rand(*lead, 2, dtype=c) * w,
                    torch.full((b, k), 1.5, dtype=c), channel, instance)

        def fwd(shape=shape, dt=dt, kind=kind, center=center, has_w=has_w, red=red, c=c):
            pred, kp, s, wts, iws = inputs(shape, dt, center, has_w, c)
            out = pred.new_empty(() if red else tuple(pred.shape))
            ke.heatmap_loss_forward(kind, pred, kp, s, wts, iws, center, 3.0, red, [2.1, 14.0, 1.0, 0.5], out)

        def bwd(shape=shape, dt=dt, kind=kind, center=center, has_w=has_w, red=red, c=c):
            pred, kp, s, wts, iws = inputs(shape, dt, center, has_w, c)
            grad = pred.new_ones(() if red else tuple(pred.shape))
            ke.heatmap_loss_backward(kind, pred, kp, s, wts, iws, center, 3.0, red, [2.1, 14.0, 1.0, 0.5], grad,
                                     torch.empty_like(pred))

        tag = f"kind={kind} {dt} center={center} weights={has_w} reduction={red} {dims(shape)}"
        yield f"loss_fwd {tag}", fwd
        yield f"loss_bwd {tag}", bwd

    # -- decode: every method, with and without affine; the size parameter of dark / local_softargmax / topk
    # swept (the other two at the op defaults blur=11, window=1, k=9)
    blurs = [1, 3, 11, 13, 31, MAX_BLUR]
    windows = [0, 1, 2, 7, 8, 31, 63]
    for shape, dt, method, has_aff in itertools.product(shapes, dtypes, range(len(METHODS)), (False, True)):
        if not keep(shape, dt, has_aff):
            continue
        b, k, h, w = shape
        name, hw = METHODS[method], h * w
        sweep = [dict()]
        if name == "dark":
            sweep = [dict(blur=v) for v in blurs]
        elif name == "local_softargmax":  # the op clamps the window to max(H, W) - 1
            sweep = [dict(window=v) for v in sorted({min(v, max(h, w) - 1) for v in windows})]
        elif name == "topk":  # 1 <= k <= H*W; the largest is H*W
            sweep = [dict(topk=v) for v in sorted({min(v, hw) for v in (1, 9, 32, 33, 255, hw)})]
        for extra in sweep:
            p = dict(blur=11, window=1, topk=min(9, hw))
            p.update(extra)
            c = cd(dt)

            def call(shape=shape, dt=dt, method=method, has_aff=has_aff, p=p, c=c):
                b, k, h, w = shape
                maps = torch.rand(b * k, h, w, dtype=dt)
                off = torch.rand(b * k, 2, h, w, dtype=c) if METHODS[method] == "offset" else None
                aff = torch.rand(b, 2, 3, dtype=c) if has_aff else None
                # the flags all on: the affine map and the flip test (shifted, channels reversed)
                flipped = torch.rand(b * k, h, w, dtype=dt) if has_aff else None
                foff = torch.rand(b * k, 2, h, w, dtype=c) if has_aff and off is not None else None
                index = torch.arange(k - 1, -1, -1) if has_aff else None
                kd.decode(method, maps, off, aff, k, p["blur"], p["window"], p["topk"], flipped, foff, index, has_aff,
                          torch.empty(b * k, 2, dtype=c), torch.empty(b * k, dtype=c))

            yield (f"decode {name} {dt} affine+flip={has_aff} blur={p['blur']} window={p['window']} k={p['topk']} "
                   f"{dims(shape)}"), call

    # -- soft_argmax forward / backward
    for shape, dt, relu in itertools.product(shapes, dtypes, (False, True)):
        if not keep(shape, dt):
            continue
        c = cd(dt)

        def fwd(shape=shape, dt=dt, relu=relu, c=c):  # relu with the flip test (shifted, channels reversed)
            b, k, h, w = shape
            flipped, index = (torch.rand(b * k, h, w, dtype=dt), torch.arange(k - 1, -1, -1)) if relu else (None, None)
            kd.soft_argmax_forward(torch.rand(b * k, h, w, dtype=dt), 2.0, relu, flipped, index, k, relu,
                                   torch.empty(b * k, 2, dtype=c), torch.empty(b * k, dtype=c))

        def bwd(shape=shape, dt=dt, relu=relu, c=c):
            b, k, h, w = shape
            n = b * k
            maps = torch.rand(n, h, w, dtype=dt)
            kd.soft_argmax_backward(maps, torch.rand(n, 2, dtype=c), torch.rand(n, dtype=c),
                                    torch.rand(n, 2, dtype=c), torch.rand(n, dtype=c), 2.0, relu,
                                    torch.empty_like(maps))

        tag = f"{'relu+flip' if relu else 'softmax'} {dt} {dims(shape)}"
        yield f"soft_argmax_fwd {tag}", fwd
        yield f"soft_argmax_bwd {tag}", bwd

    # -- SimCC: label rendering (both kinds, weights both ways) and the two-vector argmax; the vectors are the
    # shape's H * 4 and W bins (x longer than one block on MAIN)
    for shape, dt, kind, has_w in itertools.product(shapes, dtypes, (0, 1), (False, True)):
        if not keep(shape, dt, kind, has_w):
            continue
        c = cd(dt)

        def render(shape=shape, dt=dt, kind=kind, has_w=has_w, c=c):
            b, k, h, w = shape
            kp = torch.rand(b, k, 2, dtype=c) * w
            out_x, out_y = torch.empty(b, k, 4 * h * w, dtype=dt), torch.empty(b, k, w, dtype=dt)
            ke.render_simcc(kind, kp, torch.ones(b, k, dtype=c) if has_w else None, out_x, out_y, [2.0, 3.0],
                            [1.0, 0.5], 0.1 if kind else 0.0)

        yield f"render_simcc kind={kind} {dt} weights={has_w} {dims(shape)}", render

    for shape, dt in itertools.product(shapes, dtypes):
        if not keep(shape, dt):
            continue
        c = cd(dt)

        def simcc(shape=shape, dt=dt, c=c):
            b, k, h, w = shape
            kd.decode_simcc(torch.rand(b * k, 4 * h * w, dtype=dt), torch.rand(b * k, w, dtype=dt),
                            torch.empty(b * k, 2, dtype=c), torch.empty(b * k, dtype=c))

        yield f"decode_simcc {dt} {dims(shape)}", simcc


# ------------------------------------------------------------------------------------------- recording

def _target(cc: int):
    from triton.backends.compiler import GPUTarget
    return GPUTarget("cuda", cc, 32)


class _Spec:
    """One distinct specialisation of one kernel for one target."""

    def __init__(self, fn, cc, signature, constexprs, attrs, options, label):
        self.fn, self.cc, self.signature, self.constexprs = fn, cc, signature, constexprs
        self.attrs, self.options, self.labels = attrs, options, [label]
        self.kernel = f"{fn.__module__}.{fn.__name__}"
        self.key = repr((self.kernel, cc, sorted(signature.items()), sorted(constexprs.items(), key=repr),
                         sorted(attrs.items(), key=repr), sorted(options.items())))

    def describe(self) -> str:
        """The constexprs (by parameter name) and the non-constexpr signature, for the report."""
        names = self.fn.arg_names
        const = {(names[k[0]] if isinstance(k, tuple) and len(k) == 1 else str(k)): v
                 for k, v in self.constexprs.items()}
        sig = {k: v for k, v in self.signature.items() if v != "constexpr"}
        div = sorted(names[k[0]] for k, v in self.attrs.items()
                     if isinstance(k, tuple) and len(k) == 1 and "tt.divisibility" in repr(v))
        return (" ".join(f"{k}={_short(v)}" for k, v in const.items()) + " | "
                + ",".join(f"{k}:{v}" for k, v in sig.items()) + (f" | div16={','.join(div)}" if div else ""))


def _short(v: Any) -> str:
    s = str(v)
    return s.replace("triton.language.", "").replace("tl.", "")


def _binder_api(fn, backend):
    """Triton's own launch-time specialisation: its binder (create_function_from_signature) and packing
    (JITFunction._pack_args since 3.5; inlined in run() before, as replicated here for 3.3 / 3.4)."""
    from triton.runtime import jit as jit_mod
    binder = jit_mod.create_function_from_signature(fn.signature, fn.params, backend)

    def pack_inline(bound_args, specialization):
        from triton._utils import find_paths_if, get_iterable_path
        sigvals = [x[0] for x in specialization]
        signature = dict(zip([p.name for p in fn.params], sigvals))
        constexprs = find_paths_if(sigvals, lambda _, val: val == "constexpr")
        constexprs = {path: get_iterable_path(list(bound_args.values()), path) for path in constexprs}
        attrvals = [x[1] for x in specialization]
        attrs = find_paths_if(attrvals, lambda _, x: isinstance(x, str))
        attrs = {k: backend.parse_attr(get_iterable_path(attrvals, k)) for k in attrs}
        return signature, constexprs, attrs

    def pack(args, kwargs):
        bound_args, specialization, options = binder(*args, **kwargs)
        if hasattr(fn, "_pack_args"):
            _, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
        else:
            signature, constexprs, attrs = pack_inline(bound_args, specialization)
        return signature, constexprs, attrs, dict(options)

    return pack


def record(targets: list[int], subset: str, verbose: bool = False) -> tuple[list[_Spec], list[str]]:
    """Every distinct launch specialisation of CASES for each target (deduplicated), and the cases that
    failed before launching (a wrapper that raises is a gate failure too)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("the compile gate must run without TRITON_INTERPRET (the interpreter replaces "
                           "JITFunction)")
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction

    backends = {cc: make_backend(_target(cc)) for cc in targets}
    packers: dict = {}
    specs: dict[str, _Spec] = {}
    launches = [0]
    current = [""]

    def fake_run(self, *args, grid, warmup, **kwargs):
        launches[0] += 1
        for cc in targets:
            pk = packers.get((id(self), cc))
            if pk is None:
                pk = packers[(id(self), cc)] = _binder_api(self, backends[cc])
            signature, constexprs, attrs, options = pk(args, kwargs)
            options = {k: v for k, v in options.items() if k not in ("debug", "instrumentation_mode",
                                                                      "fpsan_homomorphic_casts")}
            spec = _Spec(self, cc, signature, constexprs, attrs, options, current[0])
            if spec.key in specs:
                specs[spec.key].labels.append(current[0])
            else:
                specs[spec.key] = spec
        return None

    patches = [(JITFunction, "run", fake_run)]
    try:  # an autotuned kernel: record every config instead of benchmarking (needs a GPU)
        from triton.runtime.autotuner import Autotuner

        def tuner_run(self, *args, **kwargs):
            for config in self.configs:
                self.fn.run(*args, **{**kwargs, **config.all_kwargs()})

        patches.append((Autotuner, "run", tuner_run))
    except ImportError:
        pass
    saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in patches]
    errors = []
    try:
        for cls, name, f in patches:
            setattr(cls, name, f)
        import torch
        torch.manual_seed(0)
        for label, call in _cases(subset):
            current[0] = label
            try:
                call()
            except Exception as e:  # noqa: BLE001 - reported as a gate failure
                errors.append(f"{label}: {type(e).__name__}: {e}")
    finally:
        for cls, name, f in saved:
            setattr(cls, name, f)
    errors += _unlaunched(JITFunction, {s.kernel for s in specs.values()})
    if verbose:
        print(f"# {launches[0]} launches, {len(specs)} distinct specialisations", file=sys.stderr)
    return list(specs.values()), errors


def _unlaunched(jit_cls, launched: set) -> list[str]:
    """Kernels of the kernel modules that no case launched: every module-level @triton.jit function that no
    other one calls is a kernel, and a kernel without a case would escape the gate."""
    import importlib
    import inspect
    import pkgutil

    import fastlmk.kernels as pkg
    jits = {}  # "module.name" -> JITFunction, over every module of fastlmk.kernels
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        mod = importlib.import_module(info.name)
        jits.update({f"{mod.__name__}.{n}": f for n, f in vars(mod).items()
                     if isinstance(f, jit_cls) and f.__module__ == mod.__name__})
    srcs = {k: getattr(f, "src", None) or inspect.getsource(f.fn) for k, f in jits.items()}
    out = []
    for k in jits:
        name = k.rsplit(".", 1)[1]
        called = any(re.search(rf"\b{re.escape(name)}\s*\(", src) for m, src in srcs.items() if m != k)
        if not called and k not in launched:
            out.append(f"{k}: a kernel that no case of tests/_triton_gate.py launches (add its launches to _cases)")
    return out


# --------------------------------------------------------------------------------------------- compile

_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "smem": re.compile(r"(\d+) bytes smem"),
}


def parse_ptxas(log: str) -> dict:
    """Resource usage from a ``ptxas -v`` log of one kernel (the maximum where several functions appear)."""
    out = {}
    for key, rx in _PTXAS_RE.items():
        vals = [int(v) for v in rx.findall(log)]
        out[key] = max(vals) if vals else None
    return out


def _triton_ptxas(cc: int) -> str:
    """The ptxas Triton uses for ``cc`` (an object with .path since 3.4, a (path, version) tuple in 3.3)."""
    from triton.backends.nvidia import compiler as nv
    try:
        tool = nv.get_ptxas(cc)
    except TypeError:
        tool = nv.get_ptxas()
    return tool[0] if isinstance(tool, tuple) else tool.path


def _sass_calls(cubin: Optional[bytes], cc: int) -> dict:
    """Subroutines the SASS calls, with counts (e.g. ``__cuda_sm20_div_rn_f64_full``: the float64 division's
    slow path, whose calls make ptxas save a few live registers to the stack). Empty when nvdisasm is absent."""
    if not cubin:
        return {}
    tool = os.path.join(os.path.dirname(_triton_ptxas(cc)), "nvdisasm")
    tool = tool if os.path.exists(tool) else shutil.which("nvdisasm")
    if not tool:
        return {}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        r = subprocess.run([tool, "-c", path], capture_output=True, text=True)
    calls: dict = {}
    for name in re.findall(r"CALL\.\S*\s+`\(([^)]+)\)", r.stdout):
        name = re.sub(r"^\$?__internal_\d+_\$", "", name)
        calls[name] = calls.get(name, 0) + 1
    return calls


def run_ptxas(ptxas: str, ptx: str, cc: int, fmad: bool = True) -> tuple[dict, str]:
    """``ptxas -v`` on ``ptx`` with Triton's flags. A ptxas older than the PTX's ``.version`` (e.g. CUDA 13.0's
    on the PTX 9.4 of a Triton bundling CUDA 13.4) gets the PTX relabelled to the version it supports
    (``ptx_version_lowered`` in the result), which holds for these kernels' instructions."""
    arch = f"sm_{cc}a" if cc >= 90 else f"sm_{cc}"
    lowered = None
    for _ in range(2):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "k.ptx")
            with open(src, "w") as f:
                f.write(ptx)
            cmd = [ptxas, "-lineinfo", "-v", *([] if fmad else ["--fmad=false"]), f"--gpu-name={arch}", src, "-o",
                   os.path.join(d, "k.cubin")]
            r = subprocess.run(cmd, capture_output=True, text=True)
        log = r.stdout + r.stderr
        m = re.search(r"Unsupported \.version (\S+); current version is '([0-9.]+)'", log)
        if r.returncode == 0 or not m or lowered:
            break
        lowered = f"{m.group(1).rstrip(';')} -> {m.group(2)}"
        ptx = re.sub(r"^\.version \S+", f".version {m.group(2)}", ptx, count=1, flags=re.M)
    if r.returncode != 0:
        raise RuntimeError(f"{os.path.basename(ptxas)} failed ({r.returncode}):\n{log[-4000:]}")
    res = parse_ptxas(log)
    if lowered:
        res["ptx_version_lowered"] = lowered
    return res, log


def compile_spec(spec: _Spec) -> dict:
    """Compiles one specialisation to a cubin; returns its ptxas resource usage and timings."""
    import triton
    from triton.compiler import ASTSource

    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    src = ASTSource(fn=spec.fn, signature=spec.signature, constexprs=spec.constexprs, attrs=spec.attrs)
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        kernel = triton.compile(src, target=_target(spec.cc), options=dict(spec.options) or None)
    seconds = time.perf_counter() - t0
    log = buf.getvalue()
    res = parse_ptxas(log)
    source = "triton"
    ptx = kernel.asm["ptx"]
    if res["registers"] is None:  # this Triton does not print its ptxas log: run its ptxas by hand
        res, log = run_ptxas(_triton_ptxas(spec.cc), ptx, spec.cc)
        source = "triton-ptxas-rerun"
    md = kernel.metadata
    get = (lambda k: md.get(k)) if isinstance(md, dict) else (lambda k: getattr(md, k, None))
    out = dict(res, ptxas=source, compile_s=round(seconds, 2), num_warps=get("num_warps"),
               shared=get("shared"), ptx_lines=ptx.count("\n"), cubin_bytes=len(kernel.asm.get("cubin", b"")))
    if (res.get("spill_stores") or 0) + (res.get("spill_loads") or 0):
        out["calls"] = _sass_calls(kernel.asm.get("cubin"), spec.cc)
    extra = os.environ.get("FASTLMK_GATE_PTXAS")
    if extra:
        try:
            out["extra"], _ = run_ptxas(extra, ptx, spec.cc)
        except Exception as e:  # noqa: BLE001
            out["extra_error"] = str(e)[-2000:]
    return out


def _worker(args) -> None:
    """Line protocol on stdin/stdout: reads a spec index, answers one JSON line."""
    specs, errors = record(args.targets, args.subset)
    print(json.dumps({"ready": _fingerprint(specs)}), flush=True)
    for line in sys.stdin:
        i = int(line)
        try:
            res = dict(ok=True, **compile_spec(specs[i]))
        except BaseException as e:  # noqa: BLE001 - every failure is reported, the worker carries on
            res = dict(ok=False, error=_describe(e))
        print(json.dumps({"index": i, **res}), flush=True)


def _describe(e: BaseException) -> str:
    """The error and its causes, innermost last (a CompilationError's cause names the failing construct)."""
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(f"{type(e).__name__}: {str(e).strip()[-2500:]}")
        e = e.__cause__ or e.__context__
    return "\n  caused by ".join(parts)[-6000:]


def _fingerprint(specs: list[_Spec]) -> str:
    return hashlib.sha256("\n".join(s.key for s in specs).encode()).hexdigest()[:16]


class _Pool:
    """Worker subprocesses that compile specs by index, each in its own process group (killed on timeout)."""

    def __init__(self, args, fingerprint: str, env: dict):
        self.args, self.fingerprint, self.env = args, fingerprint, env
        self.procs: set = set()
        self.lock = threading.Lock()
        self.stopping = False

    def kill_all(self) -> None:
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            self._kill(p)

    def _start(self):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--subset", self.args.subset,
               "--targets", ",".join(map(str, self.args.targets))]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env,
                             start_new_session=True, bufsize=1)
        with self.lock:
            if self.stopping:
                p.kill()
                raise RuntimeError("stopping")
            self.procs.add(p)
        lines: queue.Queue = queue.Queue()

        def pump():
            for ln in p.stdout:
                lines.put(ln)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        first = lines.get(timeout=300)
        if first is None:
            raise RuntimeError("compile worker died on start")
        fp = json.loads(first)["ready"]
        if fp != self.fingerprint:
            raise RuntimeError("compile worker recorded different specialisations (non-deterministic cases?)")
        return p, lines

    def _kill(self, p):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        with self.lock:
            self.procs.discard(p)

    def run(self, indices: list[int], results: dict, deadline: float, on_result) -> None:
        todo: queue.Queue = queue.Queue()
        for i in indices:
            todo.put(i)

        def loop():
            p, lines = self._start()
            try:
                while time.monotonic() < deadline and not self.stopping:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    p.stdin.write(f"{i}\n")
                    p.stdin.flush()
                    t0 = time.monotonic()
                    limit = min(self.args.item_timeout, max(1.0, deadline - t0))
                    try:
                        ln = lines.get(timeout=limit)
                    except queue.Empty:
                        ln = None
                        res = dict(ok=False, timeout=True,
                                   error=f"compile did not finish within {limit:.0f} s (killed)")
                    else:
                        res = json.loads(ln) if ln is not None else dict(ok=False, error="compile worker died")
                    if self.stopping:
                        return
                    results[i] = res
                    on_result(i, res)
                    if ln is None:  # killed or died: a fresh worker for the rest
                        self._kill(p)
                        if time.monotonic() >= deadline:
                            return
                        p, lines = self._start()
            finally:
                with contextlib.suppress(Exception):
                    p.stdin.close()
                self._kill(p)

        errors = []

        def guarded(t):
            try:
                t()
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=guarded, args=(loop,), daemon=True) for _ in range(max(1, self.args.jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]


# ---------------------------------------------------------------------------------------------- report

def _table(specs: list[_Spec], results: dict, rows: int) -> str:
    items = [(s, results[i]) for i, s in enumerate(specs) if i in results and results[i].get("ok")]
    items.sort(key=lambda sr: (-(sr[1].get("spill_stores") or 0), -(sr[1].get("stack") or 0),
                               -(sr[1].get("registers") or 0)))
    lines = [f"{'sm':>3} {'regs':>4} {'spill st/ld':>12} {'stack':>6} {'smem':>6} {'warps':>5} {'t[s]':>6}  kernel  "
             f"specialisation"]
    for s, r in items[:rows]:
        lines.append(f"{s.cc:>3} {r.get('registers') or 0:>4} {r.get('spill_stores') or 0:>5}/"
                     f"{r.get('spill_loads') or 0:<6} {r.get('stack') or 0:>6} {r.get('shared') or 0:>6} "
                     f"{r.get('num_warps') or 0:>5} {r.get('compile_s', 0):>6.1f}  {s.kernel.rsplit('.', 1)[-1]}  "
                     f"{s.describe()}  [{s.labels[0]}]")
    return "\n".join(lines)


def _per_kernel(specs: list[_Spec], results: dict) -> str:
    """Worst registers / spills / stack per (kernel, target)."""
    agg: dict = {}
    for i, s in enumerate(specs):
        r = results.get(i)
        if not r or not r.get("ok"):
            continue
        a = agg.setdefault((s.kernel.rsplit(".", 1)[-1], s.cc), dict(n=0, registers=0, spills=0, stack=0,
                                                                        compile_s=0.0, worst=""))
        a["n"] += 1
        a["registers"] = max(a["registers"], r.get("registers") or 0)
        sp = (r.get("spill_stores") or 0) + (r.get("spill_loads") or 0)
        if (sp, r.get("stack") or 0) > (a["spills"], a["stack"]):
            a["worst"] = s.labels[0]
        a["spills"] = max(a["spills"], sp)
        a["stack"] = max(a["stack"], r.get("stack") or 0)
        a["compile_s"] = max(a["compile_s"], r.get("compile_s") or 0.0)
    lines = [f"{'kernel':<26} {'sm':>3} {'specs':>5} {'max regs':>8} {'max spill B':>11} {'max stack B':>11} "
             f"{'max t[s]':>8}  worst case"]
    for (k, cc), a in sorted(agg.items()):
        lines.append(f"{k:<26} {cc:>3} {a['n']:>5} {a['registers']:>8} {a['spills']:>11} {a['stack']:>11} "
                     f"{a['compile_s']:>8.1f}  {a['worst']}")
    return "\n".join(lines)


def _cpus() -> int:
    try:
        return max(1, min(16, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(16, os.cpu_count() or 1))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=os.environ.get("FASTLMK_GATE_TARGETS", "90,80"),
                    type=lambda s: [int(v) for v in s.split(",") if v])
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("FASTLMK_GATE_JOBS", 0)) or _cpus())
    ap.add_argument("--subset", choices=SUBSETS, default=os.environ.get("FASTLMK_GATE_SUBSET", "default"))
    ap.add_argument("--item-timeout", type=float, default=float(os.environ.get("FASTLMK_GATE_ITEM_TIMEOUT", 300)))
    ap.add_argument("--total-timeout", type=float, default=float(os.environ.get("FASTLMK_GATE_TIMEOUT", 1500)))
    ap.add_argument("--max-stack", type=int, default=int(os.environ.get("FASTLMK_GATE_MAX_STACK", MAX_STACK)))
    ap.add_argument("--max-spill", type=int, default=int(os.environ.get("FASTLMK_GATE_MAX_SPILL", MAX_SPILL)),
                    help="bytes of spill stores + loads a specialisation may have (default %(default)s)")
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--list", action="store_true", help="record and list the specialisations, compile nothing")
    ap.add_argument("--only", help="compile only specialisations whose kernel or case label contains this")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    t_start = time.monotonic()
    import triton
    specs, case_errors = record(args.targets, args.subset, verbose=True)
    t_rec = time.monotonic() - t_start
    fp = _fingerprint(specs)
    print(f"triton {triton.__version__}; targets {args.targets}; subset {args.subset}; "
          f"{len(specs)} specialisations of {len({s.kernel for s in specs})} kernels recorded in {t_rec:.1f} s")
    if args.list:
        for i, s in enumerate(specs):
            print(f"{i:4d} sm{s.cc} {s.kernel.rsplit('.', 1)[-1]} {s.describe()}  x{len(s.labels)} [{s.labels[0]}]")
        for e in case_errors:
            print("FAIL:", e)
        return 1 if case_errors else 0
    indices = [i for i, s in enumerate(specs) if not args.only or args.only in s.kernel
               or any(args.only in lb for lb in s.labels)]
    # the slowest first, so that the workers finish together: decode, biggest constexprs first
    indices.sort(key=lambda i: (specs[i].kernel.endswith("_decode_kernel"),
                                sum(v for v in specs[i].constexprs.values()
                                    if isinstance(v, int) and not isinstance(v, bool))), reverse=True)

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cache = None
    if not env.get("TRITON_CACHE_DIR"):  # a fresh cache: every specialisation really compiles
        cache = tempfile.mkdtemp(prefix="fastlmk-triton-gate-")
        env["TRITON_CACHE_DIR"] = cache
    results: dict = {}
    done = [0]
    lock = threading.Lock()

    def on_result(i, r):
        with lock:
            done[0] += 1
            if not r.get("ok") or os.environ.get("FASTLMK_GATE_VERBOSE"):
                print(f"[{done[0]}/{len(indices)}] sm{specs[i].cc} {specs[i].kernel.rsplit('.', 1)[-1]} "
                      f"{'ok' if r.get('ok') else 'FAILED'} {r.get('compile_s', '')} "
                      f"{specs[i].labels[0]} {'' if r.get('ok') else r.get('error', '')[-300:]}", flush=True)

    deadline = t_start + args.total_timeout
    pool = _Pool(args, fp, env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # timeout(1) / CI cancel: the workers go too
    try:
        pool.run(indices, results, deadline, on_result)
    finally:
        pool.kill_all()
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    wall = time.monotonic() - t_start
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime

    failures = []
    for e in case_errors:
        failures.append(f"case raised before launching: {e}")
    for i in indices:
        s, r = specs[i], results.get(i)
        what = f"sm{s.cc} {s.kernel.rsplit('.', 1)[-1]} {s.describe()} [{s.labels[0]}]"
        if r is None:
            failures.append(f"not compiled (gate time limit {args.total_timeout:.0f} s): {what}")
        elif not r.get("ok"):
            failures.append(f"compile error: {what}: {r.get('error', '')[-1500:]}")
        else:
            if (r.get("spill_stores") or 0) + (r.get("spill_loads") or 0) > args.max_spill:
                failures.append(f"register spills {r['spill_stores']} B stores / {r['spill_loads']} B loads "
                                f"({r['registers']} regs): {what}")
            if (r.get("stack") or 0) > args.max_stack:
                failures.append(f"stack frame {r['stack']} B > {args.max_stack} B: {what}")
    warnings = []
    for i in indices:
        s, r = specs[i], results.get(i) or {}
        sp = (r.get("spill_stores") or 0) + (r.get("spill_loads") or 0)
        if r.get("ok") and 0 < sp <= args.max_spill:
            calls = ", ".join(f"{k} x{v}" for k, v in (r.get("calls") or {}).items()) or "no calls"
            warnings.append(f"{sp} B spilled ({r['registers']} regs, {r.get('stack') or 0} B stack; SASS calls: "
                            f"{calls}): sm{s.cc} {s.kernel.rsplit('.', 1)[-1]} [{s.labels[0]}]")
    compiled = sum(1 for i in indices if results.get(i, {}).get("ok"))
    print(f"\nper kernel (worst over its specialisations):\n{_per_kernel(specs, results)}")
    print(f"\nworst specialisations (spills, then stack, then registers):\n{_table(specs, results, args.rows)}")
    print(f"\ncompiled {compiled}/{len(indices)} specialisations ({len(indices) // max(1, len(args.targets))} per "
          f"target x {len(args.targets)} targets) with triton {triton.__version__} in {wall:.1f} s wall "
          f"({args.jobs} jobs, {cpu:.0f} s CPU in the workers); {len(failures)} failures")
    for w in warnings:
        print(f"WARN (spills within --max-spill {args.max_spill} B):", w)
    for f in failures:
        print("FAIL:", f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(triton=triton.__version__, targets=args.targets, subset=args.subset, wall_s=wall, cpu_s=cpu,
                           record_s=t_rec, jobs=args.jobs, max_stack=args.max_stack, max_spill=args.max_spill,
                           compiled=compiled,
                           failures=failures, warnings=warnings,
                           specs=[dict(kernel=s.kernel, cc=s.cc, spec=s.describe(), cases=s.labels,
                                       result=results.get(i)) for i, s in enumerate(specs) if i in indices]),
                      f, indent=1, default=str)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
