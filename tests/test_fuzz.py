"""Property-based fuzzing of the raw ops (torch.ops.fastlmk.*), which are public: with random shapes, lengths,
dtypes and values, a call either raises a clean ValueError/TypeError, for arguments the test knows to be bad,
or returns what the reference returns for the same (cast) arguments. An argument of a wrong length or rank
must be refused (a kernel trusting it would read out of bounds); under AddressSanitizer (tests/README.md) any
stray access also aborts the run.

Values that only change the result (keypoints far outside, NaN, inf, ties) are drawn freely; parameters whose
range the public API checks (sigma > 0, radius >= 0, beta > 0) are drawn inside it.
"""

import os
from typing import Optional

import pytest
import torch

pytest.importorskip("hypothesis")  # the test extra installs it; a bare GPU machine may lack it
from hypothesis import HealthCheck, given, seed, settings, strategies as st  # noqa: E402

from fastlmk import _dispatch, _native, export
from fastlmk.reference import decode as ref_decode
from fastlmk.reference import splat as ref_splat
from fastlmk.reference import xnor as ref_xnor

from conftest import HAS_TRITON

F = torch.ops.fastlmk
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
CENTERS = ("continuous", "rounded", "mmpose", "udp")
KERNELS = [b for b, ok in (("cpu", _native.cpu is not None), ("triton", HAS_TRITON)) if ok]


def _settings(examples: int):
    """Hypothesis settings: no example database (CI starts clean), replayable with FASTLMK_TEST_SEED."""
    def wrap(fn):
        fn = settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(fn)
        env = os.environ.get("FASTLMK_TEST_SEED")
        return seed(int(env))(fn) if env else fn
    return wrap


class Draw:
    """Draws tensors for one call and remembers whether one of them was given a wrong shape or dtype."""

    def __init__(self, data, kernels=KERNELS):
        self.data = data
        self.bad = None  # the exception type the call must raise, or None
        self.backend = data.draw(st.sampled_from(kernels), label="backend")
        self.examples = 0

    def shape(self, shape: tuple[int, ...], label: str, free: tuple[int, ...] = ()) -> tuple[int, ...]:
        """``shape``, or (one time in eight) a wrong rank or a wrong length in one dimension not in ``free``
        (the dimensions that define the problem's sizes rather than being checked against them)."""
        kind = self.data.draw(st.sampled_from(["ok"] * 7 + ["wrong"]), label=f"{label} shape")
        if kind == "ok":
            return shape
        self.bad = self.bad or ValueError
        fixed = [i for i in range(len(shape)) if i not in free]
        if not shape or not fixed or self.data.draw(st.booleans(), label=f"{label} rank"):
            return shape[1:] if shape and self.data.draw(st.booleans()) else (*shape, 1)
        dim = self.data.draw(st.sampled_from(fixed), label=f"{label} dim")
        wrong = self.data.draw(st.integers(0, shape[dim] + 3).filter(lambda n: n != shape[dim]))
        return shape[:dim] + (wrong,) + shape[dim + 1:]

    def tensor(self, shape: tuple[int, ...], label: str, low: float = -2.0, high: float = 2.0,
               special: bool = True, dtypes=FLOATS, free: tuple[int, ...] = ()) -> torch.Tensor:
        """A tensor of a random floating dtype (or, rarely, an integer one) with values in [low, high], some
        exact ties and, when ``special``, NaN, inf or far-away values."""
        shape = self.shape(shape, label, free)
        dtype = self.data.draw(st.sampled_from([*dtypes] * 4 + [torch.int32]), label=f"{label} dtype")
        g = torch.Generator().manual_seed(self.data.draw(st.integers(0, 2**31), label=f"{label} seed"))
        t = torch.rand(shape, generator=g, dtype=torch.float64) * (high - low) + low
        if t.numel() and self.data.draw(st.booleans(), label=f"{label} ties"):
            t = torch.round(t * 2) / 2
        if t.numel() and special and self.data.draw(st.booleans(), label=f"{label} special"):
            flat = t.view(-1)
            value = self.data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30, -1e30]))
            flat[self.data.draw(st.integers(0, flat.numel() - 1))] = value
        if dtype == torch.int32:
            self.bad = self.bad or TypeError
            return torch.zeros(shape, dtype=dtype)
        return t.to(dtype)

    def call(self, op: str, *args):
        """Runs ``torch.ops.fastlmk.<op>`` on the drawn backend's kernel and, when it accepts the arguments,
        its reference formula (fastlmk.export.reference) on the same; returns (got, want), or None after an
        error."""
        try:
            with _dispatch.kernel(self.backend):
                got = getattr(F, op)(*args)
        except (ValueError, TypeError) as exc:
            assert self.bad is not None, f"{op} refused valid arguments: {exc}"
            return None
        assert self.bad is None, f"{op} accepted an argument of a wrong shape or dtype"
        return got, export.reference(op)(*args)


