"""Heatmap-encoding family: every backend against the reference, opcheck, gradcheck, HIH and H3R encodings."""

import math

import pytest
import torch
from conftest import away_from_targets, close, random_keypoints

from fastlmk import _dispatch, ops
from fastlmk import reference as ref

SHAPES = [(1, 1, 1, 1), (1, 1, 7, 5), (2, 5, 17, 23), (3, 4, 32, 45)]
HALF = (torch.float16, torch.bfloat16)


def _sigma(form, b, k, gen, dtype=torch.float32):
    if form == "scalar":
        return 1.0 + 2.0 * torch.rand((), generator=gen).item()
    shape = (k,) if form == "per_keypoint" else (b, k)
    return (0.5 + 2.5 * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)


def _on(device, *xs):
    return [x.to(device) if isinstance(x, torch.Tensor) else x for x in xs]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("center", ["continuous", "rounded"])
@pytest.mark.parametrize("sigma_form", ["scalar", "per_keypoint", "per_batch"])
def test_render_gaussian_matches_reference(backend, gen, shape, center, sigma_form):
    name, device = backend
    b, k, h, w = shape
    kp = random_keypoints(b, k, h, w, generator=gen)
    sigma = _sigma(sigma_form, b, k, gen)
    weights = torch.rand(b, k, generator=gen)
    weights.view(-1)[0] = 0.0
    radius = 2.0 + torch.rand((), generator=gen).item()
    for wts in (None, weights):
        expected = ref.render_gaussian(kp, (h, w), sigma, weights=wts, center=center, radius=radius)
        kp_d, s_d, w_d = _on(device, kp, sigma, wts)
        out = ops.render_gaussian(kp_d, (h, w), s_d, weights=w_d, center=center, radius=radius, backend=name)
        assert out.shape == (b, k, h, w) and out.dtype == torch.float32 and out.device.type == device
        close(out, expected, torch.float32)


def _instances(b, n, k, h, w, gen):
    """(B, N, K, 2) keypoints and (B, N, K) weights: instances spread over and beyond the map, instance 1
    a copy of instance 0 (ties across instances), instance 2 within a pixel of instance 0 (overlapping
    windows), some weights 0."""
    kp = random_keypoints(b, n * k, h, w, generator=gen).view(b, n, k, 2)
    if n > 1:
        kp[:, 1] = kp[:, 0]
    if n > 2:
        kp[:, 2] = kp[:, 0] + torch.rand(b, k, 2, generator=gen) * 2 - 1
    weights = torch.rand(b, n, k, generator=gen) + 0.5
    weights.view(-1)[::3] = 0.0
    return kp, weights


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("center", ["continuous", "rounded", "mmpose", "udp"])
def test_render_gaussian_instances_match_reference(backend, gen, shape, n, center):
    """(B, N, K, 2) keypoints merged by max in the kernel, every centre rule, against the reference."""
    name, device = backend
    b, k, h, w = shape
    kp, weights = _instances(b, n, k, h, w, gen)
    sigma = _sigma("per_batch", b, k, gen)
    for wts in (None, weights):
        expected = ref.render_gaussian(kp, (h, w), sigma, weights=wts, center=center)
        kp_d, s_d, w_d = _on(device, kp, sigma, wts)
        out = ops.render_gaussian(kp_d, (h, w), s_d, weights=w_d, center=center, backend=name)
        assert out.shape == (b, k, h, w)
        close(out, expected, torch.float32)


def test_reference_instances_are_the_max_of_single_renders(gen):
    """The multi-instance reference is the maximum of the single-instance maps of its instances of non-zero
    weight, restricted to their windows (0 elsewhere); with weights 1 and in-map keypoints, just their max."""
    b, n, k, h, w = 2, 4, 3, 15, 12
    kp = torch.rand(b, n, k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w - 1, h - 1])
    for center in ("continuous", "rounded", "mmpose", "udp"):
        single = torch.stack([ref.render_gaussian(kp[:, i], (h, w), 1.5, center=center, dtype=torch.float64)
                              for i in range(n)], 1)
        merged = ref.render_gaussian(kp, (h, w), 1.5, center=center, dtype=torch.float64)
        torch.testing.assert_close(merged, single.amax(1), rtol=0, atol=0)
        one = ref.render_gaussian(kp[:, :1], (h, w), 1.5, center=center, dtype=torch.float64)
        torch.testing.assert_close(one, single[:, 0], rtol=0, atol=0)


