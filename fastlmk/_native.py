"""Loading of the native extensions and the conventions for calling them (one keyword per field of a
kernel's argument struct, dtype and enum codes)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Optional

import torch

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def _load(name: str) -> tuple[Optional[ModuleType], Optional[str]]:
    try:
        return importlib.import_module(name), None
    except ImportError as exc:  # not built, or built for another platform
        return None, f"{type(exc).__name__}: {exc}"


cpu, cpu_error = _load("fastlmk._C")
cuda, cuda_error = _load("fastlmk._cuda")


def call(fn: str, **fields: Any) -> Any:
    """Runs the CPU kernel ``fastlmk._C.<fn>`` on the argument struct made of ``fields``: a buffer is a
    contiguous tensor or C-contiguous NumPy array (writable for an output; its data address is taken) or
    None (no buffer)."""
    return getattr(cpu, fn)(**fields)


def call_cuda(fn: str, **fields: Any) -> None:
    """``call`` for the CUDA kernels of ``fastlmk._cuda`` (which also take the caller's stream)."""
    getattr(cuda, fn)(**fields)


def code(enum: str, name: str) -> int:
    """The C++ code of ``name`` in the kernels' enum ``enum`` (fastlmk._C.ENUMS, e.g. "decode_method")."""
    if cpu is None:
        raise RuntimeError(f"fastlmk._C, which defines the kernels' codes, failed to import ({cpu_error})")
    return cpu.ENUMS[enum][name]


def dtype_code(dtype: torch.dtype) -> int:
    return _DTYPE_CODES[dtype]


# Below this many elements a kernel runs on the calling thread: waking an OpenMP team costs more than the
# work, and a second team (torch's) spinning on the same cores can stall it for milliseconds.
SERIAL_ELEMENTS = 1 << 15


def num_threads(elements: int) -> int:
    """OpenMP threads for a kernel touching ``elements`` values: as many as torch uses
    (torch.set_num_threads), or 1 for small work."""
    return 1 if elements < SERIAL_ELEMENTS else torch.get_num_threads()
