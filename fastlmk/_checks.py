"""Argument validation shared by the ops: every error names the argument and is raised before any kernel runs.

Value checks (finite, positive) on tensors are done only for CPU tensors: on a GPU they would force a
host-device synchronisation inside the op.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype kernels compute in for data of ``dtype``: float64 for float64, float32 for the others."""
    return torch.float64 if dtype == torch.float64 else torch.float32

Scalar = Union[float, int]


def dtype_names(dtypes: Sequence[torch.dtype]) -> str:
    """``float32 or float64``: the accepted dtypes, for a message."""
    names = [str(d).replace("torch.", "") for d in dtypes]
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def describe(value: object) -> str:
    """``value`` as a message shows it: a Tensor by its shape, not its repr (which can be long)."""
    return f"a Tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)


def python_number(name: str, value: object, kind: str = "float") -> None:
    """A TypeError for a Tensor where the op takes a Python number: the raw ops' schemas take one, and
    reading a tensor's value would synchronise a GPU and break a torch.compile graph."""
    if isinstance(value, Tensor):
        raise TypeError(f"{name} must be a Python {kind}, got {describe(value)} (use {name}={kind}(t))")


def _dtype_error(name: str, t: Tensor, dtypes: Sequence[torch.dtype]) -> str:
    """The message for ``t`` of a dtype not in ``dtypes``, which it lists exactly."""
    names = dtype_names(dtypes)
    want = f"be {names}" if t.dtype.is_floating_point else f"have a floating dtype ({names})"
    return f"{name} must {want}, got {t.dtype}"


def floating(name: str, t: object, dtypes: Sequence[torch.dtype] = FLOATING) -> Tensor:
    """``t``, a Tensor of one of ``dtypes`` (floating ones)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(_dtype_error(name, t, dtypes))
    return t


def keypoints(t: object, name: str = "keypoints", instances: bool = False) -> tuple[int, int]:
    """(B, K, 2) keypoints, or (B, N, K, 2) (N instances per image) where ``instances``; returns (B, K).
    Non-finite keypoints are allowed (missing landmarks)."""
    floating(name, t)
    if t.dim() not in ((3, 4) if instances else (3,)) or t.shape[-1] != 2:
        want = "(B, K, 2) or (B, N, K, 2)" if instances else "(B, K, 2)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t.shape[0], t.shape[-2]


def size2(size: object, name: str = "size") -> tuple[int, int]:
    """A positive (H, W); an int means a square map."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise TypeError(f"{name} must be an int or a pair of ints (H, W), got {describe(size)}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{name} must be positive (empty spatial size), got {tuple(size)}")
    return int(size[0]), int(size[1])


def dtype(value: Optional[torch.dtype], name: str = "dtype") -> torch.dtype:
    value = torch.float32 if value is None else value
    if value not in FLOATING:
        raise TypeError(f"{name} must be one of {FLOATING}, got {value}")
    return value


def same_device(device: torch.device, **tensors: Optional[Tensor]) -> None:
    for name, t in tensors.items():
        if isinstance(t, Tensor) and t.device != device:
            raise ValueError(f"{name} is on {t.device} but the other inputs are on {device}")


def checkable(t: Tensor) -> bool:
    """Whether ``t``'s values may be checked here: a CPU tensor in eager mode (on a GPU a check would
    synchronise; under torch.compile or torch.export it would be a data-dependent branch)."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``, and no op at all when it already is: under torch.export every ``Tensor.to`` adds an
    ``_assert_tensor_metadata`` naming the tracing device, so the public functions cast only where needed."""
    return t if t.dtype == dtype else t.to(dtype)


def _refuse(name: str, t: Tensor, bad: Tensor, want: str) -> None:
    """A ValueError naming the first entry of ``t`` where ``bad`` holds, if any."""
    if bool(bad.any()):
        index = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name} must be {want}, got {t[index].item()}" + (f" at {index}" if index else ""))


def finite(name: str, t: Tensor, note: str = "") -> None:
    """Refuses a NaN or inf in ``t`` where ``checkable``; ``note`` follows "must be finite"."""
    if checkable(t):
        _refuse(name, t, ~torch.isfinite(t), "finite" + note)


def _check_values(name: str, t: Tensor, positive: bool, note: str = "") -> None:
    """Refuses a non-finite, or a non-positive (``positive``) or negative entry of ``t`` where ``checkable``."""
    if checkable(t):
        _refuse(name, t, ~torch.isfinite(t), "finite")
        _refuse(name, t, t <= 0 if positive else t < 0, ("positive" if positive else "non-negative") + note)


