"""fastlmk.ops.splat: every backend against the reference, z-buffer rules, gradients, opcheck, determinism."""

import math

import pytest
import torch

from fastlmk import _native, ops
from fastlmk.reference import splat as ref

from conftest import CPU_BACKENDS, CUDA_EXTENSION, HAS_CUDA, active

SPLAT_BACKENDS = [*CPU_BACKENDS, CUDA_EXTENSION]
pytestmark = pytest.mark.usefixtures("threaded")
DTYPES = [torch.float32, torch.float64]
# (B, Q, H, W, sigma, radius)
CASES = [(1, 1, 1, 1, 1.0, None), (2, 7, 5, 3, 0.7, None), (3, 300, 17, 23, 1.3, 2.0), (2, 2000, 32, 32, 1.0, None),
         (2, 400, 16, 20, 0.6, 4.2), (1, 50, 9, 9, 2.0, 0.0), (2, 300, 12, 13, 1.0, 2.5), (1, 300, 9, 40, 0.8, 0.5)]


@pytest.fixture(params=SPLAT_BACKENDS)
def backend(request):
    with active(request.param) as selected:
        yield selected


def random_cloud(b, q, h, w, dtype, gen, margin=4.0, snapped=True):
    """Vertices over and beyond the map, with coincident vertices, depth ties and non-finite entries, and
    (``snapped``) some on half and quarter pixels, where rounding and window edges are decided."""
    xy = torch.rand(b, q, 2, generator=gen, dtype=torch.float64)
    xy = xy * torch.tensor([w + 2 * margin, h + 2 * margin], dtype=torch.float64) - margin
    depth = torch.rand(b, q, generator=gen, dtype=torch.float64)
    value = torch.randn(b, q, generator=gen, dtype=torch.float64)
    if q >= 8:
        xy[:, 1] = xy[:, 0]  # coincident, different depth
        xy[:, 3] = xy[:, 2] + 0.2  # same cell (mostly), equal depth: the lower index wins
        depth[:, 3] = depth[:, 2]
        xy[:, 4, 0] = math.nan
        depth[:, 5] = math.inf
        xy[:, 6] = torch.tensor([-40.0, 1e6], dtype=torch.float64)  # far outside
        depth[:, 7] = depth[:, 2]  # a tie in depth across cells changes nothing
    if snapped and q >= 16:
        xy[:, 8:16] = torch.round(xy[:, 8:16] * 4) / 4  # on half and quarter pixels: rounding and window edges
    if q >= 40:
        depth[:, 20:40] = 0.5  # many ties
        xy[:, 30:40] = xy[:, 20:30]
    return xy.to(dtype), depth.to(dtype), value.to(dtype)


def radius_of(sigma, radius):
    return 3.0 * sigma if radius is None else radius


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"-s{c[4]}-r{c[5]}")
def test_forward_matches_reference(backend, dtype, case, gen):
    name, device = backend
    b, q, h, w, sigma, radius = case
    xy, depth, value = random_cloud(b, q, h, w, dtype, gen)
    r = radius_of(sigma, radius)
    want = ref.splat(xy, depth, value, (h, w), sigma, r)
    got = torch.ops.fastlmk.splat(xy.to(device), depth.to(device), value.to(device), h, w, sigma, r)
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-12, 1e-13)
    torch.testing.assert_close(got[2].cpu(), want[2], rtol=0, atol=0)  # the same vertices survive
    torch.testing.assert_close(got[1].cpu(), want[1], rtol=rtol, atol=atol)
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=rtol, atol=atol * 10)
    # the public op returns the image
    public = ops.splat(xy.to(device), depth.to(device), value.to(device), (h, w), sigma=sigma, radius=radius,
                       backend=name)
    torch.testing.assert_close(public.cpu(), want[0], rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES[1:5], ids=lambda c: "x".join(map(str, c[:4])))
