"""Landmark metrics against hand-computed cases: every normaliser and landmark convention, missing landmarks,
AUC / failure rate / CED, and bad input."""

import math

import pytest
import torch

from fastlmk import metrics

NAN = float("nan")


def _face(k, left, right, dtype=torch.float64):
    """(1, K, 2) landmarks spread on a line at y = 50, with the index groups ``left`` around (10, 20) and
    ``right`` around (40, 60) (their means exactly there), so the eye distance is 50."""
    t = torch.stack([torch.linspace(0, 30, k, dtype=dtype), torch.full((k,), 50.0, dtype=dtype)], -1)[None]
    for idx, centre in ((left, (10.0, 20.0)), (right, (40.0, 60.0))):
        spread = torch.linspace(-1, 1, len(idx), dtype=dtype)
        t[0, list(idx), 0] = centre[0] + spread
        t[0, list(idx), 1] = centre[1] - spread
    return t


@pytest.mark.parametrize("k", sorted(metrics.EYES))
@pytest.mark.parametrize("norm", ["inter_ocular", "inter_pupil"])
def test_eye_normalisers_every_convention(k, norm):
    left, right = metrics.EYES[k][norm]
    target = _face(k, left, right)
    assert metrics.normalizer(target, norm).item() == pytest.approx(50.0)
    pred = target.clone()
    pred[0, 0] += torch.tensor([3.0, 4.0])  # one landmark off by 5 px
    assert metrics.nme(pred, target, norm=norm).item() == pytest.approx(5 / (k * 50.0))


def test_eye_indices_of_each_convention():
    assert metrics.EYES[68]["inter_ocular"] == ((36,), (45,))
    assert metrics.EYES[68]["inter_pupil"] == ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))
    assert metrics.EYES[98] == {"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,))}
    assert metrics.EYES[29] == {"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))}
    assert metrics.EYES[19] == {"inter_ocular": ((6,), (11,)), "inter_pupil": ((7,), (10,))}


def test_pupils_of_300w_are_the_eye_means():
    target = torch.rand(2, 68, 2, dtype=torch.float64) * 100
    d = torch.linalg.vector_norm(target[:, 36:42].mean(1) - target[:, 42:48].mean(1), dim=-1)
    torch.testing.assert_close(metrics.normalizer(target, "inter_pupil"), d)


def test_bbox_diagonal_and_width_normalisers():
    target = torch.tensor([[[1.0, 2.0], [5.0, 11.0], [3.0, 4.0]]])  # box 4 x 9
    assert metrics.normalizer(target, "bbox").item() == pytest.approx(6.0)
    assert metrics.normalizer(target, "diagonal").item() == pytest.approx(math.sqrt(97.0))
    assert metrics.normalizer(target, "width").item() == pytest.approx(4.0)
    pred = target + torch.tensor([0.0, 3.0])  # every landmark off by 3
    assert metrics.nme(pred, target, norm="bbox").item() == pytest.approx(0.5)
    assert metrics.nme(pred, target, norm="diagonal").item() == pytest.approx(3 / math.sqrt(97.0))


def test_user_normaliser_and_reductions():
    target = torch.zeros(2, 3, 2)
    pred = torch.zeros(2, 3, 2)
    pred[0, :, 0] = torch.tensor([1.0, 2.0, 3.0])  # image 0: mean error 2
    pred[1, 0, 1] = 6.0  # image 1: mean error 2
    norm = torch.tensor([4.0, 1.0])
    torch.testing.assert_close(metrics.nme(pred, target, norm=norm, reduction="none"), torch.tensor([0.5, 2.0]))
    assert metrics.nme(pred, target, norm=norm).item() == pytest.approx(1.25)


def test_missing_landmarks_are_excluded():
    target = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [NAN, 5.0], [0.0, 4.0]],
                           [[NAN, NAN], [NAN, NAN], [NAN, NAN], [NAN, NAN]]])
    pred = target.nan_to_num(0.0) + torch.tensor([0.0, 1.0])  # every landmark off by 1
    pred[0, 2] = 100.0  # wrong, but its target is missing
    per_image = metrics.nme(pred, target, norm="bbox", reduction="none")
    assert per_image[0].item() == pytest.approx(1 / math.sqrt(10.0 * 4.0))  # box of the 3 visible: 10 x 4
    assert math.isnan(per_image[1].item())  # no visible landmark
    assert metrics.nme(pred, target, norm="bbox").item() == pytest.approx(per_image[0].item())


