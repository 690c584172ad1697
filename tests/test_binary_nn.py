"""fastlmk.nn.BinaryConv2d, binarize_, pack_binary_ and the HPM block: straight-through gradients against the
formula, training and eval paths agreeing, the packed-weight cache, the packed state_dict, torch.compile."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastlmk.nn.binary as binary_module
from fastlmk import ops
from fastlmk.models.hourglass import HPMBlock
from fastlmk.nn import BinaryConv2d, binarize_, pack_binary_, sign_ste, state_dict_bytes

# (C, O, kernel, stride, padding, dilation, groups, padding_mode, bias)
CONFIGS = [
    (3, 5, 1, 1, 0, 1, 1, "zeros", False),
    (70, 33, 3, 1, 1, 1, 1, "zeros", True),
    (70, 33, 3, 1, 1, 1, 1, "ones", False),
    (10, 6, 5, 2, 2, 1, 1, "ones", True),
    (130, 8, 3, 2, 1, 1, 1, "zeros", False),
    (12, 8, 3, 1, 2, 2, 2, "zeros", True),
    (12, 8, (3, 5), (1, 2), (1, 2), (2, 1), 2, "ones", False),
]


def make_layer(config, gen, dtype=torch.float64, scale=0.1):
    """A BinaryConv2d with random weights (some of them exactly 0) and bias from ``gen``."""
    c, o, k, s, p, d, g, mode, bias = config
    layer = BinaryConv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=mode,
                         dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(layer.weight.shape, generator=gen, dtype=dtype))
        layer.weight.view(-1)[::7] = 0.0
        if bias:
            layer.bias.copy_(torch.randn(o, generator=gen, dtype=dtype))
    return layer


def make_input(c, gen, dtype=torch.float64, size=(9, 11), n=2, scale=1.0):
    """Random input with zeros (sign +1) and negative zeros in it."""
    x = scale * torch.randn(n, c, *size, generator=gen, dtype=dtype)
    x.view(-1)[::5] = 0.0
    x.view(-1)[1::11] = -0.0
    return x


def test_sign_ste():
    t = torch.tensor([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.0 + 1e-12, 3.0], dtype=torch.float64,
                     requires_grad=True)
    y = sign_ste(t)
    assert y.dtype == t.dtype
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1, 1]
    (grad,) = torch.autograd.grad(y, t, torch.arange(1.0, 10.0, dtype=torch.float64))
    assert grad.tolist() == [0, 2, 3, 4, 5, 6, 7, 0, 0]


def ste_reference(x, w, b, grad, layer):
    """Forward value and (grad_x, grad_w, grad_b) of the training path written out: sign(x), sign(w) with the
    STE mask |t| <= 1, alpha = mean |w[o]| with d alpha / dw = sign(w) / n."""
    stride, padding, dilation, groups = layer.stride, layer.padding, layer.dilation, layer.groups
    sx, sw = torch.where(x < 0, -1.0, 1.0).to(x.dtype), torch.where(w < 0, -1.0, 1.0).to(w.dtype)
    alpha = w.abs().mean((1, 2, 3)).view(1, -1, 1, 1)
    sxp, pad = sx, padding
    if layer.padding_mode == "ones":
        sxp, pad = F.pad(sx, (padding[1], padding[1], padding[0], padding[0]), value=1.0), (0, 0)
    dot = F.conv2d(sxp, sw, None, stride, pad, dilation, groups)
    y = dot * alpha + (0 if b is None else b.view(1, -1, 1, 1))
    ga = grad * alpha
    gx = torch.nn.grad.conv2d_input(x.shape, sw, ga, stride, padding, dilation, groups) * (x.abs() <= 1)
    gw = torch.nn.grad.conv2d_weight(sxp, w.shape, ga, stride, pad, dilation, groups) * (w.abs() <= 1)
    gw = gw + (grad * dot).sum((0, 2, 3)).view(-1, 1, 1, 1) * torch.sign(w) / w[0].numel()
    gb = None if b is None else grad.sum((0, 2, 3))
    return y, gx, gw, gb


@pytest.mark.parametrize("config", CONFIGS)
def test_ste_gradients_match_the_formula(config, gen):
    layer = make_layer(config, gen, scale=0.8)  # |w| on both sides of 1
    with torch.no_grad():
        layer.weight.view(-1)[::7] = 0.5  # no weight at the kink of |w|
    x = make_input(config[0], gen, scale=1.5).requires_grad_()
    y = layer(x)
    grad = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    params = [x, layer.weight] + ([layer.bias] if layer.bias is not None else [])
    got = torch.autograd.grad(y, params, grad)
    want_y, *want = ste_reference(x.detach(), layer.weight.detach(), layer.bias, grad, layer)
    torch.testing.assert_close(y, want_y, rtol=0, atol=0)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert (got[0] == 0).any() and (got[0] != 0).any()  # the STE mask cuts some of x and passes the rest


@pytest.mark.parametrize("config", [(5, 4, 3, 1, 1, 1, 1, "zeros", True), (4, 6, (3, 2), 2, 1, (1, 2), 2, "ones", True),
                                    (3, 2, 1, 1, 0, 1, 1, "zeros", False)])
def test_gradcheck_training_path(config, gen):
    """float64 gradcheck where the finite differences are defined: every |x| and |w| in (1.1, 2), so the STE
    passes nothing (d sign / dt = 0 there) and the gradient of w is that of alpha (Eq. 5.2), plus the bias.
    The STE itself is checked against the formula above (it is not the derivative of sign)."""
    layer = make_layer(config, gen)

    def away_from_kinks(shape):
        mag = 1.1 + 0.9 * torch.rand(shape, generator=gen, dtype=torch.float64)
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -mag, mag).requires_grad_()

    x, w = away_from_kinks((1, config[0], 5, 4)), away_from_kinks(layer.weight.shape)
    params = {"weight": w}
    if layer.bias is not None:
        params["bias"] = torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64).requires_grad_()
    names = list(params)

    def f(x, *tensors):
        return torch.func.functional_call(layer, dict(zip(names, tensors)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params.values()))
    out = f(x, *params.values())
    # alpha's gradient reaches w (a random projection: with .sum() the +-1 dot products can cancel exactly)
    gw = torch.autograd.grad(out, w, torch.randn(out.shape, generator=gen, dtype=out.dtype))[0]
    assert gw.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", CONFIGS)
def test_train_and_eval_agree(config, dtype, gen):
    layer = make_layer(config, gen, dtype)
    x = make_input(config[0], gen, dtype)
    want = layer(x)
    layer.eval()
    got = layer(x)
    assert got.dtype == dtype and got.shape == want.shape and not got.requires_grad
    if dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * float(want.detach().abs().max()))
    # a packed input (as from pack_bits or out="packed" of a previous layer) gives the same result
    torch.testing.assert_close(layer(ops.pack_bits(x)), got, rtol=0, atol=0)


def test_input_dtype_other_than_the_weights(gen):
    """The sign is taken in the input's own dtype, as pack_bits does: float64 values that round to -0.0 in
    float32 keep their sign -1 in a float32 layer; float16 into float64."""
    layer = make_layer(CONFIGS[1], gen, torch.float32)
    x = make_input(70, gen)
    x.view(-1)[2::3] *= 1e-60
    want = layer(x)
    assert want.dtype == torch.float32
    torch.testing.assert_close(layer.eval()(x), want, rtol=0, atol=0)
    layer = make_layer(CONFIGS[1], gen)
    x = x.to(torch.float16)
    torch.testing.assert_close(layer.eval()(x), layer.train()(x), rtol=0, atol=0)


def test_packed_input_needs_eval(gen):
    layer = make_layer(CONFIGS[0], gen)
    with pytest.raises(TypeError, match="eval"):
        layer(ops.pack_bits(make_input(3, gen)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups"):
        BinaryConv2d(6, 4, 3, groups=4)
    with pytest.raises(ValueError, match="padding_mode"):
        BinaryConv2d(6, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="in_channels"):
        BinaryConv2d(0, 4, 3)


def test_weights_packed_once_and_repacked_after_in_place_change(gen, monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return ops.pack_bits(*args, **kwargs)

    monkeypatch.setattr(binary_module, "pack_bits", counting)
    layer = make_layer(CONFIGS[1][:-1] + (False,), gen).eval()
    with torch.no_grad():
        layer.weight.view(-1)[::7] = 0.5  # no zero weight (-0.0 has sign +1 too)
    x = make_input(70, gen)
    first = layer(x)
    torch.testing.assert_close(layer(x), first, rtol=0, atol=0)
    assert len(calls) == 1
    with torch.no_grad():
        layer.weight.neg_()  # every sign flips, alpha stays: the output flips
    torch.testing.assert_close(layer(x), -first, rtol=0, atol=0)
    assert len(calls) == 2
    layer.weight.data.neg_()  # not seen by the version counter: eval() drops the cache
    torch.testing.assert_close(layer.eval()(x), first, rtol=0, atol=0)
    assert len(calls) == 3


def test_cache_after_optimizer_step_and_load_state_dict(gen):
    config = CONFIGS[2]
    layer = make_layer(config, gen)
    x = make_input(config[0], gen)
    before = layer.eval()(x)
    layer.train()
    old = layer.weight.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    (layer(x) * torch.randn(before.shape, generator=gen, dtype=x.dtype)).sum().backward()
    opt.step()
    assert ((layer.weight < 0) != (old < 0)).any()  # the step flipped some signs
    want = layer(x)
    after = layer.eval()(x)
    torch.testing.assert_close(after, want, rtol=0, atol=0)
    assert not torch.equal(after, before)

    other = make_layer(config, gen).eval()  # load_state_dict in eval mode, with no train()/eval() call
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer(x), other(x), rtol=0, atol=0)


def test_double_after_eval(gen):
    layer = make_layer(CONFIGS[3], gen, torch.float32).eval()
    x = make_input(10, gen, torch.float32)
    y32 = layer(x)
    layer.double()
    y64 = layer(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64, layer.train()(x.double()), rtol=0, atol=0)
    torch.testing.assert_close(y64.float(), y32)


def test_pack_state_dict_round_trip(gen):
    config = CONFIGS[1]
    layer = make_layer(config, gen, torch.float32)
    weight = layer.weight.detach().clone()
    x = make_input(70, gen, torch.float32)
    before = layer.eval()(x)
    layer.pack_()
    state = layer.state_dict()
    assert set(state) == {"weight_packed", "alpha", "bias"}
    assert state["weight_packed"].dtype == torch.int64 and state["weight_packed"].shape == (33, 3, 3, 2)
    assert torch.equal(state["weight_packed"], ops.pack_bits(weight))
    assert torch.equal(state["alpha"], weight.abs().mean((1, 2, 3)))
    torch.testing.assert_close(layer(x), before, rtol=0, atol=0)

    other = pack_binary_(nn.Sequential(make_layer(config, gen, torch.float32)))
    other.load_state_dict(nn.Sequential(layer).state_dict())
    torch.testing.assert_close(other(x), before, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="inference-only"):
        layer.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        other.train()


def test_packed_size_ratio():
    layer = BinaryConv2d(128, 128, 3, padding=1)
    float_bytes = state_dict_bytes(layer)
    assert float_bytes == 128 * 128 * 9 * 4
    ratio = float_bytes / state_dict_bytes(layer.pack_())
    print(f"state_dict size ratio float32 / packed, 128->128 3x3 without bias: {ratio:.2f}x")
    assert ratio > 25


def conv_net():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 70, 3, stride=2, padding=1, bias=True), nn.Tanh(),
        nn.Conv2d(70, 32, 3, padding="same", dilation=2, groups=2, bias=False),
        nn.Conv2d(32, 32, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(32, 5, 1),
    ).double()


def test_binarize_keeps_first_and_last(gen):
    model = conv_net()
    real = [m.weight.detach().clone() for m in model if isinstance(m, nn.Conv2d)]
    assert binarize_(model) is model
    kinds = [type(m) for m in model if isinstance(m, (nn.Conv2d, BinaryConv2d))]
    assert kinds == [nn.Conv2d, BinaryConv2d, BinaryConv2d, nn.Conv2d, nn.Conv2d]  # reflect padding stays
    b1, b2 = model[2], model[4]
    assert (b1.stride, b1.padding, b1.bias is not None) == ((2, 2), (1, 1), True)
    assert (b2.padding, b2.dilation, b2.groups, b2.bias) == ((2, 2), (2, 2), 2, None)
    assert torch.equal(b1.weight, real[1]) and torch.equal(b2.weight, real[2])
    assert b1.weight.dtype == torch.float64

    x = torch.randn(2, 3, 12, 10, generator=gen, dtype=torch.float64)
    want = model.train()(x)
    # equal up to the rounding of the real layers after them (which may see another memory layout)
    torch.testing.assert_close(model.eval()(x), want)

    binarize_(model)  # idempotent
    assert [type(m) for m in model if isinstance(m, (nn.Conv2d, BinaryConv2d))] == kinds
    binarize_(model, keep_first=False, keep_last=False)
    assert isinstance(model[0], BinaryConv2d) and isinstance(model[7], BinaryConv2d)


def test_binarize_shared_layer_and_errors():
    shared = nn.Conv2d(4, 4, 3, padding=1)
    model = binarize_(nn.Sequential(nn.Conv2d(3, 4, 1), shared, shared, nn.Conv2d(4, 2, 1)))
    assert isinstance(model[1], BinaryConv2d) and model[1] is model[2]
    with pytest.raises(TypeError, match="Module"):
        binarize_(torch.zeros(3))
    with pytest.raises(TypeError, match="Module"):
        pack_binary_([shared])
    with pytest.raises(ValueError, match="in place"):
        binarize_(nn.Conv2d(3, 4, 3), keep_first=False, keep_last=False)


@pytest.mark.parametrize("binary", [False, True], ids=["real", "binary"])
@pytest.mark.parametrize("channels", [(32, 32), (16, 40)], ids=["identity", "downsample"])
def test_hpm_block(binary, channels, gen):
    cin, cout = channels
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
    block = HPMBlock(cin, cout, binary=binary).double()
    convs = [block.conv1, block.conv2, block.conv3]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(cin, cout // 2), (cout // 2, cout // 4),
                                                                 (cout // 4, cout // 4)]
    assert all(type(c) is (BinaryConv2d if binary else nn.Conv2d) and c.padding == (1, 1) and c.bias is None
               for c in convs)
    assert (block.downsample is None) == (cin == cout)
    if block.downsample is not None:
        assert type(block.downsample[2]) is nn.Conv2d and block.downsample[2].kernel_size == (1, 1)

    x = torch.randn(2, cin, 8, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    y = block(x)
    assert y.shape == (2, cout, 8, 6)
    if binary and cin == cout:
        assert (y - x >= 0).all()  # a ReLU after each binary conv
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(c.weight.grad.abs().sum() > 0 for c in convs)

    block.eval()
    with torch.no_grad():
        got = block(x)
        for c in convs:
            c.train()  # the same block with its convs on the training path
        torch.testing.assert_close(got, block(x), rtol=0, atol=0)


def test_torch_compile_fullgraph_training_path(gen):
    layer = make_layer(CONFIGS[3], gen, torch.float32)
    x = make_input(10, gen, torch.float32).requires_grad_()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    got = compiled(x)
    got_grads = torch.autograd.grad(got.sum(), [x, layer.weight, layer.bias])
    want = layer(x)
    want_grads = torch.autograd.grad(want.sum(), [x, layer.weight, layer.bias])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


def test_eval_under_inference_mode_compile_and_half_weights(gen):
    """Eval works on inference tensors (no version counter), traces under torch.compile, and half-precision
    weights compute alpha in float32 and return their own dtype."""
    x = torch.randn(2, 16, 8, 8, generator=gen)
    with torch.inference_mode():
        layer = BinaryConv2d(16, 8, 3, padding=1).eval()
        assert layer(x).shape == (2, 8, 8, 8)
    layer = BinaryConv2d(16, 8, 3, padding=1).eval()
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), layer(x))
    half = BinaryConv2d(16, 8, 3, padding=1).bfloat16().eval()
    y = half(x.bfloat16())
    assert y.dtype == torch.bfloat16
    expected = ops.binary_conv2d(x, ops.pack_bits(half.weight), half.weight.float().abs().mean((1, 2, 3)), padding=1)
    assert torch.equal(y, expected.bfloat16())
