"""Bad input: a clear ValueError/TypeError naming the argument, raised before any kernel runs."""

import re

import pytest
import torch

from fastlmk import _checks, export, ops
from fastlmk.reference import xnor as ref_xnor

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
    (dict(weights=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -1.5]])), ValueError,
     r"weights must be non-negative \(0 leaves a channel out\), got -1.5 at \(1, 2\)"),
    (dict(weights=torch.tensor([[1.0, 1.0, 1.0], [float("inf"), 1.0, 1.0]])), ValueError,
     r"weights must be finite, got inf at \(1, 0\)"),
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


NEGATIVE = torch.tensor([[1.0, 0.0, 1.0], [1.0, -1.5, 1.0]])


@pytest.mark.parametrize("call", [
    lambda w: ops.render_gaussian(KP, 8, 2.0, weights=w),
    lambda w: ops.render_disc(KP, 8, 1.0, weights=w),
    lambda w: ops.render_offsets(KP, 8, weights=w),
    lambda w: ops.render_simcc(KP, (8, 8), weights=w),
    lambda w: ops.encode_hih(KP, 8, weights=w),
    lambda w: ops.encode_h3r(KP, 8, weights=w),
    lambda w: ops.heatmap_loss(PRED, KP, 2.0, weights=w),
    lambda w: ops.heatmap_loss(PRED, KP, 2.0, weights=w, backend="reference"),
    lambda w: ops.render_gaussian(KP[:, None].expand(2, 2, 3, 2), 8, 2.0, weights=w[:, None].expand(2, 2, 3)),
], ids=["gaussian", "disc", "offsets", "simcc", "hih", "h3r", "loss", "loss-reference", "instances"])
def test_every_public_op_refuses_negative_weights(call):
    kp, pred, w = KP.clone(), PRED.clone(), NEGATIVE.clone()
    with pytest.raises(ValueError, match=r"weights must be non-negative \(0 leaves (a channel|an instance) out\), "
                                         r"got -1.5 at \((1, 1|1, \d, 1)\)"):
        call(w)
    assert torch.equal(kp, KP) and torch.equal(pred, PRED) and torch.equal(w, NEGATIVE)
    with pytest.raises(ValueError, match="weights must be finite, got nan"):
        call(torch.where(NEGATIVE < 0, float("nan"), NEGATIVE))


def test_raw_ops_read_no_weight_values():
    """torch.ops.fastlmk.* check what their kernels read, not values: a negative weight scales its channel as
    the reference formula does (the public functions refuse it)."""
    args = (KP, torch.full((2, 3), 2.0), NEGATIVE, 8, 8, "continuous", 3.0, torch.float32)
    torch.testing.assert_close(torch.ops.fastlmk.render_gaussian(*args), export.reference("render_gaussian")(*args))


NAN_AFFINE = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, float("nan")], [0.0, 1.0, 0.0]]])