def _close(got, want, rtol=1e-4, atol=1e-4):
    if isinstance(got, (tuple, list)):
        for a, b in zip(got, want):
            _close(a, b, rtol, atol)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype in (torch.float16, torch.bfloat16):
        rtol, atol = 1e-2, 1e-2
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True)


def _sizes(data, max_hw=20):
    b = data.draw(st.integers(0, 3), label="B")
    k = data.draw(st.integers(0, 4), label="K")
    h = data.draw(st.integers(1, max_hw), label="H")
    w = data.draw(st.integers(1, max_hw), label="W")
    return b, k, h, w


def _instances(data, b, k):
    """The leading shape of Gaussian keypoints: (B, K), or (B, N, K) for N instances per image (N != B: the
    wrong-rank draw drops the first dimension, and (N, K, 2) keypoints with N = B would be valid ones)."""
    if data.draw(st.booleans(), label="instances"):
        return b, data.draw(st.integers(0, 3).filter(lambda n: n != b), label="N"), k
    return b, k


@_settings(100)
@given(st.data())
def test_fuzz_render(data):
    d = Draw(data)
    b, k, h, w = _sizes(data)
    kind = data.draw(st.sampled_from(["gaussian", "disc", "offsets"]), label="op")
    lead = _instances(data, b, k) if kind == "gaussian" else (b, k)
    kp = d.tensor((*lead, 2), "keypoints", -5, max(h, w) + 5, free=tuple(range(len(lead))))
    param = d.tensor((b, k), "param", 0.3, 4.0, special=False)
    weights = data.draw(st.one_of(st.none(), st.just("w")), label="weights")
    weights = None if weights is None else d.tensor(lead, "weights", 0.0, 2.0, special=False)
    dtype = data.draw(st.sampled_from([*FLOATS, torch.int64]), label="dtype")
    if dtype == torch.int64:
        d.bad = d.bad or TypeError
    result = d.call(f"render_{kind}", kp, param, weights, h, w, data.draw(st.sampled_from(CENTERS), label="center"),
                    data.draw(st.sampled_from([0.0, 1.5, 3.0])), dtype)
    if result:
        _close(*result)