def test_render_gaussian_centre_rules_values():
    """The patch rules on worked cases: sigma 1.5 (r = 4.5) at x = 10.2: mu = 10, the pixels [5, 15) (mmpose
    keeps 5 and drops 15), centre 10 (mmpose) or 10.2 (udp); at x = 1.0 the patch starts at trunc(-3.5) = -3
    and its centre at -3 + 5 = 2, one pixel right of the keypoint, as mmpose renders it."""
    kp = torch.tensor([[[10.2, 10.2]]])
    for center, c in (("mmpose", 10.0), ("udp", 10.2)):
        row = ops.render_gaussian(kp, (21, 21), 1.5, center=center)[0, 0, 10]
        j = torch.arange(21.0)
        want = torch.where((j >= 5) & (j <= 14), torch.exp(-(j - c) ** 2 / 4.5), torch.zeros(()))
        want = want * math.exp(-(10 - (c if center == "udp" else 10.0)) ** 2 / 4.5)
        torch.testing.assert_close(row, want)
    row = ops.render_gaussian(torch.tensor([[[1.0, 10.0]]]), (21, 21), 1.5, center="mmpose")[0, 0, 10]
    assert row.argmax() == 2 and row[5] > 0 and row[6] == 0  # [-3, trunc(1 + 5.5)) = [-3, 6)


