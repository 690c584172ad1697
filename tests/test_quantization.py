"""The quantization study on a tiny synthetic set: its numbers satisfy the known facts of each encoding/decoding
pair, the synthetic faces follow the WFLW layout, and bad input fails early."""

import math

import numpy as np
import pytest
import torch

from fastlmk import metrics, ops, quantization

FACES = quantization.synthetic_faces(6, seed=1)


@pytest.fixture(scope="module")
def rows():
    """{(encoding, decoding, heatmap size): Row} of the study of FACES at 64 and 32 px."""
    return {(r.encoding, r.decoding, r.heatmap_size): r for r in quantization.study(FACES)}


def _row(rows, encoding, decoding, size=64):
    matches = [r for (e, d, h), r in rows.items() if e.startswith(encoding) and d.startswith(decoding) and h == size]
    assert len(matches) == 1, (encoding, decoding, size)
    return matches[0]


def test_every_row_at_every_size(rows):
    pairs = {(e, d) for e, d, _ in rows}
    assert len(pairs) == 17 and len(rows) == 34
    assert all(math.isfinite(r.nme) and math.isfinite(r.rms) and math.isfinite(r.max_error) for r in rows.values())


@pytest.mark.parametrize("size", [64, 32])
def test_argmax_of_the_rounded_target_is_uniform_quantization(rows, size):
    r = _row(rows, "Gaussian, rounded", "argmax", size)
    assert r.rms == pytest.approx(1 / math.sqrt(12), rel=0.05)  # uniform sub-pixel positions
    assert r.max_error <= 0.5 + 1e-4
    continuous = _row(rows, "Gaussian, continuous", "argmax", size)  # both round to the nearest pixel
    assert (continuous.nme, continuous.rms, continuous.max_error) == pytest.approx((r.nme, r.rms, r.max_error))


def test_nme_scales_with_the_stride(rows):
    # the same heatmap-pixel error costs twice the image pixels at 32 as at 64
    r64, r32 = _row(rows, "Gaussian, rounded", "argmax", 64), _row(rows, "Gaussian, rounded", "argmax", 32)
    assert r32.nme == pytest.approx(2 * r64.nme, rel=0.1)
    # NME ~ mean L2 error (0.3826 heatmap px for uniform rounding) * stride / inter-ocular distance
    iod = metrics.normalizer(FACES).mean().item()
    assert r64.nme == pytest.approx(0.3826 * 4 / iod, rel=0.1)


@pytest.mark.parametrize("size", [64, 32])
def test_exact_and_near_exact_decoders(rows, size):
    dark = _row(rows, "Gaussian, continuous", "dark", size)
    assert dark.rms < 0.005
    if size == 64:  # at 32 px the jaw comes within DARK's blur radius (5 px) of the zero border
        assert dark.max_error < 0.01
    assert _row(rows, "offset maps", "offset", size).max_error < 1e-4
    assert _row(rows, "HIH unbiased", "integer", size).max_error <= 1 / (2 * 8) + 1e-4
    assert _row(rows, "HIH paper", "integer", size).max_error <= 1 / 8 + 1e-4
    assert _row(rows, "Gaussian, continuous", "parabola", size).max_error < 0.05


def test_subpixel_decoders_beat_argmax(rows):
    direct = _row(rows, "Gaussian, rounded", "argmax").nme
    for decoding in ("quarter", "wsm", "parabola", "dark", "local_softargmax", "topk", "soft_argmax (softmax",
                     "soft_argmax (relu"):
        assert _row(rows, "Gaussian, continuous", decoding).nme < direct, decoding


def test_h3r_one_hot_is_randomized_rounding(rows):
    # per axis the error is -f w.p. 1 - f and 1 - f w.p. f: variance f (1 - f), mean 1/6 over uniform f
    r = _row(rows, "H3R one-hot", "argmax")
    assert r.rms == pytest.approx(math.sqrt(1 / 6), rel=0.08)
    assert r.max_error <= 1 + 1e-4


def test_h3r_expected_target_is_the_mean_of_one_hot_targets():
    kp = torch.tensor([[[3.3, 4.8], [0.0, 2.5], [7.9, 7.2]]], dtype=torch.float64)
    samples = ops.encode_h3r(kp.expand(4000, 3, 2), 8, generator=torch.Generator().manual_seed(0))
    mean = samples.mean(0, keepdim=True)
    torch.testing.assert_close(torch.sigmoid(quantization._h3r_logits(kp, 8)), mean, atol=0.03, rtol=0)


def test_study_is_deterministic_and_skips_missing_landmarks():
    faces = FACES[:2].clone()
    faces[0, 10] = float("nan")
    a = quantization.study(faces, heatmap_sizes=(32,))
    assert a == quantization.study(faces, heatmap_sizes=(32,))
    assert all(math.isfinite(r.nme) and math.isfinite(r.max_error) for r in a)


def test_synthetic_faces_follow_the_wflw_layout():
    faces = quantization.synthetic_faces(50, image_size=256, seed=3)
    assert faces.shape == (50, 98, 2) and faces.dtype == torch.float64
    assert torch.equal(faces, quantization.synthetic_faces(50, image_size=256, seed=3))
    assert 16 < faces.min() and faces.max() < 240  # aligned crops, away from the border
    t = quantization._wflw_template()
    left, right = t[60:68], t[68:76]
    assert t[60, 0] == left[:, 0].min() and t[64, 0] == left[:, 0].max()  # 60 outer, 64 inner corner
    assert t[68, 0] == right[:, 0].min() and t[72, 0] == right[:, 0].max()  # 68 inner, 72 outer corner
    torch.testing.assert_close(t[96], left.mean(0))  # pupils at the eye centres
    torch.testing.assert_close(t[97], right.mean(0))
    assert t[16, 1] == t[:, 1].max()  # chin
    iod = metrics.normalizer(faces)
    assert 0.3 * 256 < iod.min() and iod.max() < 0.5 * 256


def test_format_table(rows):
    text = quantization.format_table(list(rows.values()), caption="Caption.")
    lines = text.splitlines()
    assert lines[0] == "Caption." and lines[2].startswith("| encoding | decoding | NME % @64")
    assert len(lines) == 4 + 17 and "| Gaussian, rounded centre | argmax (DIRECT) |" in text


def test_load_landmarks(tmp_path):
    np.save(tmp_path / "a.npy", FACES.numpy().astype(np.float32))
    torch.save(FACES, tmp_path / "a.pt")
    torch.testing.assert_close(quantization.load_landmarks(tmp_path / "a.npy"), FACES, rtol=0, atol=1e-4)
    assert torch.equal(quantization.load_landmarks(tmp_path / "a.pt"), FACES)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"must hold an \(N, K, 2\) array"):
        quantization.load_landmarks(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="must be a .npy or .pt file"):
        quantization.load_landmarks(tmp_path / "a.txt")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(landmarks=torch.zeros(2, 5, 2)), ValueError, r"norm='inter_ocular'.*K=5"),
    (dict(landmarks=torch.zeros(2, 98)), ValueError, "landmarks must have shape"),
    (dict(landmarks=FACES, norm="nope"), ValueError, "norm must be one of"),
    (dict(landmarks=FACES, image_size=0), ValueError, "image_size must be a positive int"),
    (dict(landmarks=FACES, heatmap_sizes=(64, 0)), ValueError, "heatmap_sizes must be positive ints"),
    (dict(landmarks=FACES, sigma=0.0), ValueError, "sigma must be a finite positive number"),
])
def test_study_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        quantization.study(**kwargs)