def test_nan_prediction_of_a_visible_landmark_is_not_hidden():
    target = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    pred = target.clone()
    pred[0, 1, 0] = NAN
    assert math.isnan(metrics.nme(pred, target, norm=torch.tensor([1.0])).item())


def test_missing_eye_landmark_gives_nan():
    target = _face(98, (60,), (72,))
    target[0, 60] = NAN
    assert math.isnan(metrics.nme(target.clone(), target).item())


def test_computed_in_float32_or_wider():
    t = torch.rand(2, 19, 2, dtype=torch.float16) * 10
    assert metrics.nme(t + 0.5, t, norm="bbox").dtype == torch.float32
    assert metrics.nme(t.double(), t, norm="bbox").dtype == torch.float64


@pytest.mark.parametrize("pred, target, kwargs, error, match", [
    ([[[0.0, 0.0]]], torch.zeros(1, 1, 2), {}, TypeError, "pred must be a torch.Tensor"),
    (torch.zeros(1, 1, 2), torch.zeros(1, 1, 2, dtype=torch.int64), {}, TypeError, "target must have a floating"),
    (torch.zeros(1, 2), torch.zeros(1, 2), {}, ValueError, r"pred must have shape \(N, K, 2\)"),
    (torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), {}, ValueError, r"pred must have shape \(N, K, 2\)"),
    (torch.zeros(1, 68, 2), torch.zeros(1, 98, 2), {}, ValueError, "pred and target must have the same shape"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), {}, ValueError, r"norm='inter_ocular'.*K=5"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), dict(norm="inter_pupil"), ValueError, r"norm='inter_pupil'.*K=5"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), dict(norm="iod"), ValueError, "norm must be one of"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), dict(norm=3.0), TypeError, "norm must be one of"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), dict(norm=torch.ones(3)), ValueError, r"norm must have shape \(N,\)"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), dict(norm=torch.tensor([1.0, 0.0])), ValueError,
     "norm must be finite and positive"),
    (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), dict(norm=torch.ones(2, dtype=torch.int64)), TypeError,
     "norm must have a floating dtype"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), dict(norm="bbox", reduction="sum"), ValueError,
     "reduction must be one of"),
    (torch.zeros(1, 5, 2), torch.zeros(1, 5, 2, device="meta"), dict(norm="bbox"), ValueError, "pred is on cpu"),
])
def test_nme_bad_input(pred, target, kwargs, error, match):
    with pytest.raises(error, match=match):
        metrics.nme(pred, target, **kwargs)


# --------------------------------------------------------------------------------------- AUC / FR / CED

