"""Triton helpers shared by the kernel families."""

import triton
import triton.language as tl

from fastlmk import _native


def enum(table: str, *names: str) -> tuple[tl.constexpr, ...]:
    """The codes of ``names`` in the C++ enum ``table`` (fastlmk._C.ENUMS), as constants kernels compare with."""
    return tuple(tl.constexpr(_native.code(table, name)) for name in names)


@triton.jit
def scalar(value, COMPUTE: tl.constexpr):
    """A float argument annotated ``tl.float64`` in the compute dtype. Without the annotation a Python float
    reaches a compiled kernel as float32, and a plain ``.to`` fails under the interpreter, which passes the
    float itself: adding it to a typed zero works in both."""
    return (tl.zeros([], COMPUTE) + value).to(COMPUTE)
