"""One small launch of every CUDA and Triton kernel, for compute-sanitizer (run by benchmarks/gpu_acceptance.sh).

    python benchmarks/gpu_sanitize_cases.py [all | CASE ...] [--device cuda|cpu] [--list]

    compute-sanitizer --tool memcheck python benchmarks/gpu_sanitize_cases.py all

Each case calls the public op with its backend forced ("cuda": csrc/*/*.cu, fastlmk._cuda; "triton": kernels/*.py)
on small inputs whose sizes are not multiples of the kernels' blocks (partial tiles, word boundaries, map
edges), then synchronises, so an out-of-bounds access or a race lands in the sanitizer's report of that case.
Every case prints ``CASE <name> ok|FAILED``; the exit status is the number of failed cases (0: all ran).

``--device cpu`` (no GPU) checks the script itself: the Triton cases then need TRITON_INTERPRET=1 (set here
when absent), and the CUDA cases run the "cpu" backend instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Callable


def _cases():
    import torch

    from fastlmk import ops

    def make(device: str, cuda: str, triton: str) -> dict[str, Callable[[], None]]:
        g = torch.Generator().manual_seed(0)

        def rand(*shape, dtype=torch.float32, scale=1.0, offset=0.0):
            return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + offset).to(dtype).to(device)

        def keypoints(b, k, h, w, dtype):
            kp = rand(b, k, 2, dtype=torch.float64) * torch.tensor([w * 1.2, h * 1.2], device=device) - 0.1 * w
            kp[0, 0] = float("nan")  # a missing landmark
            return kp.to(dtype)

        # -- CUDA --------------------------------------------------------------------------------------------
        def splat_inputs(dtype, grad=False):
            b, q, h, w = 2, 37, 19, 23
            xy = (rand(b, q, 2, dtype=torch.float64) * torch.tensor([w + 4.0, h + 4.0], device=device) - 2).to(dtype)
            depth, value = rand(b, q, dtype=dtype), rand(b, q, dtype=dtype)
            if grad:
                xy.requires_grad_(True)
                value.requires_grad_(True)
            return xy, depth, value, (h, w)

        def splat_forward():
            for dtype in (torch.float32, torch.float64):
                xy, depth, value, size = splat_inputs(dtype)
                ops.splat(xy, depth, value, size, sigma=1.3, backend=cuda)

        def splat_backward():
            for dtype in (torch.float32, torch.float64):
                xy, depth, value, size = splat_inputs(dtype, grad=True)
                img = ops.splat(xy, depth, value, size, sigma=1.3, backend=cuda)
                (img * rand(*img.shape, dtype=dtype)).sum().backward()

        def pack_bits():
            for dtype in (torch.float32, torch.float16):
                ops.pack_bits(rand(3, 70, 5, 7, dtype=dtype, offset=-0.5), backend=cuda)  # 70: 2 words
                x = rand(2, 130, 4, 6, dtype=dtype, offset=-0.5).to(memory_format=torch.channels_last)
                ops.pack_bits(x, backend=cuda)

        def binary_conv2d():
            x = rand(2, 70, 9, 11, offset=-0.5)
            for (o, k, s, p, d, groups) in ((9, 3, 1, 1, 1, 1), (66, 3, 2, 2, 2, 2), (5, 1, 1, 0, 1, 1)):
                wgt = rand(o, 70 // groups, k, k, offset=-0.5)
                wp = ops.pack_bits(wgt, backend=cuda)
                alpha = wgt.abs().mean(dim=(1, 2, 3))
                for out in ("float", "packed"):
                    ops.binary_conv2d(x, wp, alpha, stride=s, padding=p, dilation=d, groups=groups, out=out,
                                      bias=rand(o), scale=rand(o), shift=rand(o), backend=cuda)

        def binary_linear():
            for n, c, o in ((5, 130, 7), (1, 64, 65)):
                wgt = rand(o, c, offset=-0.5)
                wp = ops.pack_bits(wgt, backend=cuda)
                for out in ("float", "packed"):
                    ops.binary_linear(rand(n, c, offset=-0.5), wp, wgt.abs().mean(1), out=out, backend=cuda)

        # -- kernels/*.py (Triton) -----------------------------------------------------------------------------
        def render():
            for dtype in (torch.float32, torch.float64, torch.float16):
                kp = keypoints(2, 3, 13, 17, torch.float32)
                wts = rand(2, 3)
                ops.render_gaussian(kp, (13, 17), 1.5, weights=wts, dtype=dtype, backend=triton)
                ops.render_gaussian(kp, (13, 17), 1.5, center="rounded", dtype=dtype, backend=triton)
                ops.render_disc(kp, (13, 17), 2.0, weights=wts, dtype=dtype, backend=triton)
                ops.render_offsets(kp, (13, 17), 1.5, weights=wts, dtype=dtype, backend=triton)

        def loss_inputs(dtype, grad=False):
            pred = rand(2, 3, 13, 17, dtype=dtype)
            if grad:
                pred.requires_grad_(True)
            return pred, keypoints(2, 3, 13, 17, torch.float32), rand(2, 3)

        def loss_forward():
            for dtype in (torch.float32, torch.float64, torch.bfloat16):
                pred, kp, wts = loss_inputs(dtype)
                for kind in ("mse", "bce_logits", "awing"):
                    for reduction in ("none", "mean"):
                        ops.heatmap_loss(pred, kp, 1.5, kind=kind, weights=wts, reduction=reduction,
                                         backend=triton)

        def loss_backward():
            for dtype in (torch.float32, torch.float64, torch.bfloat16):
                for kind in ("mse", "bce_logits", "awing"):
                    for reduction in ("none", "sum"):
                        pred, kp, wts = loss_inputs(dtype, grad=True)
                        loss = ops.heatmap_loss(pred, kp, 1.5, kind=kind, weights=wts, center="rounded",
                                                reduction=reduction, backend=triton)
                        (loss.sum() if reduction == "none" else loss).backward()

        def decode():
            from fastlmk.reference.decode import MAX_BLUR, METHODS
            for dtype in (torch.float32, torch.float64, torch.float16):
                maps = rand(2, 3, 13, 17, dtype=dtype)
                maps[0, 1, 0, 0] = 2.0  # a maximum on the corner (the dark patch and windows leave the map)
                offsets = rand(2, 3, 2, 13, 17, dtype=dtype)
                affine = rand(2, 2, 3)
                for method in METHODS:
                    params = [dict()]
                    if method == "dark":
                        params = [dict(blur=3), dict(blur=11), dict(blur=MAX_BLUR)]
                    elif method == "local_softargmax":
                        params = [dict(window=1), dict(window=9)]
                    elif method == "topk":
                        params = [dict(k=1), dict(k=9), dict(k=40), dict(k=13 * 17)]
                    for p in params:
                        for aff in (None, affine):
                            ops.decode(maps, method, offsets=offsets if method == "offset" else None, affine=aff,
                                       backend=triton, **p)

        def soft_argmax_forward():
            for dtype in (torch.float32, torch.float64, torch.float16):
                for normalize in ("softmax", "relu"):
                    ops.soft_argmax(rand(2, 3, 13, 17, dtype=dtype, offset=-0.2), beta=3.0, normalize=normalize,
                                    backend=triton)

        def soft_argmax_backward():
            for dtype in (torch.float32, torch.float64, torch.float16):
                for normalize in ("softmax", "relu"):
                    maps = rand(2, 3, 13, 17, dtype=dtype, offset=-0.2).requires_grad_(True)
                    c = ops.soft_argmax(maps, beta=3.0, normalize=normalize, backend=triton)
                    (c * rand(*c.shape, dtype=c.dtype)).sum().backward()

        return dict(splat_forward=splat_forward, splat_backward=splat_backward, pack_bits=pack_bits,
                    binary_conv2d=binary_conv2d, binary_linear=binary_linear, render=render,
                    loss_forward=loss_forward, loss_backward=loss_backward, decode=decode,
                    soft_argmax_forward=soft_argmax_forward, soft_argmax_backward=soft_argmax_backward)

    return make


CASES = ("splat_forward", "splat_backward", "pack_bits", "binary_conv2d", "binary_linear",  # CUDA (csrc/*/*.cu)
         "render", "loss_forward", "loss_backward", "decode", "soft_argmax_forward", "soft_argmax_backward")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", default=["all"], help=f"'all' or any of: {', '.join(CASES)}")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="default: cuda when available, else cpu (a check of this script only)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    names = list(CASES) if "all" in args.cases else args.cases
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from: all, {', '.join(CASES)}")

    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda but torch sees no CUDA device", file=sys.stderr)
        return len(names)
    if device == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        os.environ["TRITON_INTERPRET"] = "1"
        if "triton" in sys.modules:
            print("warning: triton was imported before TRITON_INTERPRET=1 was set", file=sys.stderr)
    cuda_backend = "cuda" if device == "cuda" else "cpu"
    triton_backend = "triton"
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'no GPU'}); torch "
          f"{torch.__version__}; CUDA-extension cases on backend {cuda_backend!r}, Triton cases on "
          f"{triton_backend!r}", flush=True)
    cases = _cases()(device, cuda_backend, triton_backend)
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        try:
            cases[name]()
            if device == "cuda":
                torch.cuda.synchronize()
            print(f"CASE {name} ok ({time.perf_counter() - t0:.2f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every case runs; the failures are counted
            failed += 1
            print(f"CASE {name} FAILED ({time.perf_counter() - t0:.2f} s)", flush=True)
            traceback.print_exc()
            sys.stdout.flush()
            if device == "cuda":  # a sticky CUDA error poisons every later case: stop here
                try:
                    torch.cuda.synchronize()
                except Exception:  # noqa: BLE001
                    print("CUDA context is broken; remaining cases not run", flush=True)
                    return failed + len(names) - names.index(name) - 1
    print(f"{len(names) - failed}/{len(names)} cases ran", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(min(main(), 125))
