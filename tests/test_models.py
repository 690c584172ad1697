"""The heatmap models of fastlmk.models: shapes, the input <-> heatmap coordinate maps, losses equal to the
rendered-target formulas (and zero at the exact targets), decoders exact on ideal outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastlmk import ops, reference
from fastlmk.models import zoo
from fastlmk.models.heatmap import FAN, H3R, HIH, STRIDE
from fastlmk.nn import BinaryConv2d

SIZE, K = 64, 5
TINY = dict(channels=16, depth=2)


def batch(b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    landmarks = torch.rand(b, K, 2, generator=gen) * (SIZE - 8) + 4
    return {"image": torch.rand(b, 3, SIZE, SIZE, generator=gen), "landmarks": landmarks}


def to_maps(landmarks: torch.Tensor) -> torch.Tensor:
    return (landmarks - (STRIDE - 1) / 2) / STRIDE


@pytest.mark.parametrize("name", sorted(set(zoo.MODELS) - {"pifa"}))
def test_forward_predict_shapes(name: str, gen: torch.Generator) -> None:
    model = zoo.build(name, num_landmarks=K, input_size=SIZE, **TINY)
    b = batch(2, gen)
    out = model(b["image"])
    loss = model.loss(out, b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        pred = model.predict(model(b["image"]))
    assert tuple(pred) == model.decoders
    assert all(p.shape == (2, K, 2) and p.dtype == torch.float32 for p in pred.values())
    assert zoo.build(name, **model.config).config == model.config  # a checkpoint's config rebuilds it


def test_stacks_and_binary_layers() -> None:
    model = FAN(K, SIZE, stacks=2, binary=True, **TINY)
    out = model(torch.rand(1, 3, SIZE, SIZE))
    assert len(out["maps"]) == 2 and out["maps"][0].shape == (1, K, SIZE // 4, SIZE // 4)
    binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert binary and isinstance(model.backbone.stem[0], torch.nn.Conv2d)  # first layer real
    assert all(isinstance(h, torch.nn.Conv2d) and not isinstance(h, BinaryConv2d) for h in model.backbone.heads)


def test_fan_loss_is_fused_mse_and_zero_at_target(gen: torch.Generator) -> None:
    model = FAN(K, SIZE, stacks=2, **TINY)
    b = batch(3, gen)
    b["landmarks"][0, 1] = float("nan")  # a missing landmark is ignored
    kp = to_maps(b["landmarks"])
    target = ops.render_gaussian(kp, (SIZE // 4, SIZE // 4), 1.5)
    assert model.loss({"maps": [target, target]}, b).item() == pytest.approx(0.0, abs=1e-7)
    maps = [torch.randn(3, K, SIZE // 4, SIZE // 4, generator=gen) for _ in range(2)]
    mask = torch.isfinite(kp).all(-1)[..., None, None].float()
    expected = sum(F.mse_loss(m * mask, target * mask, reduction="sum") / m.numel() for m in maps)
    assert model.loss({"maps": maps}, b).item() == pytest.approx(expected.item(), rel=1e-5)


def test_h3r_loss_is_bce_to_onehot_of_randomized_rounding(gen: torch.Generator) -> None:
    model = H3R(K, SIZE, **TINY)
    b = batch(2, gen)
    maps = torch.randn(2, K, SIZE // 4, SIZE // 4, generator=gen)
    torch.manual_seed(3)
    loss = model.loss({"maps": [maps]}, b)
    torch.manual_seed(3)
    onehot = ops.encode_h3r(to_maps(b["landmarks"]), (SIZE // 4, SIZE // 4))
    assert onehot.sum().item() == 2 * K
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(maps, onehot).item(), rel=1e-5)


@pytest.mark.parametrize("head", HIH.heads)
def test_hih_loss_zero_and_decode_exact_at_targets(head: str, gen: torch.Generator) -> None:
    model = HIH(K, SIZE, head=head, decimal_size=4, **TINY)
    b = batch(4, gen)
    integer, decimal = ops.encode_hih(to_maps(b["landmarks"]), (SIZE // 4, SIZE // 4), decimal_size=(4, 4),
                                      convention="unbiased")
    outputs = {"maps": [integer], "decimal": decimal}
    if head == "local":  # its decimal maps refine the integer maxima, here floor(x)
        outputs["cells"] = torch.floor(to_maps(b["landmarks"]))
    assert model.loss(outputs, b).item() == pytest.approx(0.0, abs=1e-7)
    pred = model.predict(outputs)
    # HIH: within half a decimal cell (4 input px / 4 cells / 2); the integer map alone: within 2 px per axis
    assert (pred["hih"] - b["landmarks"]).abs().max() <= STRIDE / 4 / 2 + 1e-4
    assert (pred["integer"] - b["landmarks"]).abs().max() <= STRIDE / 2 + 1e-4


def test_hih_local_head_refines_the_integer_maximum(gen: torch.Generator) -> None:
    """The local head reads the windows around the argmax cells of the last integer maps (zero outside the
    map), and its decimal target is the keypoint relative to that cell, outside the decimal map when the
    cell is not floor(x)."""
    model = HIH(K, SIZE, **TINY)
    b = batch(2, gen)
    out = model(b["image"])
    cells, _ = ops.decode(out["maps"][-1], "argmax")
    assert torch.equal(out["cells"], cells)
    features = torch.randn(2, 3, 6, 7, generator=gen)
    windows = model.decimal_head._windows(features, torch.tensor([[[0.0, 0.0], [6.0, 5.0], [2.0, 3.0]]] * 2))
    padded = F.pad(features, (1, 1, 1, 1))
    for k, (x, y) in enumerate([(0, 0), (6, 5), (2, 3)]):
        assert torch.equal(windows[:, k], padded[:, :, y:y + 3, x:x + 3])
    keypoints = torch.tensor([[[2.3, 4.6]]])
    _, fraction = ops.hih_centers(keypoints, 8, "unbiased", cells=torch.tensor([[[3.0, 4.0]]]))
    torch.testing.assert_close(fraction, torch.tensor([[[(2.3 - 3) * 8 - 0.5, 0.6 * 8 - 0.5]]]))


def _one_axis_errors(sigma: float, blur: int, offsets: torch.Tensor) -> dict[str, torch.Tensor]:
    """|decoded - t| in map pixels along one axis of an exact Gaussian map, for t = x0 + d (d = ``offsets``,
    argmax x0 far from the map's edges), in float64. The rendered map exp(-(dx^2 + dy^2) / 2 sigma^2) (cut at
    |dx|, |dy| <= 3 sigma) is separable, and so is DARK's zero-padded blur of it: DARK's mixed derivative
    vanishes and each axis of every decoder below is this 1-D problem."""
    x0, n = 20, 41
    t = x0 + offsets[:, None]
    dx = torch.arange(n, dtype=torch.float64) - t
    m = torch.where(dx.abs() <= 3 * sigma, torch.exp(-dx * dx / (2 * sigma * sigma)), torch.zeros(()))
    left, centre, right = m[:, x0 - 1], m[:, x0], m[:, x0 + 1]
    quarter = x0 + 0.25 * torch.sign(right - left)
    parabola = x0 + (0.5 * (left - right) / (left - 2 * centre + right)).clamp(-0.5, 0.5)
    r = (blur - 1) // 2
    log_b = F.conv1d(m[:, None], reference.decode.dark_kernel(blur).view(1, 1, blur), padding=r)[:, 0].log()
    slope = 0.5 * (log_b[:, x0 + 1] - log_b[:, x0 - 1])
    curvature = 0.25 * (log_b[:, x0 + 2] - 2 * log_b[:, x0] + log_b[:, x0 - 2])
    dark = x0 - slope / curvature
    return {"argmax": (x0 - t[:, 0]).abs(), "quarter": (quarter - t[:, 0]).abs(),
            "parabola": (parabola - t[:, 0]).abs(), "dark": (dark - t[:, 0]).abs()}


def test_fan_decoders_on_ideal_maps(gen: torch.Generator) -> None:
    """On exact Gaussian targets each decoder's error, per landmark and axis, is bounded by its 1-D worst case
    over the offset d = t - argmax in [-1/2, 1/2] (_one_axis_errors), wherever its stencil lies in the map:
    argmax |d| <= 1/2 everywhere; quarter |d - sign(d)/4| <= 1/4 and the parabola its maximum (about 0.021) off
    the edge pixels; DARK its maximum (about 0.002) where its blur and stencil (5 pixels each way) stay in the
    map. The sub-pixel decoders beat argmax: their worst and mean 1-D errors are ordered, and so are the mean
    errors of the model's decoders over a grid of offsets inside the map."""
    model = FAN(K, SIZE, **TINY)
    sigma, blur, n = model.sigma, 2 * math.ceil(2 * model.sigma) + 1, SIZE // 4
    one_axis = _one_axis_errors(sigma, blur, torch.linspace(-0.5, 0.5, 4001, dtype=torch.float64))
    worst = {name: e.max().item() for name, e in one_axis.items()}
    mean = {name: e.mean().item() for name, e in one_axis.items()}
    assert worst["dark"] < worst["parabola"] < worst["quarter"] == 0.25 < worst["argmax"] == 0.5
    assert mean["dark"] < mean["parabola"] < mean["quarter"] < mean["argmax"]

    def decoded(landmarks: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        truth = to_maps(landmarks)
        pred = model.predict({"maps": [ops.render_gaussian(truth, (n, n), sigma)]})
        return truth, {name: to_maps(p) for name, p in pred.items()}  # map pixels

    # random landmarks, the whole map (its edge pixels included): per-landmark bounds
    truth, pred = decoded(batch(4, gen)["landmarks"])
    x0 = pred["argmax"]
    assert torch.equal(x0, x0.round())
    err = {name: (p - truth).abs() for name, p in pred.items()}
    tol = 1e-4  # float32 maps and coordinates
    assert (err["argmax"] <= 0.5 + tol).all()
    off_edge = (x0 >= 1) & (x0 <= n - 2)
    assert (err["quarter"] <= torch.where(off_edge, 0.25, 0.5) + tol).all()
    assert (err["parabola"][off_edge] <= worst["parabola"] + tol).all()
    inside = ((x0 >= 5) & (x0 <= n - 6)).all(-1, keepdim=True).expand_as(x0)
    assert (err["dark"][inside] <= worst["dark"] + tol).all()

    # a deterministic grid of offsets d around interior pixels: the decoders' mean errors are ordered
    d = torch.linspace(-0.45, 0.45, 10)
    grid = torch.stack(torch.meshgrid(d, d, indexing="xy"), -1).reshape(-1, K, 2)  # (20, K, 2) offsets
    cells = torch.randint(5, n - 5, grid.shape, generator=gen).float()
    truth, pred = decoded((cells + grid) * STRIDE + (STRIDE - 1) / 2)
    err = {name: (p - truth).norm(dim=-1).mean().item() for name, p in pred.items()}
    assert err["dark"] < err["parabola"] < err["quarter"] < err["argmax"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        zoo.build("resnet", num_landmarks=K)
    with pytest.raises(ValueError, match="input_size"):
        FAN(K, 30)
    with pytest.raises(ValueError, match="head must be one of"):
        HIH(K, SIZE, head="mlp")
    with pytest.raises(ValueError, match="cells must have the keypoints' shape"):
        ops.hih_centers(torch.zeros(1, K, 2), 8, cells=torch.zeros(1, K + 1, 2))
    with pytest.raises(ValueError, match="decimal"):
        HIH(K, SIZE, head="cnn", decimal_size=3)
    with pytest.raises(ValueError, match="decimal_size must be positive"):
        HIH(K, SIZE, decimal_size=0)