def test_gradients_match_reference(backend, dtype, case, gen):
    name, device = backend
    b, q, h, w, sigma, radius = case
    xy, depth, value = random_cloud(b, q, h, w, dtype, gen)
    grad = torch.randn(b, 1, h, w, generator=gen, dtype=torch.float64).to(dtype)
    r = radius_of(sigma, radius)

    def grads(fn, dev):
        x, v = xy.to(dev).requires_grad_(), value.to(dev).requires_grad_()
        out = fn(x, depth.to(dev), v)
        return [g.cpu() for g in torch.autograd.grad((out * grad.to(dev)).sum(), [x, v])]

    want = grads(lambda x, d, v: ref.splat(x, d, v, (h, w), sigma, r)[0], "cpu")
    got = grads(lambda x, d, v: ops.splat(x, d, v, (h, w), sigma=sigma, radius=radius, backend=name), device)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(got[0], want[0], **tol)
    torch.testing.assert_close(got[1], want[1], **tol)
    # hidden and skipped vertices get no gradient
    visible = ref.visibility(xy, depth, (h, w), r)
    assert not got[1][~visible].any() and not got[0][~visible].any()


def test_reference_backward_formula_is_the_autograd_gradient(gen):
    xy, depth, value = random_cloud(2, 300, 17, 23, torch.float64, gen)
    xy.requires_grad_()
    value.requires_grad_()
    image, weight_sum, visible = ref.splat(xy, depth, value, (17, 23), 1.3, 3.9)
    grad = torch.randn(image.shape, generator=gen, dtype=torch.float64)
    auto = torch.autograd.grad((image * grad).sum(), [xy, value])
    formula = ref.splat_backward(grad, xy.detach(), value.detach(), image.detach(), weight_sum.detach(), visible,
                                 1.3, 3.9)
    torch.testing.assert_close(formula[0], auto[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(formula[1], auto[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["reference", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_gradcheck(name, gen):
    if name == "cuda" and not (HAS_CUDA and _native.cuda is not None):
        pytest.skip("needs a GPU and fastlmk._cuda")
    device = "cuda" if name == "cuda" else "cpu"
    xy, depth, value = random_cloud(2, 25, 8, 9, torch.float64, gen, margin=2.0, snapped=False)
    xy, depth, value = xy.to(device), depth.to(device), value.to(device)
    xy.requires_grad_()
    value.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, v: ops.splat(x, depth, v, (8, 9), sigma=1.2, backend=name), (xy, value), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_gradgradcheck(name, gen):
    xy, depth, value = random_cloud(1, 12, 6, 7, torch.float64, gen, margin=1.0)
    xy.requires_grad_()
    value.requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda x, v: ops.splat(x, depth, v, (6, 7), sigma=1.1, backend=name), (xy, value), eps=1e-6, atol=1e-5)


def test_non_contiguous_inputs_and_in_place_output(gen):
    """Strided inputs give the same result as contiguous ones, under torch.compile too; in eager mode the
    caller may modify the returned image before calling backward."""
    xy, depth, value = random_cloud(2, 40, 9, 10, torch.float32, gen)
    xy_t = xy.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    want = ref.splat(xy, depth, value, (9, 10), 1.0, 3.0)[0]
    fn = torch.compile(lambda x: ops.splat(x, depth, value, (9, 10), backend="cpu"), fullgraph=True)
    for splat, in_place in ((lambda x: ops.splat(x, depth, value, (9, 10), backend="cpu"), True), (fn, False)):
        out = splat(xy_t)
        torch.testing.assert_close(out, want)
        (out.mul_(2) if in_place else out).sum().backward()
        assert torch.isfinite(xy_t.grad).all()
        xy_t.grad = None


def test_zbuffer_rules():
    """Per nearest pixel the smallest depth survives, ties to the lowest index; non-finite vertices are
    skipped; a vertex off the map still lights the pixels within its window."""
    xy = torch.tensor([[[2.1, 2.0], [1.9, 2.2], [2.0, 2.0], [4.4, 0.0], [4.6, 0.0], [-2.9, 1.0], [math.nan, 1.0],
                        [6.0, 4.0]]], dtype=torch.float64)
    depth = torch.tensor([[0.5, 0.2, 0.2, 1.0, 1.0, 3.0, 0.0, math.inf]], dtype=torch.float64)
    value = torch.arange(8, dtype=torch.float64)[None]
    for _, _, visible in (ref.splat(xy, depth, value, (5, 7), 1.0, 3.0), torch.ops.fastlmk.splat(xy, depth, value, 5, 7,
                                                                                                   1.0, 3.0)):
        assert visible.tolist() == [[False, True, False, True, True, True, False, False]]
    # vertex 5 (x = -2.9, off the map) reaches column 0 with radius 3
    image = ops.splat(xy[:, 5:6], depth[:, 5:6], value[:, 5:6], (5, 7), sigma=1.0, radius=3.0, backend="cpu")
    assert image[0, 0, 1, 0] == 5.0 and image[0, 0, 1, 1] == 0.0


def test_empty_cloud_and_background(backend):
    name, device = backend
    xy = torch.zeros(2, 0, 2, device=device)
    image = ops.splat(xy, torch.zeros(2, 0, device=device), torch.zeros(2, 0, device=device), (4, 5), backend=name)
    assert image.shape == (2, 1, 4, 5) and not image.any()


def test_deterministic_and_thread_independent(gen):
    xy, depth, value = random_cloud(3, 5000, 64, 64, torch.float32, gen)
    runs = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 1, 3):
            torch.set_num_threads(n)
            x, v = xy.clone().requires_grad_(), value.clone().requires_grad_()
            image = ops.splat(x, depth, v, 64, sigma=1.0, backend="cpu")
            image.pow(2).sum().backward()
            runs.append((image.detach(), x.grad, v.grad))
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------- windows across bands and blocks

# (B, H, W, sigma, radius): maps of more pixels than a CUDA block (256 threads, one per pixel), non-square, of few
# or many rows: the CPU accumulation splits each image into bands of whole rows (min(H, ceil(2 threads / B)) of
# them) and clips every window to its band, so windows of 5 to 9 rows cross several band edges at every thread
# count below; a map narrower than a window.
TILE_CASES = [(1, 37, 53, 1.0, 2.5), (3, 29, 18, 1.5, 4.25), (2, 9, 300, 0.8, 3.0), (1, 70, 4, 1.0, 2.0)]
THREAD_COUNTS = (1, 2, 3, 5)


def dense_cloud(b, h, w, radius, dtype, gen):
    """About 3 vertices per z-buffer cell over the grid and one cell beyond it, so that nearly every cell has a
    visible vertex and every pixel sums about (2m + 1)^2 windows (m = floor(radius + 1/2)); first, with the
    smallest depths (visible unless they share a cell), vertices on the edges that decide a vertex's fate at
    each border, and 2^-10 to either side: the last grid cell (x = -m - 1/2 in, w - 1/2 + m out), a window edge
    on the border pixel (x = -radius, w - 1 + radius) and the rounding tie between the border cell and the next
    (x = -1/2, w - 1/2); the same for y, each with a random other coordinate, and at the corners."""
    m, eps = ref.margin(radius), 2.0 ** -10

    def edges(n):
        centres = (-m - 0.5, -radius, -0.5, n - 0.5 + m, n - 1 + radius, n - 0.5)
        return torch.tensor([c + s for c in centres for s in (-eps, 0.0, eps)], dtype=torch.float64)

    ex, ey = edges(w), edges(h)
    rx = torch.rand(len(ey), generator=gen, dtype=torch.float64) * (w - 1)
    ry = torch.rand(len(ex), generator=gen, dtype=torch.float64) * (h - 1)
    cx, cy = torch.meshgrid(ex[1::3].clone(), ey[1::3].clone(), indexing="ij")  # corners: the edges themselves
    special = torch.cat([torch.stack([ex, ry], -1), torch.stack([rx, ey], -1),
                         torch.stack([cx.reshape(-1), cy.reshape(-1)], -1)])
    q = 3 * (h + 2 * m + 2) * (w + 2 * m + 2)
    xy = torch.rand(b, q, 2, generator=gen, dtype=torch.float64)
    xy = xy * torch.tensor([w + 2 * m + 2, h + 2 * m + 2], dtype=torch.float64) - (m + 1.5)
    depth = torch.rand(b, q, generator=gen, dtype=torch.float64)
    xy[:, :len(special)] = special
    depth[:, :len(special)] = -torch.rand(b, len(special), generator=gen, dtype=torch.float64)
    value = torch.randn(b, q, generator=gen, dtype=torch.float64)
    return xy.to(dtype), depth.to(dtype), value.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", TILE_CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"-r{c[4]}")
def test_dense_windows_across_bands_and_blocks(backend, dtype, case, gen):
    """Dense clouds (about (2m + 1)^2 visible windows per pixel) with vertices on every border edge: forward
    (visibility exactly, image and weight sum) and backward (xy and value gradients) against the reference, at
    every CPU thread count (so at every band split, with the same results bit for bit)."""
    name, device = backend
    b, h, w, sigma, radius = case
    xy, depth, value = dense_cloud(b, h, w, radius, dtype, gen)
    grad = torch.randn(b, 1, h, w, generator=gen, dtype=torch.float64).to(dtype)
    x, v = xy.clone().requires_grad_(), value.clone().requires_grad_()
    want_image, want_sum, want_visible = ref.splat(x, depth, v, (h, w), sigma, radius)
    want_grads = torch.autograd.grad((want_image * grad).sum(), [x, v])
    want_image, want_sum = want_image.detach(), want_sum.detach()
    assert want_visible[:, :60].any() and not want_visible.all()  # edge vertices on both sides of the grid's edge
    covered = (want_sum > 0).float().mean().item()
    assert covered == 1.0, covered
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-12, 1e-13)
    gtol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-11)
    runs = []
    threads = torch.get_num_threads()
    try:
        for n in THREAD_COUNTS if name == "cpu" else (threads,):
            torch.set_num_threads(n)
            got = torch.ops.fastlmk.splat(xy.to(device), depth.to(device), value.to(device), h, w, sigma, radius)
            x, v = xy.to(device).requires_grad_(), value.to(device).requires_grad_()
            image = ops.splat(x, depth.to(device), v, (h, w), sigma=sigma, radius=radius, backend=name)
            grads = torch.autograd.grad((image * grad.to(device)).sum(), [x, v])
            runs.append([t.cpu() for t in (*got, image.detach(), *grads)])
    finally:
        torch.set_num_threads(threads)
    image, weight_sum, visible, public, gxy, gv = runs[0]
    assert torch.equal(visible, want_visible)
    torch.testing.assert_close(weight_sum, want_sum, rtol=rtol, atol=atol)
    torch.testing.assert_close(image, want_image, rtol=rtol, atol=atol * 10)
    assert torch.equal(public, image)
    torch.testing.assert_close(gxy, want_grads[0], **gtol)
    torch.testing.assert_close(gv, want_grads[1], **gtol)
    assert not gxy[~visible].any() and not gv[~visible].any()
    for run in runs[1:]:  # the band split does not change a bit
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))


