"""fastlmk.ops XNOR family (pack_bits, binary_conv2d, binary_linear): every backend against the reference and
the reference against the float convolution of the sign tensors, exactly; opcheck; bad input."""

import functools
import random

import pytest
import torch
import torch.nn.functional as F

from fastlmk import _native, ops
from fastlmk.reference import xnor as ref

from conftest import CPU_BACKENDS, CUDA_EXTENSION, active

XNOR_BACKENDS = [
    pytest.param(("cpu", "cpu", "avx512"), id="cpu-avx512",
                 marks=pytest.mark.skipif(_native.cpu is None or not _native.cpu.isa_supported("avx512"),
                                          reason="needs fastlmk._C on an AVX-512 VPOPCNTDQ CPU")),
    *CPU_BACKENDS,
    CUDA_EXTENSION,
]
pytestmark = pytest.mark.usefixtures("threaded")


@pytest.fixture(params=XNOR_BACKENDS)
def backend(request):
    with active(request.param) as selected:
        yield selected


def signs_with_zeros(shape, gen, dtype=torch.float32):
    """Random values with exact zeros and negative zeros (sign +1) mixed in."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    pick = torch.rand(shape, generator=gen)
    x = torch.where(pick < 0.05, 0.0, torch.where(pick < 0.1, -0.0, x))
    return x.to(dtype)


def sign_conv(x, w, stride, padding, dilation, groups, padding_mode):
    """The float convolution of the sign tensors (float64: exact), independent of the packed layout."""
    xs, ws = ref.sign(x.double()), ref.sign(w.double())
    if padding_mode == "ones":
        xs = F.pad(xs, (padding[1], padding[1], padding[0], padding[0]), value=1.0)
        padding = (0, 0)
    return F.conv2d(xs, ws, None, stride, padding, dilation, groups)


# ------------------------------------------------------------------------------------------------ pack_bits

@pytest.mark.parametrize("shape", [(1, 1), (3, 64), (2, 65, 7), (2, 5, 3, 4), (1, 130, 6, 5), (2, 64, 1, 1, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_pack_bits_matches_reference(backend, gen, shape, dtype):
    name, device = backend
    x = signs_with_zeros(shape, gen, dtype).to(device)
    packed = ops.pack_bits(x, backend=name)
    assert packed.dtype == torch.int64 and packed.shape == (shape[0], *shape[2:], (shape[1] + 63) // 64)
    assert torch.equal(packed.cpu(), ref.pack_bits(x.cpu()))
    assert torch.equal(ops.unpack_bits(packed, shape[1]).cpu(), ref.sign(x.float().cpu()))


def test_pack_bits_layouts(backend, gen):
    """NCHW, channels-last and strided views pack the same; tail bits past C are 0; sign(0) = sign(-0) = +1."""
    name, device = backend
    x = signs_with_zeros((2, 70, 9, 11), gen).to(device)
    expected = ref.pack_bits(x.cpu())
    for view in (x, x.to(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3),
                 torch.cat([x, x], 3)[..., ::2][..., :11]):
        assert torch.equal(ops.pack_bits(view, backend=name).cpu(), ref.pack_bits(view.cpu()))
    assert torch.equal(ops.pack_bits(x, backend=name).cpu(), expected)
    assert not bool((expected[..., 1] >> 6).any())  # channels 70..127 of the last word
    zeros = torch.tensor([[0.0, -0.0, -1e-30, 1e-30]], device=device)
    assert ops.pack_bits(zeros, backend=name).item() == 0b0100


# ---------------------------------------------------------------------------------------------- binary_conv2d

# (N, C, O, H, W, kernel, stride, padding, dilation, groups)
CONV_CASES = [
    (1, 3, 5, 7, 6, (3, 3), 1, 1, 1, 1),
    (8, 70, 33, 9, 10, (3, 3), 1, 1, 1, 1),
    (2, 64, 64, 8, 8, (1, 1), 1, 0, 1, 1),
    (2, 130, 20, 11, 9, (5, 5), 2, 2, 1, 1),
    (1, 100, 17, 13, 12, (7, 7), 1, 3, 1, 1),
    (2, 65, 9, 12, 12, (3, 3), 2, 2, 2, 1),
    (3, 96, 40, 10, 11, (3, 3), 1, 1, 1, 2),
    (2, 200, 12, 7, 9, (3, 5), 1, (1, 2), 1, 4),
    (1, 128, 128, 6, 6, (3, 3), 1, 1, 1, 1),
    (2, 30, 60, 5, 5, (3, 3), 1, 3, 1, 6),
    (1, 63, 65, 4, 17, (1, 3), (1, 2), 0, (1, 3), 1),
    (8, 5, 7, 3, 3, (3, 3), 1, 0, 1, 1),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("padding_mode", ["zeros", "ones"])
def test_binary_conv2d_exact(backend, gen, case, padding_mode):
    """Float output equals alpha * conv2d(sign(x), sign(W)) exactly, from float or packed input."""
    name, device = backend
    n, c, o, h, w, k, s, p, d, g = case
    x = signs_with_zeros((n, c, h, w), gen).to(device)
    weight = torch.randn(o, c // g, *k, generator=gen).to(device)
    alpha = weight.abs().mean((1, 2, 3))
    packed_w = ops.pack_bits(weight, backend=name)
    kw = dict(stride=s, padding=p, dilation=d, groups=g, padding_mode=padding_mode, backend=name)
    y = ops.binary_conv2d(x, packed_w, alpha, **kw)
    dot = sign_conv(x.cpu(), weight.cpu(), _pair(s), _pair(p), _pair(d), g, padding_mode)
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert torch.equal(y.cpu(), dot.float() * alpha.cpu().view(1, -1, 1, 1))
    y_packed_in = ops.binary_conv2d(ops.pack_bits(x, backend=name), packed_w, alpha, in_channels=c, **kw)
    assert torch.equal(y_packed_in, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_conv2d_random_configurations(backend, gen, dtype):
    """Fresh random configurations each run, with every epilogue term and both outputs, against the reference."""
    name, device = backend
    rng = random.Random(int(torch.randint(1 << 30, (1,), generator=gen)))
    for _ in range(12):
        g = rng.choice([1, 1, 2, 3])
        cg, og = rng.choice([1, 5, 63, 64, 65, 100, 130]), rng.choice([1, 3, 8, 9, 17])
        kh, kw = rng.choice([1, 3, 5, 7]), rng.choice([1, 3])
        s, d, p = rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([0, 1, 2, 3])
        h = rng.randint(max(1, (kh - 1) * d + 1 - 2 * p), 13)
        w = rng.randint(max(1, (kw - 1) * d + 1 - 2 * p), 13)
        mode, out = rng.choice(["zeros", "ones"]), rng.choice(["float", "packed"])
        x = signs_with_zeros((rng.choice([1, 3]), cg * g, h, w), gen).to(device)
        weight = torch.randn(og * g, cg, kh, kw, generator=gen).to(device)
        terms = {t: torch.randn(og * g, generator=gen, dtype=dtype).to(device) if rng.random() < 0.5 else None
                 for t in ("bias", "scale", "shift")}
        alpha = weight.abs().mean((1, 2, 3)).to(dtype)
        packed_w = ops.pack_bits(weight, backend=name)
        y = ops.binary_conv2d(x, packed_w, alpha, stride=s, padding=p, dilation=d, groups=g, padding_mode=mode,
                              out=out, backend=name, **terms)
        expected = ref.binary_conv2d(x.cpu(), packed_w.cpu(), alpha.cpu(), cg * g, (s, s), (p, p), (d, d), g,
                                     *(None if t is None else t.cpu() for t in terms.values()), mode,
                                     out == "packed")
        assert torch.equal(y.cpu(), expected), (x.shape, weight.shape, s, p, d, g, mode, out, terms.keys())


def test_packed_output_feeds_the_next_layer(backend, gen):
    """out="packed" with a folded batch norm equals packing the float output; chaining stays in bits."""
    name, device = backend
    x = torch.randn(2, 96, 12, 12, generator=gen).to(device)
    w1, w2 = torch.randn(72, 96, 3, 3, generator=gen).to(device), torch.randn(40, 72, 3, 3, generator=gen).to(device)
    a1, a2 = w1.abs().mean((1, 2, 3)), w2.abs().mean((1, 2, 3))
    scale, shift = torch.randn(72, generator=gen).to(device), torch.randn(72, generator=gen).to(device)
    p1, p2 = ops.pack_bits(w1, backend=name), ops.pack_bits(w2, backend=name)
    y1 = ops.binary_conv2d(x, p1, a1, padding=1, scale=scale, shift=shift, backend=name)
    bits = ops.binary_conv2d(x, p1, a1, padding=1, scale=scale, shift=shift, out="packed", backend=name)
    assert torch.equal(bits, ops.pack_bits(y1, backend=name))
    y2 = ops.binary_conv2d(bits, p2, a2, in_channels=72, padding=1, backend=name)
    assert torch.equal(y2, ops.binary_conv2d(y1, p2, a2, padding=1, backend=name))


def test_bits_past_the_channel_count_are_ignored(backend, gen):
    """A packed input or weight with junk in its unused tail bits gives the same result (every group's bits
    are cut at its channel count)."""
    name, device = backend
    x = torch.randn(2, 40, 6, 6, generator=gen).to(device)
    weight = torch.randn(10, 20, 3, 3, generator=gen).to(device)
    alpha = weight.abs().mean((1, 2, 3))
    px, pw = ops.pack_bits(x, backend=name), ops.pack_bits(weight, backend=name)
    junk = torch.tensor(-(1 << 40), dtype=torch.int64, device=device)  # bits 40..63 set
    kw = dict(in_channels=40, padding=1, groups=2, backend=name)
    clean = ops.binary_conv2d(px, pw, alpha, **kw)
    assert torch.equal(ops.binary_conv2d(px | junk, pw | (junk << 4), alpha, **kw), clean)
    assert torch.equal(ref.binary_conv2d(px.cpu() | junk.cpu(), pw.cpu(), alpha.cpu(), 40, (1, 1), (1, 1), (1, 1), 2,
                                         None, None, None, "zeros", False), clean.cpu())


def test_binary_linear(backend, gen):
    name, device = backend
    x = signs_with_zeros((5, 150), gen).to(device)
    weight = torch.randn(70, 150, generator=gen).to(device)
    alpha, bias = weight.abs().mean(1), torch.randn(70, generator=gen).to(device)
    pw = ops.pack_bits(weight, backend=name)
    assert pw.shape == (70, 3)
    y = ops.binary_linear(x, pw, alpha, bias=bias, backend=name)
    dot = ref.sign(x.double().cpu()) @ ref.sign(weight.double().cpu()).T
    assert torch.equal(y.cpu(), dot.float() * alpha.cpu() + bias.cpu())
    assert torch.equal(ops.binary_linear(ops.pack_bits(x, backend=name), pw, alpha, in_features=150, bias=bias,
                                         backend=name), y)
    assert torch.equal(ops.binary_linear(x, pw, alpha, bias=bias, out="packed", backend=name),
                       ops.pack_bits(y, backend=name))


# ----------------------------------------------------------------------------------------- saturated counters

# Sign patterns (sign of x, sign of W per output channel; 0: alternating +1, -1 along the output channels) that
# drive every popcount(x ^ w) to its extreme: 64 per full word (opposite signs) or 0 (equal signs), in every word
# of every tap, so each per-byte / per-lane counter of a kernel reaches its largest value before it is widened.
SATURATING = {"x-w+": (-1, 1), "x+w-": (1, -1), "x-w-": (-1, -1), "x-w+-": (-1, 0)}

# (N, C, O, H, W, kernel, stride, padding, dilation, groups): thousands of channels (>= 32 words a tap: 31 words
# fill a byte counter), or a few words over many taps (the counts add up across taps), all with interior and
# border pixels, Wo past one micro-kernel tile (8 AVX-512 / 4 AVX2 pixels) plus single-pixel tails, O not a
# multiple of the 8-channel weight block but for the plane-by-plane case.
SATURATED_CASES = [
    (1, 256, 9, 3, 11, (3, 3), 1, 1, 1, 1),              # 4 words x 9 taps = 36 words per count
    (1, 200, 9, 7, 9, (7, 7), 1, 3, 1, 1),               # 4 words (an 8-bit tail) x 49 taps
    (2, 4096, 64, 3, 11, (3, 3), 1, 1, 1, 2),            # 32 whole words a tap, word-aligned groups, 2 x 2 x 4
                                                         # weight blocks: the plane-by-plane split
    (1, 2047, 9, 3, 10, (3, 3), 1, 1, 1, 1),             # a 63-bit tail word
    (1, 2111, 8, 9, 21, (7, 7), 2, 3, 1, 1),             # 33 words x 49 taps, stride 2
    (1, 2049, 16, 7, 19, (3, 3), (1, 2), 2, 2, 1),       # a 1-bit tail word, dilation 2
    (1, 6333, 12, 3, 9, (3, 1), 1, (1, 0), 1, 3),        # 3 groups of 2111, starting at bits 0, 63, 62 of a word
    (1, 8191, 9, 2, 11, (1, 1), 1, 0, 1, 1),             # 128 words in one tap
]


def constant_signs(shape, signs, gen):
    """Random float32 magnitudes with the given signs (broadcast to ``shape``): negative values are < 0, positive
    ones > 0 or an exact zero or negative zero (sign +1)."""
    mag = torch.rand(shape, generator=gen) + 0.25
    pick = torch.rand(shape, generator=gen)
    mag = torch.where(pick < 0.1, torch.where(pick < 0.05, 0.0, -0.0), mag)
    return torch.where(torch.as_tensor(signs) < 0, -(mag + 1), mag)


def output_signs(o, sw):
    return torch.full((o,), float(sw)) if sw else 1.0 - 2.0 * (torch.arange(o) % 2)


def tail_junk(packed, bits):
    """``packed`` with every bit past ``bits`` (the channels of its last word) set."""
    junk = torch.zeros(packed.shape[-1], dtype=torch.int64)
    if bits % 64:
        junk[-1] = -(1 << (bits % 64))
    return packed | junk.to(packed.device)


@functools.lru_cache(maxsize=None)
def saturated_reference(case, pattern):
    """For a SATURATED_CASES case and pattern, a function of the signs alone (computed once, from +-1 tensors, for
    every backend): the reference's packed x and weight and its float output for each padding mode, checked
    against the closed form sign(W[o]) C/G (sign(x) taps on the map + padding taps with "ones")."""
    n, c, o, h, w, k, s, p, d, g = case
    s, p, d = _pair(s), _pair(p), _pair(d)
    sx, sw = SATURATING[pattern]
    signs = output_signs(o, sw)
    px = ref.pack_bits(torch.full((n, c, h, w), float(sx)))
    pw = ref.pack_bits(signs.view(-1, 1, 1, 1).expand(o, c // g, *k))
    taps = k[0] * k[1]
    inside = F.conv2d(torch.ones(1, 1, h, w), torch.ones(1, 1, *k), None, s, p, d)  # taps on the map
    assert (inside == taps).any() and (p == (0, 0) or (inside < taps).any())  # interior and border pixels
    want = {}
    for mode in ("zeros", "ones"):
        want[mode] = ref.binary_conv2d(px, pw, torch.ones(o), c, s, p, d, g, None, None, None, mode, False)
        outside = (taps - inside) * (mode == "ones")  # +1 taps of the padding
        closed = signs.view(1, -1, 1, 1) * (c // g) * (sx * inside + outside)
        assert torch.equal(want[mode], closed.expand_as(want[mode]))
    return px, pw, want


@pytest.mark.parametrize("pattern", SATURATING)
@pytest.mark.parametrize("case", SATURATED_CASES, ids=lambda c: f"c{c[1]}-k{c[5][0]}x{c[5][1]}-g{c[9]}")
def test_binary_conv2d_saturated_counters(backend, gen, case, pattern):
    """Constant signs over thousands of channels (or a few words over many taps) make every popcount counter of
    every tap and word take its extreme value; each padding mode, float and packed input (with junk in the bits
    past C and past C/G), float and packed output equal the reference exactly."""
    name, device = backend
    n, c, o, h, w, k, s, p, d, g = case
    sx, sw = SATURATING[pattern]
    signs = output_signs(o, sw)
    ref_px, ref_pw, want = saturated_reference(case, pattern)
    x = constant_signs((n, c, h, w), sx, gen).to(device)
    weight = constant_signs((o, c // g, *k), signs.view(-1, 1, 1, 1), gen).to(device)
    alpha = torch.ones(o, device=device)  # exact: y is the dot itself
    px, pw = ops.pack_bits(x, backend=name), ops.pack_bits(weight, backend=name)
    assert torch.equal(px.cpu(), ref_px) and torch.equal(pw.cpu(), ref_pw)  # the bits of the +-1 tensors
    px_junk, pw_junk = tail_junk(px, c), tail_junk(pw, c // g)
    # a bias leaving y = +-1 at interior pixels: a count one word off there flips the output bit
    bias = sx * signs * (1 - k[0] * k[1] * (c // g))
    for mode in ("zeros", "ones"):
        kw = dict(stride=s, padding=p, dilation=d, groups=g, padding_mode=mode, backend=name)
        for xin, win, extra in ((x, pw, {}), (px_junk, pw_junk, {"in_channels": c})):
            y = ops.binary_conv2d(xin, win, alpha, **extra, **kw)
            assert torch.equal(y.cpu(), want[mode]), (mode, extra, (y.cpu() - want[mode]).abs().max())
        bits = ops.binary_conv2d(px_junk, pw_junk, alpha, in_channels=c, bias=bias.to(device), out="packed", **kw)
        # the reference's packed output: pack_bits of its epilogue
        assert torch.equal(bits.cpu(), ref.pack_bits(ref.epilogue(want[mode], alpha.cpu(), bias, None, None))), mode


@pytest.mark.parametrize("pattern", SATURATING)
@pytest.mark.parametrize("features", [2047, 4159, 8192])
def test_binary_linear_saturated_counters(backend, gen, features, pattern):
    """binary_linear over thousands of features with constant signs: every counter at its extreme, float and
    packed input (junk past in_features), float and packed output, against the reference exactly."""
    name, device = backend
    sx, sw = SATURATING[pattern]
    o, batch = 17, 13  # one AVX-512 tile (8) or three AVX2 tiles (4) and single-pixel tails
    signs = output_signs(o, sw)
    x = constant_signs((batch, features), sx, gen)
    weight = constant_signs((o, features), signs.view(-1, 1), gen)
    alpha = torch.ones(o)
    pw = ops.pack_bits(weight.to(device), backend=name)
    want = ref.binary_conv2d(x[:, :, None, None], pw.cpu()[:, None, None], alpha, features, (1, 1), (0, 0),
                             (1, 1), 1, None, None, None, "zeros", False)[:, :, 0, 0]
    assert torch.equal(want, sx * signs.expand(batch, o) * features)
    assert torch.equal(want, ref.sign(x.double()) @ ref.sign(weight.double()).T)
    y = ops.binary_linear(x.to(device), pw, alpha.to(device), backend=name)
    assert torch.equal(y.cpu(), want)
    px_junk, pw_junk = tail_junk(ops.pack_bits(x.to(device), backend=name), features), tail_junk(pw, features)
    assert torch.equal(ops.binary_linear(px_junk, pw_junk, alpha.to(device), in_features=features,
                                         backend=name).cpu(), want)
    bias = -sx * signs * (features - 1)  # y = +-1
    bits = ops.binary_linear(px_junk, pw_junk, alpha.to(device), in_features=features, bias=bias.to(device),
                             out="packed", backend=name)
    assert torch.equal(bits.cpu(), ref.pack_bits(want * alpha + bias))


def test_thread_count_does_not_change_results(gen):
    x = torch.randn(3, 100, 17, 15, generator=gen)
    weight = torch.randn(50, 100, 3, 3, generator=gen)
    pw, alpha = ops.pack_bits(weight), weight.abs().mean((1, 2, 3))
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ops.binary_conv2d(x, pw, alpha, padding=1, backend="cpu"))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(r, results[0]) for r in results[1:])


def test_empty_batch(backend):
    name, device = backend
    x = torch.randn(0, 8, 5, 5, device=device)
    pw = ops.pack_bits(torch.randn(4, 8, 3, 3, device=device), backend=name)
    assert ops.binary_conv2d(x, pw, torch.ones(4, device=device), padding=1, backend=name).shape == (0, 4, 5, 5)


# ------------------------------------------------------------------------------------------------- torch.library

def test_opcheck(backend, gen):
    """Schema and fake kernels against the kernel of the backend's device."""
    _, device = backend
    x = torch.randn(2, 70, 6, 7, generator=gen).to(device)
    weight = torch.randn(12, 35, 3, 3, generator=gen).to(device)
    alpha, bias = weight.abs().mean((1, 2, 3)), torch.randn(12, generator=gen).to(device)
    torch.library.opcheck(torch.ops.fastlmk.pack_bits, (x,))
    torch.library.opcheck(torch.ops.fastlmk.pack_bits, (x.to(memory_format=torch.channels_last),))
    px, pw = ref.pack_bits(x), ref.pack_bits(weight)
    for packed_out in (False, True):
        torch.library.opcheck(torch.ops.fastlmk.binary_conv2d,
                              (px, pw, alpha, bias, None, bias, 70, [2, 1], [1, 1], [1, 2], 2, False, packed_out))