@_settings(100)
@given(st.data())
def test_fuzz_heatmap_loss(data):
    d = Draw(data)
    b, k, h, w = _sizes(data)
    pred = d.tensor((b, k, h, w), "pred", -3, 3, special=False, free=(0, 1, 2, 3))
    lead = _instances(data, b, k)
    kp = d.tensor((*lead, 2), "keypoints", -5, max(h, w) + 5, free=(1,) if len(lead) == 3 else ())
    sigma = d.tensor((b, k), "sigma", 0.5, 4.0, special=False)
    weights = d.tensor(lead, "weights", 0.0, 2.0, special=False) if data.draw(st.booleans()) else None
    kind = data.draw(st.sampled_from(["mse", "bce_logits", "awing"]), label="kind")
    reduction = data.draw(st.sampled_from(["none", "sum", "mean"]), label="reduction")
    args = (kp, sigma, weights, kind, data.draw(st.sampled_from(CENTERS), label="center"), 3.0, reduction,
            [2.1, 14.0, 1.0, 0.5])
    if data.draw(st.booleans(), label="backward"):
        grad = d.tensor(tuple(pred.shape) if reduction == "none" else (), "grad", -1, 1, special=False)
        result = d.call("heatmap_loss_backward", grad, pred, *args)
    else:
        result = d.call("heatmap_loss", pred, *args)
    if result:
        _close(*result, rtol=1e-4, atol=1e-4 * max(1, pred.numel()))


def _flip(d: Draw, data, maps, method: Optional[str]) -> tuple:
    """The flip test's arguments of decode (flipped, flipped_offsets, flip_indices, shift_heatmap) or, with
    ``method=None``, of soft_argmax (no flipped_offsets), or none: the flipped maps of any dtype and a
    (sometimes wrong) shape, indices a permutation or not."""
    if not data.draw(st.booleans(), label="flip"):
        return ()
    b, k, h, w = maps.shape if maps.dim() == 4 else (1, 1, 1, 1)
    flipped = d.tensor((b, k, h, w), "flipped")
    if flipped.dtype != maps.dtype and flipped.dtype.is_floating_point:
        d.bad = d.bad or TypeError
    offsets = None
    if method is not None and (method == "offset" or data.draw(st.booleans(), label="flipped_offsets")):
        offsets = d.tensor((b, k, 2, h, w), "flipped_offsets")
    if method is not None and (method == "offset") != (offsets is not None):
        d.bad = d.bad or ValueError
    kind = data.draw(st.sampled_from(["identity", "permutation", "short", "out of range", "repeated"]),
                     label="flip_indices")
    indices = {"identity": None, "permutation": list(range(k))[::-1], "short": list(range(k - 1)),
               "out of range": [*range(k - 1), k], "repeated": [0] * k}[kind]
    if kind == "out of range" or (kind == "short" and k > 0) or (kind == "repeated" and k > 1):
        d.bad = d.bad or ValueError
    shift = data.draw(st.booleans(), label="shift_heatmap")
    return (flipped, indices, shift) if method is None else (flipped, offsets, indices, shift)


@_settings(150)
@given(st.data())
def test_fuzz_decode(data):
    d = Draw(data)
    b, k, h, w = _sizes(data, 24)
    maps = d.tensor((b, k, h, w), "heatmaps", free=(0, 1, 2, 3))
    method = data.draw(st.sampled_from(ref_decode.METHODS), label="method")
    offsets = d.tensor((b, k, 2, h, w), "offsets") if method == "offset" or data.draw(st.booleans()) else None
    affine = d.tensor((b, 2, 3), "affine", special=False) if data.draw(st.booleans()) else None
    blur = data.draw(st.sampled_from([1, 3, 11, 31, 0, 4, 129]), label="blur")
    window = data.draw(st.sampled_from([0, 1, 3, 40, -1]), label="window")
    topk = data.draw(st.sampled_from([1, 9, 40, h * w, h * w + 1, 0]), label="k")
    if (method == "offset" and offsets is None) or not (blur % 2 and 1 <= blur <= ref_decode.MAX_BLUR) or window < 0 \
            or (method == "topk" and not 1 <= topk <= h * w):
        d.bad = d.bad or ValueError
    flip = _flip(d, data, maps, method)
    result = d.call("decode", maps, offsets, affine, method, blur, window, topk, *flip)
    if result:
        (c1, s1), (c2, s2) = result
        torch.testing.assert_close(s1, s2, rtol=0, atol=0, equal_nan=True)
        scale = 1.0 if affine is None or not affine.numel() else 1.0 + affine.double().abs().max().item() * 50
        torch.testing.assert_close(c1, c2, rtol=1e-5, atol=2e-5 * max(h, w) * scale, equal_nan=True)


