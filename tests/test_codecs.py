"""fastlmk.codecs against mmpose's formulas written out in NumPy (fastlmk.bench.mmpose_numpy, itself checked
against mmpose by test_codecs_mmpose.py), on every backend: NumPy and batched tensor entry points, several
instances, invisible and out-of-map keypoints, odd and non-square sizes, every option; and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlmk import _native, codecs
from fastlmk.bench import mmpose_numpy as mm

# (input_size, heatmap_size) as (W, H): square, the COCO 4:3, odd and non-square
SIZES = [((256, 256), (64, 64)), ((192, 256), (48, 64)), ((99, 71), (33, 23))]
CASES = [
    ("MSRAHeatmap", dict(sigma=2.0)), ("MSRAHeatmap", dict(sigma=1.5)), ("MSRAHeatmap", dict(sigma=1.1)),
    ("MSRAHeatmap", dict(sigma=2.0, unbiased=True)), ("MSRAHeatmap", dict(sigma=1.0, unbiased=True, blur_kernel_size=5)),
    ("UDPHeatmap", dict(sigma=2.0)), ("UDPHeatmap", dict(sigma=1.5, blur_kernel_size=7)),
    ("UDPHeatmap", dict(heatmap_type="combined")), ("UDPHeatmap", dict(heatmap_type="combined", radius_factor=0.1)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CASES]


@pytest.fixture
def env_backend(backend, monkeypatch):
    """The codecs call the public ops without a backend argument: select the fixture's by the environment."""
    monkeypatch.setenv("FASTLMK_BACKEND", backend[0])
    return backend


def _keypoints(rng, input_size, n=1, k=17):
    """(N, K, 2) float32 keypoints over and beyond the image, visibilities 0, 0.3 (weighted, no target) or 1."""
    w, h = input_size
    kp = (rng.random((n, k, 2)) * [w * 1.3, h * 1.3] - [w * 0.15, h * 0.15]).astype(np.float32)
    kp[0, 1] = np.floor(kp[0, 1])  # on a pixel of the input
    vis = rng.choice(np.array([0.0, 0.3, 1.0, 1.0, 1.0], np.float32), size=(n, k))
    return kp, vis


def _oracle_encode(name, options, input_size, heatmap_size, kp, vis):
    if name == "MSRAHeatmap":
        return mm.msra_encode(input_size, heatmap_size, options["sigma"], kp, vis, options.get("unbiased", False))
    return mm.udp_encode(input_size, heatmap_size, kp, vis, options.get("heatmap_type", "gaussian"),
                         options.get("sigma", 2.0), options.get("radius_factor", 0.0546875))


def _oracle_decode(name, options, input_size, heatmap_size, maps):
    if name == "MSRAHeatmap":
        return mm.msra_decode(input_size, heatmap_size, maps, options.get("unbiased", False),
                              options.get("blur_kernel_size", 11))
    return mm.udp_decode(input_size, heatmap_size, maps, options.get("heatmap_type", "gaussian"),
                         options.get("radius_factor", 0.0546875), options.get("blur_kernel_size", 11))


def _codec(name, options, sizes):
    return getattr(codecs, name)(input_size=sizes[0], heatmap_size=sizes[1], **options)