def test_opcheck(backend, gen):
    """Schema, fake kernel and autograd registration against the kernel of the backend's device."""
    _, device = backend
    xy, depth, value = (t.to(device) for t in random_cloud(2, 40, 9, 11, torch.float64, gen, margin=2.0))
    xy.requires_grad_()
    value.requires_grad_()
    torch.library.opcheck(torch.ops.fastlmk.splat.default, (xy, depth, value, 9, 11, 1.1, 3.3))
    image, weight_sum, visible = torch.ops.fastlmk.splat(xy.detach(), depth, value.detach(), 9, 11, 1.1, 3.3)
    grad = torch.randn(image.shape, generator=gen, dtype=torch.float64).to(device)
    torch.library.opcheck(torch.ops.fastlmk.splat_backward.default,
                          (grad, xy.detach(), value.detach(), image, weight_sum, visible, 1.1, 3.3))


def test_compiles_without_graph_breaks(gen):
    xy, depth, value = random_cloud(2, 60, 12, 12, torch.float32, gen)
    fn = torch.compile(lambda x, d, v: ops.splat(x, d, v, 12, sigma=1.0, backend="cpu") * 2, fullgraph=True)
    torch.testing.assert_close(fn(xy, depth, value), 2 * ref.splat(xy, depth, value, (12, 12), 1.0, 3.0)[0])