@_settings(100)
@given(st.data())
def test_fuzz_render_simcc(data):
    d = Draw(data)
    b, k, wx, hy = _sizes(data, 40)
    kp = d.tensor((b, k, 2), "keypoints", -5, max(wx, hy) + 5, free=(0, 1))
    weights = d.tensor((b, k), "weights", 0.0, 2.0, special=False) if data.draw(st.booleans()) else None
    kind = data.draw(st.sampled_from(["gaussian", "standard", "laplace"]), label="kind")
    bins = data.draw(st.sampled_from([(wx, hy), (0, hy), (wx, -1)]), label="bins")
    sigma = data.draw(st.sampled_from([[1.5, 2.5], [0.7, 0.7], [1.0]]), label="sigma")
    dtype = data.draw(st.sampled_from([*FLOATS, torch.int64]), label="dtype")
    if kind == "laplace" or min(bins) < 1 or len(sigma) != 2:
        d.bad = d.bad or ValueError
    if dtype == torch.int64:
        d.bad = d.bad or TypeError
    result = d.call("render_simcc", kp, weights, *bins, kind, sigma, [1.0, 0.5], 0.1, dtype)
    if result:
        _close(*result)


@_settings(100)
@given(st.data())
def test_fuzz_decode_simcc(data):
    d = Draw(data)
    b, k, wx, hy = _sizes(data, 40)
    x = d.tensor((b, k, wx), "simcc_x", free=(0, 1, 2))
    y = d.tensor((b, k, hy), "simcc_y", free=(2,))
    if min(x.shape[-1:] + y.shape[-1:], default=0) < 1:
        d.bad = d.bad or ValueError
    result = d.call("decode_simcc", x, y)
    if result:
        for g, w in zip(*result):
            torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)


@_settings(100)
@given(st.data())
def test_fuzz_soft_argmax(data):
    d = Draw(data)
    b, k, h, w = _sizes(data)
    maps = d.tensor((b, k, h, w), "heatmaps", -3, 3, special=False, free=(0, 1, 2, 3))
    beta, relu = data.draw(st.sampled_from([0.5, 1.0, 7.0]), label="beta"), data.draw(st.booleans(), label="relu")
    if data.draw(st.booleans(), label="backward"):
        grad_coords, grad_stat, coords, stat = (d.tensor(shape, name, low, high, special=False) for name, shape, low, high in (
            ("grad_coords", (b, k, 2), -1, 1), ("grad_stat", (b, k), -1, 1), ("coords", (b, k, 2), 0, max(h, w)),
            ("stat", (b, k), 0.5, 3)))
        result = d.call("soft_argmax_backward", grad_coords, grad_stat, maps, coords, stat, beta, relu)
    else:
        result = d.call("soft_argmax", maps, beta, relu, *_flip(d, data, maps, None))
    if result:
        _close(*result, rtol=1e-4, atol=1e-4 * max(h, w))


