"""fastlmk.compat against face-alignment's and kornia's formulas written out here (the packages themselves:
test_peers.py), on every backend, square and non-square maps; gradients; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlmk import compat


@pytest.fixture
def env_backend(backend, monkeypatch):
    monkeypatch.setenv("FASTLMK_BACKEND", backend[0])
    return backend


def _fa_oracle(hm, center=None, scale=None):
    """face-alignment 1.5's loop, with the row taken as index // W (its index // H is the same on its square
    maps) and the map's own last interior pixel (its hard-coded 63)."""
    b, k, h, w = hm.shape
    preds = np.zeros((b, k, 2), np.float32)
    scores = np.zeros((b, k), np.float32)
    orig = np.zeros((b, k, 2), np.float32)
    for n in range(b):
        for c in range(k):
            m = hm[n, c]
            i, j = divmod(int(np.argmax(m)), w)
            scores[n, c] = m[i, j]
            p = np.array([j + 1, i + 1], np.float32)
            if 0 < j < w - 1 and 0 < i < h - 1:
                p += np.sign([m[i, j + 1] - m[i, j - 1], m[i + 1, j] - m[i - 1, j]]).astype(np.float32) * 0.25
            preds[n, c] = p - 0.5
            if center is not None:
                side = 200.0 * scale
                orig[n, c] = np.trunc(preds[n, c].astype(np.float64) * side / h + np.asarray(center) - side / 2)
    return preds, orig, scores


@pytest.mark.parametrize("shape", [(2, 68, 64, 64), (1, 5, 17, 23), (2, 3, 1, 9)])
def test_get_preds_fromhm_equals_the_formula(env_backend, test_seed, shape):
    _, device = env_backend
    rng = np.random.default_rng(test_seed)
    b, k, h, w = shape
    hm = rng.random(shape).astype(np.float32)
    for c, (i, j) in enumerate([(0, min(5, w - 1)), (h - 1, w - 1), (min(1, h - 1), min(1, w - 1))]):
        hm[0, c, i, j] = 5.0  # maxima on the border: no offset
    hm[-1, -1] = 0.5  # a flat map: the first pixel
    for center, scale in ((None, None), ((120.0, 130.0), 1.3)):
        want = _fa_oracle(hm, center, scale)
        got = compat.get_preds_fromhm(hm, center, scale)
        for a, g in zip(want, got):
            assert g.dtype == np.float32 and g.shape == a.shape
            np.testing.assert_allclose(g, a, rtol=0, atol=1e-5)
        on_device = compat.get_preds_fromhm(torch.from_numpy(hm).to(device), center, scale)
        for a, g in zip(want, on_device):
            assert g.device.type == device
            np.testing.assert_allclose(g.cpu().numpy(), a, rtol=0, atol=1e-5)


def _kornia_oracle(x, temperature, normalized):
    b, n, h, w = x.shape
    p = torch.softmax(x.reshape(b, n, h * w) / temperature, -1).reshape(b, n, h, w)
    xs, ys = torch.arange(w, dtype=x.dtype), torch.arange(h, dtype=x.dtype)
    if normalized:
        xs = xs * 2 / (w - 1) - 1 if w > 1 else torch.zeros(1, dtype=x.dtype)
        ys = ys * 2 / (h - 1) - 1 if h > 1 else torch.zeros(1, dtype=x.dtype)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


@pytest.mark.parametrize("shape", [(2, 5, 13, 17), (1, 3, 64, 48), (2, 2, 1, 9), (1, 1, 1, 1)])
def test_spatial_soft_argmax2d_equals_the_formula(env_backend, shape):
    _, device = env_backend
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3
    for temperature in (None, 0.3, torch.tensor(2.0)):
        for normalized in (True, False):
            want = _kornia_oracle(x.double(), 1.0 if temperature is None else float(temperature), normalized)
            got = compat.spatial_soft_argmax2d(x.to(device), temperature, normalized)
            assert got.shape == (*shape[:2], 2) and got.dtype == x.dtype and got.device.type == device
            torch.testing.assert_close(got.cpu().double(), want, rtol=0, atol=2e-6 * max(shape))


def test_spatial_soft_argmax2d_gradcheck(backend):
    name, device = backend
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = x.to(device).requires_grad_()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTLMK_BACKEND", name)
        assert torch.autograd.gradcheck(lambda t: compat.spatial_soft_argmax2d(t, 0.7), (x,), eps=1e-6, atol=1e-6)


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="hm must have shape"):
        compat.get_preds_fromhm(np.zeros((68, 64, 64), np.float32))
    with pytest.raises(ValueError, match="temperature must be positive"):
        compat.spatial_soft_argmax2d(torch.zeros(1, 1, 4, 4), 0.0)
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        compat.spatial_soft_argmax2d(torch.zeros(4, 4))
