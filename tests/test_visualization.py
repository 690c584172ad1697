"""fastlmk.nn.VisualizationLayer: Eq. 1-11 against a direct computation, gradients in M and p, the picture
test on the procedural face (benchmarks/visualization_renders.py writes the same renders as a PNG)."""

import math

import pytest
import torch

from fastlmk import ops
from fastlmk.geometry.morphable import MorphableModel, nose_mask, procedural
from fastlmk.nn import VisualizationLayer, frontal_projection


def small_model(gen, q=30, n_id=3, n_exp=2):
    """A random model: a bumpy sheet, most normals toward +z, random bases (float64)."""
    mean = torch.rand(q, 3, generator=gen, dtype=torch.float64) * 2 - 1
    mean[:, 2] = 0.3 * mean[:, 2] + 0.5
    normals = torch.randn(q, 3, generator=gen, dtype=torch.float64)
    normals[:, 2] += 1.0  # most face the camera, some away
    normals = normals / normals.norm(dim=1, keepdim=True)
    return MorphableModel(
        mean=mean, normals=normals,
        id_basis=0.1 * torch.randn(n_id, q, 3, generator=gen, dtype=torch.float64),
        exp_basis=0.1 * torch.randn(n_exp, q, 3, generator=gen, dtype=torch.float64),
        id_std=torch.ones(n_id, dtype=torch.float64), exp_std=torch.ones(n_exp, dtype=torch.float64),
        triangles=torch.tensor([[0, 1, 2]]), landmarks=torch.tensor([0, 1]), nose_tip=0,
        mask=nose_mask(mean, 0, 0.7))


def pose(gen, b, size, dtype=torch.float64):
    yaw = (torch.rand(b, generator=gen, dtype=dtype) - 0.5) * 1.2
    pitch = (torch.rand(b, generator=gen, dtype=dtype) - 0.5) * 0.6
    m = frontal_projection(yaw, size / 3, ((size - 1) / 2, (size - 1) / 2), pitch=pitch)
    return m + 0.05 * torch.randn(m.shape, generator=gen, dtype=dtype)


def test_matches_the_equations(gen):
    """V = splat(M (S_p; 1), depth, g a) with g = max(0, -(m1 x m2) . N0 / (|m1| |m2|)) (Eq. 8 in y-down
    image coordinates) and the g = 0 vertices pruned."""
    model = small_model(gen)
    layer = VisualizationLayer(model, (12, 14), sigma=1.1)
    m, p = pose(gen, 3, 12), 0.5 * torch.randn(3, 5, generator=gen, dtype=torch.float64)
    shape = model.shape(p)
    xy = torch.einsum("bqk,bjk->bqj", shape, m[:, :, :3]) + m[:, None, :, 3]
    n = -torch.cross(m[:, 0, :3], m[:, 1, :3], dim=1)
    n = n / (m[:, 0, :3].norm(dim=1) * m[:, 1, :3].norm(dim=1))[:, None]
    g = (model.normals @ n.T).T.clamp(min=0)
    depth = torch.where(g > 0, -(shape * n[:, None]).sum(-1), torch.inf)
    want = ops.splat(xy, depth, g * model.mask, (12, 14), sigma=1.1, backend="reference")
    torch.testing.assert_close(layer(m, p), want)
    assert (g == 0).any() and (g > 0).any()  # both kinds of vertices take part


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_in_m_and_p(backend, gen):
    model = small_model(gen)
    layer = VisualizationLayer(model, 10, sigma=1.2, backend=backend)
    m = pose(gen, 2, 10).requires_grad_()
    p = (0.5 * torch.randn(2, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(layer, (m, p), eps=1e-6, atol=1e-6)
    out = layer(m, p)
    gm, gp = torch.autograd.grad(out.pow(2).sum(), [m, p])
    assert gm.abs().sum() > 0 and gp.abs().sum() > 0


def render_yaws(degrees, size=64):
    model = procedural()
    yaw = torch.tensor([math.radians(d) for d in degrees])
    m = frontal_projection(yaw, 0.3 * size, ((size - 1) / 2, (size - 1) / 2))
    with torch.no_grad():
        return VisualizationLayer(model, size, sigma=1.0)(m)[:, 0]


def relative(a, b):
    return float((a - b).abs().mean() / a.abs().mean())


def test_picture_symmetry():
    """The procedural face is mirror-symmetric: its frontal render is left-right symmetric and the renders at
    yaw -60 and +60 degrees mirror each other (up to z-buffer ties and rounding at half-pixels)."""
    left, front, right = render_yaws([-60, 0, 60])
    assert relative(front, front.flip(-1)) < 0.01
    assert relative(right, left.flip(-1)) < 0.01
    # and the poses differ: a profile is far from symmetric, the nose (positive mask) moves with the yaw
    assert relative(left, left.flip(-1)) > 0.3
    cols = torch.arange(front.shape[-1], dtype=front.dtype)

    def centre(img):
        w = img.clamp(min=0).sum(0)
        return float((w * cols).sum() / w.sum())

    assert centre(left) < centre(front) - 5 and centre(right) > centre(front) + 5
    assert abs(centre(front) - (front.shape[-1] - 1) / 2) < 0.5
    # the face covers a good part of the map, the background is 0
    assert 0.2 < float((front != 0).float().mean()) < 0.8 and front[0, 0] == 0


def test_bad_input(gen):
    model = small_model(gen)
    layer = VisualizationLayer(model, 8)
    with pytest.raises(ValueError, match="M must have shape"):
        layer(torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="p must have shape"):
        layer(pose(gen, 2, 8), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma"):
        VisualizationLayer(model, 8, sigma=0.0)
    with pytest.raises(ValueError, match="radius"):
        VisualizationLayer(model, 8, radius=-1.0)
    with pytest.raises(ValueError, match="size"):
        VisualizationLayer(model, (0, 8))
