"""Decoding family: every backend against the reference (random maps, rendered Gaussians, borders, ties, NaN),
round-trip accuracy of each encoder/decoder pairing, opcheck, gradcheck and gradgradcheck of soft_argmax."""

import math

import pytest
import torch

from fastlmk import _dispatch, ops
from fastlmk.reference import decode as ref

from conftest import assert_decoded, random_keypoints

METHODS = ref.METHODS
SHAPES = [(2, 3, 17, 23), (1, 1, 1, 1), (3, 2, 1, 7), (2, 2, 5, 3), (1, 4, 32, 32)]
HALF = [torch.float16, torch.bfloat16]


def _maps(shape, gen, dtype=torch.float32, noise=0.05):
    """Gaussians at random sub-pixel centres (some outside the map) plus noise; half the channels pure noise."""
    b, k, h, w = shape
    kp = random_keypoints(b, k, h, w, generator=gen, missing=False)
    maps = ops.render_gaussian(kp, (h, w), 1.5) + noise * torch.randn(shape, generator=gen)
    maps.view(b * k, h, w)[1::2] = torch.randn(b * k // 2, h, w, generator=gen)
    return maps.to(dtype)


def _kwargs(method, maps, gen):
    b, k, h, w = maps.shape
    if method != "offset":
        return {}
    return {"offsets": torch.randn(b, k, 2, h, w, generator=gen)}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_decode_matches_reference(backend, gen, method, shape):
    name, device = backend
    maps = _maps(shape, gen)
    kw = _kwargs(method, maps, gen)
    for k in (1, 9, shape[2] * shape[3]) if method == "topk" else (9,):
        if k > shape[2] * shape[3]:
            continue
        want = ref.decode(maps, method, k=k, **kw)
        got = ops.decode(maps.to(device), method, k=k, backend=name,
                         **{n: t.to(device) for n, t in kw.items()})
        assert_decoded(tuple(t.cpu() for t in got), want, shape[2:])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, *HALF])
def test_decode_dtypes(backend, gen, method, dtype):
    name, device = backend
    maps = _maps((2, 3, 11, 13), gen, dtype)
    kw = _kwargs(method, maps, gen)
    got = ops.decode(maps.to(device), method, backend=name, **{n: t.to(device) for n, t in kw.items()})
    assert_decoded(tuple(t.cpu() for t in got), ref.decode(maps, method, **kw), (11, 13))


@pytest.mark.parametrize("method", METHODS)
def test_decode_options_and_affine(backend, gen, method):
    """blur, window and the fused affine map, against the reference."""
    name, device = backend
    maps = _maps((2, 3, 16, 12), gen)
    kw = _kwargs(method, maps, gen)
    affine = torch.randn(2, 2, 3, generator=gen)
    for blur, window in ((1, 0), (3, 2), (7, 1)):
        want = ref.decode(maps, method, blur=blur, window=window, affine=affine, **kw)
        got = ops.decode(maps.to(device), method, blur=blur, window=window, affine=affine.to(device),
                         backend=name, **{n: t.to(device) for n, t in kw.items()})
        assert_decoded(tuple(t.cpu() for t in got), want, (40, 40))


def _special_maps():
    """Maxima on corners and borders, ties (constant maps, two equal peaks), a flat plateau, a NaN channel."""
    h, w = 9, 8
    corners = torch.tensor([[0.0, 0.0], [w - 1, 0.0], [0.0, h - 1], [w - 1, h - 1], [0.0, 4.3], [3.6, h - 1],
                            [1.0, 1.0], [w - 2.0, h - 2.0]])
    maps = [ops.render_gaussian(corners[None], (h, w), 1.2)[0]]
    constant = torch.full((3, h, w), 0.5)
    constant[1] = 0.0
    constant[2] = -1.0
    peaks = torch.zeros(2, h, w)
    peaks[0, 2, 3] = peaks[0, 6, 5] = 1.0  # two equal maxima: the first in row-major order wins
    peaks[1, 4, 2:5] = 1.0  # a horizontal plateau
    nan = torch.rand(1, h, w)
    nan[0, 3, 3] = float("nan")
    return torch.cat([maps[0], constant, peaks, nan])[None]


