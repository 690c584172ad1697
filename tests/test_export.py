"""Deployment: every public op under torch.export (dynamic batch, no device in the graph, the program run on
other batch sizes and, with a GPU, on CUDA tensors), the decomposition of every raw op to its reference
formula, and the decoder modules and a trained FAN in ONNX, run by onnxruntime (the `onnx` extra; skipped
without it)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fastlmk import export, nn as fnn, ops
from fastlmk.reference.decode import METHODS

from conftest import HAS_CUDA

BATCH = torch.export.Dim.DYNAMIC  # the batch of every op, traced symbolically


def _cases(gen):
    """(name, function, batched args, fixed args) per public op: the batched arguments' first dimension is
    the batch (dynamic in the export), the fixed ones (weights) follow them."""
    maps = torch.randn(3, 4, 12, 10, generator=gen)
    kp = torch.rand(3, 4, 2, generator=gen) * 10
    w = torch.rand(3, 4, generator=gen)
    xy, depth, value = torch.rand(3, 30, 2, generator=gen) * 12, torch.rand(3, 30, generator=gen), \
        torch.rand(3, 30, generator=gen)
    x = torch.randn(3, 70, 6, 5, generator=gen)
    weight = torch.randn(8, 70, 3, 3, generator=gen)
    pw, alpha = ops.pack_bits(weight), weight.abs().mean((1, 2, 3))
    cases = [(f"decode-{m}", lambda t, m=m: ops.decode(t, m, blur=5, window=2, k=5), (maps,), ())
             for m in METHODS if m != "offset"]
    cases += [
        ("decode-offset-affine", lambda t, o, a: ops.decode(t, "offset", offsets=o, affine=a),
         (maps, torch.randn(3, 4, 2, 12, 10, generator=gen), torch.randn(3, 2, 3, generator=gen)), ()),
        ("decode_hih", lambda i, d: ops.decode_hih(i, d, convention="unbiased"),
         (maps, torch.randn(3, 4, 8, 8, generator=gen)), ()),
        ("soft_argmax", lambda t: ops.soft_argmax(t, beta=2.0), (maps,), ()),
        ("render_gaussian", lambda k, w: ops.render_gaussian(k, (12, 10), 1.5, weights=w), (kp, w), ()),
        ("render_gaussian-casts", lambda k, s: ops.render_gaussian(k, (12, 10), s, dtype=torch.float16),
         (kp.double(), w.double() + 0.5), ()),  # keypoints and sigma cast to the compute dtype by the op
        ("render_disc", lambda k: ops.render_disc(k, (12, 10), 2.0), (kp,), ()),
        ("render_offsets", lambda k: ops.render_offsets(k, (12, 10)), (kp,), ()),
        ("encode_hih", lambda k: ops.encode_hih(k, (12, 10)), (kp,), ()),
        ("heatmap_loss", lambda p, k, w: ops.heatmap_loss(p, k, 1.5, weights=w, kind="awing"), (maps, kp, w), ()),
        ("heatmap_loss-casts", lambda p, k, w: ops.heatmap_loss(p, k, w + 0.5, weights=w),
         (maps.half(), kp.double(), w.double()), ()),
        ("splat", lambda a, b, c: ops.splat(a, b, c, (12, 10)), (xy, depth, value), ()),
        ("pack_bits", lambda t: ops.pack_bits(t), (x,), ()),
        ("binary_conv2d", lambda t, w, a: ops.binary_conv2d(t, w, a, padding=1), (x,), (pw, alpha)),
        ("binary_linear", lambda t, w, a: ops.binary_linear(t, w, a), (x[:, :, 0, 0],), (pw[:, 0, 0], alpha)),
    ]
    return cases


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _rebatch(args, n, gen):
    """The batched arguments with batch size n: the examples' rows repeated, fresh values added."""
    out = []
    for a in args:
        rows = a.repeat((n + a.shape[0] - 1) // a.shape[0], *([1] * (a.dim() - 1)))[:n]
        if rows.is_floating_point():
            rows = rows + 0.25 * torch.rand(rows.shape, generator=gen, dtype=rows.dtype)
        out.append(rows)
    return out


def _names_a_device(ep) -> list[str]:
    """The program's nodes that carry a device argument."""
    return [node.format_node() for node in ep.graph.nodes
            if "device" in node.kwargs or any(isinstance(v, torch.device) for v in node.args)]


def _export(fn, batched, fixed):
    dims = (*({0: BATCH} for _ in batched), *(None for _ in fixed))
    return torch.export.export(_Fn(fn), (*batched, *fixed), dynamic_shapes=(dims,))


def test_every_public_op_exports_device_free_with_a_dynamic_batch(gen):
    for name, fn, batched, fixed in _cases(gen):
        ep = _export(fn, batched, fixed)
        assert not _names_a_device(ep), (name, _names_a_device(ep))
        assert not ep.constants, (name, list(ep.constants))
        targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
        assert any(getattr(t, "namespace", None) == "fastlmk" for t in targets), name  # the fused kernel, kept
        for n in (1, 4, 5):  # 4 = K: no guard may tell the batch from another size
            new = _rebatch(batched, n, gen)
            torch.testing.assert_close(ep.module()(*new, *fixed), fn(*new, *fixed), msg=lambda m: f"{name}: {m}")


def test_random_and_pure_pytorch_ops_export_device_free(gen):
    """The functions whose result is random (so not compared) or that run no kernel: still no device in the
    graph (all but unpack_bits, the pure-PyTorch inverse of pack_bits kept for tests and debugging)."""
    kp = torch.rand(3, 4, 2, generator=gen) * 10
    for name, fn, batched in (("encode_h3r", lambda k: ops.encode_h3r(k, (12, 10), target="gaussian"), (kp,)),
                              ("randomized_round", ops.randomized_round, (kp,)),
                              ("hih_centers", lambda k: ops.hih_centers(k, (8, 8), "unbiased"), (kp,))):
        ep = _export(fn, batched, ())
        assert not _names_a_device(ep) and not ep.constants, (name, _names_a_device(ep))
        got = ep.module()(*_rebatch(batched, 5, gen))
        assert all(t.shape[0] == 5 for t in (got if isinstance(got, tuple) else (got,))), name


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_a_program_exported_on_cpu_runs_on_cuda(gen):
    for name, fn, batched, fixed in _cases(gen):
        ep = _export(fn, batched, fixed)
        args = [a.cuda() for a in (*_rebatch(batched, 4, gen), *fixed)]
        got, want = ep.module()(*args), fn(*args)
        torch.testing.assert_close(got, want, msg=lambda m: f"{name}: {m}", rtol=1e-4, atol=1e-4)


def test_decompositions_replace_every_fastlmk_op(gen):
    """After run_decompositions(export.decompositions()) the program holds aten ops only and computes what
    the op computes (its reference formula)."""
    registered = {name for name in dir(torch.ops.fastlmk)
                  if isinstance(getattr(torch.ops.fastlmk, name), torch._ops.OpOverloadPacket)}
    assert set(export.OPS) == registered
    for name, fn, batched, fixed in _cases(gen):
        ep = _export(fn, batched, fixed).run_decompositions(export.decompositions())
        left = [n for n in ep.graph.nodes if getattr(n.target, "namespace", None) == "fastlmk"]
        assert not left, (name, left)
        new = _rebatch(batched, 4, gen)
        got, want = ep.module()(*new, *fixed), fn(*new, *fixed)
        for g, w in zip(*(t if isinstance(t, tuple) else (t,) for t in (got, want))):
            tol = 1e-3 if w.dtype == torch.float16 else 1e-4  # a float16 result may round the other way: one ulp
            torch.testing.assert_close(g, w, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")


# ------------------------------------------------------------------------------------------------------ ONNX

def _ort():
    pytest.importorskip("onnxscript", reason="the onnx extra (pip install '.[onnx]') is not installed")
    return pytest.importorskip("onnxruntime", reason="the onnx extra (pip install '.[onnx]') is not installed")


def _run(program, path: Path, *inputs):
    rt = _ort()
    program.save(str(path))
    session = rt.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(a) for a in session.run(None, feeds)]


def _peaked_maps(b, k, h, w, gen):
    """Gaussian bumps at random sub-pixel positions plus noise: distinct maxima, no ties."""
    centre = torch.rand(b, k, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    maps = ops.render_gaussian(centre, (h, w), 1.5, radius=10.0)
    return maps + 0.01 * torch.rand(b, k, h, w, generator=gen)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "offset"])
