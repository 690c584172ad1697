"""fastlmk.models.pifa.PIFA (seed 003): shapes, the initial estimate P^0, gradients through the blocks and the
visualization layer, the losses (Eq. 6 and 7, block weights, NaN landmarks), a few training steps."""

import math

import pytest
import torch

from fastlmk.geometry.morphable import procedural
from fastlmk.models.pifa import INIT_FILL, PIFA, UNIT_FRACTION
from fastlmk.nn import VisualizationLayer, frontal_projection

S = 64  # blocks read 64, 32, 16, 16, 16, 16 pixel maps


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these are model tests, not kernel tests, and on a small shared CPU OpenMP's
    spinning threads make a 2-thread step up to 20x slower when another process is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def morphable():
    return procedural()


def model_at(seed=0, **kw):
    torch.manual_seed(seed)
    return PIFA(input_size=S, **kw)


def faces(b, seed=0, size=S):
    """A batch of faces of the morphable model: random p (its std), a random pose near the frame of P^0,
    landmarks = f(M, p) (Eq. 3) and the image = the visualization layer's render in [0, 1], 3 channels."""
    model = procedural()
    g = torch.Generator().manual_seed(seed)
    std = torch.cat([model.id_std, model.exp_std])
    p = torch.randn(b, std.numel(), generator=g) * std

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=g)

    lmk = model.mean[model.landmarks]
    scale = INIT_FILL * size / float((lmk[:, :2].amax(0) - lmk[:, :2].amin(0)).max())
    M = frontal_projection(u(-0.5, 0.5), scale, ((size - 1) / 2, (size - 1) / 2), pitch=u(-0.2, 0.2),
                           roll=u(-0.2, 0.2))
    M[:, :, :3] *= u(0.9, 1.1)[:, None, None]
    M[:, :, 3] += u(-0.06, 0.06)[:, None] * size
    landmarks = model.shape(p)[:, model.landmarks] @ M[:, :, :3].transpose(1, 2) + M[:, None, :, 3]
    with torch.no_grad():
        v = VisualizationLayer(model, size)(M, p)
    image = ((v.clamp(-2, 2) + 2) / 4).repeat(1, 3, 1, 1)
    return {"image": image, "landmarks": landmarks, "params": p, "camera": M}