@pytest.mark.parametrize("method", METHODS)
def test_decode_borders_ties_and_nan(backend, gen, method):
    name, device = backend
    maps = _special_maps()
    kw = _kwargs(method, maps, gen)
    want = ref.decode(maps, method, **kw)
    got = ops.decode(maps.to(device), method, backend=name, **{n: t.to(device) for n, t in kw.items()})
    assert_decoded(tuple(t.cpu() for t in got), want, (9, 8))
    coords, scores = got
    assert coords[0, -1].isnan().all() and scores[0, -1].isnan()
    assert not coords[0, :-1].isnan().any()
    if method == "argmax":
        assert coords[0, 8].tolist() == [0.0, 0.0] and coords[0, 11].tolist() == [3.0, 2.0]


def test_wsm_when_every_other_pixel_is_minus_inf(backend):
    """The second maximum is then the first other pixel: a finite shift, never 0/0."""
    name, device = backend
    maps = torch.full((1, 3, 1, 3), float("-inf"))
    maps[0, 0, 0, 0] = maps[0, 1, 0, 1] = 5.0
    maps[0, 2, 0] = torch.tensor([1.0, 2.0, 2.0])
    coords, _ = ops.decode(maps.to(device), "wsm", backend=name)
    assert coords.cpu()[0, :, 0].tolist() == [0.25, 0.75, 1.25]


def test_infinite_neighbours(backend):
    """-inf beside the peak (masked logits): parabola and quarter give no shift toward or from it, finite."""
    name, device = backend
    maps = torch.tensor([[0.0, float("-inf"), 5.0, 3.0, 0.0]]).expand(3, 5).contiguous()[None, None]
    for method in ("parabola", "quarter"):
        coords, _ = ops.decode(maps.to(device), method, backend=name)
        want, _ = ref.decode(maps, method)
        assert torch.equal(coords.cpu(), want) and coords[0, 0, 0].item() in (2.0, 2.25)


def test_large_window_is_clipped_to_the_map(backend, gen):
    name, device = backend
    maps = _maps((1, 3, 6, 5), gen).to(device)
    torch.testing.assert_close(ops.decode(maps, "local_softargmax", window=10 ** 6, backend=name),
                               ops.decode(maps, "local_softargmax", window=5, backend=name))


