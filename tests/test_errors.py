"""Bad input: a clear ValueError/TypeError naming the argument, raised before any kernel runs."""

import pytest
import torch

from fastlmk import ops

KP = torch.rand(2, 3, 2) * 8
PRED = torch.rand(2, 3, 8, 8)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(keypoints=torch.rand(3, 2)), ValueError, "keypoints must have shape"),
    (dict(keypoints=torch.rand(2, 3, 3)), ValueError, "keypoints must have shape"),
    (dict(keypoints=torch.ones(2, 3, 2, dtype=torch.int64)), TypeError, "keypoints must have a floating dtype"),
    (dict(keypoints=[[1.0, 2.0]]), TypeError, "keypoints must be a torch.Tensor"),
    (dict(size=(0, 8)), ValueError, "size must be positive"),
    (dict(size=(8, -1)), ValueError, "size must be positive"),
    (dict(size=(8.0, 8)), TypeError, "size must be an int or a pair"),
    (dict(sigma=0.0), ValueError, "sigma must be finite and positive"),
    (dict(sigma=-1.0), ValueError, "sigma must be finite and positive"),
    (dict(sigma=float("nan")), ValueError, "sigma must be finite and positive"),
    (dict(sigma=float("inf")), ValueError, "sigma must be finite and positive"),
    (dict(sigma=torch.tensor([1.0, 0.0, 1.0])), ValueError, "sigma must be positive"),
    (dict(sigma=torch.tensor([1.0, float("nan"), 1.0])), ValueError, "sigma must be finite"),
    (dict(sigma=torch.ones(4)), ValueError, r"sigma must be a scalar or have shape \(K,\)"),
    (dict(sigma=torch.ones(3, 2)), ValueError, r"sigma must be a scalar or have shape"),
    (dict(weights=torch.ones(3, 2)), ValueError, r"weights must have shape \(B, K\)"),
    (dict(weights=torch.tensor([[1.0, float("nan"), 1.0]] * 2)), ValueError, "weights must be finite"),
    (dict(weights=torch.ones(2, 3, dtype=torch.int32)), TypeError, "weights must have a floating dtype"),
    (dict(center="floor"), ValueError, "center must be one of"),
    (dict(radius=-1.0), ValueError, "radius must be a finite non-negative"),
    (dict(dtype=torch.int32), TypeError, "dtype must be one of"),
    (dict(sigma=torch.ones(3, device="meta")), ValueError, "sigma is on meta"),
    (dict(weights=torch.ones(2, 3, device="meta")), ValueError, "weights is on meta"),
    (dict(backend="cuda"), ValueError, "render_gaussian has backends"),
    (dict(backend="fast"), ValueError, "backend must be one of"),
])
def test_render_gaussian_bad_input(kwargs, error, match):
    args = {"keypoints": KP, "size": (8, 8), "sigma": 2.0, **kwargs}
    with pytest.raises(error, match=match):
        ops.render_gaussian(args.pop("keypoints"), args.pop("size"), args.pop("sigma"), **args)


@pytest.mark.parametrize("fn", [ops.render_disc, ops.render_offsets])
def test_radius_must_be_non_negative(fn):
    with pytest.raises(ValueError, match="radius must be finite and non-negative"):
        fn(KP, 8, -0.5)
    with pytest.raises(ValueError, match="radius must be non-negative"):
        fn(KP, 8, torch.tensor([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(pred=torch.rand(3, 8, 8)), ValueError, r"pred must have shape \(B, K, H, W\)"),
    (dict(pred=torch.rand(2, 4, 8, 8)), ValueError, r"pred has \(B, K\)"),
    (dict(pred=torch.rand(2, 3, 0, 8)), ValueError, "pred spatial size must be positive"),
    (dict(pred=torch.ones(2, 3, 8, 8, dtype=torch.int64)), TypeError, "pred must have a floating dtype"),
    (dict(keypoints=torch.rand(2, 3, 2, device="meta")), ValueError, "keypoints is on meta"),
    (dict(sigma=0.0), ValueError, "sigma must be finite and positive"),
    (dict(kind="l1"), ValueError, "kind must be one of"),
    (dict(reduction="max"), ValueError, "reduction must be one of"),
    (dict(kind="awing", theta=0.0), ValueError, "omega, epsilon and theta must be positive"),
    (dict(weights=torch.ones(2, 4)), ValueError, "weights must have shape"),
])
def test_heatmap_loss_bad_input(kwargs, error, match):
    args = {"pred": PRED, "keypoints": KP, "sigma": 2.0, **kwargs}
    with pytest.raises(error, match=match):
        ops.heatmap_loss(args.pop("pred"), args.pop("keypoints"), args.pop("sigma"), **args)


def test_failed_validation_leaves_inputs_untouched():
    kp, pred = KP.clone(), PRED.clone()
    with pytest.raises(ValueError):
        ops.heatmap_loss(pred, kp, -1.0)
    assert torch.equal(kp, KP) and torch.equal(pred, PRED)