def test_keypoint_decoder_in_onnxruntime_equals_decode(method, gen, tmp_path):
    _ort()
    decoder = fnn.KeypointDecoder(method, blur=7, window=2, k=9)
    maps = _peaked_maps(2, 5, 24, 20, gen)
    affine = torch.tensor([[4.0, 0.0, 1.5], [0.0, 4.0, 1.5]]).expand(2, 2, 3).contiguous()
    program = export.to_onnx(decoder, (maps, affine))
    assert not {n.domain for n in program.model_proto.graph.node} - {"", "ai.onnx"}  # standard operators only
    new_maps, new_affine = _peaked_maps(5, 5, 24, 20, gen), affine[:1].expand(5, 2, 3).contiguous()
    coords, scores = _run(program, tmp_path / "decoder.onnx", new_maps, new_affine)
    want_coords, want_scores = ops.decode(new_maps, method, blur=7, window=2, k=9, affine=new_affine)
    assert (coords - want_coords).abs().max() <= 1e-4 * 4  # 1e-4 heatmap pixels, times the affine's scale
    torch.testing.assert_close(scores, want_scores)


def test_plain_torch_onnx_export_of_the_decoders(gen, tmp_path):
    """torch.onnx.export(..., dynamo=True) itself: the ops trace their reference formulas."""
    _ort()
    maps, decimal = _peaked_maps(2, 3, 16, 16, gen), _peaked_maps(2, 3, 8, 8, gen)
    for module, args, want in (
            (fnn.KeypointDecoder("dark", blur=5), (maps,), ops.decode(maps, "dark", blur=5)[0]),
            (fnn.SoftArgmax(beta=3.0), (maps,), ops.soft_argmax(maps, beta=3.0)),
            (fnn.HIHDecoder("unbiased"), (maps, decimal), ops.decode_hih(maps, decimal, convention="unbiased")[0])):
        program = torch.onnx.export(module.eval(), args, dynamo=True, verbose=False)
        got = _run(program, tmp_path / "m.onnx", *args)[0]
        assert (got - want).abs().max() <= 1e-4, type(module).__name__