@pytest.mark.parametrize("value, got", [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf")])
@pytest.mark.parametrize("call", [
    lambda a: ops.decode(MAPS, affine=a),
    lambda a: ops.decode(MAPS, "dark", affine=a, backend="reference"),
    lambda a: ops.decode_hih(MAPS, MAPS, affine=a),
], ids=["decode", "decode-reference", "decode_hih"])
def test_non_finite_affine_is_refused(call, value, got):
    affine = torch.where(NAN_AFFINE.isnan(), value, NAN_AFFINE)
    before = affine.clone()
    with pytest.raises(ValueError, match=rf"affine must be finite, got {got} at \(1, 0, 2\)"):
        call(affine)
    assert torch.equal(affine.nan_to_num(), before.nan_to_num())
    call(torch.nan_to_num(affine, nan=0.5, posinf=0.5, neginf=0.5))


def _x(dtype, shape=(1, 70, 6, 6)):
    return torch.randn(shape).to(dtype)


PW = ref_xnor.pack_bits(torch.randn(4, 70, 3, 3))
DTYPE_CALLS = {  # an op, called with its tensors of one dtype
    "render_gaussian": lambda dt: ops.render_gaussian(KP.to(dt), 8, 2.0, weights=torch.ones(2, 3).to(dt)),
    "render_simcc": lambda dt: ops.render_simcc(KP.to(dt), (8, 8)),
    "heatmap_loss": lambda dt: ops.heatmap_loss(PRED.to(dt), KP, 2.0),
    "decode": lambda dt: ops.decode(MAPS.to(dt), affine=torch.rand(2, 2, 3).to(dt)),
    "decode_simcc": lambda dt: ops.decode_simcc(MAPS[..., 0].to(dt), MAPS[..., 1].to(dt)),
    "soft_argmax": lambda dt: ops.soft_argmax(MAPS.to(dt)),
    "splat": lambda dt: ops.splat(_x(dt, (2, 5, 2)), _x(dt, (2, 5)), _x(dt, (2, 5)), 6),
    "splat (raw)": lambda dt: torch.ops.fastlmk.splat(_x(dt, (2, 5, 2)), _x(dt, (2, 5)), _x(dt, (2, 5)), 6, 6,
                                                      1.0, 3.0),
    "pack_bits": lambda dt: ops.pack_bits(_x(dt)),
    "binary_conv2d alpha": lambda dt: ops.binary_conv2d(_x(torch.float32), PW, _x(dt, (4,)).abs(),
                                                        bias=_x(dt, (4,))),
    "binary_conv2d x": lambda dt: ops.binary_conv2d(ref_xnor.pack_bits(_x(torch.float32)) if dt == torch.int64
                                                    else _x(dt), PW, torch.ones(4), in_channels=70),
}


@pytest.mark.parametrize("name", DTYPE_CALLS)
def test_dtype_errors_list_exactly_the_accepted_dtypes(name):
    call = DTYPE_CALLS[name]
    with pytest.raises((TypeError, ValueError)) as info:
        call(torch.int32)
    message = str(info.value)
    listed = {d for d in (*_checks.FLOATING, torch.int64) if re.search(rf"\b{str(d)[6:]}\b", message)}
    assert listed, message
    for dtype in (*_checks.FLOATING, torch.int64):
        if dtype in listed:
            call(dtype)
        else:
            with pytest.raises((TypeError, ValueError)):
                call(dtype)


def test_splat_messages_name_vertices_q():
    xy, depth, value = torch.rand(2, 5, 2), torch.rand(2, 5), torch.rand(2, 5)
    raw = torch.ops.fastlmk
    image, weight_sum, visible = raw.splat(xy, depth, value, 6, 6, 1.0, 3.0)
    for call, match in ((lambda: ops.splat(xy[..., :1], depth, value, 6), r"xy must have shape \(B, Q, 2\)"),
                        (lambda: ops.splat(xy, depth[:, :4], value, 6), r"depth must have shape \(B, Q\)"),
                        (lambda: ops.splat(xy, depth, value[None], 6), r"value must have shape \(B, Q\)"),
                        (lambda: raw.splat(xy, depth[None], value, 6, 6, 1.0, 3.0),
                         r"splat needs xy \(B, Q, 2\), depth \(B, Q\), value \(B, Q\).*depth \(1, 2, 5\)"),
                        (lambda: raw.splat_backward(image, xy, value[0], image, weight_sum, visible, 1.0, 3.0),
                         r"xy \(B, Q, 2\), value \(B, Q\) and visible \(B, Q\).*value \(5,\)")):
        with pytest.raises(ValueError, match=match) as info:
            call()
        assert "K" not in str(info.value)
    assert "(B, K" not in ops.splat.__doc__ and "(B, Q, 2)" in ops.splat.__doc__


@pytest.mark.parametrize("call, name, kind", [
    (lambda t: ops.soft_argmax(MAPS, beta=t), "beta", "float"),
    (lambda t: ops.decode(MAPS, "topk", k=t), "k", "int"),
    (lambda t: ops.decode(MAPS, "dark", blur=t), "blur", "int"),
    (lambda t: ops.decode(MAPS, "local_softargmax", window=t), "window", "int"),
    (lambda t: ops.render_gaussian(KP, 8, 2.0, radius=t), "radius", "float"),
    (lambda t: ops.heatmap_loss(PRED, KP, 2.0, radius=t), "radius", "float"),
    (lambda t: ops.heatmap_loss(PRED, KP, 2.0, kind="awing", theta=t), "theta", "float"),
    (lambda t: ops.render_simcc(KP, (8, 8), sigma=(t, 2.0)), "sigma", "float"),
    (lambda t: ops.render_simcc(KP, (8, 8), kind="standard", smoothing=t), "smoothing", "float"),
    (lambda t: ops.splat(torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 3), 4, sigma=t), "sigma", "float"),
    (lambda t: ops.splat(torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 3), 4, radius=t), "radius", "float"),
])
def test_a_tensor_where_a_python_number_is_expected(call, name, kind):
    with pytest.raises(TypeError, match=rf"^{name} must be a Python {kind}, got a Tensor of shape \(\) "
                                        rf"\(use {name}={kind}\(t\)\)$"):
        call(torch.tensor(0.5 if kind == "float" else 3))
    call(0.5 if kind == "float" else 3)


