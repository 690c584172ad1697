"""Backend selection (fastlmk/_dispatch.py) and the native builds."""

import importlib
import importlib.util
import shutil
import warnings

import numpy as np
import pytest
import torch

from fastlmk import _dispatch, _native, ops
from fastlmk.reference.decode import METHODS

KP = torch.rand(1, 2, 2) * 8


def test_default_backend_is_cpu_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("FASTLMK_BACKEND", raising=False)
    assert _dispatch.select("render_gaussian", ops.encode.BACKENDS, torch.device("cpu")) == "cpu"


def test_env_var_forces_backend(monkeypatch):
    monkeypatch.setenv("FASTLMK_BACKEND", "reference")
    assert _dispatch.select("render_gaussian", ops.encode.BACKENDS, torch.device("cpu")) == "reference"
    monkeypatch.setenv("FASTLMK_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTLMK_BACKEND must be one of"):
        ops.render_gaussian(KP, 8, 1.0)


def test_forced_backend_on_wrong_device(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="cannot run fastlmk.render_gaussian on cpu tensors"):
        ops.render_gaussian(KP, 8, 1.0, backend="triton")


def test_unavailable_forced_backend_is_an_error(monkeypatch):
    monkeypatch.setattr(_native, "cpu_error", "ImportError: simulated")
    with pytest.raises(RuntimeError, match="fastlmk._C failed to import"):
        ops.render_gaussian(KP, 8, 1.0, backend="cpu")


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    monkeypatch.delenv("FASTLMK_BACKEND", raising=False)
    monkeypatch.setattr(_native, "cpu_error", "ImportError: simulated")
    _dispatch._warn_fallback.cache_clear()
    with pytest.warns(UserWarning, match="using 'reference'"):
        out = ops.render_gaussian(KP, 8, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.render_gaussian(KP, 8, 1.0)  # warned once only
    torch.testing.assert_close(out, ops.render_gaussian(KP, 8, 1.0, backend="reference"))


def test_cpu_extension_built_with_isa_dispatch():
    assert _native.cpu is not None, _native.cpu_error
    assert _native.cpu.isa() in ("avx512", "avx2", "scalar")
    assert _native.cpu.isa_supported("scalar")
    with pytest.raises(ValueError, match="isa must be"):
        _native.cpu.set_isa("sse9")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed: fastlmk._cuda is not built")
def test_cuda_extension_builds_and_imports_without_gpu():
    assert _native.cuda is not None, _native.cuda_error
    assert _native.cuda.runtime_version() >= 12000
    assert _native.cuda.device_count() == torch.cuda.device_count()


def test_ops_dispatch_on_the_inputs_device_and_name_no_backend():
    """One schema per op, without a backend; the CPU kernel runs for CPU tensors, and a device without a
    kernel gets a clear error."""
    for name in ("decode", "soft_argmax", "soft_argmax_backward", "render_gaussian", "render_disc", "render_offsets",
                 "heatmap_loss", "heatmap_loss_backward", "splat", "splat_backward", "pack_bits", "binary_conv2d"):
        schema = str(getattr(torch.ops.fastlmk, name).default._schema)
        assert "backend" not in schema, schema
    maps = torch.rand(1, 2, 5, 6)
    torch.testing.assert_close(torch.ops.fastlmk.decode(maps, None, None, "quarter", 11, 1, 9),
                               ops.decode(maps, "quarter", backend="reference"))
    with pytest.raises(NotImplementedError, match="has kernels for CPU and CUDA tensors, not meta"):
        torch.ops.fastlmk.decode.default.redispatch(
            torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd), maps.to("meta"), None, None,
            "argmax", 11, 1, 9)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with _dispatch.kernel("triton"):
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            torch.ops.fastlmk.decode(torch.rand(1, 1, 4, 4), None, None, "argmax", 11, 1, 9)


def test_enum_codes_come_from_the_cpu_extension():
    codes = _native.cpu.ENUMS
    assert list(codes["decode_method"]) == list(METHODS)
    assert list(codes["loss_kind"]) == list(ops.encode.LOSS_KINDS)
    assert list(codes["reduction"]) == list(ops.encode.REDUCTIONS)
    assert sorted(codes["render_kind"].values()) == [0, 1, 2]
    with pytest.raises(TypeError, match=r"render\(\): missing field 'kp'"):
        _native.cpu.render(kind=0)


def test_kernel_buffers_may_be_numpy_arrays_but_never_strided_or_read_only():
    """A buffer field takes a C-contiguous NumPy array (writable for an output) as well as a tensor."""
    kp, vis, weights = np.full((1, 2, 2), 8.0, np.float32), np.ones((1, 2), np.float32), np.empty((1, 2), np.float32)
    maps = np.empty((2, 4, 6), np.float32)
    fields = dict(kp=kp, visible=vis, visible_dtype=0, weights=weights, n=1, k=2, nthreads=1, heatmaps=maps, h=4,
                  w=6, scale=[4.0, 4.0], sigma=1.0, center=_native.code("center", "mmpose"))
    _native.call("encode_heatmap_codec", **fields)
    assert maps[:, 2, 2].tolist() == [1.0, 1.0] and weights.tolist() == [[1.0, 1.0]]
    read_only = np.empty_like(maps)
    read_only.flags.writeable = False
    with pytest.raises((ValueError, BufferError), match="read-only|not writable"):
        _native.call("encode_heatmap_codec", **{**fields, "heatmaps": read_only})
    with pytest.raises((ValueError, BufferError), match="contiguous"):
        _native.call("encode_heatmap_codec", **{**fields, "kp": np.full((1, 2, 4), 8.0, np.float32)[..., ::2]})


def test_onnx_export_traces_the_reference(monkeypatch):
    monkeypatch.delenv("FASTLMK_BACKEND", raising=False)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert _dispatch.select("decode", ops.encode.BACKENDS, torch.device("cpu")) == "reference"
    assert _dispatch.select("decode", ops.encode.BACKENDS, torch.device("cpu"), "cpu") == "cpu"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_backend_runs_the_triton_kernels_forward_and_backward(monkeypatch):
    """backend="triton" on CPU tensors reaches the Triton kernels (not the CPU ones), and the backward, which
    autograd runs outside the call, does too; the default backend does not."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    kd = importlib.import_module("fastlmk.kernels.decode")
    calls = []
    for name in ("decode", "soft_argmax_forward", "soft_argmax_backward"):
        real = getattr(kd, name)
        monkeypatch.setattr(kd, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    maps = torch.rand(1, 2, 5, 6, requires_grad=True)
    ops.decode(maps, backend="triton")
    ops.soft_argmax(maps, backend="triton").sum().backward()
    assert calls == ["decode", "soft_argmax_forward", "soft_argmax_backward"]
    ops.decode(maps)
    ops.soft_argmax(maps).sum().backward()
    assert len(calls) == 3