def test_hih_and_h3r_bad_input():
    with pytest.raises(ValueError, match="convention must be one of"):
        ops.encode_hih(KP, 8, convention="ceil")
    with pytest.raises(ValueError, match="decimal_size must be positive"):
        ops.encode_hih(KP, 8, decimal_size=(0, 8))
    with pytest.raises(ValueError, match="target must be one of"):
        ops.encode_h3r(KP, 8, target="soft")
    with pytest.raises(ValueError, match="keypoints must have shape"):
        ops.randomized_round(torch.rand(4, 2))


MAPS = torch.rand(2, 3, 8, 8)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(heatmaps=torch.rand(3, 8, 8)), ValueError, r"heatmaps must have shape \(B, K, H, W\)"),
    (dict(heatmaps=torch.rand(2, 3, 0, 8)), ValueError, "heatmaps spatial size must be positive"),
    (dict(heatmaps=torch.ones(2, 3, 8, 8, dtype=torch.int64)), TypeError, "heatmaps must have a floating dtype"),
    (dict(heatmaps=MAPS.numpy()), TypeError, "heatmaps must be a torch.Tensor"),
    (dict(method="soft"), ValueError, "method must be one of"),
    (dict(method="topk", k=65), ValueError, r"k must be at most H\*W = 64"),
    (dict(method="topk", k=0), ValueError, "k must be an integer >= 1"),
    (dict(method="dark", blur=4), ValueError, "blur must be an odd kernel size"),
    (dict(method="dark", blur=0), ValueError, "blur must be an integer >= 1"),
    (dict(method="dark", blur=129), ValueError, "blur must be an odd kernel size <= 127"),
    (dict(blur=2 ** 29 + 1), ValueError, "blur must be an odd kernel size <= 127"),
    (dict(method="local_softargmax", window=-1), ValueError, "window must be an integer >= 0"),
    (dict(window=1.5), ValueError, "window must be an integer"),
    (dict(affine=torch.rand(2, 3, 3)), ValueError, r"affine must have shape \(B, 2, 3\)"),
    (dict(affine=torch.rand(1, 2, 3)), ValueError, r"affine must have shape \(B, 2, 3\) = \(2, 2, 3\)"),
    (dict(affine=torch.rand(2, 2, 3, device="meta")), ValueError, "affine is on meta"),
    (dict(method="offset"), ValueError, "method='offset' needs offsets"),
    (dict(method="offset", offsets=torch.rand(2, 3, 8, 8)), ValueError, r"offsets must have shape"),
    (dict(offsets=torch.rand(2, 3, 2, 8, 8)), ValueError, "offsets is only used by method='offset'"),
    (dict(backend="cuda"), ValueError, "decode has backends"),
])
def test_decode_bad_input(kwargs, error, match):
    args = {"heatmaps": MAPS, **kwargs}
    with pytest.raises(error, match=match):
        ops.decode(args.pop("heatmaps"), **args)


def test_raw_decode_op_checks_what_a_kernel_would_read_out_of_bounds():
    f = torch.ops.fastlmk.decode
    with pytest.raises(ValueError, match="needs offsets"):
        f(MAPS, None, None, "offset", 11, 1, 9)
    with pytest.raises(ValueError, match=r"1 <= k <= H\*W"):
        f(MAPS, None, None, "topk", 11, 1, 65)
    with pytest.raises(ValueError, match="affine must have shape"):
        f(MAPS, None, torch.rand(1, 2, 3), "argmax", 11, 1, 9)
    transposed = MAPS.transpose(2, 3)  # not contiguous: copied, not misread
    assert torch.equal(f(transposed, None, None, "argmax", 11, 1, 9)[0], ops.decode(transposed)[0])


def test_decode_hih_and_soft_argmax_bad_input():
    with pytest.raises(ValueError, match=r"decimal_maps has \(B, K\)"):
        ops.decode_hih(MAPS, torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="decimal_maps must have shape"):
        ops.decode_hih(MAPS, torch.rand(2, 3, 8))
    with pytest.raises(ValueError, match="convention must be one of"):
        ops.decode_hih(MAPS, MAPS, convention="ceil")
    with pytest.raises(ValueError, match="beta must be a finite positive number"):
        ops.soft_argmax(MAPS, beta=0.0)
    with pytest.raises(ValueError, match="beta must be a finite positive number"):
        ops.soft_argmax(MAPS, beta=float("nan"))
    with pytest.raises(ValueError, match="normalize must be one of"):
        ops.soft_argmax(MAPS, normalize="sigmoid")
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        ops.soft_argmax(torch.rand(8, 8))


def test_nan_maps_decode_to_nan_without_touching_the_input():
    maps = torch.full((1, 2, 5, 5), float("nan"))
    maps[0, 0] = torch.rand(5, 5)
    before = maps.clone()
    for method in ("argmax", "dark", "topk", "wsm", "local_softargmax"):
        coords, scores = ops.decode(maps, method)
        assert coords[0, 1].isnan().all() and scores[0, 1].isnan() and not coords[0, 0].isnan().any()
    assert torch.equal(maps.isnan(), before.isnan()) and torch.equal(maps[0, 0], before[0, 0])
