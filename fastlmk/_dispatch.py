"""Backend selection and kernel registration, shared by every op family.

Each op ``torch.ops.fastlmk.X`` has one schema and a kernel per device type (``register``): ``fastlmk._C``
for CPU tensors, Triton or ``fastlmk._cuda`` for CUDA tensors, so the op dispatches on its inputs' device
like any aten op and a captured graph names no backend. The public functions (fastlmk.ops) add a choice on
top: ``select`` picks ``reference`` (the pure-PyTorch code, called directly), ``cpu``, ``triton`` or
``cuda`` by the inputs' device unless the call's ``backend=`` or the environment variable
``FASTLMK_BACKEND`` forces one. A forced backend that cannot run is an error; only the default choice falls
back to ``reference`` (with one warning) when a native extension is missing, and an ONNX export traces the
reference (standard operators only). ``backend="triton"`` on CPU tensors (TRITON_INTERPRET=1, for the
tests) runs the op's CPU kernel inside ``kernel("triton")``, which hands the call to the Triton kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
import warnings
from typing import Callable, ContextManager, Optional, Sequence

import torch

from . import _native

BACKENDS = ("reference", "cpu", "triton", "cuda")


def triton_interpret() -> bool:
    """Triton's interpreter runs kernels on CPU tensors (TRITON_INTERPRET=1); used to test them without a GPU."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _triton_error() -> Optional[str]:
    if importlib.util.find_spec("triton") is None:
        return "the 'triton' package is not installed (pip install triton)"
    if _native.cpu_error:  # the Triton kernels take their enum codes from it
        return f"fastlmk._C failed to import ({_native.cpu_error})"
    return None


def unavailable(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run in this process, or None when it can."""
    if backend == "cpu":
        return _native.cpu_error and f"fastlmk._C failed to import ({_native.cpu_error})"
    if backend == "cuda":
        return _native.cuda_error and f"fastlmk._cuda is not available ({_native.cuda_error})"
    if backend == "triton":
        return _triton_error()
    return None


def _runs_on(backend: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend == "cpu":
        return device.type == "cpu"
    if backend == "triton":
        return device.type == "cuda" or (device.type == "cpu" and triton_interpret())
    return device.type == "cuda"


@functools.lru_cache(maxsize=None)
def _warn_fallback(op: str, wanted: str, reason: str) -> None:
    warnings.warn(f"fastlmk.{op}: backend '{wanted}' unavailable ({reason}); using 'reference'", stacklevel=4)


def require(op: str, supported: Sequence[str], backend: str, device: torch.device, source: str = "backend") -> str:
    """``backend``, after checking that it is one of the op's, is available and runs on ``device``."""
    if backend not in supported:
        raise ValueError(f"{source}={backend!r}: fastlmk.{op} has backends {tuple(supported)}")
    reason = unavailable(backend)
    if reason:
        raise RuntimeError(f"{source}={backend!r} requested for fastlmk.{op} but {reason}")
    if not _runs_on(backend, device):
        hint = " (set TRITON_INTERPRET=1 to run Triton on the CPU)" if backend == "triton" else ""
        raise ValueError(f"{source}={backend!r} cannot run fastlmk.{op} on {device.type} tensors{hint}")
    return backend


def select(op: str, supported: Sequence[str], device: torch.device, backend: Optional[str] = None) -> str:
    """The backend that runs ``op`` for inputs on ``device``.

    ``supported`` lists the op's backends; ``backend`` (else $FASTLMK_BACKEND) forces one. Under
    ``torch.onnx.export`` the default is ``reference``, whose formulas use standard ONNX operators only.
    """
    forced = backend or os.environ.get("FASTLMK_BACKEND") or None
    if forced is not None:
        source = "backend" if backend else "FASTLMK_BACKEND"
        if forced not in BACKENDS:
            raise ValueError(f"{source} must be one of {BACKENDS}, got {forced!r}")
        return require(op, supported, forced, device, source)
    if torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export():
        return "reference"
    native = "cpu" if device.type == "cpu" else next((b for b in ("triton", "cuda") if b in supported), "reference")
    if native not in supported or native == "reference":
        return "reference"
    reason = unavailable(native)
    if reason:
        _warn_fallback(op, native, reason)
        return "reference"
    return native


# ------------------------------------------------------------------------------------ kernel registration

_triton_on_cpu = contextvars.ContextVar("fastlmk_triton_on_cpu", default=False)


@contextlib.contextmanager
def _running_triton_on_cpu(enabled: bool):
    token = _triton_on_cpu.set(enabled)
    try:
        yield
    finally:
        _triton_on_cpu.reset(token)


_NATIVE = contextlib.nullcontext()


def kernel(backend: str) -> ContextManager:
    """The context an op call runs in for ``backend`` (from ``select``): inside ``kernel("triton")`` the CPU
    kernels of the Triton ops run their Triton kernel instead (interpreted); any other backend needs none."""
    return _running_triton_on_cpu(True) if backend == "triton" else _NATIVE


def current() -> str:
    """The backend of the ``kernel`` context this call runs in ("triton", or "native" outside one); autograd
    saves it, and the backward runs in ``kernel(saved)`` (possibly on another thread)."""
    return "triton" if _triton_on_cpu.get() else "native"


def register(op, cpu: Callable, cuda: Callable, triton: bool) -> None:
    """Register ``op``'s kernels by device type: ``cpu`` for CPU tensors, ``cuda`` for CUDA tensors. With
    ``triton`` (``cuda`` is the Triton kernel), the CPU kernel hands calls made inside ``kernel("triton")``
    to it, which Triton's interpreter runs on CPU tensors."""
    if triton:
        def on_cpu(*args):
            if not _triton_on_cpu.get():
                return cpu(*args)
            if not triton_interpret():
                raise RuntimeError(f"{op._name}: Triton kernels run on CPU tensors only with TRITON_INTERPRET=1")
            return cuda(*args)
        op.register_kernel("cpu")(on_cpu)
    else:
        op.register_kernel("cpu")(cpu)
    op.register_kernel("cuda")(cuda)


def no_kernel(op: str, t: torch.Tensor) -> NotImplementedError:
    """The error of an op's schema function, which runs only for a device type without a kernel."""
    return NotImplementedError(f"fastlmk.{op} has kernels for CPU and CUDA tensors, not {t.device.type}")