def test_shapes_predict_and_config():
    model = model_at()
    assert model.num_landmarks == 68 and model.input_size == S and model.decoders == ("pifa",)
    batch = faces(3)
    outputs = model(batch["image"])
    assert len(outputs) == 6
    sizes = [o.visualization.shape[-1] for o in outputs]
    assert sizes == [64, 32, 16, 16, 16, 16]
    for o in outputs:
        assert o.M.shape == o.delta_M.shape == (3, 2, 4)
        assert o.p.shape == o.delta_p.shape == (3, 16)
        assert o.landmarks.shape == (3, 68, 2)
        assert o.visualization.shape[:2] == (3, 1)
    pred = model.predict(outputs)
    assert set(pred) == set(model.decoders)
    assert pred["pifa"].shape == (3, 68, 2) and pred["pifa"] is outputs[-1].landmarks
    # M, p are P^{i-1} + Delta P^i
    M, p = model.initial(3)
    for o in outputs:
        torch.testing.assert_close(o.M, M + o.delta_M)
        torch.testing.assert_close(o.p, p + o.delta_p)
        M, p = o.M, o.p
    # config rebuilds the same architecture (the morphable model is the default procedural())
    assert model.config == dict(num_landmarks=68, input_size=S, blocks=6, sigma=1.0, backend=None)
    rebuilt = PIFA(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert len(PIFA(input_size=S, blocks=2)(batch["image"])) == 2


def test_initial_estimate_is_the_mean_face_at_m0(morphable):
    model = model_at().eval()
    M0 = model.M0
    # frontal, scaled so that the landmark box's larger side is INIT_FILL * S, centred in the crop
    scale = float(M0[0, 0])
    torch.testing.assert_close(M0[:, :3], scale * torch.tensor([[1.0, 0, 0], [0, -1.0, 0]]))
    mean_lmk = morphable.mean[morphable.landmarks]
    projected = mean_lmk @ M0[:, :3].T + M0[:, 3]
    lo, hi = projected.amin(0), projected.amax(0)
    assert float((hi - lo).max()) == pytest.approx(INIT_FILL * S, rel=1e-5)
    torch.testing.assert_close((lo + hi) / 2, torch.full((2,), (S - 1) / 2))
    # at initialisation the prediction is P^0 (the last FC layers start near zero)
    with torch.no_grad():
        pred = model.predict(model(faces(2)["image"]))["pifa"]
    torch.testing.assert_close(pred, projected.expand(2, -1, -1), atol=0.05, rtol=0)


def test_gradients_reach_block_one_and_flow_through_the_visualization_layer():
    model = model_at()
    batch = faces(4)
    outputs = model(batch["image"])
    for o in outputs:
        o.M.retain_grad()
    # block 2's update depends on block 1's M only through its visualization image (the features of block 1
    # were computed from P^0): a nonzero derivative is the visualization layer's gradient
    v_grad, = torch.autograd.grad(outputs[1].delta_M.square().sum(), outputs[0].M, retain_graph=True)
    assert outputs[1].visualization.requires_grad
    assert v_grad.abs().sum() > 0 and torch.isfinite(v_grad).all()
    loss = model.loss(outputs, batch)
    loss.backward()
    block = model.blocks[0]
    for param in (block.conv1.weight, block.conv2.weight, block.fc1.weight, block.fc2.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0 and torch.isfinite(param.grad).all()
    assert outputs[0].M.grad.abs().sum() > 0
    # every trainable parameter of every block gets a gradient
    assert all(p.grad is not None for p in model.parameters())


def manual_loss(model, outputs, batch, parameter_blocks):
    """Eq. 6 on the first ``parameter_blocks`` blocks, Eq. 7 on the rest, weights 1..N over their sum."""
    unit = UNIT_FRACTION * model.input_size
    std = model.param_std
    camera, params = batch.get("camera"), batch.get("params")
    if camera is not None:
        r = camera[:, :, :3].abs().mean() / camera[:, :, 3].abs().mean()
    total, M_in, p_in = 0.0, *model.initial(batch["landmarks"].shape[0])
    for i, o in enumerate(outputs):
        if i < parameter_blocks:
            eM = (o.delta_M - (camera - M_in)) / unit
            ep = o.delta_p - (params - p_in)
            e = (eM[:, :, :3] ** 2).sum((1, 2)) / r + (eM[:, :, 3] ** 2).sum(1) + (ep ** 2 / std).sum(1)
            e = e.mean()
        else:
            lm = batch["landmarks"]
            ok = torch.isfinite(lm).all(-1)
            e = (((o.landmarks - lm) / unit) ** 2).sum(-1)[ok].mean()
        total = total + (i + 1) * e
        M_in, p_in = o.M, o.p
    n = len(outputs)
    return total / (n * (n + 1) / 2)


def test_loss_eq6_on_the_first_blocks_with_params_eq7_everywhere_without():
    model = model_at()
    batch = faces(4, seed=1)
    outputs = model(batch["image"])
    with_params = model.loss(outputs, batch)
    torch.testing.assert_close(with_params, manual_loss(model, outputs, batch, 3))
    landmarks_only = {"image": batch["image"], "landmarks": batch["landmarks"]}
    without = model.loss(outputs, landmarks_only)
    torch.testing.assert_close(without, manual_loss(model, outputs, landmarks_only, 0))
    assert not torch.allclose(with_params, without)
    # O(1) at P^0 (losses in units of 0.05 input_size)
    assert 0.05 < without.detach().item() < 50 and 0.05 < with_params.detach().item() < 50
    # the Eq. 6 target is Pbar - P^i: a block that lands on the ground truth has no parameter loss
    exact = dict(batch, camera=outputs[0].M.detach(), params=outputs[0].p.detach())
    e6 = model.parameter_loss(model.initial(4), outputs[0], exact["camera"], exact["params"], torch.tensor(0.3))
    assert e6.detach().item() < 1e-10
    # and Eq. 7 vanishes on landmarks that equal the prediction
    assert model.landmark_loss(outputs[4], outputs[4].landmarks.detach()).detach().item() < 1e-10


def test_nan_landmarks_are_ignored():
    model = model_at()
    batch = faces(3, seed=2)
    outputs = model(batch["image"])
    landmarks = batch["landmarks"].clone()
    landmarks[0, :20] = math.nan
    landmarks[1, 5, 1] = math.nan  # one coordinate missing: the landmark is missing
    landmarks[2, 30:] = math.inf
    for with_params in (True, False):
        b = dict(batch, landmarks=landmarks) if with_params else {"landmarks": landmarks}
        loss = model.loss(outputs, b)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, manual_loss(model, outputs, b, 3 if with_params else 0))
    model.zero_grad()
    model.loss(outputs, {"landmarks": landmarks}).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # all landmarks missing: no landmark loss, and no NaN gradient
    outputs = model(batch["image"])
    empty = model.loss(outputs, {"landmarks": torch.full_like(landmarks, math.nan)})
    assert empty.detach().item() == 0.0
    model.zero_grad()
    empty.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_few_adam_steps_reduce_the_loss():
    model = model_at(seed=3)
    batch = faces(8, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now():
        torch.manual_seed(7)  # the same dropout masks each time
        with torch.no_grad():
            return float(model.loss(model(batch["image"]), batch))

    first = loss_now()
    for _ in range(25):
        loss = model.loss(model(batch["image"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = loss_now()
    assert last < 0.5 * first, (first, last)


def test_bad_arguments():
    with pytest.raises(ValueError, match="68 landmark layout"):
        PIFA(num_landmarks=98)
    with pytest.raises(ValueError, match="input_size"):
        PIFA(input_size=8)
    with pytest.raises(ValueError, match="sigma"):
        PIFA(input_size=S, sigma=0.0)
    model = model_at()
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(2, 3, S + 1, S + 1))
    outputs = model(torch.rand(2, 3, S, S))
    with pytest.raises(ValueError, match="params"):
        model.loss(outputs, {"landmarks": torch.zeros(2, 68, 2), "params": torch.zeros(2, 3),
                             "camera": torch.zeros(2, 2, 4)})
    with pytest.raises(ValueError, match="landmarks"):
        model.loss(outputs, {"landmarks": torch.zeros(2, 98, 2)})