def _to_decode(encoded, rng, k):
    """Maps to decode (noise against ties; channel 0 all negative, decoding to -1) and the channels whose
    peak makes DARK well conditioned (noise-only channels amplify rounding into pixels)."""
    maps = encoded + np.float32(0.01) * rng.random(encoded.shape, dtype=np.float32)
    if maps.shape[0] == 3 * k:  # UDP combined: exact offsets, so that any of the near-tied maxima of the
        maps[1::3], maps[2::3] = encoded[1::3], encoded[2::3]  # blurred disc decodes to the same keypoint
    maps[0] = -rng.random(maps.shape[1:], dtype=np.float32)
    peaked = maps.reshape(maps.shape[0], -1).max(1) > 0.5
    peaked = peaked[::3] if maps.shape[0] == 3 * k else peaked
    peaked[0] = True
    return maps, peaked


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"{s[1][0]}x{s[1][1]}")
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_encode_decode_equal_mmpose_formulas(env_backend, test_seed, name, options, sizes):
    rng = np.random.default_rng(test_seed)
    codec = _codec(name, options, sizes)
    kp, vis = _keypoints(rng, sizes[0])
    want, got = _oracle_encode(name, options, *sizes, kp, vis), codec.encode(kp, vis)
    assert set(got) == {"heatmaps", "keypoint_weights"}
    for key in got:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
    np.testing.assert_allclose(got["heatmaps"], want["heatmaps"], rtol=0, atol=2e-6)
    np.testing.assert_array_equal(got["keypoint_weights"], want["keypoint_weights"])

    maps, peaked = _to_decode(want["heatmaps"], rng, kp.shape[1])
    (wk, ws), (gk, gs) = _oracle_decode(name, options, *sizes, maps), codec.decode(maps)
    assert gk.shape == wk.shape == (1, kp.shape[1], 2) and gs.shape == ws.shape == (1, kp.shape[1])
    assert gk.dtype == wk.dtype and gs.dtype == np.float32
    argmax_only = options.get("heatmap_type") == "combined" or (name == "MSRAHeatmap" and not options.get("unbiased"))
    rows = slice(None) if argmax_only else peaked
    np.testing.assert_allclose(gk[0, rows], wk[0, rows], rtol=0, atol=1e-3 if not argmax_only else 1e-4)
    np.testing.assert_allclose(gs, ws, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sigma,sizes", [(2.0, SIZES[1]), (1.5, SIZES[2])])
def test_several_instances_merge_by_max(env_backend, test_seed, sigma, sizes):
    """N instances in one heatmap: mmpose's generate_gaussian_heatmaps of all of them."""
    rng = np.random.default_rng(test_seed)
    kp, vis = _keypoints(rng, sizes[0], n=6)
    kp[1] = kp[0] + rng.random(kp[0].shape, dtype=np.float32) * 8  # overlapping instances
    for name, kind in (("MSRAHeatmap", "msra"), ("UDPHeatmap", "udp")):
        got = getattr(codecs, name)(sizes[0], sizes[1], sigma=sigma).encode(kp, vis)
        scale = getattr(codecs, name)(sizes[0], sizes[1], sigma=sigma).scale_factor
        maps, weights = mm.gaussian_heatmaps(sizes[1], kp / scale, vis, sigma, kind)
        np.testing.assert_allclose(got["heatmaps"], maps, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(got["keypoint_weights"], weights)


@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_batch_methods_equal_the_per_sample_ones(env_backend, test_seed, name, options):
    """encode_batch / decode_batch / batch_decode on a batch (on the backend's device) = per-sample NumPy."""
    _, device = env_backend
    rng = np.random.default_rng(test_seed)
    sizes = SIZES[2]
    codec = _codec(name, options, sizes)
    samples = [_keypoints(rng, sizes[0]) for _ in range(3)]
    kp = torch.from_numpy(np.stack([s[0] for s in samples])).to(device)
    vis = torch.from_numpy(np.stack([s[1] for s in samples])).to(device)
    batch = codec.encode_batch(kp, vis)
    assert batch["heatmaps"].device.type == device
    maps = []
    for i, (k, v) in enumerate(samples):
        one = codec.encode(k, v)
        # the batch on the backend, the NumPy sample on the CPU kernel: a few ulps apart
        np.testing.assert_allclose(batch["heatmaps"][i].cpu().numpy(), one["heatmaps"], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(batch["keypoint_weights"][i].cpu().numpy(), one["keypoint_weights"])
        maps.append(_to_decode(one["heatmaps"], rng, k.shape[1])[0])
    stacked = torch.from_numpy(np.stack(maps)).to(device)
    keypoints, scores = codec.decode_batch(stacked)
    listed = codec.batch_decode(stacked)
    for i, m in enumerate(maps):
        want_k, want_s = codec.decode(m)
        np.testing.assert_allclose(keypoints[i].cpu().numpy(), want_k[0], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(scores[i].cpu().numpy(), want_s[0])
        np.testing.assert_array_equal(listed[0][i], keypoints[i:i + 1].cpu().numpy())
        np.testing.assert_array_equal(listed[1][i], scores[i:i + 1].cpu().numpy())


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("name,options", CASES, ids=IDS)
def test_flip_test_is_mmposes(env_backend, test_seed, name, options, shift):
    """decode_batch(maps, flipped, flip_indices, shift_heatmap) = mmpose's flip_heatmaps in the codec's flip
    mode, the mean, and mmpose's decode; a bad flip_indices or flipped shape is refused."""
    from test_decode import _mmpose_flip

    _, device = env_backend
    rng = np.random.default_rng(test_seed)
    sizes = SIZES[2]
    codec = _codec(name, options, sizes)
    k = 17
    pairs = [min(i + 1, k - 1) if i % 2 else max(i - 1, 0) for i in range(k)]  # neighbours swapped, as COCO's
    maps, flipped = [], []
    for _ in range(2):
        kp, vis = _keypoints(rng, sizes[0])
        maps.append(_to_decode(codec.encode(kp, vis)["heatmaps"], rng, k)[0])
        kp[..., 0] = sizes[0][0] - 1 - kp[..., 0]
        flipped.append(_to_decode(codec.encode(kp[:, pairs], vis[:, pairs])["heatmaps"], rng, k)[0])
    maps, flipped = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(flipped))
    combined = options.get("heatmap_type") == "combined"
    mode = "udp_combined" if combined else "heatmap"
    average = ((maps + _mmpose_flip(flipped, mode, pairs, shift)) * 0.5).numpy()
    keypoints, scores = codec.decode_batch(maps.to(device), flipped.to(device), flip_indices=pairs,
                                           shift_heatmap=shift)
    for i in range(2):
        want_k, want_s = _oracle_decode(name, options, *sizes, average[i])
        argmax_only = combined or (name == "MSRAHeatmap" and not options.get("unbiased"))
        grid = average[i][::3] if combined else average[i]
        rows = slice(None) if argmax_only else grid.reshape(k, -1).max(1) > 0.5  # DARK: where a peak is
        np.testing.assert_allclose(keypoints[i].cpu().numpy()[rows], want_k[0][rows], rtol=0,
                                   atol=1e-4 if argmax_only else 1e-3)
        np.testing.assert_allclose(scores[i].cpu().numpy(), want_s[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="flip_indices must be a permutation"):
        codec.decode_batch(maps.to(device), flipped.to(device), flip_indices=pairs[:-1])
    with pytest.raises(ValueError, match="flipped must have the heatmaps' shape"):
        codec.decode_batch(maps.to(device), flipped[:1].to(device))


@pytest.mark.parametrize("name,options", [c for c in CASES if c[1].get("heatmap_type") != "combined"],
                         ids=[i for c, i in zip(CASES, IDS) if c[1].get("heatmap_type") != "combined"])
def test_loss_is_keypoint_mse_on_the_target(env_backend, test_seed, name, options):
    """``loss`` = mmpose's KeypointMSELoss(use_target_weight) on the encoded target, mean(w (p - t)^2), and its
    gradient, without rendering the target; without target weights, the plain MSE."""
    _, device = env_backend
    rng = np.random.default_rng(test_seed)
    sizes = SIZES[1]
    codec = _codec(name, options, sizes)
    samples = [_keypoints(rng, sizes[0]) for _ in range(2)]
    kp, vis = (torch.from_numpy(np.stack([s[i] for s in samples])).to(device) for i in (0, 1))
    enc = codec.encode_batch(kp, vis)
    target, w = enc["heatmaps"], enc["keypoint_weights"][:, 0]
    pred = torch.rand(target.shape, generator=torch.Generator().manual_seed(test_seed)).to(device)
    for use_weight in (True, False):
        p = pred.clone().requires_grad_()
        got = codec.loss(p, kp, vis, use_target_weight=use_weight)
        got.backward()
        q = pred.clone().requires_grad_()
        per_pixel = (q - target) ** 2
        want = (per_pixel * w[..., None, None]).mean() if use_weight else per_pixel.mean()
        want.backward()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-9)


def _border_keypoints(size, scale, step=0.125, reach=12):
    """(1, K, 2) input-image keypoints on a grid across each border of a map of ``size`` (W, H) in units of
    ``scale`` (where a window just meets or misses the map), the other coordinate inside; then NaN and
    infinite ones."""
    rows = []
    for axis in range(2):
        n = size[axis]
        for v in np.concatenate([np.arange(-reach, 2, step), np.arange(n - 2, n + reach, step)]):
            point = [n * 0.5 for n in size]
            point[axis] = v
            rows.append(point)
    rows += [[np.nan, 3.0], [4.0, np.inf], [-np.inf, 2.0], [np.nan, np.nan]]
    return (np.array(rows, np.float64) * scale).astype(np.float32)[None]


VISIBILITIES = {np.float32: [0.0, 0.3, 1.0, 1.0], np.float64: [0.0, 0.49, 0.5, 1.0], np.int64: [0, 1, 2, 1],
                bool: [False, True, True, True]}


@pytest.mark.parametrize("dtype", list(VISIBILITIES), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,options", [c for c in CASES if c[1].get("heatmap_type") != "combined"],
                         ids=[i for i, c in zip(IDS, CASES) if c[1].get("heatmap_type") != "combined"])
def test_target_rule_at_the_borders(test_seed, name, options, dtype):
    """The per-sample native rule and the batched one are mmpose's where the window just meets or misses the
    map, for non-finite keypoints and for visibilities of any dtype (weights keep it, as mmpose's copy)."""
    rng = np.random.default_rng(test_seed)
    sizes = SIZES[2]
    codec = _codec(name, options, sizes)
    kp = _border_keypoints(sizes[1], codec.scale_factor)
    vis = rng.choice(np.array(VISIBILITIES[dtype], dtype), size=kp.shape[:2])
    finite = np.isfinite(kp[0]).all(-1)
    got = codec.encode(kp, vis)
    with np.errstate(invalid="ignore"):
        want = _oracle_encode(name, options, *sizes, kp[:, finite], vis[:, finite])
    assert got["keypoint_weights"].dtype == vis.dtype
    np.testing.assert_array_equal(got["keypoint_weights"][:, finite], want["keypoint_weights"])
    np.testing.assert_allclose(got["heatmaps"][finite], want["heatmaps"], rtol=0, atol=2e-6)
    seen = vis[0, ~finite] >= 0.5
    np.testing.assert_array_equal(got["keypoint_weights"][0, ~finite], np.where(seen, 0, vis[0, ~finite]))
    assert not got["heatmaps"][~finite].any()
    batch = codec.encode_batch(torch.from_numpy(kp[None]), torch.from_numpy(vis[None]))
    np.testing.assert_array_equal(batch["keypoint_weights"][0].numpy(), got["keypoint_weights"])
    np.testing.assert_allclose(batch["heatmaps"][0].numpy(), got["heatmaps"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", list(VISIBILITIES), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", [dict(), dict(smoothing_type="standard", label_smooth_weight=0.1),
                                     dict(simcc_split_ratio=1.5, sigma=(2.0, 3.5))], ids=["gaussian", "standard", "split"])
def test_simcc_target_rule_at_the_borders(test_seed, options, dtype):
    rng = np.random.default_rng(test_seed)
    input_size = (99, 71)
    codec = codecs.SimCCLabel(input_size, **options)
    kp = _border_keypoints(codec._bins, 1 / codec.simcc_split_ratio, reach=24)
    vis = rng.choice(np.array(VISIBILITIES[dtype], dtype), size=kp.shape[:2])
    finite = np.isfinite(kp[0]).all(-1)
    got = codec.encode(kp, vis)
    want = mm.simcc_encode(input_size, kp[:, finite], vis[:, finite], **options)
    assert got["keypoint_weights"].dtype == vis.dtype
    for key in got:
        np.testing.assert_allclose(got[key][:, finite], want[key], rtol=0, atol=1e-7)
    seen = vis[0, ~finite] >= 0.5
    np.testing.assert_array_equal(got["keypoint_weights"][0, ~finite], np.where(seen, 0, vis[0, ~finite]))
    assert not got["keypoint_x_labels"][:, ~finite].any() and not got["keypoint_y_labels"][:, ~finite].any()
    batch = codec.encode_batch(torch.from_numpy(kp[None]), torch.from_numpy(vis[None]))
    for key in got:
        np.testing.assert_allclose(batch[key][0].numpy(), got[key], rtol=1e-6, atol=1e-9)


@pytest.mark.filterwarnings("ignore:fastlmk")
def test_encode_without_the_native_build_takes_the_tensor_path(test_seed, monkeypatch):
    """Where fastlmk._C failed to build, the per-sample encode runs the batched rule and render on torch."""
    rng = np.random.default_rng(test_seed)
    kp, vis = _keypoints(rng, SIZES[2][0], n=2)
    codecs_ = [_codec("MSRAHeatmap", dict(sigma=2.0), SIZES[2]), _codec("UDPHeatmap", dict(sigma=1.5), SIZES[2]),
               codecs.SimCCLabel(SIZES[2][0], sigma=(3.0, 4.0))]
    native = [c.encode(kp, vis) for c in codecs_]
    monkeypatch.setattr(_native, "cpu_error", "ImportError: simulated")
    for codec, want in zip(codecs_, native):
        got = codec.encode(kp, vis)
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-9)


def test_constructor_attributes_are_mmposes():
    msra = codecs.MSRAHeatmap((192, 256), (48, 64), 2.0)
    np.testing.assert_array_equal(msra.scale_factor, np.array([4.0, 4.0], np.float32))
    udp = codecs.UDPHeatmap((192, 256), (48, 64))
    np.testing.assert_allclose(udp.scale_factor, [191 / 47, 255 / 63], rtol=1e-7)
    assert udp.sigma == 2.0 and udp.radius_factor == 0.0546875 and udp.blur_kernel_size == 11
    assert msra.label_mapping_table == dict(keypoint_weights="keypoint_weights")
    assert msra.field_mapping_table == dict(heatmaps="heatmaps") and msra.support_batch_decoding


def test_bad_input_gets_a_clear_error():
    msra = codecs.MSRAHeatmap((192, 256), (48, 64), 2.0)
    kp = np.zeros((1, 17, 2), np.float32)
    with pytest.raises(ValueError, match="keypoints must have shape"):
        msra.encode(np.zeros((17, 2), np.float32))
    with pytest.raises(ValueError, match="keypoints_visible must have shape"):
        msra.encode(kp, np.ones((1, 16), np.float32))
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        msra.decode(np.zeros((1, 17, 64, 48), np.float32))
    with pytest.raises(ValueError, match="one instance"):
        msra.loss(torch.zeros(1, 17, 64, 48), torch.zeros(1, 2, 17, 2))
    with pytest.raises(ValueError, match="heatmap_type"):
        codecs.UDPHeatmap((192, 256), (48, 64), heatmap_type="offset")
    with pytest.raises(ValueError, match="one instance"):
        codecs.UDPHeatmap((192, 256), (48, 64), heatmap_type="combined").encode(np.zeros((2, 17, 2), np.float32))
    with pytest.raises(ValueError, match="3K channels"):
        codecs.UDPHeatmap((192, 256), (48, 64), heatmap_type="combined").decode(np.zeros((4, 64, 48), np.float32))
    with pytest.raises(ValueError, match="blur_kernel_size"):
        codecs.MSRAHeatmap((192, 256), (48, 64), 2.0, unbiased=True, blur_kernel_size=4)
    with pytest.raises(ValueError, match="sigma"):
        codecs.MSRAHeatmap((192, 256), (48, 64), 0.0)
    with pytest.raises(ValueError, match="heatmap_size"):
        codecs.MSRAHeatmap((192, 256), (48,), 2.0)


SIMCC = [dict(), dict(sigma=(4.9, 5.66)), dict(smoothing_type="standard"),
         dict(smoothing_type="standard", label_smooth_weight=0.1), dict(normalize=False), dict(use_dark=True),
         dict(simcc_split_ratio=1.5, sigma=3.0, use_dark=True)]


@pytest.mark.parametrize("input_size", [(192, 256), (99, 71)])
@pytest.mark.parametrize("options", SIMCC, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_simcc_equals_mmpose_formulas(env_backend, test_seed, input_size, options):
    """SimCCLabel: several instances (one label each), invisible and out-of-range keypoints, every option."""
    rng = np.random.default_rng(test_seed)
    codec = codecs.SimCCLabel(input_size, **options)
    kp, vis = _keypoints(rng, input_size, n=3)
    enc_opts = {k: v for k, v in options.items() if k != "use_dark"}
    want, got = mm.simcc_encode(input_size, kp, vis, **enc_opts), codec.encode(kp, vis)
    assert set(got) == set(want)
    for key in got:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-7)
    sx = want["keypoint_x_labels"][0] + np.float32(0.01) * rng.random(want["keypoint_x_labels"][0].shape, np.float32)
    sy = want["keypoint_y_labels"][0] + np.float32(0.01) * rng.random(want["keypoint_y_labels"][0].shape, np.float32)
    sx[0] = -1.0  # score <= 0: -1
    dec_opts = {k: options[k] for k in ("sigma", "simcc_split_ratio", "use_dark") if k in options}
    (wk, ws), (gk, gs) = mm.simcc_decode(sx, sy, **dec_opts), codec.decode(sx, sy)
    assert gk.shape == wk.shape and gk.dtype == np.float32 and gs.shape == ws.shape
    # DARK is compared where both vectors peak inside (noise alone, or a tail whose peak lies off the vector,
    # is ill-conditioned: the Newton step amplifies float32 rounding, see _to_decode)
    bins = np.around(kp[0] * codec.simcc_split_ratio)
    peaked = ((bins >= 0) & (bins < np.array([want["keypoint_x_labels"].shape[-1], want["keypoint_y_labels"].shape[-1]]))).all(-1)
    rows = ((want["keypoint_weights"][0] >= 0.5) & peaked) | (not options.get("use_dark"))
    rows[0] = True
    np.testing.assert_allclose(gk[0, rows], wk[0, rows], rtol=0, atol=1e-3 if options.get("use_dark") else 0)
    np.testing.assert_array_equal(gs, ws)


def test_simcc_batch_methods_and_visibility(env_backend, test_seed):
    _, device = env_backend
    rng = np.random.default_rng(test_seed)
    codec = codecs.SimCCLabel((99, 71), sigma=(3.0, 4.0), use_dark=True, decode_visibility=True)
    samples = [_keypoints(rng, (99, 71), n=2) for _ in range(3)]
    kp = torch.from_numpy(np.stack([s[0] for s in samples])).to(device)
    vis = torch.from_numpy(np.stack([s[1] for s in samples])).to(device)
    batch = codec.encode_batch(kp, vis)
    assert batch["keypoint_x_labels"].shape == (3, 2, 17, 198) and batch["keypoint_x_labels"].device.type == device
    for i, (k, v) in enumerate(samples):
        one = codec.encode(k, v)
        for key, value in one.items():  # the batch on the backend, the sample on the CPU kernel: ulps apart
            np.testing.assert_allclose(batch[key][i].cpu().numpy(), value, rtol=1e-6, atol=1e-9)
    sx, sy = batch["keypoint_x_labels"][:, 0], batch["keypoint_y_labels"][:, 0]
    points, (scores, visible) = codec.batch_decode(sx, sy)
    for i in range(3):
        k, (s, vv) = codec.decode(sx[i].cpu().numpy(), sy[i].cpu().numpy())
        np.testing.assert_allclose(points[i], k, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(scores[i], s)
        px = np.exp(sx[i].cpu().numpy() * 150 * 3.0)
        py = np.exp(sy[i].cpu().numpy() * 150 * 4.0)
        want = np.minimum((px / px.sum(1, keepdims=True)).max(1), (py / py.sum(1, keepdims=True)).max(1))
        np.testing.assert_allclose(vv[0], want, rtol=1e-5, atol=1e-6)


def test_simcc_bad_input():
    with pytest.raises(ValueError, match="smoothing_type"):
        codecs.SimCCLabel((192, 256), smoothing_type="laplace")
    with pytest.raises(ValueError, match="label_smooth_weight is only used"):
        codecs.SimCCLabel((192, 256), label_smooth_weight=0.1)
    with pytest.raises(ValueError, match="use_dark needs sigma"):
        codecs.SimCCLabel((192, 256), sigma=0.3, use_dark=True)
    with pytest.raises(ValueError, match="simcc_x and simcc_y must have shape"):
        codecs.SimCCLabel((192, 256)).decode(np.zeros(5, np.float32), np.zeros(5, np.float32))
