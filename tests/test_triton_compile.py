"""Ahead-of-time compile gate of the Triton kernels, for GPUTarget("cuda", 90, 32) and ("cuda", 80, 32), without
a GPU.

tests/_triton_gate.py calls the launch wrappers of fastlmk.kernels.encode / .decode with small CPU tensors,
records each launch's specialisation through Triton's own binder instead of running it, and compiles every
distinct one to a cubin; it fails on a compile error, on register spills above FASTLMK_GATE_MAX_SPILL bytes
(default 64: the few bytes ptxas saves around its float64-division slow path are reported, not failed) and
on a stack frame above FASTLMK_GATE_MAX_STACK bytes (default 256). It runs in a subprocess
because the tests' TRITON_INTERPRET=1 (conftest.py) replaces JITFunction. Knobs: FASTLMK_GATE_SUBSET
(default | full | off), FASTLMK_GATE_TARGETS (90,80), FASTLMK_GATE_JOBS (all CPUs), FASTLMK_GATE_TIMEOUT,
FASTLMK_GATE_PTXAS (a second ptxas to run on each PTX, e.g. CUDA 13's); by hand:
``python tests/_triton_gate.py --help``.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GATE = Path(__file__).with_name("_triton_gate.py")


def _nvidia_backend() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        return importlib.util.find_spec("triton.backends.nvidia.compiler") is not None
    except ModuleNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not _nvidia_backend(), reason="triton (with its NVIDIA backend) not installed")


def test_parse_ptxas():
    sys.path.insert(0, str(GATE.parent))
    try:
        import _triton_gate as gate
    finally:
        sys.path.pop(0)
    log = """ptxas info    : Compiling entry function '_decode_kernel' for 'sm_90a'
ptxas info    : Function properties for _decode_kernel
    24 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 148 registers, used 1 barriers, 24 bytes cumulative stack size, 64 bytes smem
"""
    assert gate.parse_ptxas(log) == dict(registers=148, stack=24, spill_stores=12, spill_loads=16, smem=64)
    assert gate.parse_ptxas("")["registers"] is None


@pytest.mark.skipif(os.environ.get("FASTLMK_GATE_SUBSET") == "off", reason="FASTLMK_GATE_SUBSET=off")
def test_triton_compile_gate(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    report = tmp_path / "gate.json"
    limit = float(env.get("FASTLMK_GATE_TIMEOUT", 1500))
    proc = subprocess.run([sys.executable, str(GATE), "--json", str(report)], env=env, capture_output=True,
                          text=True, timeout=limit + 180)
    print(proc.stdout)  # the per-kernel resource tables (pytest -s, or the junit system-out)
    assert report.exists(), f"the gate wrote no report (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n" \
                            f"{proc.stderr[-8000:]}"
    data = json.loads(report.read_text())
    assert data["compiled"] > 0, proc.stdout[-4000:]
    failures = data["failures"]
    assert not failures, f"{len(failures)} compile-gate failures with triton {data['triton']}:\n" + "\n".join(
        failures[:60])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
