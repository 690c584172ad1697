"""Reach: the structural paths the kernels take at real map sizes, for every backend against the reference.

The Triton kernels walk a map in BLOCK = 1024-pixel chunks: kernels/decode.py keeps per lane a running maximum
and its first index (``wsm`` also a runner-up, ``topk`` a running set or a selection over the map), the
soft-argmax is an online softmax that rescales each lane's sums when its maximum grows; kernels/encode.py runs
one program per (channel, 1024-pixel block) and the fused loss adds per-block partial sums. The C++ kernels
scan in vector runs with scalar tails. The maps here hold several blocks (64x64, 72x96 whose last block is
partial, 1x4099 and 4099x1), with maxima, ties, -inf and NaN placed in chosen lanes and blocks, and windows
crossing block boundaries and map borders. Every random input comes from the ``gen`` fixture (a failure
replays with FASTLMK_TEST_SEED=<printed seed>).
"""

import pytest
import torch

from fastlmk import _dispatch, ops
from fastlmk.reference import decode as ref
from fastlmk.reference import encode as ref_enc

from conftest import assert_decoded, away_from_targets, close

BLOCK = 1024  # the Triton kernels' chunk of pixels
METHODS = ref.METHODS
SIZES = [(64, 64), (72, 96), (1, 4099), (4099, 1)]
IDS = ["64x64", "72x96", "1x4099", "4099x1"]
NAN, INF = float("nan"), float("inf")


def _randint(lo, hi, gen):
    """A random integer in [lo, hi)."""
    return int(torch.randint(lo, hi, (), generator=gen))


def _to(t, device):
    return None if t is None else t.to(device)


def _affine(b, gen, dtype):
    """Random (B, 2, 3) maps: scales in [0.5, 1.5], shear within +-0.1, translation within +-10."""
    a = torch.zeros(b, 2, 3, dtype=torch.float64)
    a[:, 0, 0] = 0.5 + torch.rand(b, generator=gen, dtype=torch.float64)
    a[:, 1, 1] = 0.5 + torch.rand(b, generator=gen, dtype=torch.float64)
    a[:, 0, 1] = 0.2 * torch.rand(b, generator=gen, dtype=torch.float64) - 0.1
    a[:, 1, 0] = 0.2 * torch.rand(b, generator=gen, dtype=torch.float64) - 0.1
    a[:, :, 2] = 20 * torch.rand(b, 2, generator=gen, dtype=torch.float64) - 10
    return a.to(dtype)


def _check_decode(backend, maps, method, gen, *, affine=False, **kw):
    """ops.decode on the backend against ref.decode, without and (``affine``) with a random affine map;
    ``offsets`` are drawn here for method="offset"."""
    name, device = backend
    b, k, h, w = maps.shape
    cd = torch.float64 if maps.dtype == torch.float64 else torch.float32
    offsets = torch.randn(b, k, 2, h, w, generator=gen).to(cd) if method == "offset" else None
    for aff in (None, _affine(b, gen, cd)) if affine else (None,):
        want = ref.decode(maps, method, offsets=offsets, affine=aff, **kw)
        got = ops.decode(maps.to(device), method, offsets=_to(offsets, device), affine=_to(aff, device),
                         backend=name, **kw)
        assert_decoded(got, want, (2 * h, 2 * w) if aff is not None else (h, w))


# ------------------------------------------------------------------------------------------ decode

