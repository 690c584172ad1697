"""The benchmarks' PyTorch and numpy baselines do the same work as fastlmk: equal to the reference."""

import torch

from fastlmk import bench, ops, reference


def test_render_baselines_compute_the_reference() -> None:
    kp = torch.rand(4, 98, 2) * 80 - 8  # some keypoints off the map
    ref = reference.render_gaussian(kp, (64, 64), 2.0)
    torch.testing.assert_close(bench.encode.render_gaussian_outer(kp, (64, 64), 2.0), ref, rtol=0, atol=1e-6)
    numpy = torch.from_numpy(bench.encode.render_gaussian_numpy(kp.numpy(), (64, 64), 2.0))
    torch.testing.assert_close(numpy, ref, rtol=0, atol=1e-6)


def test_decode_baselines_compute_the_reference() -> None:
    kp = torch.rand(4, 98, 2) * 63
    maps = ops.render_gaussian(kp, (64, 64), 2.0) + 0.01 * torch.rand(4, 98, 64, 64)
    for method, baseline in (("quarter", bench.decode.quarter_torch), ("dark", bench.decode.dark_torch),
                             ("topk", bench.decode.topk_torch)):
        want = reference.decode.decode(maps, method)[0]
        torch.testing.assert_close(baseline(maps), want, rtol=0, atol=1e-4)


def test_xnor_baselines_compute_the_reference() -> None:
    x, w = torch.randn(2, 70, 9, 9), torch.randn(40, 70, 3, 3)
    alpha = w.abs().mean((1, 2, 3))
    want = ops.binary_conv2d(x, ops.pack_bits(w), alpha, padding=1, backend="reference")
    assert torch.equal(bench.xnor.sign_conv_torch(x, w, alpha), want)