def test_argmax_is_torch_argmax(gen):
    maps = torch.randint(0, 4, (3, 5, 6, 7), generator=gen).float()  # many ties
    idx = maps.flatten(2).argmax(-1)
    coords, scores = ops.decode(maps)
    assert torch.equal(coords, torch.stack([idx % 7, idx // 7], -1).float())
    assert torch.equal(scores, maps.flatten(2).amax(-1))


@pytest.mark.parametrize("k", [2, 5, 17, 32, 33])
def test_topk_with_many_ties(backend, gen, k):
    """Integer-valued maps: which of the tied pixels enter the top k (the lower indices) matters."""
    name, device = backend
    maps = torch.randint(0, 3, (2, 3, 9, 11), generator=gen).float()
    maps[0, 0] = 1.0  # a constant map
    got = ops.decode(maps.to(device), "topk", k=k, backend=name)
    assert_decoded(tuple(t.cpu() for t in got), ref.decode(maps, "topk", k=k), (9, 11))


def test_decode_is_deterministic_across_threads(gen):
    maps = _maps((4, 7, 65, 31), gen)  # above _native.SERIAL_ELEMENTS: threads do run
    threads = torch.get_num_threads()
    runs = []
    for n in (1, threads):
        torch.set_num_threads(n)
        runs.append([ops.decode(maps, m) for m in ("dark", "topk")] + [ops.soft_argmax(maps)])
    torch.set_num_threads(threads)
    for a, b in zip(*runs):
        assert all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else torch.equal(a, b)


# ------------------------------------------------------------------------------------------- round trips

def _inside(n, h, w, gen, margin=3.0):
    kp = torch.rand(1, n, 2, generator=gen, dtype=torch.float64)
    return kp * torch.tensor([w - 1 - 2 * margin, h - 1 - 2 * margin]) + margin


def test_round_trip_rounded_argmax_is_uniform_quantisation(gen):
    """A rounded target decoded by argmax: per-axis error uniform on [-0.5, 0.5], RMS 1/sqrt(12) = 0.289 px."""
    kp = _inside(4000, 64, 64, gen)
    coords, _ = ops.decode(ops.render_gaussian(kp, 64, 2.0, center="rounded"), "argmax")
    err = coords.double() - kp
    # the float32 target rounds floor(x + 0.5) from x rounded to float32: up to 2 ulp(64) past half a pixel
    assert err.abs().max() <= 0.5 + 2 * 64 * torch.finfo(torch.float32).eps
    assert abs(err.pow(2).mean().sqrt().item() - 1 / math.sqrt(12)) < 0.01


@pytest.mark.parametrize("method, max_err", [("dark", 0.01), ("parabola", 0.02), ("quarter", 0.25),
                                              ("argmax", 0.5)])
def test_round_trip_continuous_gaussian(backend, gen, method, max_err):
    """Noise-free continuous Gaussians (sigma 2): DARK recovers sub-pixel positions to < 0.01 px (measured
    ~6e-4), the parabola to < 0.02 px (measured ~0.012)."""
    name, device = backend
    kp = _inside(64, 32, 32, gen, margin=4.0)
    coords, _ = ops.decode(ops.render_gaussian(kp, 32, 2.0).to(device), method, backend=name)
    assert (coords.cpu().double() - kp).abs().max() < max_err


def test_round_trip_offsets_and_soft_argmax(gen):
    kp = _inside(64, 32, 32, gen, margin=6.0)
    maps = ops.render_gaussian(kp, 32, 2.0)
    coords, _ = ops.decode(maps, "offset", offsets=ops.render_offsets(kp, 32, 1.5))
    assert (coords.double() - kp).abs().max() < 1e-5
    # softmax of a log-Gaussian is the (untruncated, sampled) Gaussian: its mean is the centre to ~1e-8
    log_maps = torch.log(ops.render_gaussian(kp, 32, 1.0, radius=100.0).clamp(min=1e-30))
    coords = ops.soft_argmax(log_maps)
    assert (coords.double() - kp).abs().max() < 1e-3


@pytest.mark.parametrize("convention, max_err", [("paper", 1 / 8), ("unbiased", 1 / 16)])
def test_hih_round_trip(backend, gen, convention, max_err):
    name, device = backend
    kp = _inside(200, 32, 32, gen, margin=1.0)
    integer, decimal = ops.encode_hih(kp, 32, convention=convention)
    coords, scores = ops.decode_hih(integer.to(device), decimal.to(device), convention=convention, backend=name)
    err = coords.cpu().double() - kp
    assert err.abs().max() <= max_err + 1e-6
    want = ref.decode_hih(integer, decimal, convention=convention)
    torch.testing.assert_close(coords.cpu(), want[0])
    affine = torch.tensor([[[4.0, 0.0, 1.5], [0.0, 4.0, 1.5]]])
    mapped, _ = ops.decode_hih(integer.to(device), decimal.to(device), convention=convention,
                               affine=affine.to(device), backend=name)
    torch.testing.assert_close(mapped.cpu(), coords.cpu() * 4 + 1.5)


def test_affine_maps_back_to_image_space(gen):
    """Heatmap -> image with the pixel-centre convention u = s (x + 0.5) - 0.5."""
    s = 4.0
    image = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * 200 + 28
    kp = (image + 0.5) / s - 0.5
    maps = ops.render_gaussian(kp, 64, 2.0)
    affine = torch.tensor([[s, 0.0, s * 0.5 - 0.5], [0.0, s, s * 0.5 - 0.5]]).expand(2, 2, 3)
    coords, _ = ops.decode(maps, "dark", affine=affine)
    assert (coords.double() - image).abs().max() < 0.01 * s


# ------------------------------------------------------------------------------------------- soft-argmax

@pytest.mark.parametrize("normalize", ["softmax", "relu"])
@pytest.mark.parametrize("beta", [0.3, 1.0, 10.0])  # 0.3 is not a float32 number: float64 keeps it
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF])
def test_soft_argmax_matches_reference(backend, gen, normalize, beta, dtype):
    """Forward and backward against the float64 reference on the same (rounded) maps."""
    name, device = backend
    maps = torch.randn(2, 3, 13, 17, generator=gen).to(dtype)
    maps[0, 0] = -maps[0, 0].abs()  # no positive value: the relu form gives the centre and zero gradient
    x = maps.to(device).clone().requires_grad_()
    coords = ops.soft_argmax(x, beta=beta, normalize=normalize, backend=name)
    assert coords.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    grad_out = torch.randn(coords.shape, generator=gen, dtype=coords.dtype)
    coords.backward(grad_out.to(device))
    x64 = maps.double().requires_grad_()
    want = ref.soft_argmax(x64, beta, normalize)[0]
    want.backward(grad_out.double())
    tol = 1e-9 if dtype == torch.float64 else 2e-5 * 17
    torch.testing.assert_close(coords.detach().cpu().double(), want.detach(), rtol=0, atol=tol)
    gtol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.get(dtype, 1e-5)
    bound = x64.grad.abs().max().item() * gtol + 1e-12
    if normalize == "softmax" and dtype == torch.float32:
        # the float32 backward uses the float32 coordinates: dL/dh = beta p (g . (pos - coords) + g_stat), so
        # their error enters as beta p |g|_1 |coords error|, and exp(beta h - stat) has a relative error of a
        # few eps (|beta h| + |stat|)
        eps = torch.finfo(dtype).eps
        p = torch.softmax(beta * x64.detach().flatten(2), -1).view_as(x64)
        coords_err = (coords.detach().cpu().double() - want.detach()).abs().amax(-1) + 17 * eps
        stat = torch.logsumexp(beta * x64.detach().flatten(2), -1)
        exp_err = 8 * eps * (beta * x64.detach().abs().flatten(2).amax(-1) + stat.abs() + 1)
        bound = bound + (beta * p * (grad_out.double().abs().sum(-1) * coords_err)[..., None, None]
                         + x64.grad.abs() * exp_err[..., None, None])
    assert ((x.grad.cpu().double() - x64.grad).abs() <= bound).all(), (x.grad.cpu().double() - x64.grad).abs().max()
    if normalize == "relu":
        assert coords[0, 0].tolist() == [8.0, 6.0] and not x.grad[0, 0].any()


@pytest.mark.parametrize("normalize", ["softmax", "relu"])
def test_soft_argmax_gradcheck(backend, gen, normalize):
    name, device = backend
    maps = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64, device="cpu").to(device)
    maps[..., 0, 0] = 0.3  # keep every relu channel positive somewhere, away from the kink at 0
    maps = maps.requires_grad_()

    def f(t):
        return ops.soft_argmax(t, beta=1.7, normalize=normalize, backend=name)

    assert torch.autograd.gradcheck(f, (maps,))
    assert torch.autograd.gradgradcheck(f, (maps,))


