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
