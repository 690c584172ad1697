"""fastlmk.geometry.morphable: the procedural face, vertex normals, the Eq. 11 mask, Eq. 1 and the BFM loader."""

import dataclasses
import math
import re
import sys

import numpy as np
import pytest
import torch

from fastlmk.geometry.morphable import (MIRROR_68, SIGMA_N_FRACTION, MorphableModel, load_bfm, nose_mask,
                                      procedural, vertex_normals)

FLIP = torch.tensor([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def model():
    return procedural()


@pytest.fixture(scope="module")
def small():
    return procedural(16)


def mirror_index(vertices):
    """For each vertex, the index of the vertex at (-x, y, z) (KeyError if there is none)."""
    index = {tuple(v): i for i, v in enumerate(vertices.tolist())}
    return torch.tensor([index[(-x, y, z)] for x, y, z in vertices.tolist()])


def canonical(triangles):
    """Triangles as a set of tuples, each rotated (keeping its winding) to start at its smallest index."""
    out = set()
    for t in triangles.tolist():
        k = t.index(min(t))
        out.add(tuple(t[k:] + t[:k]))
    return out


def fields(m, **changes):
    kwargs = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
    kwargs.update(changes)
    return kwargs


# ------------------------------------------------------------------------------------------- procedural face

def test_procedural_sizes(model):
    q = model.num_vertices
    assert 3000 <= q <= 5000
    assert model.mean.shape == model.normals.shape == (q, 3) and model.mask.shape == (q,)
    assert model.mean.dtype == torch.float32 and model.triangles.dtype == torch.int64
    assert model.landmarks.shape == (68,) and model.landmarks.dtype == torch.int64
    assert (model.num_id, model.num_exp) == (10, 6)
    assert model.id_basis.shape == (10, q, 3) and model.exp_basis.shape == (6, q, 3)
    lo, hi = model.mean.min(0).values, model.mean.max(0).values
    assert 1.9 < hi[0] - lo[0] < 2.1 and abs(hi[0] + lo[0]) < 1e-6  # face width about 2, centred
    assert hi[1] - lo[1] > 1.2 * (hi[0] - lo[0]) and abs(hi[1] + lo[1]) < 1e-6  # taller than wide, centred
    assert 0 <= lo[2] and hi[2] < 1.5
    assert torch.unique(model.mean, dim=0).shape[0] == q  # no two vertices coincide


def test_procedural_is_deterministic(model):
    assert procedural() is model  # cached
    fresh = procedural.__wrapped__(32)  # rebuilt from scratch
    for f in dataclasses.fields(model):
        a, b = getattr(model, f.name), getattr(fresh, f.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, f.name


def test_procedural_resolution(small):
    assert 900 < small.num_vertices < 1200
    assert small.landmarks.unique().numel() == 68
    with pytest.raises(ValueError, match="resolution"):
        procedural(8)
    with pytest.raises(TypeError, match="resolution"):
        procedural(32.0)


def test_mirror_symmetry(model):
    mean = model.mean.numpy()
    flipped = mean * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    assert np.array_equal(mean[np.lexsort(mean.T[::-1])], flipped[np.lexsort(flipped.T[::-1])])
    mirror = mirror_index(model.mean)
    assert torch.equal(model.mean[mirror] * FLIP, model.mean)
    torch.testing.assert_close(model.normals[mirror] * FLIP, model.normals, rtol=0, atol=1e-6)
    assert torch.equal(model.mask[mirror], model.mask)
    # the mesh mirrors too: each triangle's mirror image, wound the other way, is a triangle
    assert canonical(mirror[model.triangles][:, [0, 2, 1]]) == canonical(model.triangles)
    # every basis has its mirror image among the bases
    for bases in (model.id_basis, model.exp_basis):
        mirrored = bases[:, mirror] * FLIP
        diff = (mirrored[:, None] - bases[None]).abs().flatten(2).amax(2)  # (k, j)
        assert bool((diff.min(1).values < 1e-6).all())


def test_nose_tip(model):
    assert model.nose_tip == int(model.mean[:, 2].argmax())
    assert model.mean[model.nose_tip, 0] == 0  # on the midline
    assert (model.mean[:, 2] < model.mean[model.nose_tip, 2]).sum() == model.num_vertices - 1  # unique
    assert model.landmarks[30] == model.nose_tip


def test_normals(model):
    n = model.normals
    torch.testing.assert_close(n.norm(dim=1), torch.ones(model.num_vertices), rtol=0, atol=1e-5)
    torch.testing.assert_close(n, vertex_normals(model.mean, model.triangles))
    assert n[model.mean[:, 0].abs() < 0.3, 2].mean() > 0.8  # the front faces +z
    a, b, c = model.mean[model.triangles].unbind(1)
    assert bool((torch.linalg.cross(b - a, c - a)[:, 2] > 0).all())  # a height field, wound CCW from outside


def test_far_side_turns_away(model):
    """Turned by 75 degrees of yaw (nose toward +x), the far cheek faces away and the near one stays visible."""
    t = math.radians(75)
    g = -math.sin(t) * model.normals[:, 0] + math.cos(t) * model.normals[:, 2]  # z of the rotated normals
    x = model.mean[:, 0]
    assert (g[x > 0.6] <= 0).float().mean() > 0.9
    assert bool((g[x < -0.6] > 0).all())


def test_mask(model):
    extent = float(model.mean[:, 0].max() - model.mean[:, 0].min())
    torch.testing.assert_close(model.mask, nose_mask(model.mean, model.nose_tip, SIGMA_N_FRACTION * extent))
    assert abs(float(model.mask.mean())) < 1e-5
    assert abs(float(model.mask.std(correction=0)) - 1) < 1e-5
    assert model.mask.argmax() == model.nose_tip
    lm = model.mask[model.landmarks]
    assert bool((lm[:17] < 0).all())  # the contour
    assert bool((lm[27:36] > 0).all()) and bool((lm[48:68] > 0).all())  # nose and mouth


def test_landmarks(model):
    lm = model.landmarks
    assert lm.unique().numel() == 68 and int(lm.min()) >= 0 and int(lm.max()) < model.num_vertices
    assert sorted(MIRROR_68) == list(range(68)) and all(MIRROR_68[MIRROR_68[k]] == k for k in range(68))
    pos = model.mean[lm]
    assert torch.equal(pos[list(MIRROR_68)] * FLIP, pos)  # mirror-symmetric layout, exactly
    x, y = pos[:, 0], pos[:, 1]
    assert bool((x[36:42] < 0).all()) and bool((x[42:48] > 0).all())  # image-left eye = subject's right eye
    assert x[0] < 0 < x[16] and x[17] < x[21] < 0 < x[22] < x[26] and x[48] < 0 < x[54] and x[36] < x[39]
    assert bool((x[27:31] == 0).all()) and x[8] == x[33] == x[51] == x[57] == x[62] == x[66] == 0
    # top to bottom: brows, eyes, nose, mouth, chin
    assert y[17:27].min() > y[36:48].max() > y[36:48].min() > y[30] > y[33] > y[51] > y[62] > y[66] > y[57] > y[8]
    assert y[27] > y[28] > y[29] > y[30]  # the nose bridge runs down
    assert bool((y[0:8].diff() < 0).all())  # the jaw runs down to the chin


def test_bases_plausible(model):
    for bases, std in ((model.id_basis, model.id_std), (model.exp_basis, model.exp_std)):
        largest = bases.norm(dim=2).amax(1)
        torch.testing.assert_close(largest, torch.ones_like(largest))  # scaled to a largest displacement of 1
        assert bool(((std >= 0.02) & (std <= 0.15)).all())  # 1 std moves vertices by 1-7.5 % of the width


def test_mouth_open_parts_the_lips(model):
    lm, d = model.landmarks, model.exp_basis[0]
    assert d[lm[66], 1] < -0.8 and d[lm[57], 1] < -0.8  # the lower lip and chin drop
    assert d[lm[62], 1] > -0.3 and d[lm[51], 1] > -0.3  # the upper lip stays
    assert abs(float(d[lm[30], 1])) < 1e-3  # the nose does not move


# ------------------------------------------------------------------------------------------------ Eq. 1

def test_shape_is_eq1(small):
    g = torch.Generator().manual_seed(0)
    p = torch.randn(3, small.num_id + small.num_exp, generator=g) * torch.cat([small.id_std, small.exp_std])
    expected = small.mean.expand(3, -1, -1).clone()
    for b in range(3):
        for k in range(small.num_id):
            expected[b] += p[b, k] * small.id_basis[k]
        for k in range(small.num_exp):
            expected[b] += p[b, small.num_id + k] * small.exp_basis[k]
    torch.testing.assert_close(small.shape(p), expected)
    assert torch.equal(small.shape(torch.zeros(2, 16)), small.mean.expand(2, -1, -1))


def test_shape_gradcheck(small):
    m = small.to(dtype=torch.float64)
    p = torch.randn(2, m.num_id + m.num_exp, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.shape, (p,))


def test_shape_errors(small):
    with pytest.raises(ValueError, match=r"p must have shape \(B, 16\)"):
        small.shape(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="p must have shape"):
        small.shape(torch.zeros(16))
    with pytest.raises(TypeError, match="p has dtype torch.float64"):
        small.shape(torch.zeros(2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="p is on meta but the model is on cpu"):
        small.shape(torch.zeros(2, 16, device="meta"))
    with pytest.raises(TypeError, match="p must be a torch.Tensor"):
        small.shape(np.zeros((2, 16)))


def test_to(small):
    m = small.to(dtype=torch.float64)
    assert m.mean.dtype == m.normals.dtype == m.id_basis.dtype == m.exp_std.dtype == m.mask.dtype == torch.float64
    assert m.triangles.dtype == m.landmarks.dtype == torch.int64 and m.nose_tip == small.nose_tip
    torch.testing.assert_close(m.mean.float(), small.mean, rtol=0, atol=0)
    with pytest.raises(TypeError, match="dtype"):
        small.to(dtype=torch.int32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda(small):
    m = small.to("cuda")
    assert m.mean.is_cuda and m.triangles.is_cuda and m.triangles.dtype == torch.int64
    p = torch.randn(2, 16, device="cuda")
    torch.testing.assert_close(m.shape(p).cpu(), small.shape(p.cpu()))


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("change, error, match", [
    (lambda m: dict(normals=m.normals[:-1]), ValueError, r"normals has 1078 vertices but mean has 1079"),
    (lambda m: dict(mask=m.mask[:-2]), ValueError, r"mask has 1077 vertices but mean has 1079"),
    (lambda m: dict(id_basis=m.id_basis[:, :-1]), ValueError, r"id_basis has 1078 vertices"),
    (lambda m: dict(exp_basis=m.exp_basis[0]), ValueError, r"exp_basis must have shape \(N, Q, 3\)"),
    (lambda m: dict(exp_basis=m.exp_basis[..., :2]), ValueError, r"exp_basis must have shape \(N, Q, 3\)"),
    (lambda m: dict(id_std=m.id_std[:-1]), ValueError, r"id_std must have shape \(10,\)"),
    (lambda m: dict(exp_std=m.exp_std[None]), ValueError, r"exp_std must have shape \(6,\)"),
    (lambda m: dict(mean=m.mean[:, :2]), ValueError, r"mean must have shape \(Q, 3\)"),
    (lambda m: dict(mean=m.mean.long()), TypeError, r"mean must have a floating dtype"),
    (lambda m: dict(mean=m.mean.numpy()), TypeError, r"mean must be a torch.Tensor"),
    (lambda m: dict(normals=m.normals.double()), TypeError, r"normals has dtype torch.float64 but mean has"),
    (lambda m: dict(triangles=m.triangles.float()), TypeError, r"triangles must have an integer dtype"),
    (lambda m: dict(triangles=m.triangles[:, :2]), ValueError, r"triangles must have shape \(F, 3\)"),
    (lambda m: dict(triangles=m.triangles + 1), ValueError, r"triangles must hold vertex indices in \[0, 1079\)"),
    (lambda m: dict(triangles=m.triangles - 1), ValueError, r"triangles must hold vertex indices"),
    (lambda m: dict(landmarks=m.landmarks.float()), TypeError, r"landmarks must have an integer dtype"),
    (lambda m: dict(landmarks=m.landmarks + 1079), ValueError, r"landmarks must hold vertex indices"),
    (lambda m: dict(nose_tip=1079), ValueError, r"nose_tip must be a vertex index in \[0, 1079\)"),
    (lambda m: dict(nose_tip=-1), ValueError, r"nose_tip must be a vertex index"),
    (lambda m: dict(nose_tip=3.0), TypeError, r"nose_tip must be an int"),
])
def test_model_validation(small, change, error, match):
    with pytest.raises(error, match=match):
        MorphableModel(**fields(small, **change(small)))


def test_model_accepts_empty_expression(small):
    m = MorphableModel(**fields(small, exp_basis=small.exp_basis[:0], exp_std=small.exp_std[:0],
                                nose_tip=np.int64(small.nose_tip)))
    assert m.num_exp == 0 and type(m.nose_tip) is int
    torch.testing.assert_close(m.shape(torch.ones(1, 10) * 0.01), small.shape(torch.cat(
        [torch.ones(1, 10) * 0.01, torch.zeros(1, 6)], 1)))


# ------------------------------------------------------------------------------------- normals and mask

def octahedron():
    v = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    tris = []
    for sx in (0, 1):
        for sy in (2, 3):
            for sz in (4, 5):
                t = [sx, sy, sz]
                if (sx == 1) ^ (sy == 3) ^ (sz == 5):  # an odd number of negative axes: CW from outside
                    t = [sx, sz, sy]
                tris.append(t)
    return v, torch.tensor(tris)


def test_vertex_normals_closed_mesh():
    v, t = octahedron()
    torch.testing.assert_close(vertex_normals(v, t), v)
    torch.testing.assert_close(vertex_normals(2 * v + 3, t), v)  # scale and translation invariant
    torch.testing.assert_close(vertex_normals(v, t[:, [0, 2, 1]]), -v)  # the winding sets the side


def test_vertex_normals_planar_and_area_weighted():
    # a unit square in z = 0 (two CCW triangles) and an isolated vertex
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]])
    n = vertex_normals(v, torch.tensor([[0, 1, 2], [0, 2, 3]]))
    torch.testing.assert_close(n[:4], torch.tensor([[0.0, 0, 1]]).expand(4, 3))
    assert torch.equal(n[4], torch.zeros(3))  # in no triangle
    # a hinge: a triangle of area 2 in z = 0 (normal +z) and one of area 1 in x = 0 (normal +x) share the
    # vertices 0 and 1, whose normals are the area-weighted mean (2 * (0, 0, 1) + 1 * (1, 0, 0)), normalised
    v = torch.tensor([[0.0, 0, 0], [0, 2, 0], [2, 0, 0], [0, 0, 1]])
    n = vertex_normals(v, torch.tensor([[0, 2, 1], [0, 1, 3]]))
    expected = torch.tensor([1.0, 0, 2]) / math.sqrt(5)
    torch.testing.assert_close(n[0], expected)
    torch.testing.assert_close(n[1], expected)
    torch.testing.assert_close(n[2], torch.tensor([0.0, 0, 1]))
    torch.testing.assert_close(n[3], torch.tensor([1.0, 0, 0]))


def test_vertex_normals_errors():
    v, t = octahedron()
    with pytest.raises(ValueError, match=r"vertices must have shape \(Q, 3\)"):
        vertex_normals(v[:, :2], t)
    with pytest.raises(TypeError, match="triangles must have an integer dtype"):
        vertex_normals(v, t.float())
    with pytest.raises(ValueError, match="triangles must hold vertex indices"):
        vertex_normals(v, t + 1)


def test_nose_mask():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(500, 3, generator=g, dtype=torch.float64)
    a = nose_mask(v, 7, 0.8)
    assert abs(float(a.mean())) < 1e-12 and abs(float(a.std(correction=0)) - 1) < 1e-12
    assert a.argmax() == 7
    d = (v - v[7]).norm(dim=1)
    assert bool((a[d.argsort()].diff() <= 1e-12).all())  # decreasing with the distance to the nose tip
    raw = torch.exp(-d ** 2 / (2 * 0.8 ** 2))
    torch.testing.assert_close(a, (raw - raw.mean()) / raw.std(correction=0))  # Eq. 11, normalised
    torch.testing.assert_close(nose_mask(v + 5, 7, 0.8), a)  # translation invariant
    for sigma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma_n must be finite and positive"):
            nose_mask(v, 7, sigma)
    with pytest.raises(ValueError, match="nose_tip must be a vertex index"):
        nose_mask(v, 500, 0.8)
    with pytest.raises(ValueError, match="constant"):
        nose_mask(v[:1], 0, 0.8)


# ------------------------------------------------------------------------------------------- BFM loader

@pytest.fixture
def savemat():
    return pytest.importorskip("scipy.io").savemat


def bfm_fields(m, *, expression=True, landmarks=True):
    """The model ``m`` in the BFM 2009 layout (interleaved x1 y1 z1 ..., one basis per column, 1-based)."""
    q = m.num_vertices
    data = dict(shapeMU=m.mean.reshape(3 * q, 1).numpy(),
                shapePC=m.id_basis.reshape(m.num_id, 3 * q).T.numpy(),
                shapeEV=m.id_std.reshape(-1, 1).numpy(),
                tl=(m.triangles + 1).double().numpy())
    if expression:
        data.update(expPC=m.exp_basis.reshape(m.num_exp, 3 * q).T.numpy(), expEV=m.exp_std.reshape(-1, 1).numpy())
    if landmarks:
        data["landmarks"] = (m.landmarks + 1).reshape(-1, 1).numpy().astype(np.int32)
    return data


def test_load_bfm_round_trip(small, savemat, tmp_path):
    path = tmp_path / "bfm.mat"
    savemat(path, bfm_fields(small))
    m = load_bfm(path)
    for name in ("mean", "id_basis", "exp_basis", "id_std", "exp_std", "triangles", "landmarks"):
        assert torch.equal(getattr(m, name), getattr(small, name)), name
    assert m.mean.dtype == torch.float32 and m.triangles.dtype == m.landmarks.dtype == torch.int64
    assert m.nose_tip == small.nose_tip  # the vertex of largest z
    torch.testing.assert_close(m.normals, small.normals)
    torch.testing.assert_close(m.mask, small.mask)  # the same default sigma_n as the procedural face


def test_load_bfm_without_expression_or_landmarks(small, savemat, tmp_path):
    path = tmp_path / "bfm.mat"
    savemat(path, bfm_fields(small, expression=False, landmarks=False))
    m = load_bfm(str(path))
    assert m.num_exp == 0 and m.exp_std.shape == (0,) and m.landmarks.shape == (0,)
    torch.testing.assert_close(m.shape(torch.zeros(1, 10)), small.mean[None])
    m = load_bfm(path, landmarks=small.landmarks.tolist(), nose_tip=5, sigma_n=0.5)
    assert torch.equal(m.landmarks, small.landmarks) and m.nose_tip == 5
    torch.testing.assert_close(m.mask, nose_mask(small.mean, 5, 0.5))


def test_load_bfm_expression_mean_and_overrides(small, savemat, tmp_path):
    data = bfm_fields(small)
    offset = np.linspace(-0.1, 0.1, 3 * small.num_vertices, dtype=np.float32)[:, None]
    data.update(shapeMU=data["shapeMU"] - offset, expMU=offset, tl=data["tl"][:, [0, 2, 1]])  # wound CW
    path = tmp_path / "bfm.mat"
    savemat(path, data)
    m = load_bfm(path, landmarks=np.array([3, 1, 2]))
    torch.testing.assert_close(m.mean, small.mean)  # expMU is added to shapeMU
    assert canonical(m.triangles) == canonical(small.triangles)  # re-wound CCW from outside
    assert m.landmarks.tolist() == [3, 1, 2]  # 0-based argument overrides the file


@pytest.mark.parametrize("edit, field", [
    (lambda d, q: d.pop("shapeMU"), "shapeMU"),
    (lambda d, q: d.pop("shapePC"), "shapePC"),
    (lambda d, q: d.pop("shapeEV"), "shapeEV"),
    (lambda d, q: d.pop("tl"), "tl"),
    (lambda d, q: d.pop("expEV"), "expEV"),
    (lambda d, q: d.pop("expPC"), "expPC"),
    (lambda d, q: d.update(shapePC=d["shapePC"][:-3]), "shapePC"),
    (lambda d, q: d.update(expPC=d["expPC"][:, :, None]), "expPC"),
    (lambda d, q: d.update(shapeMU=d["shapeMU"][:-1], shapePC=d["shapePC"][:-1]), "shapeMU"),
    (lambda d, q: d.update(shapeMU=np.ones((3, 3 * q))), "shapeMU"),
    (lambda d, q: d.update(shapeEV=d["shapeEV"][:-1]), "shapeEV"),
    (lambda d, q: d.update(expEV=np.ones(7)), "expEV"),
    (lambda d, q: d.update(expMU=np.ones((3 * q - 3, 1))), "expMU"),
    (lambda d, q: d["tl"].__setitem__((0, 0), q + 1), "tl"),
    (lambda d, q: d["tl"].__setitem__((0, 0), 0), "tl"),
    (lambda d, q: d["tl"].__setitem__((0, 0), 1.5), "tl"),
    (lambda d, q: d.update(tl=d["tl"][:, :2]), "tl"),
    (lambda d, q: d.update(landmarks=np.array([[q + 1]])), "landmarks"),
    (lambda d, q: d.update(shapeEV="text"), "shapeEV"),
])
def test_load_bfm_bad_files(small, savemat, tmp_path, edit, field):
    data = bfm_fields(small)
    edit(data, small.num_vertices)
    path = tmp_path / "bad.mat"
    savemat(path, data)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .*'{field}'"):
        load_bfm(path)


def test_load_bfm_bad_landmarks_argument(small, savemat, tmp_path):
    path = tmp_path / "bfm.mat"
    savemat(path, bfm_fields(small))
    with pytest.raises(ValueError, match="'landmarks'"):
        load_bfm(path, landmarks=[small.num_vertices])


def test_load_bfm_rejects_v73(tmp_path):
    pytest.importorskip("scipy.io")
    path = tmp_path / "v73.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"  # version 0x0200
    path.write_bytes(header + bytes(512))
    with pytest.raises(ValueError, match="v7.3"):
        load_bfm(path)


def test_load_bfm_needs_scipy(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="load_bfm needs scipy: pip install scipy"):
        load_bfm(tmp_path / "missing.mat")