def test_soft_argmax_output_can_be_modified_in_place():
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    coords = ops.soft_argmax(x)
    coords *= 4
    coords.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("normalize", ["softmax", "relu"])
@pytest.mark.parametrize("size", [(1, 1), (6, 7)])
def test_soft_argmax_nan_channel(backend, normalize, size):
    """NaN in a channel, in the maps or in the flipped maps, gives NaN coordinates (the relu form too: its
    S = sum relu(h) is NaN, not 0, so no centre); the other channels are untouched."""
    name, device = backend
    maps = torch.rand(1, 2, *size) - 0.5
    maps[0, 0] = maps[0, 0].abs() + 0.1
    for where in ("maps", "flipped"):
        x, flipped = maps.clone(), maps.clone()
        (x if where == "maps" else flipped)[0, 1, 0, 0] = float("nan")
        coords = ops.soft_argmax(x.to(device), normalize=normalize, backend=name,
                                 flipped=flipped.to(device), flip_indices=[0, 1]).cpu()
        want = ref.soft_argmax(x, 1.0, normalize, flipped, [0, 1])[0]
        assert coords[0, 1].isnan().all() and not coords[0, 0].isnan().any(), (where, coords)
        torch.testing.assert_close(coords, want, equal_nan=True)


@pytest.mark.parametrize("stat", [0.0, float("nan")])
def test_soft_argmax_backward_relu_degenerate_stat(backend, stat):
    """The raw relu backward: S = 0 (no positive value) gives no gradient, S = NaN a NaN one where h > 0."""
    name, device = backend
    maps = torch.tensor([[[[1.0, -1.0, 2.0]]]])
    coords, grad_coords, grad_stat = torch.zeros(1, 1, 2), torch.ones(1, 1, 2), torch.ones(1, 1)
    s = torch.full((1, 1), stat)
    with _dispatch.kernel(name):
        got = torch.ops.fastlmk.soft_argmax_backward(grad_coords.to(device), grad_stat.to(device), maps.to(device),
                                                     coords.to(device), s.to(device), 1.0, True).cpu()
    want = ref.soft_argmax_backward(grad_coords, grad_stat, maps, coords, s, 1.0, "relu")
    torch.testing.assert_close(got, want, equal_nan=True)
    assert (got[maps <= 0] == 0).all() and (got[maps > 0].isnan().all() if stat != stat else (got == 0).all())