def _bad(**change):
    args = dict(xy=torch.rand(2, 5, 2), depth=torch.rand(2, 5), value=torch.rand(2, 5), size=(6, 7), sigma=1.0,
                radius=None)
    args.update(change)
    return args


@pytest.mark.parametrize("args, error, match", [
    (_bad(xy=torch.rand(2, 5, 3)), ValueError, "xy must have shape"),
    (_bad(xy=torch.rand(2, 5)), ValueError, "xy must have shape"),
    (_bad(xy=torch.rand(2, 5, 2).half()), TypeError, "xy must be float32 or float64"),
    (_bad(xy=torch.zeros(2, 5, 2, dtype=torch.int64)), TypeError, "xy must have a floating dtype"),
    (_bad(depth=torch.rand(2, 6)), ValueError, r"depth must have shape \(B, Q\) = \(2, 5\)"),
    (_bad(value=torch.rand(3, 5)), ValueError, r"value must have shape \(B, Q\) = \(2, 5\)"),
    (_bad(value=torch.rand(2, 5, dtype=torch.float64)), TypeError, "value has dtype torch.float64 but xy has"),
    (_bad(depth=[0.0] * 5), TypeError, "depth must be a torch.Tensor"),
    (_bad(value=torch.tensor([[math.nan] * 5] * 2)), ValueError, "value must be finite"),
    (_bad(sigma=0.0), ValueError, "sigma must be a finite positive number"),
    (_bad(sigma=-1.0), ValueError, "sigma must be a finite positive number"),
    (_bad(sigma=math.nan), ValueError, "sigma must be a finite positive number"),
    (_bad(radius=-0.5), ValueError, "radius must be a finite non-negative number"),
    (_bad(radius=math.inf), ValueError, "radius must be a finite non-negative number"),
    (_bad(radius=1e6), ValueError, "z-buffer"),
    (_bad(size=(0, 7)), ValueError, "size must be positive"),
    (_bad(size=(6.0, 7)), TypeError, "size must be an int or a pair of ints"),
    (_bad(depth=torch.rand(2, 5, device="meta")), ValueError, "depth is on meta but the other inputs are on cpu"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input(args, error, match):
    before = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor) and v.device.type == "cpu"}
    with pytest.raises(error, match=match):
        ops.splat(args["xy"], args["depth"], args["value"], args["size"], sigma=args["sigma"], radius=args["radius"])
    for k, v in before.items():  # nothing was written to the inputs
        assert torch.equal(v, args[k]) or (v.isnan() == args[k].isnan()).all()


def test_raw_op_checks_what_kernels_read():
    xy, depth, value = torch.rand(1, 4, 2, dtype=torch.float64), torch.rand(1, 4), torch.rand(1, 4)
    with pytest.raises(ValueError, match="share one dtype"):
        torch.ops.fastlmk.splat(xy, depth, value, 5, 5, 1.0, 3.0)
    with pytest.raises(ValueError, match="share one dtype"):
        torch.ops.fastlmk.splat(xy.half(), depth.half(), value.half(), 5, 5, 1.0, 3.0)
    with pytest.raises(ValueError, match="splat needs"):
        torch.ops.fastlmk.splat(xy.float(), depth[:, :3], value, 5, 5, 1.0, 3.0)


def test_forced_backend_that_cannot_run():
    # cannot run on CPU tensors (or, without fastlmk._cuda, is not available at all)
    with pytest.raises((ValueError, RuntimeError), match="backend='cuda'.*fastlmk.splat"):
        ops.splat(torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 3), 4, backend="cuda")
    with pytest.raises(ValueError, match="fastlmk.splat has backends"):
        ops.splat(torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 3), 4, backend="triton")