@pytest.mark.parametrize("kind", ["mse", "bce_logits", "awing"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("center", ["continuous", "mmpose", "udp"])
def test_heatmap_loss_instances_match_reference(backend, gen, kind, reduction, center):
    """The fused loss against the merged target of (B, N, K, 2) keypoints, forward and backward."""
    name, device = backend
    b, n, k, h, w = 2, 3, 4, 17, 23
    kp, weights = _instances(b, n, k, h, w, gen)
    sigma = _sigma("per_batch", b, k, gen)
    pred = torch.rand(b, k, h, w, generator=gen) * 1.4 - 0.2
    if kind == "awing":
        pred = away_from_targets(pred, kp, sigma, weights=weights, centers=(center,))
    grad = torch.randn(pred.shape if reduction == "none" else (), generator=gen)
    _assert_loss_matches(backend, pred, kp, sigma, grad, kind=kind, weights=weights, center=center,
                         reduction=reduction)


def test_heatmap_loss_instances_equal_the_loss_on_the_rendered_target(gen):
    """With instances the weights weight the target's instances, not the loss."""
    kp, weights = _instances(2, 3, 4, 16, 16, gen)
    pred = torch.rand(2, 4, 16, 16, generator=gen)
    target = ops.render_gaussian(kp, (16, 16), 2.0, weights=weights, center="mmpose")
    torch.testing.assert_close(ops.heatmap_loss(pred, kp, 2.0, weights=weights, center="mmpose"),
                               torch.nn.functional.mse_loss(pred, target))


def test_heatmap_loss_instances_gradcheck(backend, gen):
    name, device = backend
    kp, weights = _instances(2, 3, 2, 6, 5, gen)
    kp, weights = kp.double().to(device), weights.double().to(device)
    pred = (torch.rand(2, 2, 6, 5, generator=gen, dtype=torch.float64) * 1.4 - 0.2).to(device).requires_grad_()
    for kind in ("mse", "bce_logits"):
        fn = lambda p: ops.heatmap_loss(p, kp, 1.2, kind=kind, weights=weights, center="udp", backend=name)
        assert torch.autograd.gradcheck(fn, (pred,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_render_dtypes(backend, gen, dtype):
    name, device = backend
    b, k, h, w = 2, 3, 19, 16
    kp = random_keypoints(b, k, h, w, generator=gen)
    for fn, param in ((ops.render_gaussian, 1.7), (ops.render_disc, 2.3), (ops.render_offsets, 1.5)):
        expected = getattr(ref, fn.__name__)(kp, (h, w), param, dtype=dtype)
        out = fn(kp.to(device), (h, w), param, dtype=dtype, backend=name)
        assert out.dtype == dtype
        close(out, expected, dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_render_disc_and_offsets_match_reference(backend, gen, shape):
    name, device = backend
    b, k, h, w = shape
    kp = random_keypoints(b, k, h, w, generator=gen)
    weights = torch.rand(b, k, generator=gen)
    weights.view(-1)[-1] = 0.0
    for fn in (ops.render_disc, ops.render_offsets):
        for radius in (0.0, 1.0, _sigma("per_batch", b, k, gen)):
            expected = getattr(ref, fn.__name__)(kp, (h, w), radius, weights=weights)
            kp_d, r_d, w_d = _on(device, kp, radius, weights)
            close(fn(kp_d, (h, w), r_d, weights=w_d, backend=name), expected, torch.float32)


def test_missing_keypoints_render_zero_channels(backend):
    name, device = backend
    kp = torch.tensor([[[float("nan"), 3.0], [2.0, float("inf")], [1e30, -1e30], [4.0, 4.0]]], device=device)
    for fn, param in ((ops.render_gaussian, 2.0), (ops.render_disc, 2.0), (ops.render_offsets, 2.0)):
        out = fn(kp, (9, 9), param, backend=name)
        assert torch.all(out[0, :3] == 0) and torch.any(out[0, 3] != 0)


def test_render_gaussian_values():
    """Hand-checked values: peak 1 at an integer keypoint, exp(-1/(2 s^2)) one pixel away, 0 beyond the window."""
    kp = torch.tensor([[[4.0, 3.0]]])
    out = ops.render_gaussian(kp, (7, 9), 2.0, radius=1.0)
    assert out[0, 0, 3, 4] == 1.0
    assert math.isclose(out[0, 0, 3, 5].item(), math.exp(-1 / 8), rel_tol=1e-6)
    assert out[0, 0, 3, 7] == 0 and out[0, 0, 0, 4] == 0  # 3 px away > radius * sigma = 2
    rounded = ops.render_gaussian(torch.tensor([[[4.5, 2.6]]]), (7, 9), 1.0, center="rounded")
    assert rounded[0, 0, 3, 5] == 1.0  # floor(x + 0.5) = 5, floor(y + 0.5) = 3


@pytest.mark.parametrize("kind", ["mse", "bce_logits", "awing"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (2, 5, 17, 23)])
def test_heatmap_loss_matches_reference(backend, gen, kind, reduction, shape):
    name, device = backend
    b, k, h, w = shape
    kp = random_keypoints(b, k, h, w, generator=gen)
    sigma = _sigma("per_batch", b, k, gen)
    weights = torch.rand(b, k, generator=gen)
    pred = torch.rand(b, k, h, w, generator=gen) * 1.4 - 0.2
    if kind == "awing":
        pred = away_from_targets(pred, kp, sigma)
    grad = torch.randn(pred.shape if reduction == "none" else (), generator=gen)
    for center in ("continuous", "rounded"):
        _assert_loss_matches(backend, pred, kp, sigma, grad, kind=kind, weights=weights, center=center,
                             reduction=reduction)


def _assert_loss_matches(backend, pred, kp, sigma, grad, **args):
    """heatmap_loss on the backend equals the reference's, forward and backward (the gradient ``grad``)."""
    name, device = backend
    p = pred.clone().requires_grad_()
    expected = ref.heatmap_loss(p, kp, sigma, **args)
    (expected_grad,) = torch.autograd.grad(expected, p, grad)
    p_d = pred.to(device).clone().requires_grad_()
    kp_d, s_d, w_d = _on(device, kp, sigma, args.get("weights"))
    out = ops.heatmap_loss(p_d, kp_d, s_d, backend=name, **{**args, "weights": w_d})
    out.backward(grad.to(device))
    close(out, expected, torch.float32)
    close(p_d.grad, expected_grad, torch.float32)


@pytest.mark.parametrize("kind", ["mse", "bce_logits", "awing"])
@pytest.mark.parametrize("dtype", HALF)
def test_heatmap_loss_half_precision(backend, gen, kind, dtype):
    """float16/bfloat16 pred (computed in float32, returned in pred's dtype) for every loss and reduction."""
    name, device = backend
    kp = random_keypoints(2, 3, 11, 13, generator=gen)
    pred = torch.rand(2, 3, 11, 13, generator=gen)
    if kind == "awing":  # the margin 0.05 also covers rounding to bfloat16 (8 bits, pred moves by at most 0.004)
        pred = away_from_targets(pred, kp, torch.full((2, 3), 1.5))
    pred = pred.to(dtype)
    for reduction in ("mean", "sum", "none"):
        p = pred.to(device).clone().requires_grad_()
        out = ops.heatmap_loss(p, kp.to(device), 1.5, kind=kind, reduction=reduction, backend=name)
        out.sum().backward()
        assert out.dtype == dtype and p.grad.dtype == dtype
        q = pred.clone().requires_grad_()
        expected = ref.heatmap_loss(q, kp, 1.5, kind=kind, reduction=reduction)
        expected.sum().backward()
        close(out, expected, dtype)
        close(p.grad, q.grad, dtype)


def test_reference_loss_gradient_formula(gen):
    """The reference's explicit gradient (used by the reference backend) equals autograd of its forward."""
    kp = random_keypoints(2, 3, 9, 11, dtype=torch.float64, generator=gen)
    weights = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    for kind in ("mse", "bce_logits", "awing"):
        pred = (torch.rand(2, 3, 9, 11, generator=gen, dtype=torch.float64) * 2 - 0.5).requires_grad_()
        loss = ref.heatmap_loss(pred, kp, 1.3, kind=kind, weights=weights)
        (auto,) = torch.autograd.grad(loss, pred)
        explicit = ref.heatmap_loss_backward(torch.tensor(1.0, dtype=torch.float64), pred.detach(), kp, 1.3,
                                             kind=kind, weights=weights)
        torch.testing.assert_close(explicit, auto, rtol=1e-10, atol=1e-14)


def test_heatmap_loss_equals_render_then_torch_loss(gen):
    """The fused loss is the PyTorch loss on the rendered target (docs/ops.md 1)."""
    kp = random_keypoints(2, 4, 16, 16, generator=gen, missing=False)
    pred = torch.rand(2, 4, 16, 16, generator=gen)
    target = ops.render_gaussian(kp, (16, 16), 2.0)
    torch.testing.assert_close(ops.heatmap_loss(pred, kp, 2.0), torch.nn.functional.mse_loss(pred, target))
    torch.testing.assert_close(ops.heatmap_loss(pred, kp, 2.0, kind="bce_logits", reduction="sum"),
                               torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="sum"))


@pytest.mark.parametrize("kind", ["mse", "bce_logits", "awing"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_heatmap_loss_gradcheck(backend, gen, kind, reduction):
    name, device = backend
    kp = random_keypoints(2, 2, 6, 5, dtype=torch.float64, generator=gen, device=device)
    weights = torch.rand(2, 2, generator=gen, dtype=torch.float64).to(device)
    pred = (torch.rand(2, 2, 6, 5, generator=gen, dtype=torch.float64) * 1.4 - 0.2).to(device).requires_grad_()
    fn = lambda p: ops.heatmap_loss(p, kp, 1.2, kind=kind, weights=weights, reduction=reduction, backend=name)
    assert torch.autograd.gradcheck(fn, (pred,), eps=1e-6, atol=1e-6)


def _op_samples(device):
    g = torch.Generator().manual_seed(0)
    kp = random_keypoints(2, 3, 9, 8, generator=g).to(device)
    param = (1 + torch.rand(2, 3, generator=g)).to(device)
    weights = torch.rand(2, 3, generator=g).to(device)
    pred = torch.rand(2, 3, 9, 8, generator=g).to(device).requires_grad_()
    return kp, param, weights, pred


def test_opcheck(backend):
    """The schema, fake kernel and autograd registration of each op against its kernel for the backend's
    device (a CPU tensor's call runs the Triton kernel inside _dispatch.kernel("triton"))."""
    name, device = backend
    kp, param, weights, pred = _op_samples(device)
    f = torch.ops.fastlmk
    with _dispatch.kernel(name):
        for op in (f.render_gaussian, f.render_disc, f.render_offsets):
            for wts in (None, weights):
                torch.library.opcheck(op, (kp, param, wts, 9, 8, "rounded", 3.0, torch.float32))
        inst = torch.stack([kp, kp.flip(1)], 1)  # (B, N=2, K, 2)
        inst_w = torch.stack([weights, weights.flip(1)], 1)
        torch.library.opcheck(f.render_gaussian, (inst, param, inst_w, 9, 8, "mmpose", 3.0, torch.float32))
        for reduction, (keypoints, wts, center) in (("mean", (kp, weights, "continuous")),
                                                   ("none", (kp, weights, "udp")), ("sum", (inst, inst_w, "mmpose"))):
            args = (pred, keypoints, param, wts, "awing", center, 3.0, reduction, [2.1, 14.0, 1.0, 0.5])
            torch.library.opcheck(f.heatmap_loss, args)
            grad = torch.rand(pred.shape if reduction == "none" else (), device=device)
            torch.library.opcheck(f.heatmap_loss_backward, (grad, pred.detach(), *args[1:]))


def test_torch_compile_fullgraph():
    """Fake kernels let torch.compile trace the ops without graph breaks."""
    kp = random_keypoints(2, 3, 16, 16, missing=False)
    pred = torch.rand(2, 3, 16, 16, requires_grad=True)

    def step(p, k):
        return ops.heatmap_loss(p, k, 2.0) + ops.render_gaussian(k, (16, 16), 2.0).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(pred, kp), step(pred, kp))


def test_cpu_results_are_deterministic(gen):
    kp = random_keypoints(4, 7, 65, 31, generator=gen)  # above _native.SERIAL_ELEMENTS: threads do run
    pred = torch.rand(4, 7, 65, 31, generator=gen)
    threads = torch.get_num_threads()
    runs = []
    for n in (1, threads, threads):
        torch.set_num_threads(n)
        runs.append((ops.render_gaussian(kp, (65, 31), 2.0), ops.heatmap_loss(pred, kp, 2.0, kind="awing")))
    torch.set_num_threads(threads)
    for a, b in runs[1:]:
        assert torch.equal(a, runs[0][0]) and torch.equal(b, runs[0][1])


# ------------------------------------------------------------------------------------------- HIH and H3R

def _argmax_xy(maps):
    """(x, y) of the first maximum of each map."""
    w = maps.shape[-1]
    idx = maps.flatten(-2).argmax(-1)
    return torch.stack([idx % w, idx // w], dim=-1).to(torch.float64)


@pytest.mark.parametrize("convention", ["paper", "unbiased"])
def test_hih_round_trip(backend, gen, convention):
    """Encode, decode by argmax (Eq. 4) and check the error bounds of each convention on a 8x8 decimal map:
    unbiased: |error| <= 1/16 px; paper: |error| <= 1/8 px (fractions above 15/16 land on the last cell)."""
    name, device = backend
    b, k, size, wo = 4, 25, 32, 8
    kp = (1 + torch.rand(b, k, 2, generator=gen, dtype=torch.float64) * (size - 2)).to(torch.float32)
    integer, decimal = ops.encode_hih(kp.to(device), size, convention=convention, backend=name)
    assert integer.shape == (b, k, size, size) and decimal.shape == (b, k, wo, wo)
    shift = 0.5 if convention == "unbiased" else 0.0
    decoded = _argmax_xy(integer.cpu()) + (_argmax_xy(decimal.cpu()) + shift) / wo
    err = (decoded - kp.double()).abs().max().item()
    assert err <= (1 / 16 if convention == "unbiased" else 1 / 8) + 1e-5


def test_hih_conventions_differ_as_documented():
    """On a uniform grid of fractions (wo = 8): unbiased mean error 0, RMS 1/(wo sqrt 12); paper mean error
    -1/(2 wo^2): the lowest and highest half cells both decode low (there is no cell wo)."""
    wo = 8
    frac = (torch.arange(4096, dtype=torch.float64) + 0.5) / 4096
    kp = torch.stack([10 + frac, torch.full_like(frac, 10.25)], -1)[None].float()
    stats = {}
    for convention, shift in (("paper", 0.0), ("unbiased", 0.5)):
        _, decimal = ops.encode_hih(kp, 32, convention=convention)
        x = 10 + (_argmax_xy(decimal)[0, :, 0] + shift) / wo
        e = x - kp[0, :, 0].double()
        stats[convention] = (e.mean().item(), e.pow(2).mean().sqrt().item())
    assert abs(stats["unbiased"][0]) < 1e-4
    assert abs(stats["unbiased"][1] - 1 / (wo * math.sqrt(12))) < 1e-4
    assert abs(stats["paper"][0] + 1 / (2 * wo**2)) < 1e-4
    assert stats["paper"][1] > stats["unbiased"][1]


def test_randomized_round_is_unbiased(gen):
    """E[randomized_round(x)] = x: the mean of n draws is within 5 standard errors (0.5 / sqrt(n) each)."""
    kp = torch.rand(1, 40, 2, generator=gen, dtype=torch.float64) * 30
    n = 20000
    draws = ops.randomized_round(kp.expand(n, 40, 2).contiguous(), gen)
    assert torch.all((draws == torch.floor(kp)) | (draws == torch.floor(kp) + 1))
    assert (draws.mean(0) - kp[0]).abs().max().item() < 5 * 0.5 / math.sqrt(n)


def test_encode_h3r_onehot_and_gaussian(backend, gen):
    name, device = backend
    kp = 2 + torch.rand(3, 6, 2, generator=gen) * 12
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    onehot = ops.encode_h3r(kp.to(device), 16, generator=torch.Generator(device).manual_seed(seed), backend=name)
    again = ops.encode_h3r(kp.to(device), 16, generator=torch.Generator(device).manual_seed(seed), backend=name)
    assert torch.equal(onehot, again)  # seeded: reproducible
    assert torch.all(onehot.sum((-1, -2)) == 1)
    xy = _argmax_xy(onehot.cpu())
    assert torch.all((xy == torch.floor(kp)) | (xy == torch.floor(kp) + 1))
    rounded = ops.randomized_round(kp.to(device), torch.Generator(device).manual_seed(seed))
    gauss = ops.encode_h3r(kp.to(device), 16, generator=torch.Generator(device).manual_seed(seed),
                           target="gaussian", sigma=1.5, backend=name)
    close(gauss, ref.render_gaussian(rounded.cpu(), (16, 16), 1.5), torch.float32)


def test_encode_h3r_decodes_unbiased(gen):
    """Averaging the argmax of many one-hot H3R targets recovers the sub-pixel coordinate."""
    kp = 2 + torch.rand(1, 8, 2, generator=gen, dtype=torch.float64) * 12
    n = 4000
    maps = ops.encode_h3r(kp.expand(n, 8, 2).contiguous(), 16, generator=gen)
    assert (_argmax_xy(maps).mean(0) - kp[0]).abs().max().item() < 5 * 0.5 / math.sqrt(n)


@pytest.mark.parametrize("bins", [(1, 1), (7, 5), (1500, 37), (384, 512)])
@pytest.mark.parametrize("kind", ["gaussian", "standard"])
def test_render_simcc_matches_reference(backend, gen, bins, kind):
    """Both vectors of every channel, one block and many (1500 bins), bins at the ends, off the axis, NaN."""
    name, device = backend
    b, k = 3, 5
    kp = torch.rand(b, k, 2, generator=gen) * torch.tensor([bins[0] * 1.2, bins[1] * 1.2]) - torch.tensor(bins) * 0.1
    kp[:, ::2] = torch.round(kp[:, ::2])  # on a bin (as the codec passes them), the others between bins
    kp[0, 0] = torch.tensor([0.0, bins[1] - 1.0])
    kp[0, 1, 0] = float("nan")
    weights = torch.rand(b, k, generator=gen)
    weights[1, 2] = 0.0
    smoothing = 0.2 if kind == "standard" else 0.0
    for wts, normalize in ((None, False), (weights, True)):
        expected = ref.render_simcc(kp, bins, (1.7, 2.9), kind=kind, smoothing=smoothing,
                                    scale=(1 / (1.7 * math.sqrt(2 * math.pi)), 1 / (2.9 * math.sqrt(2 * math.pi)))
                                    if normalize and kind == "gaussian" else (1.0, 1.0), weights=wts)
        kp_d, w_d = _on(device, kp, wts)
        got = ops.render_simcc(kp_d, bins, (1.7, 2.9), kind=kind, smoothing=smoothing, normalize=normalize,
                               weights=w_d, backend=name)
        for g, e, n in zip(got, expected, bins):
            assert g.shape == (b, k, n) and g.dtype == torch.float32 and g.device.type == device
            close(g, e, torch.float32)
            tail = e.abs() > 1e-30  # the far tails too (the CPU kernel evaluates only where exp is not 0)
            torch.testing.assert_close(g.cpu()[tail], e[tail], rtol=1e-4, atol=0)  # exponents ~70: ulps
    if kind == "gaussian":  # in float64, whose exp reaches much further
        got = ops.render_simcc(kp.double().to(device), bins, (1.7, 2.9), dtype=torch.float64, backend=name)
        expected = ref.render_simcc(kp.double(), bins, (1.7, 2.9), dtype=torch.float64)
        for g, e in zip(got, expected):
            tail = e.abs() > 1e-290
            torch.testing.assert_close(g.cpu()[tail], e[tail], rtol=1e-12, atol=0)


def test_render_simcc_values_and_dtypes(backend):
    name, device = backend
    kp = torch.tensor([[[2.0, 0.0], [3.6, 9.0]]], device=device)
    x, y = ops.render_simcc(kp, (5, 3), 1.0, kind="standard", smoothing=0.2, backend=name)
    torch.testing.assert_close(x[0, 0].cpu(), torch.tensor([0.05, 0.05, 0.8, 0.05, 0.05]))
    torch.testing.assert_close(x[0, 1].cpu(), torch.tensor([0.05, 0.05, 0.05, 0.05, 0.8]))  # bin floor(4.1) = 4
    torch.testing.assert_close(y[0, 1].cpu(), torch.full((3,), 0.1))  # bin 9 is off the axis: no one-hot bin
    x, y = ops.render_simcc(kp, (5, 3), (1.0, 2.0), normalize=True, dtype=torch.float64, backend=name)
    assert x.dtype == torch.float64
    torch.testing.assert_close(x[0, 0, 2].item(), 1 / math.sqrt(2 * math.pi))
    torch.testing.assert_close(y[0, 0, 1].item(), math.exp(-1 / 8) / (2 * math.sqrt(2 * math.pi)))
    for dtype in HALF:
        x, _ = ops.render_simcc(kp, (5, 3), 1.0, dtype=dtype, backend=name)
        close(x, ref.render_simcc(kp.cpu(), (5, 3), (1.0, 1.0), dtype=dtype)[0], dtype)


def test_render_simcc_opcheck(backend):
    name, device = backend
    kp = (torch.rand(2, 3, 2) * 30).to(device)
    weights = torch.rand(2, 3).to(device)
    with _dispatch.kernel(name):
        for kind, wts in (("gaussian", None), ("standard", weights)):
            torch.library.opcheck(torch.ops.fastlmk.render_simcc,
                                  (kp, wts, 37, 29, kind, [2.0, 3.0], [1.0, 0.5], 0.1 if kind == "standard" else 0.0,
                                   torch.float32))


def test_render_simcc_bad_input():
    kp = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="bins must be a pair"):
        ops.render_simcc(kp, (0, 4))
    with pytest.raises(ValueError, match="sigma"):
        ops.render_simcc(kp, (4, 4), (1.0, -1.0))
    with pytest.raises(ValueError, match="smoothing is only used"):
        ops.render_simcc(kp, (4, 4), kind="gaussian", smoothing=0.1)
    with pytest.raises(ValueError, match="smoothing must be in"):
        ops.render_simcc(kp, (4, 4), kind="standard", smoothing=1.5)
    with pytest.raises(ValueError, match="weights must have shape"):
        ops.render_simcc(kp, (4, 4), weights=torch.ones(2))
    with pytest.raises(ValueError, match="keypoints must have shape"):
        ops.render_simcc(torch.zeros(1, 2, 2, 2), (4, 4))
    with pytest.raises(ValueError, match="bin counts must be positive"):
        torch.ops.fastlmk.render_simcc(kp, None, 0, 3, "gaussian", [1.0, 1.0], [1.0, 1.0], 0.0, torch.float32)


def test_instances_bad_input():
    kp = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match=r"weights must have shape \(B, N, K\)"):
        ops.render_gaussian(kp, 8, 1.0, weights=torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"keypoints must have shape \(B, K, 2\)"):
        ops.render_disc(kp, 8, 1.0)
    with pytest.raises(ValueError, match=r"weights must have shape \(B, N, K\)"):
        ops.heatmap_loss(torch.zeros(1, 2, 8, 8), kp, 1.0, weights=torch.ones(1, 2))
    with pytest.raises(ValueError, match="pred has"):
        ops.heatmap_loss(torch.zeros(1, 3, 8, 8), kp, 1.0)
    with pytest.raises(ValueError, match="center must be one of"):
        ops.render_gaussian(kp, 8, 1.0, center="floor")
    with pytest.raises(ValueError, match=r"render_disc: keypoints must have shape \(\*, \*, 2\)"):
        torch.ops.fastlmk.render_disc(kp, torch.ones(1, 2), None, 8, 8, "continuous", 0.0, torch.float32)