# ------------------------------------------------------------------------------------------- the flip test

def _mmpose_flip(flipped, mode, indices, shift):
    """mmpose 1.3's ``flip_heatmaps`` written out: flip W, permute the channels (in groups of 3 for
    ``"udp_combined"``, whose x offsets change sign), then with ``shift`` move the map one pixel right."""
    b, c, h, w = flipped.shape
    out = flipped.flip(-1)
    if mode == "udp_combined":
        out = out.view(b, c // 3, 3, h, w)
    if indices is not None:
        out = out[:, indices]
    out = out.clone()
    if mode == "udp_combined":
        out[:, :, 1] = -out[:, :, 1]
        out = out.reshape(b, c, h, w)
    if shift:
        out[..., 1:] = out[..., :-1].clone()
    return out


def _flip_pair(shape, gen, dtype=torch.float32):
    """Maps and the maps of the flipped image (its keypoints mirrored, channels permuted, other noise)."""
    b, k, h, w = shape
    maps = _maps(shape, gen, dtype)
    flipped = _maps(shape, gen, dtype)
    indices = torch.randperm(k, generator=gen).tolist()
    return maps, flipped, indices


FLIP_SHAPES = [(2, 3, 17, 23), (1, 1, 1, 1), (3, 2, 1, 7), (2, 2, 5, 1), (1, 2, 40, 37), (1, 2, 9, 53)]  # 37, 53: many blocks


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", FLIP_SHAPES)
def test_flip_decode_is_mmpose_flip_average_decode(backend, gen, method, shape, shift):
    """decode(maps, flipped=...) equals mmpose's flip_heatmaps, the average and a plain decode; offsets flip
    back as flip_mode='udp_combined' (the 3K-channel maps of mmpose's UDP codec) does."""
    name, device = backend
    maps, flipped, indices = _flip_pair(shape, gen)
    b, k, h, w = shape
    kw, want_kw = {}, {}
    if method == "offset":
        off, foff = torch.randn(2, b, k, 2, h, w, generator=gen)
        combined = torch.cat([flipped[:, :, None], foff], 2).reshape(b, 3 * k, h, w)
        back = _mmpose_flip(combined, "udp_combined", indices, shift).view(b, k, 3, h, w)
        average = (maps + back[:, :, 0]) * 0.5
        want_kw = {"offsets": (off + back[:, :, 1:]) * 0.5}
        kw = {"offsets": off.to(device), "flipped_offsets": foff.to(device)}
    else:
        average = (maps + _mmpose_flip(flipped, "heatmap", indices, shift)) * 0.5
    for k_top in (1, 9, h * w) if method == "topk" else (9,):
        if k_top > h * w:
            continue
        want = ref.decode(average, method, k=k_top, **want_kw)
        got = ops.decode(maps.to(device), method, k=k_top, flipped=flipped.to(device), flip_indices=indices,
                         shift_heatmap=shift, backend=name, **kw)
        assert_decoded(tuple(t.cpu() for t in got), want, shape[2:])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF])