def test_compile_traces_without_graph_breaks(gen):
    x = torch.randn(2, 40, 8, 8, generator=gen)
    weight = torch.randn(16, 40, 3, 3, generator=gen)
    pw, alpha = ops.pack_bits(weight), weight.abs().mean((1, 2, 3))

    def layer(x):
        return ops.binary_conv2d(x, pw, alpha, padding=1, out="packed")

    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), layer(x))


# ---------------------------------------------------------------------------------------------------- bad input

def _conv_inputs():
    x = torch.randn(2, 70, 6, 6)
    weight = torch.randn(8, 70, 3, 3)
    return x, ref.pack_bits(weight), weight.abs().mean((1, 2, 3))


@pytest.mark.parametrize("mutate, error, match", [
    (lambda x, w, a, kw: (x[0], w, a, kw), ValueError, "x must be 4-D"),
    (lambda x, w, a, kw: (x.int(), w, a, kw), TypeError, "x must have a floating dtype"),
    (lambda x, w, a, kw: (ref.pack_bits(x), w, a, kw), ValueError, "in_channels is required"),
    (lambda x, w, a, kw: (ref.pack_bits(x), w, a, {**kw, "in_channels": 200}), ValueError, "x has 2 words"),
    (lambda x, w, a, kw: (ref.pack_bits(x).permute(0, 3, 1, 2), w, a, {**kw, "in_channels": 70}), ValueError,
     "not channels-last"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "in_channels": 64}), ValueError, "in_channels=64 but x has 70"),
    (lambda x, w, a, kw: (x, w.float(), a, kw), TypeError, "weight_packed must be a packed int64"),
    (lambda x, w, a, kw: (x, ref.pack_bits(torch.randn(8, 35, 3, 3)), a, {**kw, "groups": 1}), ValueError,
     "weight_packed has 1 words"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "groups": 3}), ValueError, "groups=3 does not divide the 70"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "groups": 0}), ValueError, "groups must be a positive int"),
    (lambda x, w, a, kw: (x, ref.pack_bits(torch.randn(7, 35, 3, 3)), a[:7], {**kw, "groups": 2}), ValueError,
     "groups=2 dividing O"),
    (lambda x, w, a, kw: (x, w, a[:5], kw), ValueError, "alpha must have shape"),
    (lambda x, w, a, kw: (x, w, a.half(), kw), TypeError, "alpha must be float32 or float64"),
    (lambda x, w, a, kw: (x, w, a.clone().fill_(float("nan")), kw), ValueError, "alpha must be finite"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "bias": torch.zeros(8, dtype=torch.float64)}), TypeError,
     "bias has dtype"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "scale": torch.zeros(3)}), ValueError, "scale must have shape"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "shift": torch.full((8,), float("inf"))}), ValueError,
     "shift must be finite"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "stride": 0}), ValueError, "stride must be >= 1"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "padding": -1}), ValueError, "padding must be >= 0"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "dilation": (1, 0)}), ValueError, "dilation must be >= 1"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "stride": 1.5}), TypeError, "stride must be an int"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "dilation": 4, "padding": 0}), ValueError, "smaller than the dilated"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "stride": (1 << 63) - 1, "padding": (1 << 63) - 1}), ValueError,
     r"stride must be in \[1, 2\^31\)"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "dilation": (1 << 40, 1)}), ValueError, "dilation must be in"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "dilation": (1 << 30, 1), "padding": (1 << 30, 1)}), ValueError,
     "fewer than 2\\^31 pixels"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "padding_mode": "reflect"}), ValueError, "padding_mode must be one of"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "out": "int8"}), ValueError, "out must be one of"),
    (lambda x, w, a, kw: (x.clone().index_fill_(2, torch.tensor([1]), float("nan")), w, a, kw), ValueError,
     "x contains NaN"),
    (lambda x, w, a, kw: (x, w, a, {**kw, "backend": "triton"}), ValueError, "has backends"),
])
@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_binary_conv2d_bad_input(name, mutate, error, match):
    x, w, a = _conv_inputs()
    x, w, a, kw = mutate(x, w, a, {"padding": 1, "backend": name})
    with pytest.raises(error, match=match):
        ops.binary_conv2d(x, w, a, **kw)