@pytest.mark.parametrize("call", [
    lambda: ops.render_gaussian(KP, torch.tensor([8, 8]), 2.0),
    lambda: ops.render_simcc(KP, torch.tensor([8, 8])),
    lambda: ops.render_simcc(KP, (8, 8), sigma=torch.tensor([1.0, 2.0])),
    lambda: ops.decode(MAPS, torch.tensor(1)),
    lambda: ops.decode(MAPS, flipped=MAPS, shift_heatmap=torch.tensor(True)),
    lambda: ops.binary_conv2d(_x(torch.float32), PW, torch.ones(4), stride=torch.tensor([1, 1])),
    lambda: ops.binary_conv2d(_x(torch.float32), PW, torch.ones(4), groups=torch.tensor(1)),
    lambda: ops.binary_conv2d(ref_xnor.pack_bits(_x(torch.float32)), PW, torch.ones(4), in_channels=torch.tensor(70)),
])
def test_messages_show_a_tensor_argument_by_its_shape(call):
    with pytest.raises((TypeError, ValueError), match=r"got a Tensor of shape \(\d*,?\)") as info:
        call()
    assert "tensor(" not in str(info.value)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: ops.binary_conv2d(x, PW, torch.ones(4), in_channels=70), ValueError,
     r"x must have a floating dtype \(float16, bfloat16, float32 or float64\) as \(N, C, H, W\), or be the int64 "
     r"packed signs \(N, H, W, ceil\(in_channels/64\)\) from pack_bits; got torch.int64 of shape \(1, 70, 6, 6\): "
     r"x has 6 words per position but 70 channels pack into 2"),
    (lambda x: ops.binary_conv2d(x, PW, torch.ones(4)), ValueError,
     r"got torch.int64 of shape \(1, 70, 6, 6\): in_channels is required with a packed x"),
    (lambda x: ops.binary_conv2d(x.int(), PW, torch.ones(4), in_channels=70), TypeError,
     r"x must have a floating dtype \(float16, bfloat16, float32 or float64\) as \(N, C, H, W\), or be the int64 "
     r"packed signs .* got torch.int32 of shape \(1, 70, 6, 6\)$"),
    (lambda x: ops.binary_linear(x[..., 0, 0], PW[:, 0, 0], torch.ones(4), in_features=70), ValueError,
     r"as \(N, C\), or be the int64 packed signs \(N, ceil\(in_features/64\)\) from pack_bits; got torch.int64 of "
     r"shape \(1, 70\): x has 70 words per position but 70 channels pack into 2"),
    (lambda x: ops.binary_linear(x[..., 0, 0], PW[:, 0, 0], torch.ones(4)), ValueError,
     r"got torch.int64 of shape \(1, 70\): in_features is required with a packed x"),
    (lambda x: ops.binary_linear(x[..., 0, 0].short(), PW[:, 0, 0], torch.ones(4)), TypeError,
     r"x must have a floating dtype .* as \(N, C\), or be the int64 packed signs"),
])
def test_integer_x_in_float_layout_is_not_taken_for_packed_signs(call, error, match):
    x = torch.randint(-3, 3, (1, 70, 6, 6))  # int64 (N, C, H, W), not pack_bits' (N, H, W, words)
    before = x.clone()
    with pytest.raises(error, match=match):
        call(x)
    assert torch.equal(x, before)