def test_flip_decode_dtypes_borders_and_nan(backend, gen, method, dtype):
    """The flip average in the compute dtype of half and float64 maps; maxima on borders and ties, where
    the shifted column 0 reads the flipped map's last column; NaN in either map gives NaN."""
    name, device = backend
    maps = _special_maps().to(dtype)
    flipped = _special_maps().flip(-1).to(dtype)  # the same maps mirrored: the average is the maps
    flipped[0, 0] = torch.rand(9, 8, generator=gen).to(dtype)
    b, k, h, w = maps.shape
    kw, want_kw = {}, {}
    if method == "offset":
        off, foff = torch.randn(2, b, k, 2, h, w, generator=gen, dtype=ref.compute_dtype(dtype))
        kw = {"offsets": off.to(device), "flipped_offsets": foff.to(device)}
        sign = torch.tensor([-1.0, 1.0], dtype=off.dtype).view(1, 1, 2, 1, 1)
        want_kw = {"offsets": (off + foff.flip(-1) * sign) * 0.5}
    for shift in (False, True):
        average = (maps.to(ref.compute_dtype(dtype)) + _mmpose_flip(flipped, "heatmap", None, shift).to(
            ref.compute_dtype(dtype))) * 0.5
        if method == "offset" and shift:
            back = foff.flip(-1)
            back[..., 1:] = back[..., :-1].clone()
            want_kw = {"offsets": (off + back * sign) * 0.5}
        want = ref.decode(average, method, **want_kw)
        got = ops.decode(maps.to(device), method, flipped=flipped.to(device), shift_heatmap=shift, backend=name,
                         **kw)
        assert_decoded(tuple(t.cpu() for t in got), want, (9, 8))
        assert got[0][0, -1].isnan().all() and not got[0][0, :-1].isnan().any()


def test_flip_decode_nan_at_every_column(backend, gen):
    """A NaN at any column of either map (every lane of every vector of a row, W = 53: four 8-column vectors,
    two more and a tail) makes the channel NaN; the other channels are untouched."""
    name, device = backend
    maps = torch.rand(1, 2, 3, 53, generator=gen)
    flipped = torch.rand(1, 2, 3, 53, generator=gen)
    for j in range(53):
        for which in (maps, flipped):
            saved = which[0, 0, 1, j].item()
            which[0, 0, 1, j] = float("nan")
            coords, scores = ops.decode(maps.to(device), "argmax", flipped=flipped.to(device), backend=name)
            assert coords[0, 0].isnan().all() and scores[0, 0].isnan() and not scores[0, 1].isnan(), j
            which[0, 0, 1, j] = saved


@pytest.mark.parametrize("shift", [False, True])
def test_flip_decode_ties_across_lanes_and_rows(backend, shift):
    """Equal maxima of the average in different vector lanes, chains and rows (W = 37: four 8-column
    vectors and a tail per row): the first in row-major order wins, as torch.argmax."""
    name, device = backend
    maps = torch.zeros(1, 4, 6, 37)
    maps[0, 0] = 0.5  # constant
    maps[0, 1, 3, 30] = maps[0, 1, 3, 12] = maps[0, 1, 4, 2] = 1.0  # the first at column 12 (second vector)
    maps[0, 2, 2, 36] = maps[0, 2, 2, 33] = maps[0, 2, 5, 1] = 1.0  # in the tail
    maps[0, 3, 1, 0] = maps[0, 3, 1, 9] = 1.0  # column 0 (scalar) before a vector lane
    flipped = torch.zeros_like(maps)
    for method in ("argmax", "quarter"):
        want = ref.decode(maps * 0.5, method)
        got = ops.decode(maps.to(device), method, flipped=flipped.to(device), shift_heatmap=shift, backend=name)
        assert_decoded(tuple(t.cpu() for t in got), want, (6, 37))
        if method == "argmax":
            assert got[0][0].tolist() == [[0.0, 0.0], [12.0, 3.0], [33.0, 2.0], [0.0, 1.0]]


@pytest.mark.parametrize("normalize", ["softmax", "relu"])
@pytest.mark.parametrize("shift", [False, True])
def test_flip_soft_argmax(backend, gen, normalize, shift):
    """Forward against soft_argmax of mmpose's average (many blocks: 40x37); float64 gradcheck and
    gradgradcheck with respect to both the maps and the flipped maps."""
    name, device = backend
    maps, flipped, indices = _flip_pair((2, 3, 40, 37), gen)
    average = (maps + _mmpose_flip(flipped, "heatmap", indices, shift)) * 0.5
    got = ops.soft_argmax(maps.to(device), normalize=normalize, beta=2.0, flipped=flipped.to(device),
                          flip_indices=indices, shift_heatmap=shift, backend=name)
    want = ref.soft_argmax(average, 2.0, normalize)[0]
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=2e-5 * 40)
    x = torch.randn(1, 3, 3, 4, generator=gen, dtype=torch.float64)
    xf = torch.randn(1, 3, 3, 4, generator=gen, dtype=torch.float64)
    x[..., 0, 0] = xf[..., 0, 0] = 0.3  # every relu channel positive somewhere, away from the kink at 0
    x, xf = x.to(device).requires_grad_(), xf.to(device).requires_grad_()

    def f(a, b):
        return ops.soft_argmax(a, beta=1.7, normalize=normalize, flipped=b, flip_indices=[2, 0, 1],
                               shift_heatmap=shift, backend=name)

    assert torch.autograd.gradcheck(f, (x, xf))
    if name != "triton" or device == "cuda":  # the interpreter's calls take seconds each
        assert torch.autograd.gradgradcheck(f, (x, xf))