def test_soft_argmax_and_hih_decoders_in_onnxruntime(gen, tmp_path):
    """Soft-argmax on 64x64 maps (the exported graph sums in float64, so only the kernel's float32 error is
    left) and HIH."""
    _ort()
    maps, decimal = _peaked_maps(2, 17, 64, 64, gen), _peaked_maps(2, 3, 8, 8, gen)
    for normalize in ("softmax", "relu"):
        program = export.to_onnx(fnn.SoftArgmax(2.0, normalize), (maps,))
        new = _peaked_maps(4, 17, 64, 64, gen)
        got = _run(program, tmp_path / "s.onnx", new)[0]
        assert (got - ops.soft_argmax(new, beta=2.0, normalize=normalize)).abs().max() <= 1e-4
    for convention in ("paper", "unbiased"):
        program = export.to_onnx(fnn.HIHDecoder(convention), (maps[:, :3], decimal))
        new, new_decimal = _peaked_maps(3, 3, 64, 64, gen), _peaked_maps(3, 3, 8, 8, gen)
        coords, scores = _run(program, tmp_path / "h.onnx", new, new_decimal)
        want = ops.decode_hih(new, new_decimal, convention=convention)
        assert (coords - want[0]).abs().max() <= 1e-4
        torch.testing.assert_close(scores, want[1])


def test_decoder_modules_check_their_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        fnn.KeypointDecoder("centroid")
    with pytest.raises(ValueError, match="offset"):
        fnn.KeypointDecoder("offset")
    with pytest.raises(ValueError, match="blur must be an odd"):
        fnn.KeypointDecoder("dark", blur=4)
    with pytest.raises(ValueError, match="convention must be one of"):
        fnn.HIHDecoder("rounded")
    with pytest.raises(ValueError, match="beta must be"):
        fnn.SoftArgmax(beta=-1.0)
    assert "method='dark'" in repr(fnn.KeypointDecoder("dark"))


def test_trained_fan_exported_end_to_end_gives_the_same_nme(tmp_path, capsys):
    """fastlmk export of a trained FAN: onnxruntime on the synthetic test faces gives eager's landmarks
    (within 1e-3 input px = 2.5e-4 heatmap px) and the same NME."""
    _ort()
    from fastlmk import metrics
    from fastlmk.cli import main
    from fastlmk.data import open_dataset
    from fastlmk.models.train import TrainConfig, train

    train(TrainConfig(model="fan", data="synthetic:32,16", out=str(tmp_path), epochs=1, batch_size=8, input_size=64,
                      model_args=dict(channels=16, depth=2), progress=False, lr=2e-3, limit_val=8))
    out = tmp_path / "fan.onnx"
    assert main(["export", str(tmp_path / "best.pt"), str(out)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    from fastlmk.models.evaluation import load_checkpoint
    model, _ = load_checkpoint(tmp_path / "best.pt")
    test = open_dataset("synthetic:32,16", "test", size=64)
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    landmarks = torch.stack([test[i]["landmarks"] for i in range(len(test))])
    rt = _ort()
    session = rt.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    with torch.no_grad():
        want = model.predict(model(images))[model.decoders[0]]
    assert (got - want).abs().max() <= 1e-3
    nme_onnx, nme_eager = (float(metrics.nme(p.double(), landmarks.double(), norm="inter_ocular")) for p in (got, want))
    assert math.isclose(nme_onnx, nme_eager, rel_tol=1e-4), (nme_onnx, nme_eager)


def test_export_command_errors_name_the_problem(tmp_path, capsys):
    _ort()
    from fastlmk.cli import main
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "out.onnx")])
    assert "fastlmk export: error: no checkpoint at" in capsys.readouterr().err
