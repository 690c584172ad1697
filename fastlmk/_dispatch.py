"""Backend selection, shared by every op family.

Backends: ``reference`` (pure PyTorch, always there), ``cpu`` (fastlmk._C), ``triton`` (fastlmk.kernels,
CUDA tensors) and ``cuda`` (fastlmk._cuda). ``select`` picks one by the inputs' device unless the call's
``backend=`` or the environment variable ``FASTLMK_BACKEND`` forces one. A forced backend that cannot run
is an error; only the default choice falls back to ``reference`` (with one warning) when a native
extension is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from typing import Optional, Sequence

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
    """``backend``, after checking that it is one of the op's, is available and runs on ``device``; raw ops
    call it too, since a kernel handed another device's addresses would read out of bounds."""
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

    ``supported`` lists the op's backends; ``backend`` (else $FASTLMK_BACKEND) forces one.
    """
    forced = backend or os.environ.get("FASTLMK_BACKEND") or None
    if forced is not None:
        source = "backend" if backend else "FASTLMK_BACKEND"
        if forced not in BACKENDS:
            raise ValueError(f"{source} must be one of {BACKENDS}, got {forced!r}")
        return require(op, supported, forced, device, source)
    native = "cpu" if device.type == "cpu" else next((b for b in ("triton", "cuda") if b in supported), "reference")
    if native not in supported or native == "reference":
        return "reference"
    reason = unavailable(native)
    if reason:
        _warn_fallback(op, native, reason)
        return "reference"
    return native