def _random_maps(b, k, h, w, gen, dtype=torch.float32):
    """Even channels: a Gaussian (sigma 2) at a random centre (some off the map) plus noise; odd: noise."""
    kp = (torch.rand(b, k, 2, generator=gen, dtype=torch.float64) * 1.2 - 0.1) * torch.tensor([w, h])
    maps = ref_enc.render_gaussian(kp, (h, w), 2.0) + 0.05 * torch.randn(b, k, h, w, generator=gen)
    maps.view(b * k, h, w)[1::2] = torch.randn(b * k // 2, h, w, generator=gen)
    return maps.to(dtype)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("method", METHODS)
def test_decode_many_blocks(backend, gen, method, size):
    """Every method on maps of 4 to 7 blocks: the lanes' maxima carried across chunks and reduced, the last
    block partial (72x96, 4099 pixels); topk with k = 1, 9 (a running set merged per chunk) and 40 (above 32:
    Triton's bitwise selection over the map, the C++ partial sort); with and without the fused affine map."""
    maps = _random_maps(1, 2, *size, gen)
    for k in (1, 9, 40) if method == "topk" else (9,):
        _check_decode(backend, maps, method, gen, affine=k == 9, k=k)


@pytest.mark.parametrize("size", [(72, 96), (1, 4099)], ids=["72x96", "1x4099"])
@pytest.mark.parametrize("method", METHODS)
def test_decode_many_blocks_float64(backend, gen, method, size):
    """The same multi-block paths with float64 maps (float64 compute, 64-bit keys for topk's selection)."""
    maps = _random_maps(1, 2, *size, gen, torch.float64)
    for k in (1, 9, 40) if method == "topk" else (9,):
        _check_decode(backend, maps, method, gen, affine=k == 9, k=k)


def _tie_maps(h, w, gen):
    """(1, 13, h, w): noise in [0, 0.5) with, per channel (flat index p = block * 1024 + lane):

    0. two equal maxima in one lane of two blocks (p, p + m 1024): the first wins, the other is wsm's runner-up;
    1. two equal maxima in adjacent pixels (lanes) of one block;
    2. two equal maxima in two blocks, the first in a higher lane than the second;
    3. the maximum at the last pixel (in the last, possibly partial block; C++: the scan's tail, wsm's
       ``peak == n - 1`` case);
    4. a constant map: every pixel ties (index 0; wsm's ``peak == 0`` case, topk's first k pixels);
    5. every pixel -inf: the maximum is -inf at index 0 (no lane ever sees a value above its initial -inf);
    6. a NaN only in the last block, after a finite maximum in the first;
    7. a plateau of 12 equal maxima across a block boundary;
    8. a unique maximum, and wsm's runner-up tied in one lane of two blocks;
    9. a unique maximum in a middle block, the runner-up tied in an earlier and a later block;
    10. topk: 3 pixels at 3.0 and 12 at 2.0 spread over the map (ties across blocks at the k-th place);
    11. one lane rising in every block (its running maximum replaced in each chunk) to the map's maximum;
    12. a NaN only in a middle block (neither the first nor the last), the maximum in the last block.
    """
    n = h * w
    nb = -(-n // BLOCK)  # blocks, the last one holding `last` pixels
    last = n - (nb - 1) * BLOCK
    maps = torch.rand(13, n, generator=gen) * 0.5
    p = _randint(0, n - BLOCK, gen)
    maps[0, [p, p + BLOCK * _randint(1, (n - 1 - p) // BLOCK + 1, gen)]] = 1.0
    p = _randint(0, n - 1, gen)
    maps[1, [p, p + 1]] = 1.0
    la = _randint(1, BLOCK, gen)
    ba = _randint(0, nb - 1, gen)
    bb = _randint(ba + 1, nb, gen)
    lb = _randint(0, min(la, BLOCK if bb < nb - 1 else last), gen)
    maps[2, [ba * BLOCK + la, bb * BLOCK + lb]] = 1.0
    maps[3, n - 1] = 1.0
    maps[4] = 0.25
    maps[5] = -INF
    maps[6, _randint(0, BLOCK, gen)] = 1.0
    maps[6, _randint((nb - 1) * BLOCK, n, gen)] = NAN
    s = BLOCK * _randint(1, nb, gen) - _randint(1, 8, gen)
    maps[7, s:s + 12] = 1.0
    a = _randint(0, n - BLOCK, gen)
    m = _randint(0, n - 2, gen)
    m += (m >= min(a, a + BLOCK)) + (m + 1 >= max(a, a + BLOCK))  # skip a and a + BLOCK
    maps[8, m] = 2.0
    maps[8, [a, a + BLOCK]] = 1.5
    m = _randint(BLOCK, (nb - 1) * BLOCK, gen)
    maps[9, m] = 2.0
    maps[9, [_randint(0, (m // BLOCK) * BLOCK, gen), _randint((m // BLOCK + 1) * BLOCK, n, gen)]] = 1.5
    spread = torch.randperm(n, generator=gen)[:15]
    maps[10, spread[:3]] = 3.0
    maps[10, spread[3:]] = 2.0
    lane = _randint(0, last, gen)
    maps[11, lane + BLOCK * torch.arange(nb)] = 0.6 + 0.1 * torch.arange(nb, dtype=torch.float32)
    maps[12, _randint(BLOCK, (nb - 1) * BLOCK, gen)] = NAN
    maps[12, _randint((nb - 1) * BLOCK, n, gen)] = 1.0
    return maps.view(1, 13, h, w)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("method", METHODS)
def test_decode_ties_across_lanes_and_blocks(backend, gen, method, size):
    """Exact ties inside one lane, across lanes of one block and across blocks (the first in row-major order
    wins: argmax, score and every refinement read around it), wsm's runner-up ties, an all -inf map, a NaN
    only in the last or only in a middle block; topk (k = 1, 9) on the channels with ties, -inf or NaN and on the k best
    spread across blocks with a tie at the k-th place."""
    maps = _tie_maps(*size, gen)
    if method == "topk":
        for k in (1, 9):
            _check_decode(backend, maps[:, [0, 2, 4, 5, 6, 7, 10]], method, gen, k=k)
    else:
        _check_decode(backend, maps, method, gen)
    if method == "argmax":  # the expected indices, stated directly
        name, device = backend
        coords, scores = ops.decode(maps.to(device), "argmax", backend=name)
        flat = maps.flatten(2)[0]
        first = torch.where(flat.isnan().any(1), 0, flat.nan_to_num(nan=-1.0).argmax(1))
        w = size[1]
        want = torch.stack([first % w, first // w], -1).float()
        want[[6, 12]] = NAN
        torch.testing.assert_close(coords.cpu()[0], want, rtol=0, atol=0, equal_nan=True)
        assert scores[0, 5].item() == -INF and scores[0, [6, 12]].isnan().all()


@pytest.mark.parametrize("size", SIZES[:3], ids=IDS[:3])
def test_topk_ties_spread_across_blocks(backend, gen, size):
    """topk on integer-valued maps whose top values are rare (about 8 pixels per value, spread over all
    blocks), so the k best straddle blocks and tie at the k-th place (the lower index enters): k = 9, 33
    and 100 (C++: the run-skipping scan, then the partial sort); a second channel is -inf but for 5 pixels,
    so the k best include -inf pixels (weight 0)."""
    h, w = size
    n = h * w
    maps = torch.randint(0, n // 8, (1, 2, h, w), generator=gen).float()
    sparse = torch.full((n,), -INF)
    keep = torch.randperm(n, generator=gen)[:5]
    sparse[keep] = torch.randint(0, 3, (5,), generator=gen).float()
    maps[0, 1] = sparse.view(h, w)
    for k in (9, 33, 100):
        _check_decode(backend, maps, "topk", gen, k=k)


def _window_keypoints(h, w, gen):
    """(1, 6, 2) centres: two within +-1.5 px of random 1024-pixel block boundaries, one on a random border,
    one at a random corner, one a pixel inside a random corner (the DARK border rule), one anywhere."""
    nb = -(-h * w // BLOCK)
    pts = [((t * BLOCK) % w, (t * BLOCK) // w) for t in (_randint(1, nb, gen), _randint(1, nb, gen))]
    pts = torch.tensor(pts, dtype=torch.float64) + 3 * torch.rand(len(pts), 2, generator=gen,
                                                                  dtype=torch.float64) - 1.5
    u = torch.rand(6, generator=gen, dtype=torch.float64)
    side = torch.tensor([w - 1.0, h - 1.0], dtype=torch.float64) * (torch.rand(3, 2, generator=gen) > 0.5)
    border = torch.stack([u[0] * (w - 1), u[1] * (h - 1)])
    axis = _randint(0, 2, gen)
    border[axis] = side[0, axis]
    inner = side[2] + torch.where(side[2] > 0, -1.0, 1.0)
    edges = torch.stack([border, side[1], inner, torch.stack([u[3] * (w - 1), u[4] * (h - 1)])])
    edges += 0.6 * torch.rand(edges.shape, generator=gen, dtype=torch.float64) - 0.3
    return torch.cat([pts, edges])[None]


@pytest.mark.parametrize("size, dtype", [(s, torch.float32) for s in SIZES] + [((72, 96), torch.float64),
                                                                               ((1, 4099), torch.float64)],
                         ids=[f"{i}-float32" for i in IDS] + ["72x96-float64", "1x4099-float64"])
def test_dark_and_local_softargmax_windows(backend, gen, size, dtype):
    """DARK (blur 11 and 31: its blurred patch over rows of several blocks, clipped at the borders; Triton
    tiles it when blur + 4 > 16) and local_softargmax (window 2 and 12, clipped by the borders; tiled when
    2 window + 1 > 16) around peaks on block boundaries, borders and corners."""
    h, w = size
    kp = _window_keypoints(h, w, gen)
    sigma = 1.2 + 1.3 * torch.rand(kp.shape[:2], generator=gen, dtype=torch.float64)
    maps = ref_enc.render_gaussian(kp, (h, w), sigma) + 0.02 * torch.randn(kp.shape[:2] + (h, w), generator=gen)
    maps = maps.to(dtype)
    for blur in (11, 31):
        _check_decode(backend, maps, "dark", gen, blur=blur)
    for window in (2, 12):
        _check_decode(backend, maps, "local_softargmax", gen, window=window)


# -------------------------------------------------------------------------------------- soft-argmax

def _growing_maps(h, w, gen, step):
    """(1, 4, h, w) float64: 0. rises by ``step`` every 1024 pixels plus noise (every lane's maximum grows in
    every block); 1. noise (std 2) on a ramp of 4 * step to the last pixel; 2. falls by ``step`` per block (the
    maximum in the first block); 3. no positive value (relu: the map centre)."""
    n = h * w
    idx = torch.arange(n, dtype=torch.float64)
    noise = torch.randn(4, n, generator=gen, dtype=torch.float64)
    maps = torch.stack([step * (idx // BLOCK) + 0.5 * noise[0], 4 * step * idx / n + 2 * noise[1],
                        -step * (idx // BLOCK) + 0.5 * noise[2], -noise[3].abs() - 0.1])
    return maps.view(1, 4, h, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("normalize, beta", [("softmax", 1.0), ("softmax", 20.0), ("relu", 1.0)],
                         ids=["softmax-1", "softmax-20", "relu"])
@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_soft_argmax_online_rescaling(backend, gen, size, normalize, beta, dtype):
    """Forward (coords and the normaliser stat) and backward (gradients of both) against the float64
    reference on maps whose maximum grows block after block by 4 (x beta 20: exp(beta h) would overflow
    without subtracting a maximum, and a lane that did not rescale its sums would keep earlier blocks at weight
    1), falls, or is noise on a ramp."""
    name, device = backend
    h, w = size
    maps = _growing_maps(h, w, gen, 4.0).to(dtype)
    x = maps.to(device).clone().requires_grad_()
    with _dispatch.kernel(name):  # the backward runs the same kernel, outside the context
        coords, stat = torch.ops.fastlmk.soft_argmax(x, beta, normalize == "relu")
    grad_coords = torch.randn(coords.shape, generator=gen, dtype=coords.dtype)
    grad_stat = torch.randn(stat.shape, generator=gen, dtype=stat.dtype)
    torch.autograd.backward([coords, stat], [grad_coords.to(device), grad_stat.to(device)])
    x64 = maps.double().requires_grad_()
    want, want_stat = ref.soft_argmax(x64, beta, normalize)
    torch.autograd.backward([want, want_stat], [grad_coords.double(), grad_stat.double()])
    eps = torch.finfo(dtype).eps
    ctol = 2e-5 * max(size) if dtype == torch.float32 else 1e-9 * max(size)
    torch.testing.assert_close(coords.detach().cpu().double(), want.detach(), rtol=0, atol=ctol)
    # stat is m + log S (softmax) or S (relu), S a sum of n = H W non-negative terms: in any summation order
    # S carries a relative error of at most (n - 1) u (u = eps / 2), an absolute error of stat for softmax
    sum_tol = (h * w - 1) * eps / 2
    rtol, atol = (16 * eps, 16 * eps + sum_tol) if normalize == "softmax" else (16 * eps + sum_tol, 16 * eps)
    torch.testing.assert_close(stat.detach().cpu().double(), want_stat.detach(), rtol=rtol, atol=atol)
    # p = exp(beta h - stat): float32 rounding of beta h and stat shifts p by about eps |beta h| relatively;
    # and the gradient is linear in the coordinates, beta p g.(pos - coords) (relu: g.(pos - coords) / S), so
    # the forward's coordinate error dc (checked above) and the rounding of pos - coords propagate as
    # beta p |g| dc (relu: |g| dc / S)
    zmax = beta * maps.double().abs().max().item()
    gtol = 1e-5 + (8 * eps * zmax if dtype == torch.float32 else 0.0)
    scale = x64.grad.abs().max().item() * gtol + 1e-12
    dc = (coords.detach().cpu().double() - want.detach()).abs().amax(-1) + 2 * eps * max(size)
    lever = (grad_coords.double().abs().sum(-1) * dc)[..., None, None]
    s64 = want_stat.detach()[..., None, None]
    if normalize == "softmax":
        weight = beta * torch.exp(beta * maps.double() - s64)
    else:
        weight = (maps.double() > 0) / s64.clamp(min=1e-300)
    err = (x.grad.cpu().double() - x64.grad).abs()
    excess = err - (scale + weight * lever)
    assert (excess <= 0).all(), f"gradient beyond its bound by {excess.max().item():.3g} at {excess.argmax().item()}"
    if normalize == "relu":
        assert coords[0, 3].tolist() == [(w - 1) / 2, (h - 1) / 2] and not x.grad[0, 3].any()


@pytest.mark.parametrize("normalize", ["softmax", "relu"])
def test_soft_argmax_gradcheck_many_blocks(backend, gen, normalize):
    """float64 gradcheck and gradgradcheck (fast mode: random projections) on 33x40 maps (1320 pixels, two
    blocks) rising toward the last pixel, so the maximum and most of the weight sit in the second block."""
    name, device = backend
    h, w = 33, 40
    idx = torch.arange(h * w, dtype=torch.float64)
    maps = 3 * idx / (h * w) + 0.5 * torch.randn(1, 2, h * w, generator=gen, dtype=torch.float64)
    maps = torch.where(maps < 0, maps - 0.05, maps + 0.05)  # relu: 0.05 away from the kink at 0
    maps = maps.view(1, 2, h, w).to(device).requires_grad_()

    def f(t):
        return ops.soft_argmax(t, beta=2.5, normalize=normalize, backend=name)

    assert torch.autograd.gradcheck(f, (maps,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (maps,), fast_mode=True)


# ------------------------------------------------------------------------------------ encode and loss

def _block_keypoints(h, w, gen):
    """(1, 3, 2): one within +-1.5 px of a random 1024-pixel block boundary, one near a random corner, one
    anywhere over or beyond the map (x in [-0.2 W, 1.2 W])."""
    t = _randint(1, -(-h * w // BLOCK), gen) * BLOCK
    u = torch.rand(3, 2, generator=gen, dtype=torch.float64)
    boundary = torch.tensor([t % w, t // w], dtype=torch.float64) + 3 * u[0] - 1.5
    corner = torch.tensor([w - 1.0, h - 1.0]) * (u[1] > 0.5) + 2 * torch.rand(2, generator=gen,
                                                                                 dtype=torch.float64) - 1
    anywhere = (1.4 * u[2] - 0.2) * torch.tensor([w, h])
    return torch.stack([boundary, corner, anywhere])[None].float()


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("kind", ["mse", "bce_logits", "awing"])
def test_heatmap_loss_many_blocks(backend, gen, kind, reduction, size):
    """The fused loss, forward and backward, on maps of 4 to 7 blocks (sum and mean: one partial sum per
    (channel, block), added afterwards), targets whose windows (3 sigma, sigma up to 4) cross block boundaries
    and the map's borders, per-keypoint sigma and weights; rounded centres with reduction "sum", continuous
    ones otherwise."""
    name, device = backend
    h, w = size
    kp = _block_keypoints(h, w, gen)
    sigma = 1.5 + 2.5 * torch.rand(1, 3, generator=gen)
    weights = 0.1 + torch.rand(1, 3, generator=gen)
    pred = torch.rand(1, 3, h, w, generator=gen) * 1.4 - 0.2
    if kind == "awing":
        pred = away_from_targets(pred, kp, sigma)
    grad = torch.randn(pred.shape if reduction == "none" else (), generator=gen)
    for center in ("rounded",) if reduction == "sum" else ("continuous",):
        args = dict(kind=kind, weights=weights, center=center, reduction=reduction)
        p = pred.clone().requires_grad_()
        expected = ref_enc.heatmap_loss(p, kp, sigma, **args)
        (expected_grad,) = torch.autograd.grad(expected, p, grad)
        p_d = pred.to(device).clone().requires_grad_()
        out = ops.heatmap_loss(p_d, kp.to(device), sigma.to(device), backend=name,
                               **{**args, "weights": weights.to(device)})
        out.backward(grad.to(device))
        close(out.detach(), expected.detach())
        close(p_d.grad, expected_grad)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_render_many_blocks(backend, gen, size):
    """render_gaussian (continuous and rounded centres, with and without weights), render_disc and
    render_offsets on maps of 4 to 7 blocks (one program per block), windows crossing block boundaries and
    borders."""
    name, device = backend
    h, w = size
    kp = _block_keypoints(h, w, gen)
    param = 1.0 + 3.0 * torch.rand(1, 3, generator=gen)
    weights = torch.rand(1, 3, generator=gen)
    weights[0, 2] = 0.0
    kp_d, p_d, w_d = kp.to(device), param.to(device), weights.to(device)
    for center in ("continuous", "rounded"):
        for wts, wts_d in ((None, None), (weights, w_d)):
            expected = ref_enc.render_gaussian(kp, (h, w), param, weights=wts, center=center)
            close(ops.render_gaussian(kp_d, (h, w), p_d, weights=wts_d, center=center, backend=name), expected)
    for fn in (ops.render_disc, ops.render_offsets):
        expected = getattr(ref_enc, fn.__name__)(kp, (h, w), param, weights=weights)
        close(fn(kp_d, (h, w), p_d, weights=w_d, backend=name), expected)


# ----------------------------------------------------------------------------------------------- HIH

@pytest.mark.parametrize("decimal_size", [(4, 8), (8, 4)], ids=["4x8", "8x4"])
@pytest.mark.parametrize("convention", ["paper", "unbiased"])
def test_hih_non_square_round_trip(backend, gen, convention, decimal_size):
    """encode_hih -> decode_hih with non-square decimal maps (ho, wo) on non-square 24x40 integer maps: the
    decimal Gaussian is at (frac_x wo, frac_y ho) (- 0.5 unbiased), written out here; decoding matches the
    reference and errs per axis by at most 1/wo in x and 1/ho in y (paper; half that unbiased). Any x/y swap
    of (wo, ho) in hih_centers, encode_hih or decode_hih breaks one of these."""
    name, device = backend
    ho, wo = decimal_size
    h, w = 24, 40
    kp = (1 + torch.rand(1, 16, 2, generator=gen, dtype=torch.float64) * torch.tensor([w - 2, h - 2])).float()
    integer, decimal = ops.encode_hih(kp.to(device), (h, w), decimal_size=decimal_size, convention=convention,
                                      backend=name)
    assert integer.shape == (1, 16, h, w) and decimal.shape == (1, 16, ho, wo)
    shift = 0.5 if convention == "unbiased" else 0.0
    whole = torch.floor(kp)
    centre = (kp - whole).double() * torch.tensor([wo, ho], dtype=torch.float64) - shift
    close(integer, ref_enc.render_gaussian(whole, (h, w), 1.5))
    close(decimal, ref_enc.render_gaussian(centre, (ho, wo), 1.0))
    whole_c, centre_c = ops.hih_centers(kp, decimal_size, convention)
    assert torch.equal(whole_c, whole)
    torch.testing.assert_close(centre_c.double(), centre, rtol=0, atol=1e-5)
    coords, scores = ops.decode_hih(integer.to(device), decimal.to(device), convention=convention, backend=name)
    want, want_scores = ref.decode_hih(integer.cpu(), decimal.cpu(), convention=convention)
    torch.testing.assert_close(coords.cpu(), want)
    torch.testing.assert_close(scores.cpu(), want_scores)
    bound = torch.tensor([1 / wo, 1 / ho], dtype=torch.float64) * (0.5 if convention == "unbiased" else 1.0)
    err = (coords.cpu().double() - kp.double()).abs()
    assert (err <= bound + 1e-5).all(), err.amax((0, 1))


@pytest.mark.parametrize("convention", ["paper", "unbiased"])
@pytest.mark.parametrize("head, input_size", [("local", 136), ("cnn", 128)], ids=["local", "cnn"])
def test_hih_model_loss_written_out(backend, gen, head, input_size, convention):
    """models/heatmap.py HIH.loss (its decimal_size is an int: square decimal maps only) on 34x34 integer
    maps (two blocks; 32x32 for the CNN head) against the loss written out here: MSE to the Gaussian at
    floor(x) plus decimal_weight x MSE of the decimal maps to the Gaussian at (x - cell) * 8 (- 0.5), cell the
    given argmax cells (local head) or floor(x); a missing landmark weighs 0. The same loss with x and y swapped
    in the keypoints must differ from it."""
    from fastlmk.models.heatmap import HIH, STRIDE

    name, device = backend
    b, k, ds = 2, 3, 8
    model = HIH(k, input_size, head=head, channels=16, depth=2, decimal_size=ds, convention=convention,
                backend=name).to(device)
    hw = input_size // STRIDE
    landmarks = 6 + torch.rand(b, k, 2, generator=gen) * (input_size - 12)
    landmarks[1, 2] = NAN
    kp = ((landmarks - (STRIDE - 1) / 2) / STRIDE).double()
    weights = torch.isfinite(kp).all(-1).double()
    whole = torch.floor(kp)
    cells = whole + torch.randint(-1, 2, whole.shape, generator=gen) if head == "local" else whole
    shift = 0.5 if convention == "unbiased" else 0.0

    def written_out(kp, whole, cells):
        fraction = (kp - cells) * ds - shift
        t_int = ref_enc.render_gaussian(whole, (hw, hw), 1.5, dtype=torch.float64)
        t_dec = ref_enc.render_gaussian(fraction, (ds, ds), 1.0, dtype=torch.float64)
        wt = weights[..., None, None]
        return (((maps.double() - t_int) ** 2 * wt).mean()
                + 0.1 * ((decimal.double() - t_dec) ** 2 * wt).mean())

    centre = (kp - cells) * ds - shift
    # predictions near the targets (plus noise), so a wrong target raises the loss well above its value
    maps = (ref_enc.render_gaussian(whole, (hw, hw), 1.5) + 0.05 * torch.randn(b, k, hw, hw, generator=gen))
    decimal = ref_enc.render_gaussian(centre, (ds, ds), 1.0) + 0.05 * torch.randn(b, k, ds, ds, generator=gen)
    outputs = {"maps": [maps.to(device)], "decimal": decimal.to(device)}
    if head == "local":
        outputs["cells"] = cells.float().to(device)
    loss = model.loss(outputs, {"landmarks": landmarks.to(device)}).cpu().double()
    expected = written_out(kp, whole, cells)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    swapped = written_out(kp.flip(-1), whole.flip(-1), cells.flip(-1))
    assert (swapped - expected).abs() > 0.1 * expected