def test_pack_and_linear_bad_input():
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        ops.pack_bits(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, ...\)"):
        ops.pack_bits(torch.ones(3))
    with pytest.raises(ValueError, match="at least one channel"):
        ops.pack_bits(torch.ones(2, 0, 3))
    for name in ("reference", "cpu"):
        with pytest.raises(ValueError, match="x contains NaN"):
            ops.pack_bits(torch.tensor([[1.0, float("nan")]]), backend=name)
    with pytest.raises(ValueError, match="channel count of packed must be a positive int"):
        ops.unpack_bits(torch.zeros(2, 1, dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="packed has 1 words"):
        ops.unpack_bits(torch.zeros(2, 1, dtype=torch.int64), 65)
    pw = ref.pack_bits(torch.randn(4, 10))
    with pytest.raises(ValueError, match="x must be a 2-D tensor"):
        ops.binary_linear(torch.randn(2, 10, 1), pw, torch.ones(4))
    with pytest.raises(ValueError, match="weight_packed must be a packed"):
        ops.binary_linear(torch.randn(2, 10), pw[None], torch.ones(4))
    with pytest.raises(ValueError, match="in_features=12 but x has 10"):
        ops.binary_linear(torch.randn(2, 10), pw, torch.ones(4), in_features=12)
    with pytest.raises(ValueError, match="in_features is required"):
        ops.binary_linear(ref.pack_bits(torch.randn(2, 10)), pw, torch.ones(4))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.binary_linear([[1.0] * 10], pw, torch.ones(4))
    assert ops.binary_linear(torch.randn(0, 10), pw, torch.ones(4)).shape == (0, 4)


def test_raw_op_rejects_inconsistent_layouts():
    """torch.ops.fastlmk.binary_conv2d is public: what a kernel would misread is checked again."""
    x, w, a = _conv_inputs()
    px = ref.pack_bits(x)
    raw = torch.ops.fastlmk.binary_conv2d
    for stride, padding, dilation, match in (([1, 1], [-1, -1], [1, 1], "padding must be in"),
                                             ([1, 1], [0, 0], [-3, -3], "dilation must be in"),
                                             ([0, 1], [0, 0], [1, 1], "stride must be in"),
                                             ([1], [1], [1], "pairs"),
                                             ([1, 1], [0, 0], [5, 5], "smaller than the dilated")):
        with pytest.raises(ValueError, match=match):
            raw(px, w, a, None, None, None, 70, stride, padding, dilation, 1, False, False)
    with pytest.raises(ValueError, match="4-D"):
        raw(px[0], w, a, None, None, None, 70, [1, 1], [1, 1], [1, 1], 1, False, False)
    with pytest.raises(ValueError, match="do not match packed"):
        torch.ops.fastlmk.binary_conv2d(px, w, a, None, None, None, 200, [1, 1], [1, 1], [1, 1], 1, False, False)
    with pytest.raises(ValueError, match="do not match packed"):
        torch.ops.fastlmk.binary_conv2d(px, w, a, a.double(), None, None, 70, [1, 1], [1, 1], [1, 1], 1, False,
                                        False)
    with pytest.raises(ValueError, match="do not match packed"):
        torch.ops.fastlmk.binary_conv2d(px, w[..., :1], a, None, None, None, 70, [1, 1], [1, 1], [1, 1], 1, False,
                                        False)