@_settings(100)
@given(st.data())
def test_fuzz_splat(data):
    d = Draw(data, kernels=["cpu"] if _native.cpu is not None else [])
    b, q = data.draw(st.integers(0, 2), label="B"), data.draw(st.integers(0, 12), label="Q")
    h, w = data.draw(st.integers(1, 16), label="H"), data.draw(st.integers(1, 16), label="W")
    dtypes = (torch.float32, torch.float64, torch.float16)
    xy = d.tensor((b, q, 2), "xy", -3, max(h, w) + 3, dtypes=dtypes)
    depth = d.tensor((b, q), "depth", 0, 5, dtypes=dtypes, free=(0, 1))
    value = d.tensor((b, q), "value", -1, 1, special=False, dtypes=dtypes)
    if len({xy.dtype, depth.dtype, value.dtype}) > 1 or xy.dtype not in (torch.float32, torch.float64):
        d.bad = d.bad or ValueError
    sigma, radius = data.draw(st.sampled_from([0.7, 1.0, 2.0])), data.draw(st.sampled_from([0.0, 1.5, 3.0, 7.0]))
    if data.draw(st.booleans(), label="backward") and d.bad is None:
        image, weight_sum, visible = ref_splat.splat(xy, depth, value, (h, w), sigma,
                                                     ref_splat.dtype_radius(radius, xy.dtype))
        grad = d.tensor(tuple(image.shape), "grad_image", -1, 1, special=False, dtypes=(xy.dtype,))
        if grad.dtype == torch.int32 and tuple(grad.shape) == tuple(image.shape):
            d.bad = None  # an incoming gradient of any dtype is converted to xy's (the kernel reads that copy)
        result = d.call("splat_backward", grad, xy, value, image, weight_sum, visible, sigma, radius)
    else:
        result = d.call("splat", xy, depth, value, h, w, sigma, radius)
    if result:
        _close(*result, rtol=1e-5, atol=1e-5)


@_settings(100)
@given(st.data())
def test_fuzz_xnor(data):
    d = Draw(data, kernels=["cpu"] if _native.cpu is not None else [])
    n, c = data.draw(st.integers(0, 2), label="N"), data.draw(st.integers(1, 150), label="C")
    h, w = data.draw(st.integers(1, 7), label="H"), data.draw(st.integers(1, 7), label="W")
    if data.draw(st.booleans(), label="pack_bits"):
        shape = tuple(data.draw(st.lists(st.integers(0, 70), min_size=1, max_size=4), label="x shape"))
        x = d.tensor(shape, "x", special=False, free=tuple(range(len(shape))))
        # (N, C, *S) with any number of spatial dims
        d.bad = ValueError if x.dim() < 2 else TypeError if x.dtype == torch.int32 else None
        result = d.call("pack_bits", x)
        if result:
            assert torch.equal(*result)
        return
    groups = data.draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]), label="groups")
    o = groups * data.draw(st.integers(1, 3), label="O / groups")
    kh, kw = data.draw(st.integers(1, 3), label="KH"), data.draw(st.integers(1, 3), label="KW")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31), label="seed"))
    xw = d.shape((n, h, w, ref_xnor.words(c)), "x", free=(0, 1, 2))
    ww = d.shape((o, kh, kw, ref_xnor.words(c // groups)), "weight", free=(0, 1, 2))
    x = torch.randint(-2**62, 2**62, xw, generator=g, dtype=torch.int64)
    weight = torch.randint(-2**62, 2**62, ww, generator=g, dtype=torch.int64)
    x[..., -1:] &= (1 << (c % 64)) - 1 if c % 64 else -1  # bits past C are 0, as pack_bits writes them
    weight[..., -1:] &= (1 << ((c // groups) % 64)) - 1 if (c // groups) % 64 else -1
    alpha = d.tensor((o,), "alpha", 0.1, 1, special=False, dtypes=(torch.float32, torch.float64))
    bias = d.tensor((o,), "bias", -1, 1, special=False, dtypes=(alpha.dtype,)) if data.draw(st.booleans()) else None
    pad = data.draw(st.integers(0, 2), label="padding")
    stride, dil = data.draw(st.integers(1, 2), label="stride"), data.draw(st.integers(1, 2), label="dilation")
    if h + 2 * pad < dil * (kh - 1) + 1 or w + 2 * pad < dil * (kw - 1) + 1:
        d.bad = d.bad or ValueError
    result = d.call("binary_conv2d", x, weight, alpha, bias, None, None, c, [stride] * 2, [pad] * 2, [dil] * 2,
                    groups, data.draw(st.booleans()), data.draw(st.booleans()))
    if result:
        _close(*result, rtol=1e-6, atol=1e-5)