def test_flip_back_adjoint_is_the_transpose(gen):
    """<flip_back(f), g> = <f, flip_back_adjoint(g)> for every shift and permutation (W = 1 included)."""
    for w in (1, 2, 7):
        f = torch.randn(2, 4, 3, w, generator=gen, dtype=torch.float64)
        g = torch.randn(2, 4, 3, w, generator=gen, dtype=torch.float64)
        for shift in (False, True):
            for indices in (None, [3, 2, 0, 1]):
                lhs = (ref.flip_back(f, indices, shift) * g).sum()
                rhs = (f * ref.flip_back_adjoint(g, indices, shift)).sum()
                torch.testing.assert_close(lhs, rhs)


def test_flip_test_bad_input(gen):
    maps = torch.rand(1, 3, 6, 5)
    before = maps.clone()
    flipped = torch.rand(1, 3, 6, 5)
    cases = [
        (dict(flipped=flipped, flip_indices=[0, 1]), ValueError, "flip_indices must be a permutation"),
        (dict(flipped=flipped, flip_indices=[0, 1, 1]), ValueError, "flip_indices must be a permutation"),
        (dict(flipped=flipped, flip_indices=[0, 1, 3]), ValueError, "flip_indices must be a permutation"),
        (dict(flipped=flipped, flip_indices=[0, 1, 2.0]), ValueError, "flip_indices must be a permutation"),
        (dict(flip_indices=[0, 1, 2]), ValueError, "need the flipped image's maps"),
        (dict(shift_heatmap=True), ValueError, "need the flipped image's maps"),
        (dict(flipped=flipped, shift_heatmap=1), TypeError, "shift_heatmap must be a bool"),
        (dict(flipped=flipped[:, :2]), ValueError, "flipped must have the heatmaps' shape"),
        (dict(flipped=flipped.double()), TypeError, "flipped must have the heatmaps' dtype"),
        (dict(flipped=flipped.int()), TypeError, "flipped"),
    ]
    for kw, exc, text in cases:
        for call in (lambda: ops.decode(maps, "quarter", **kw), lambda: ops.soft_argmax(maps, **kw)):
            with pytest.raises(exc, match=text):
                call()
    offsets = torch.rand(1, 3, 2, 6, 5)
    with pytest.raises(ValueError, match="needs flipped_offsets"):
        ops.decode(maps, "offset", offsets=offsets, flipped=flipped)
    with pytest.raises(ValueError, match="flipped_offsets must have the offsets' shape"):
        ops.decode(maps, "offset", offsets=offsets, flipped=flipped, flipped_offsets=offsets[:, :, :1])
    with pytest.raises(ValueError, match="flipped_offsets is only used"):
        ops.decode(maps, "dark", flipped=flipped, flipped_offsets=offsets)
    f = torch.ops.fastlmk
    for call in (lambda: f.decode(maps, None, None, "argmax", 11, 1, 9, flipped, None, [0, 1, 5]),
                 lambda: f.decode(maps, None, None, "argmax", 11, 1, 9, flipped, None, [-1, 0, 1]),
                 lambda: f.decode(maps, None, None, "argmax", 11, 1, 9, None, None, [0, 1, 2]),
                 lambda: f.decode(maps, offsets, None, "offset", 11, 1, 9, flipped),
                 lambda: f.decode(maps, None, None, "argmax", 11, 1, 9, flipped[:, :, :5]),
                 lambda: f.soft_argmax(maps, 1.0, False, flipped, [2, 2, 0])):
        with pytest.raises(ValueError, match="flip|flipped"):
            call()
    assert torch.equal(maps, before)


