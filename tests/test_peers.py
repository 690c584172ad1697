"""fastlmk.codecs, fastlmk.compat and the NumPy transcription of mmpose's loops against the real packages:
mmpose 1.3, face-alignment 1.5 and kornia 0.9, each test skipped when its package is not importable.

They install without their heavy dependencies (tests/README.md, "Against the real packages"); run
``python tests/test_peers.py`` for the table of the largest differences per class and option.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlmk import codecs, compat
from fastlmk.bench import mmpose_numpy
from test_codecs import _keypoints, _to_decode  # the same inputs as the tests against mmpose's formulas

try:
    import mmpose.codecs as mmpose_codecs
except ImportError:  # the mmpose tests skip
    mmpose_codecs = None
needs_mmpose = pytest.mark.skipif(mmpose_codecs is None, reason="mmpose is not importable")

SIZES = [((192, 256), (48, 64)), ((256, 256), (64, 64)), ((100, 70), (25, 35))]
OPTIONS = [
    ("MSRAHeatmap", dict(sigma=2.0)), ("MSRAHeatmap", dict(sigma=1.5)), ("MSRAHeatmap", dict(sigma=1.1)),
    ("MSRAHeatmap", dict(sigma=2.0, unbiased=True)), ("MSRAHeatmap", dict(sigma=3.0, unbiased=True, blur_kernel_size=17)),
    ("MSRAHeatmap", dict(sigma=1.0, unbiased=True, blur_kernel_size=5)),
    ("UDPHeatmap", dict(sigma=2.0)), ("UDPHeatmap", dict(sigma=1.5, blur_kernel_size=7)),
    ("UDPHeatmap", dict(heatmap_type="combined")),
]
# the largest difference each comparison may show: float32 rounding, except where noted in docs/codecs.md
ENCODE_TOL = 2e-6
DECODE_TOL = {"MSRAHeatmap": 1e-3, "UDPHeatmap": 1e-3}  # input pixels; DARK's float32 log and solve


def _pair(name: str, input_size, heatmap_size, options):
    return (getattr(mmpose_codecs, name)(input_size=input_size, heatmap_size=heatmap_size, **options),
            getattr(codecs, name)(input_size=input_size, heatmap_size=heatmap_size, **options))


def differences(name: str, options: dict, input_size, heatmap_size, seed: int = 0, trials: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    theirs, ours = _pair(name, input_size, heatmap_size, options)
    worst = dict(heatmaps=0.0, keypoint_weights=0.0, keypoints=0.0, scores=0.0, oracle=0.0)
    argmax_only = name == "MSRAHeatmap" and not options.get("unbiased") or options.get("heatmap_type") == "combined"
    for _ in range(trials):
        kp, vis = _keypoints(rng, input_size)
        want, got = theirs.encode(kp, vis), ours.encode(kp, vis)
        assert set(want) == set(got)
        for key in ("heatmaps", "keypoint_weights"):
            assert want[key].shape == got[key].shape and want[key].dtype == got[key].dtype, key
            worst[key] = max(worst[key], float(np.abs(want[key] - got[key]).max()))
        maps, peaked = _to_decode(want["heatmaps"], rng, kp.shape[1])
        if argmax_only:
            peaked[:] = True
        (wk, ws), (gk, gs) = theirs.decode(maps.copy()), ours.decode(maps)
        assert wk.shape == gk.shape and wk.dtype == gk.dtype and ws.shape == gs.shape and ws.dtype == gs.dtype
        worst["keypoints"] = max(worst["keypoints"], float(np.abs(wk - gk)[0, peaked].max()))
        worst["scores"] = max(worst["scores"], float(np.abs(ws - gs).max()))
        oracle = (mmpose_numpy.msra_decode(input_size, heatmap_size, maps, options.get("unbiased", False),
                                           options.get("blur_kernel_size", 11)) if name == "MSRAHeatmap" else
                  mmpose_numpy.udp_decode(input_size, heatmap_size, maps, options.get("heatmap_type", "gaussian"),
                                          blur_kernel_size=options.get("blur_kernel_size", 11)))
        worst["oracle"] = max(worst["oracle"], float(np.abs(oracle[0] - wk)[0, peaked].max()))
    return worst


@needs_mmpose
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"{s[1][0]}x{s[1][1]}")
@pytest.mark.parametrize("name,options", OPTIONS, ids=[f"{n}-{o}" for n, o in OPTIONS])
def test_codec_equals_mmpose(name, options, sizes) -> None:
    worst = differences(name, options, *sizes)
    assert worst["heatmaps"] <= ENCODE_TOL and worst["keypoint_weights"] == 0, worst
    assert worst["keypoints"] <= DECODE_TOL[name] and worst["scores"] <= 1e-6, worst
    assert worst["oracle"] <= DECODE_TOL[name], worst


@needs_mmpose
def test_multi_instance_target_equals_generate_gaussian_heatmaps() -> None:
    from mmpose.codecs.utils import generate_gaussian_heatmaps

    rng = np.random.default_rng(1)
    for sigma, (w, h) in ((2.0, (48, 64)), (1.5, (33, 21))):
        kp = (rng.random((10, 17, 2)) * [w + 10, h + 10] - 5).astype(np.float32)
        vis = (rng.random((10, 17)) > 0.2).astype(np.float32)
        want, want_w = generate_gaussian_heatmaps((w, h), kp, vis, sigma)
        ours = codecs.MSRAHeatmap((w, h), (w, h), sigma).encode(kp, vis)
        np.testing.assert_allclose(ours["heatmaps"], want, rtol=0, atol=ENCODE_TOL)
        np.testing.assert_array_equal(ours["keypoint_weights"], want_w)


@needs_mmpose
def test_registered_in_mmpose() -> None:
    from mmpose.registry import KEYPOINT_CODECS

    assert isinstance(KEYPOINT_CODECS.build(dict(type="fastlmk.SimCCLabel", input_size=(192, 256))), codecs.SimCCLabel)
    codec = KEYPOINT_CODECS.build(dict(type="fastlmk.MSRAHeatmap", input_size=(192, 256), heatmap_size=(48, 64),
                                       sigma=2.0))
    assert isinstance(codec, codecs.MSRAHeatmap) and codec.support_batch_decoding
    assert KEYPOINT_CODECS.get("MSRAHeatmap") is mmpose_codecs.MSRAHeatmap  # mmpose's own stays
    keypoints, scores = codec.batch_decode(torch.rand(3, 17, 64, 48))
    assert len(keypoints) == 3 and keypoints[0].shape == (1, 17, 2) and scores[0].shape == (1, 17)


SIMCC = [dict(), dict(sigma=(4.9, 5.66)), dict(smoothing_type="standard"),
         dict(smoothing_type="standard", label_smooth_weight=0.1), dict(normalize=False), dict(use_dark=True),
         dict(simcc_split_ratio=1.5, sigma=3.0, use_dark=True), dict(decode_visibility=True)]


def simcc_differences(options: dict, input_size, seed: int = 0, trials: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    theirs, ours = mmpose_codecs.SimCCLabel(input_size, **options), codecs.SimCCLabel(input_size, **options)
    worst = dict(labels=0.0, keypoint_weights=0.0, keypoints=0.0, scores=0.0)
    for _ in range(trials):
        w, h = input_size
        kp = (rng.random((2, 17, 2)) * [w * 1.3, h * 1.3] - [w * 0.15, h * 0.15]).astype(np.float32)
        vis = rng.choice(np.array([0.0, 0.3, 1.0, 1.0], np.float32), size=(2, 17))
        want, got = theirs.encode(kp, vis), ours.encode(kp, vis)
        assert set(want) == set(got)
        for key in want:
            assert want[key].shape == got[key].shape and want[key].dtype == got[key].dtype, key
        worst["labels"] = max(worst["labels"], *(float(np.abs(want[k] - got[k]).max())
                                                 for k in ("keypoint_x_labels", "keypoint_y_labels")))
        worst["keypoint_weights"] = max(worst["keypoint_weights"],
                                        float(np.abs(want["keypoint_weights"] - got["keypoint_weights"]).max()))
        sx = want["keypoint_x_labels"][:1] + 0.01 * rng.random(want["keypoint_x_labels"][:1].shape).astype(np.float32)
        sy = want["keypoint_y_labels"][:1] + 0.01 * rng.random(want["keypoint_y_labels"][:1].shape).astype(np.float32)
        sx[0, 0] = -1.0
        (wk, ws), (gk, gs) = theirs.decode(sx.copy(), sy.copy()), ours.decode(sx, sy)  # (1, K, bins): mmpose's DARK
        assert wk.shape == gk.shape and wk.dtype == gk.dtype
        bins = np.around(kp[0] * ours.simcc_split_ratio)
        peaked = ((bins >= 0) & (bins < [sx.shape[-1], sy.shape[-1]])).all(-1) & (want["keypoint_weights"][0] >= 0.5)
        peaked[0] = True
        worst["keypoints"] = max(worst["keypoints"], float(np.abs(wk - gk)[0, peaked].max()))
        ws, gs = (np.stack(ws), np.stack(gs)) if options.get("decode_visibility") else (ws, gs)
        worst["scores"] = max(worst["scores"], float(np.abs(ws - gs).max()))
    return worst


@needs_mmpose
@pytest.mark.parametrize("input_size", [(192, 256), (99, 71)])
@pytest.mark.parametrize("options", SIMCC, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_simcc_equals_mmpose(options, input_size) -> None:
    worst = simcc_differences(options, input_size)
    assert worst["labels"] <= 1e-7 and worst["keypoint_weights"] == 0, worst
    assert worst["keypoints"] <= 1e-3 and worst["scores"] <= 1e-5, worst


def _heatmaps(rng, b, k, h, w) -> np.ndarray:
    """Random maps with maxima on every border and corner (where face-alignment does not refine)."""
    hm = rng.random((b, k, h, w)).astype(np.float32)
    for c, (i, j) in enumerate([(0, 5), (h - 1, w - 1), (1, 1), (h - 2, 0), (3, w - 2)]):
        hm[0, c, i, j] = 5.0
    return hm


def test_get_preds_fromhm_equals_face_alignment() -> None:
    fa = pytest.importorskip("face_alignment.utils")
    rng = np.random.default_rng(0)
    hm = _heatmaps(rng, 3, 68, 64, 64)  # face-alignment's size: it hard-codes 63 as the last interior pixel
    for center, scale in ((None, None), (np.array([120.0, 130.0]), 1.3), (np.array([455.5, 201.0]), 2.71)):
        want, got = fa.get_preds_fromhm(hm.copy(), center, scale), compat.get_preds_fromhm(hm, center, scale)
        for a, b in zip(want, got):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(2, 5, 13, 17), (1, 3, 64, 48), (2, 2, 1, 9)])
def test_spatial_soft_argmax2d_equals_kornia(shape) -> None:
    kornia = pytest.importorskip("kornia.geometry.subpix")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    for temperature in (None, 0.5, torch.tensor(2.0)):
        for normalized in (True, False):
            want = kornia.spatial_soft_argmax2d(x, temperature, normalized)
            torch.testing.assert_close(compat.spatial_soft_argmax2d(x, temperature, normalized), want,
                                       rtol=0, atol=1e-9 * max(shape))


if __name__ == "__main__":
    print("| class | options | heatmap size | heatmaps | weights | keypoints (px) | scores | oracle (px) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, options in OPTIONS:
        for sizes in SIZES:
            d = differences(name, options, *sizes)
            print(f"| {name} | {options} | {sizes[1][0]}x{sizes[1][1]} | {d['heatmaps']:.1e} | "
                  f"{d['keypoint_weights']:.0e} | {d['keypoints']:.1e} | {d['scores']:.0e} | {d['oracle']:.1e} |")
    print("\n| SimCCLabel options | input size | labels | weights | keypoints (px) | scores |")
    print("|---|---|---|---|---|---|")
    for options in SIMCC:
        for size in ((192, 256), (99, 71)):
            d = simcc_differences(options, size)
            print(f"| {options} | {size[0]}x{size[1]} | {d['labels']:.1e} | {d['keypoint_weights']:.0e} | "
                  f"{d['keypoints']:.1e} | {d['scores']:.1e} |")