def per_keypoint(name: str, value: object, b: int, k: int, like: Tensor, compute: torch.dtype,
                 positive: bool = True) -> Tensor:
    """A scalar, (K,) or (B, K) parameter as a (B, K) tensor on ``like``'s device: a scalar in the compute
    dtype, a tensor as given, expanded (the raw ops make it contiguous in the compute dtype, so that an
    exported program casts nothing, as each cast there would name the tracing device)."""
    device = like.device
    if isinstance(value, Real) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value) or (value <= 0 if positive else value < 0):
            raise ValueError(f"{name} must be finite and {'positive' if positive else 'non-negative'}, got {value}")
        return like.new_full((b, k), value, dtype=compute)
    floating(name, value)
    # by rank first: comparing a (B, K) shape with (K,) would make torch.export guard B != K
    if not (value.dim() == 0 or (value.dim() == 1 and value.shape[0] == k)
            or (value.dim() == 2 and value.shape[0] == b and value.shape[1] == k)):
        raise ValueError(f"{name} must be a scalar or have shape (K,) = ({k},) or (B, K) = ({b}, {k}), "
                         f"got {tuple(value.shape)}")
    same_device(device, **{name: value})
    _check_values(name, value, positive)
    return value.expand(b, k)


def weights(value: Optional[Tensor], b: int, k: int, device: torch.device, n: Optional[int] = None) -> Optional[Tensor]:
    """Optional (B, K) per-channel weights, or (B, N, K) per instance when ``n`` is given (0 = ignore),
    checked: finite and >= 0 where ``checkable`` (the raw ops cast them and read no values)."""
    if value is None:
        return None
    floating("weights", value)
    shape, want, unit = ((b, k), "(B, K)", "a channel") if n is None else ((b, n, k), "(B, N, K)", "an instance")
    if tuple(value.shape) != shape:
        raise ValueError(f"weights must have shape {want} = {shape}, got {tuple(value.shape)}")
    same_device(device, weights=value)
    _check_values("weights", value, positive=False, note=f" (0 leaves {unit} out)")
    return value


def choice(name: str, value: object, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {describe(value)}")
    return value


def positive_float(name: str, value: object) -> float:
    python_number(name, value)
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def nonneg_float(name: str, value: object) -> float:
    python_number(name, value)
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------- raw ops
# The ops torch.ops.fastlmk.* are public. Each checks, before any kernel runs, everything its kernel reads
# (shapes, dtypes, one device) and hands the kernel contiguous buffers of the dtype it expects; the values
# themselves (a negative sigma, say) cannot make a kernel leave its buffers and are the public API's concern.

def _raw_floating(op: str, name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOATING:
        raise TypeError(f"{op}: {_dtype_error(name, t, FLOATING)}")


def raw(op: str, name: str, t: object, shape: Sequence[Optional[int]], device: torch.device,
        dtype: Optional[torch.dtype] = None) -> Tensor:
    """``t`` of ``shape`` (None: any size) on ``device``, as a contiguous tensor (of ``dtype`` when given)."""
    _raw_floating(op, name, t)
    if t.dim() != len(shape) or any(n is not None and n != m for n, m in zip(shape, t.shape)):
        want = tuple("*" if n is None else n for n in shape)
        raise ValueError(f"{op}: {name} must have shape {want}, got {tuple(t.shape)}".replace("'", ""))
    if t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the other inputs are on {device}")
    return (t if dtype is None or t.dtype == dtype else t.to(dtype)).contiguous()


def raw_optional(op: str, name: str, t: Optional[Tensor], shape: Sequence[Optional[int]], device: torch.device,
                 dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
    return None if t is None else raw(op, name, t, shape, device, dtype)


def raw_maps(op: str, name: str, t: object, rank: int = 4) -> tuple[int, ...]:
    """A floating tensor of ``rank`` dims whose last two (H, W) are non-empty; returns its shape."""
    _raw_floating(op, name, t)
    if t.dim() != rank or min(t.shape[-2:]) < 1:
        raise ValueError(f"{op}: {name} must be a {rank}-D tensor with a non-empty (H, W), got {tuple(t.shape)}")
    return tuple(t.shape)


def raw_choice(op: str, name: str, value: object, options: Sequence) -> None:
    if value not in options:
        raise ValueError(f"{op}: {name} must be one of {tuple(options)}, got {value!r}")