# ---------------------------------------------------------------------------------- opcheck and compile

def test_opcheck(backend, gen):
    """The schema, fake kernel and autograd registration of each op against its kernel for the backend's
    device (a CPU tensor's call runs the Triton kernel inside _dispatch.kernel("triton"))."""
    name, device = backend
    maps = torch.randn(2, 3, 9, 8, generator=gen).to(device)
    affine = torch.randn(2, 2, 3, generator=gen).to(device)
    offsets = torch.randn(2, 3, 2, 9, 8, generator=gen).to(device)
    f = torch.ops.fastlmk
    with _dispatch.kernel(name):
        flipped = torch.randn_like(maps)
        for method in METHODS:
            off = offsets if method == "offset" else None
            torch.library.opcheck(f.decode, (maps, off, affine, method, 5, 1, 4))
            torch.library.opcheck(f.decode, (maps, off, affine, method, 5, 1, 4, flipped, off, [1, 2, 0], True))
        for relu in (False, True):
            x = maps.clone().double().requires_grad_()
            torch.library.opcheck(f.soft_argmax, (x, 1.5, relu))
            xf = flipped.clone().double().requires_grad_()
            torch.library.opcheck(f.soft_argmax, (x, 1.5, relu, xf, [2, 0, 1], True))
            coords, stat = f.soft_argmax(x.detach(), 1.5, relu)
            args = (torch.randn_like(coords), torch.randn_like(stat), x, coords, stat, 1.5, relu)
            torch.library.opcheck(f.soft_argmax_backward, args)


def test_torch_compile_fullgraph():
    maps = torch.rand(2, 3, 16, 16, requires_grad=True)

    def step(m):
        coords, scores = ops.decode(m.detach(), "dark")
        return ops.soft_argmax(m).sum() + coords.sum() + scores.sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(maps), step(maps))


# ------------------------------------------------------------------------------------------ decode_simcc

@pytest.mark.parametrize("bins", [(1, 1), (23, 5), (1500, 2049), (384, 512)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF])
def test_decode_simcc_matches_reference(backend, gen, bins, dtype):
    """First maximum of each vector (ties inside and across blocks, at both ends), the smaller maximum, NaN."""
    name, device = backend
    b, k = 3, 4
    x = torch.rand(b, k, bins[0], generator=gen)
    y = torch.rand(b, k, bins[1], generator=gen)
    x[0, 0] = 0.25  # a flat vector: bin 0
    x[0, 1, -1] = 2.0  # the last bin
    x[1, 0, [3 % bins[0], (bins[0] * 2) // 3]] = 3.0  # a tie, across blocks for the long vectors
    y[1, 1, 0] = float("nan")
    y[2, 3] = -1.0  # negative: the smaller maximum is the score
    x, y = x.to(dtype), y.to(dtype)
    want = ref.decode_simcc(x, y)
    got = ops.decode_simcc(x.to(device), y.to(device), backend=name)
    for g, w in zip(got, want):
        assert g.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and g.device.type == device
        torch.testing.assert_close(g.cpu(), w, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(got[0][1, 1, 1]) and torch.isnan(got[1][1, 1]) and got[0][1, 1, 0] == want[0][1, 1, 0]


def test_decode_simcc_opcheck(backend, gen):
    name, device = backend
    x, y = torch.randn(2, 3, 37, generator=gen).to(device), torch.randn(2, 3, 29, generator=gen).to(device)
    with _dispatch.kernel(name):
        torch.library.opcheck(torch.ops.fastlmk.decode_simcc, (x, y))


def test_decode_simcc_bad_input():
    with pytest.raises(ValueError, match="simcc_x and simcc_y must share"):
        ops.decode_simcc(torch.zeros(1, 2, 5), torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="simcc_y must have shape"):
        ops.decode_simcc(torch.zeros(1, 2, 5), torch.zeros(2, 5))
    with pytest.raises(TypeError, match="simcc_y must have simcc_x's dtype"):
        ops.decode_simcc(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="decode_simcc: simcc_x and simcc_y need at least one bin"):
        torch.ops.fastlmk.decode_simcc(torch.zeros(1, 2, 5), torch.zeros(1, 2, 0))