def test_auc_failure_rate_and_ced_by_hand():
    e = torch.tensor([0.0, 0.05, 0.2, 0.1])
    assert metrics.auc(e, 0.1) == pytest.approx((0.1 + 0.05 + 0 + 0) / 4 / 0.1)
    assert metrics.failure_rate(e, 0.1) == pytest.approx(0.25)  # 0.1 itself is not a failure
    assert metrics.failure_rate(e, 0.08) == pytest.approx(0.5)
    c = metrics.ced(torch.tensor([0.01, 0.02, 0.02, 0.5]), [0.0, 0.01, 0.02, 1.0])
    torch.testing.assert_close(c, torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_auc_closed_form_is_the_limit_of_the_trapezoid():
    e = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.15
    for t in (0.08, 0.1):
        x = torch.linspace(0, t, 200001, dtype=torch.float64)
        trapezoid = torch.trapezoid(metrics.ced(e, x), x).item() / t
        assert metrics.auc(e, t) == pytest.approx(trapezoid, abs=1e-5)
        assert metrics.failure_rate(e, t) == pytest.approx(1 - metrics.ced(e, [t]).item())


def test_nan_errors_are_failures():
    e = torch.tensor([NAN, 0.0])
    assert metrics.auc(e) == pytest.approx(0.5)
    assert metrics.failure_rate(e) == pytest.approx(0.5)
    torch.testing.assert_close(metrics.ced(e, [1.0]), torch.tensor([0.5]))


@pytest.mark.parametrize("fn", [metrics.auc, metrics.failure_rate])
@pytest.mark.parametrize("errors, threshold, error, match", [
    ([0.1, 0.2], 0.1, TypeError, "errors must be a torch.Tensor"),
    (torch.tensor([1, 2]), 0.1, TypeError, "errors must have a floating dtype"),
    (torch.zeros(2, 2), 0.1, ValueError, r"errors must be a non-empty 1-D tensor"),
    (torch.zeros(0), 0.1, ValueError, r"errors must be a non-empty 1-D tensor"),
    (torch.zeros(3), 0.0, ValueError, "threshold must be a finite positive number"),
    (torch.zeros(3), NAN, ValueError, "threshold must be a finite positive number"),
    (torch.zeros(3), "0.1", ValueError, "threshold must be a finite positive number"),
])
def test_auc_and_failure_rate_bad_input(fn, errors, threshold, error, match):
    with pytest.raises(error, match=match):
        fn(errors, threshold)


@pytest.mark.parametrize("thresholds, error, match", [
    (torch.zeros(2, 2), ValueError, "thresholds must be a scalar or 1-D"),
    ([0.1, NAN], ValueError, "thresholds must be finite"),
    (["a"], TypeError, "thresholds must be a tensor or a sequence of numbers"),
])
def test_ced_bad_input(thresholds, error, match):
    with pytest.raises(error, match=match):
        metrics.ced(torch.zeros(3), thresholds)


# ------------------------------------------------------------------------------------------- PSNR and SSIM

def test_luma_is_bt601_studio_range():
    images = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    y = metrics.luma(images).flatten()
    torch.testing.assert_close(y, torch.tensor([16.0, 235.0, 16.0 + 65.481]) / 255)


def test_psnr_from_the_mean_squared_error(gen):
    target = torch.rand(2, 3, 12, 9, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    pred = target + 0.05 * torch.randn(target.shape, generator=gen, dtype=torch.float64)
    mse = (metrics.luma(pred.clamp(0, 1)) - metrics.luma(target)).square().mean((1, 2, 3))
    torch.testing.assert_close(metrics.psnr(pred, target), -10 * torch.log10(mse))
    same = torch.rand(1, 3, 4, 4, generator=gen)
    assert metrics.psnr(same, same).item() == math.inf
    # a uniform offset of the grey level by e: Y moves by e (65.481 + 128.553 + 24.966) / 255 = e * 219 / 255
    grey = torch.full((1, 3, 5, 5), 0.5, dtype=torch.float64)
    assert metrics.psnr(grey + 0.01, grey).item() == pytest.approx(-20 * math.log10(0.01 * 219 / 255))


def test_ssim_against_the_windows_written_out(gen):
    """SSIM as the mean over every 11x11 window of the formula with Gaussian-weighted statistics."""
    target = torch.rand(2, 3, 14, 13, generator=gen, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(target.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-x ** 2 / 4.5)
    w = torch.outer(g, g) / g.sum() ** 2
    yp, yt = metrics.luma(pred)[:, 0], metrics.luma(target)[:, 0]
    want = torch.zeros(2, dtype=torch.float64)
    for n in range(2):
        values = []
        for i in range(14 - 10):
            for j in range(13 - 10):
                a, b = yp[n, i:i + 11, j:j + 11], yt[n, i:i + 11, j:j + 11]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append((2 * ma * mb + 1e-4) * (2 * cov + 9e-4) / ((ma ** 2 + mb ** 2 + 1e-4) * (va + vb + 9e-4)))
        want[n] = torch.stack(values).mean()
    torch.testing.assert_close(metrics.ssim(pred, target), want)
    assert metrics.ssim(target, target).allclose(torch.ones(2, dtype=torch.float64))


def test_image_metrics_bad_input():
    a = torch.rand(1, 3, 12, 12)
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        metrics.psnr(a, a[..., :11])
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, H, W\)"):
        metrics.luma(a[:, :1])
    with pytest.raises(TypeError, match="pred must be a floating"):
        metrics.ssim(a.to(torch.uint8), a)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        metrics.ssim(a[..., :10, :], a[..., :10, :])
