"""fastlmk.data: every reader round-trips fixtures written here (1-based formats included), bad input names
its file and line, crops / warps / augmentation are exact in the pixel-centre convention, augmentation is
deterministic per (seed, epoch, index), and samples collate."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fastlmk import metrics
from fastlmk.data import (FLIP_PERMUTATIONS, Annotation, Augment, LandmarkDataset, apply_affine,
                          box_from_landmarks, crop_affine, invert_affine, load_image, open_dataset, read_300w,
                          read_cofw, read_csv, read_json, read_pts, read_wflw, warp)

Image = pytest.importorskip("PIL.Image")
scipy_io = pytest.importorskip("scipy.io")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _png(path, h=6, w=8, seed=0):
    """A random RGB PNG; returns its (3, H, W) uint8 pixels."""
    pixels = _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _points(k, seed=0, lo=5.0, hi=60.0):
    return _rng(seed).uniform(lo, hi, (k, 2))


# ------------------------------------------------------------------------------------------------- readers

def _wflw_line(points, box, flags, image):
    return " ".join([*map(repr, points.ravel().tolist()), *map(str, box), *map(str, flags), image])


def test_read_wflw_round_trip(tmp_path):
    pts = [_points(98, seed=i) for i in range(3)]
    boxes = [[1, 2, 70, 65], [0, 0, 64, 64], [3, 4, 50, 61]]
    flags = [[1, 0, 0, 1, 0, 1], [0] * 6, [0, 1, 1, 0, 1, 0]]
    lines = [_wflw_line(p, b, f, f"sub/img{i}.jpg") for i, (p, b, f) in enumerate(zip(pts, boxes, flags))]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n\n")
    anns = read_wflw(tmp_path / "list.txt", image_root=tmp_path / "images")
    assert len(anns) == 3
    for i, a in enumerate(anns):
        np.testing.assert_array_equal(a.landmarks, pts[i])
        np.testing.assert_array_equal(a.box, boxes[i])
        assert a.attributes == dict(zip(("pose", "expression", "illumination", "make_up", "occlusion", "blur"),
                                        flags[i]))
        assert a.image == str(tmp_path / "images" / "sub" / f"img{i}.jpg")
        assert a.source == f"{tmp_path / 'list.txt'}:{i + 1}"
    assert read_wflw(tmp_path / "list.txt")[0].image == str(tmp_path / "sub" / "img0.jpg")


def _write_pts(path, points_1based):
    body = "\n".join(f"{x!r} {y!r}" for x, y in np.asarray(points_1based).tolist())
    path.write_text(f"version: 1\nn_points:  {len(points_1based)}\n{{\n{body}\n}}\n")


def test_read_pts_and_300w_round_trip(tmp_path):
    truth = {}
    for i, (folder, suffix) in enumerate([("a", ".png"), ("a", ".jpg"), ("b/c", ".PNG"), ("a", ".ppm"),
                                          ("b", ".bmp"), ("b", ".tif")]):  # any format Pillow opens
        pts = _points(68, seed=i)
        stem = tmp_path / folder / f"face{i}"
        _png(stem.with_suffix(suffix), seed=i)
        _write_pts(stem.with_suffix(".pts"), pts + 1.0)  # the file is 1-based
        truth[str(stem.with_suffix(".pts"))] = (pts, str(stem.with_suffix(suffix)))
    np.testing.assert_allclose(read_pts(tmp_path / "a" / "face0.pts"), truth[str(tmp_path / "a" / "face0.pts")][0],
                               atol=1e-12)
    anns = read_300w(tmp_path)
    assert [a.source for a in anns] == sorted(truth)
    for a in anns:
        pts, image = truth[a.source]
        np.testing.assert_allclose(a.landmarks, pts, atol=1e-12)
        assert a.image == image and a.box is None


def test_300w_prefers_the_common_formats(tmp_path):
    """A stem with several images takes .jpg, then .jpeg, then .png, then the other formats Pillow opens."""
    _write_pts(tmp_path / "takeo.pts", _points(68) + 1.0)
    for suffix in (".ppm", ".png", ".webp"):
        _png(tmp_path / f"takeo{suffix}")
    assert read_300w(tmp_path)[0].image == str(tmp_path / "takeo.png")
    (tmp_path / "takeo.png").unlink()
    assert read_300w(tmp_path)[0].image == str(tmp_path / "takeo.ppm")
    assert load_image(read_300w(tmp_path)[0].image).shape == (3, 6, 8)


def test_read_cofw_round_trip(tmp_path):
    n = 3
    rng = _rng(1)
    images = np.empty((n, 1), dtype=object)
    images[0, 0] = rng.integers(0, 256, (20, 30), dtype=np.uint8)  # grayscale
    images[1, 0] = rng.integers(0, 256, (25, 22, 3), dtype=np.uint8)
    images[2, 0] = rng.integers(0, 256, (18, 18), dtype=np.uint8)
    xy = rng.uniform(1.0, 18.0, (n, 29, 2))
    occluded = rng.random((n, 29)) < 0.3
    phis = np.concatenate([xy[..., 0], xy[..., 1], occluded.astype(np.float64)], axis=1)
    boxes = np.array([[2.0, 3.0, 10.0, 12.0], [1.0, 1.0, 20.0, 20.0], [4.0, 5.0, 6.0, 7.0]])
    scipy_io.savemat(tmp_path / "COFW_train_color.mat", {"IsTr": images, "phisTr": phis, "bboxesTr": boxes})
    anns = read_cofw(tmp_path / "COFW_train_color.mat")
    assert len(anns) == n
    for i, a in enumerate(anns):
        np.testing.assert_allclose(a.landmarks, xy[i] - 1.0, atol=1e-12)
        x, y, w, h = boxes[i]
        np.testing.assert_allclose(a.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        assert a.attributes == {"occluded": int(occluded[i].sum()),
                                "occlusion_mask": sum(1 << k for k in np.flatnonzero(occluded[i]))}
        img = images[i, 0]
        expected = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        np.testing.assert_array_equal(a.image, expected)
        assert torch.equal(load_image(a.image), torch.from_numpy(expected).permute(2, 0, 1))
        assert a.source == f"{tmp_path / 'COFW_train_color.mat'}[{i}]"


def test_read_csv_round_trip(tmp_path):
    pts = _points(5, seed=3)
    header = "image," + ",".join(f"x{i},y{i}" for i in range(5)) + ",box_x_min,box_y_min,box_x_max,box_y_max"
    row0 = ",".join(["img0.png", *map(repr, pts.ravel().tolist()), "1", "2", "30", "40"])
    cells = [repr(v) for v in pts.ravel().tolist()]
    cells[2] = ""  # x1 missing -> landmark 1 missing
    row1 = ",".join(["d/img1.png", *cells, "", "", "", ""])
    (tmp_path / "train.csv").write_text("\n".join([header, row0, row1]) + "\n")
    a0, a1 = read_csv(tmp_path / "train.csv")
    np.testing.assert_array_equal(a0.landmarks, pts)
    np.testing.assert_array_equal(a0.box, [1, 2, 30, 40])
    assert a0.image == str(tmp_path / "img0.png") and a0.source.endswith("train.csv:2")
    assert np.isnan(a1.landmarks[1]).all() and a1.box is None
    np.testing.assert_array_equal(np.delete(a1.landmarks, 1, 0), np.delete(pts, 1, 0))
    assert read_csv(tmp_path / "train.csv", image_root="/r")[1].image == "/r/d/img1.png"


def test_read_json_round_trip(tmp_path):
    import json

    pts = _points(4, seed=4)
    records = [{"image": "a.png", "landmarks": pts.tolist(), "box": [0, 1, 20, 30]},
               {"image": "b.png", "landmarks": [pts[0].tolist(), None, [None, 3.0], pts[3].tolist()]}]
    (tmp_path / "test.json").write_text(json.dumps(records))
    a0, a1 = read_json(tmp_path / "test.json")
    np.testing.assert_array_equal(a0.landmarks, pts)
    np.testing.assert_array_equal(a0.box, [0, 1, 20, 30])
    assert a1.box is None and np.isnan(a1.landmarks[1:3]).all()
    np.testing.assert_array_equal(a1.landmarks[[0, 3]], pts[[0, 3]])
    assert a1.image == str(tmp_path / "b.png") and a1.source == f"{tmp_path / 'test.json'}[1]"


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("reader", [read_wflw, read_pts, read_300w, read_cofw, read_csv, read_json])
def test_missing_path(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="nope"):
        reader(tmp_path / "nope")


def test_wflw_malformed_lines(tmp_path):
    good = _wflw_line(_points(98), [1, 2, 70, 65], [0] * 6, "img.jpg")
    path = tmp_path / "list.txt"
    path.write_text(good + "\n" + good.rsplit(" ", 3)[0] + "\n")
    with pytest.raises(ValueError, match=r"list\.txt:2: expected 207 fields, got 204"):
        read_wflw(path)
    fields = good.split()
    fields[17] = "abc"
    path.write_text(good + "\n\n" + " ".join(fields) + "\n")
    with pytest.raises(ValueError, match=r"list\.txt:3: not a number: 'abc'"):
        read_wflw(path)
    fields = good.split()
    fields[196:200] = ["10", "5", "3", "50"]  # x_max < x_min
    path.write_text(" ".join(fields) + "\n")
    with pytest.raises(ValueError, match=r"list\.txt:1: invalid box"):
        read_wflw(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no annotations"):
        read_wflw(path)


def test_pts_and_300w_errors(tmp_path):
    path = tmp_path / "x.pts"
    path.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match=r"x\.pts: n_points is 3 but 2"):
        read_pts(path)
    path.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4 5\n}\n")
    with pytest.raises(ValueError, match=r"x\.pts:5: expected 2 coordinates"):
        read_pts(path)
    path.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n")
    with pytest.raises(ValueError, match="missing '}'"):
        read_pts(path)
    path.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    with pytest.raises(FileNotFoundError, match=r"x\.pts: no image"):
        read_300w(tmp_path)
    _png(tmp_path / "x.png")
    _png(tmp_path / "y.png")
    _write_pts(tmp_path / "y.pts", _points(3))
    with pytest.raises(ValueError, match=r"y\.pts: expected 2 landmarks .* got 3"):
        read_300w(tmp_path)


def test_csv_json_cofw_errors(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("image,x0,y0,x1,y1\nimg.png,1,2,3,4\nimg.png,1,2,3\n")
    with pytest.raises(ValueError, match=r"a\.csv:3: expected 5 fields, got 4"):
        read_csv(path)
    path.write_text("image,x0,y0,x1\nimg.png,1,2,3\n")
    with pytest.raises(ValueError, match=r"a\.csv:1: header"):
        read_csv(path)
    path.write_text("image,x0,y0\nimg.png,1,zz\n")
    with pytest.raises(ValueError, match=r"a\.csv:2: not a number: 'zz'"):
        read_csv(path)
    path = tmp_path / "a.json"
    path.write_text('[{"image": "a.png", "landmarks": [[1, 2], [3, 4]]}, {"image": "b.png", "landmarks": [[1, 2]]}]')
    with pytest.raises(ValueError, match=r"a\.json\[1\]: expected 2 landmarks"):
        read_json(path)
    path.write_text('[{"image": "a.png", "landmarks": [[1, 2, 3]]}]')
    with pytest.raises(ValueError, match=r"a\.json\[0\]: each landmark"):
        read_json(path)
    path.write_text('[{"image": "a.png",\n "landmarks": [[1, 2]],}]')
    with pytest.raises(ValueError, match=r"a\.json:2: invalid JSON"):
        read_json(path)
    images = np.empty((1, 1), dtype=object)
    images[0, 0] = np.zeros((4, 4), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "c.mat", {"IsT": images, "phisT": np.ones((1, 86)), "bboxesT": np.ones((1, 4))})
    with pytest.raises(ValueError, match=r"c\.mat: phisT must have shape \(N, 87\)"):
        read_cofw(tmp_path / "c.mat")
    scipy_io.savemat(tmp_path / "c.mat", {"foo": np.ones(3)})
    with pytest.raises(ValueError, match=r"c\.mat: no 'phisTr' or 'phisT'"):
        read_cofw(tmp_path / "c.mat")
    (tmp_path / "c.mat").write_bytes(b"x" * 300)
    with pytest.raises(ValueError, match=r"c\.mat: not a MATLAB file"):
        read_cofw(tmp_path / "c.mat")


def test_cofw_v73_without_h5py_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
    (tmp_path / "COFW_test_color.mat").write_bytes(header + bytes(512))
    with pytest.raises(ImportError, match=r"COFW_test_color\.mat is a MATLAB v7\.3 \(HDF5\) file: .*h5py"):
        read_cofw(tmp_path / "COFW_test_color.mat")


def test_unreadable_image_names_file_and_source(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    ds = LandmarkDataset([Annotation(str(tmp_path / "bad.png"), _points(3), source="list.txt:7")], size=16)
    with pytest.raises(ValueError, match=r"list\.txt:7: cannot read image .*bad\.png"):
        ds[0]
    ds = LandmarkDataset([Annotation(str(tmp_path / "gone.png"), _points(3), source="list.txt:8")], size=16)
    with pytest.raises(FileNotFoundError, match=r"list\.txt:8: image not found: .*gone\.png"):
        ds[0]


def test_bad_spec_and_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset kind 'foo'.*synthetic, wflw, 300w, cofw, csv, json"):
        open_dataset("foo:/x", "train", size=64)
    with pytest.raises(ValueError, match="split must be one of train, test"):
        open_dataset("csv:/x", "val", size=64)
    with pytest.raises(ValueError, match="needs a path"):
        open_dataset("wflw", "train", size=64)
    with pytest.raises(FileNotFoundError, match="train.csv"):
        open_dataset(f"csv:{tmp_path}", "train", size=64)
    anns = [Annotation("a.png", _points(5)), Annotation("b.png", _points(4), source="b:1")]
    with pytest.raises(ValueError, match=r"b:1: landmarks have shape \(4, 2\)"):
        LandmarkDataset(anns)
    with pytest.raises(ValueError, match="no flip permutation for 5 landmarks"):
        LandmarkDataset(anns[:1], augment=Augment(flip=0.5))
    LandmarkDataset(anns[:1], augment=Augment(flip=0.0, rotation=10))  # no flip: no permutation needed
    with pytest.raises(ValueError, match="Augment"):
        Augment(scale=(1.2, 0.8))


# ------------------------------------------------------------------------------------- crops, warps, flips

def test_crop_affine_maps_square_onto_crop():
    a = crop_affine([10.0, 20.0, 50.0, 40.0], size=64, scale=1.25)  # side 50 around (30, 30)
    np.testing.assert_allclose(apply_affine(a, [[5.0, 5.0], [55.0, 55.0], [30.0, 30.0]]),
                               [[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5]], atol=1e-12)
    np.testing.assert_array_equal(box_from_landmarks([[1.0, 9.0], [np.nan, np.nan], [4.0, 2.0]]), [1, 2, 4, 9])
    with pytest.raises(ValueError):
        crop_affine([3.0, 3.0, 3.0, 3.0], size=64)


@pytest.mark.parametrize("affine", [
    [[1.0, 0.0, -4.0], [0.0, 1.0, 3.0]],  # integer shift
    [[0.0, -1.0, 35.0], [1.0, 0.0, -5.0]],  # 90 degree rotation
    [[-1.0, 0.0, 40.0], [0.0, 1.0, -2.0]],  # mirror
])
def test_warp_bright_pixel_lands_where_the_affine_says(affine):
    image = torch.zeros(3, 40, 50, dtype=torch.uint8)
    image[:, 17, 23] = 255  # original (x=23, y=17)
    crop = warp(image, affine, 32)
    x, y = apply_affine(affine, [23.0, 17.0])
    assert crop.dtype == torch.float32 and crop.shape == (3, 32, 32)
    assert crop[:, int(y), int(x)].tolist() == [1.0, 1.0, 1.0] and crop.sum().item() == 3.0


def test_warp_fractional_shift_keeps_mass_and_centroid():
    image = torch.zeros(1, 30, 30)
    image[0, 12, 9] = 1.0
    affine = [[1.0, 0.0, 3.25], [0.0, 1.0, -2.5]]
    crop = warp(image, affine, 24)[0].double()
    ii, jj = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    assert crop.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert ((crop * jj).sum().item(), (crop * ii).sum().item()) == pytest.approx((12.25, 9.5), abs=1e-5)


@pytest.mark.parametrize("k", sorted(FLIP_PERMUTATIONS))
def test_flip_permutations_are_involutions_swapping_the_eyes(k):
    perm = np.array(FLIP_PERMUTATIONS[k])
    assert sorted(perm) == list(range(k)) and (perm[perm] == np.arange(k)).all()
    for left, right in metrics.EYES[k].values():
        assert sorted(perm[list(left)]) == sorted(right)


def test_wflw_flip_permutation_matches_the_mirrored_layout():
    from fastlmk.quantization import _wflw_template  # an independent drawing of the WFLW layout

    face = _wflw_template().numpy()
    np.testing.assert_allclose((face * [-1.0, 1.0])[list(FLIP_PERMUTATIONS[98])], face, atol=1e-12)


# --------------------------------------------------------------------------------------------- augmentation

def _dot_dataset(augment, seed=0, n=8):
    """Annotations of one 98-point face whose landmark 40 carries a Gaussian dot (sigma 3 px) in a 120x140
    image; the box makes the crop about 1:1."""
    pts = _points(98, seed=7, lo=40.0, hi=90.0)
    pts[40] = [63.3, 61.7]
    yy, xx = np.mgrid[0:120, 0:140]
    dot = 255 * np.exp(-((xx - pts[40, 0]) ** 2 + (yy - pts[40, 1]) ** 2) / (2 * 3.0 ** 2))
    image = np.repeat(np.round(dot).astype(np.uint8)[..., None], 3, axis=2)
    ann = Annotation(image, pts, box=np.array([35.0, 35.0, 35.0 + 64 / 1.25, 35.0 + 64 / 1.25]))
    return LandmarkDataset([ann] * n, size=64, augment=augment, seed=seed), pts


def test_augmented_dot_and_landmark_agree():
    aug = Augment(flip=0.5, rotation=30.0, scale=(0.9, 1.1), translation=0.05)
    ds, pts = _dot_dataset(aug)
    perm = np.array(FLIP_PERMUTATIONS[98])
    flips = set()
    ii, jj = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    for i in range(len(ds)):
        s = ds[i]
        flipped = aug.sample_affine(64, ds.generator(i))[1]  # the draw the dataset made
        flips.add(flipped)
        order = perm if flipped else np.arange(98)
        # stored landmarks are the original ones through the total affine (and the permutation)
        total = invert_affine(s["affine"])
        np.testing.assert_allclose(s["landmarks"].double(), apply_affine(total, pts[order]), atol=1e-4)
        np.testing.assert_allclose(apply_affine(s["affine"], apply_affine(total, pts[order])), pts[order], atol=1e-9)
        np.testing.assert_allclose(apply_affine(s["affine"], s["landmarks"].double()), pts[order], atol=1e-4)
        # the rendered dot (original landmark 40) lands on crop landmark perm[40] when flipped
        w = s["image"][0].double()
        centroid = ((w * jj).sum() / w.sum()).item(), ((w * ii).sum() / w.sum()).item()
        assert centroid == pytest.approx(s["landmarks"][order[40]].tolist(), abs=0.03)
    assert flips == {False, True}


def test_augmentation_is_deterministic_per_seed_epoch_index():
    aug = Augment(flip=0.5, rotation=30.0, scale=(0.9, 1.1), translation=0.05)
    a, _ = _dot_dataset(aug, n=4)
    b, _ = _dot_dataset(aug, n=4)
    forward = [a[i] for i in range(4)]
    backward = [b[i] for i in reversed(range(4))][::-1]
    for x, y in zip(forward, backward):
        assert all(torch.equal(x[key], y[key]) for key in x)
    assert not torch.equal(forward[0]["affine"], forward[1]["affine"])  # index matters
    a.set_epoch(1)
    assert not torch.equal(a[0]["affine"], forward[0]["affine"])  # epoch matters
    c, _ = _dot_dataset(aug, seed=1, n=4)
    assert not torch.equal(c[0]["affine"], forward[0]["affine"])  # seed matters
    batch = next(iter(DataLoader(b, batch_size=4, num_workers=2)))  # workers draw the same
    for i, x in enumerate(forward):
        assert all(torch.equal(batch[key][i], x[key]) for key in x)


def test_samples_and_collation():
    ds, pts = _dot_dataset(None, n=3)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["landmarks"].shape == (3, 98, 2) and batch["landmarks"].dtype == torch.float32
    assert batch["affine"].shape == (3, 2, 3) and batch["affine"].dtype == torch.float64
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.int64
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    np.testing.assert_allclose(apply_affine(batch["affine"][0], batch["landmarks"][0].double()), pts, atol=1e-4)


# --------------------------------------------------------------------------------------------- open_dataset

def test_open_dataset_every_kind(tmp_path):
    import json

    pts = _points(98, seed=1, lo=2.0, hi=14.0)
    wflw = tmp_path / "wflw"
    lists = wflw / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    _png(wflw / "WFLW_images" / "0--Parade" / "a.png", h=16, w=16)
    for split in ("train", "test"):
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text(
            _wflw_line(pts, [1, 1, 15, 15], [0] * 6, "0--Parade/a.png") + "\n")
    for split in ("train", "test"):
        _png(tmp_path / "300w" / split / "x.png", h=16, w=16)
        _write_pts(tmp_path / "300w" / split / "x.pts", _points(68, lo=2.0, hi=14.0) + 1)
    images = np.empty((1, 1), dtype=object)
    images[0, 0] = np.zeros((16, 16), dtype=np.uint8)
    phis = np.concatenate([_points(29, lo=2.0, hi=14.0).T.ravel(), np.zeros(29)])[None]
    (tmp_path / "cofw").mkdir()
    scipy_io.savemat(tmp_path / "cofw" / "COFW_test_color.mat",
                     {"IsT": images, "phisT": phis, "bboxesT": np.array([[2.0, 2.0, 10.0, 10.0]])})
    (tmp_path / "tab").mkdir()
    _png(tmp_path / "tab" / "a.png", h=16, w=16)
    (tmp_path / "tab" / "train.csv").write_text("image,x0,y0,x1,y1,x2,y2\na.png,2,3,10,4,6,12\n")
    (tmp_path / "tab" / "test.json").write_text(json.dumps([{"image": "a.png", "landmarks": [[2, 3], [9, 9]]}]))
    for spec, split, k in [(f"wflw:{wflw}", "train", 98), (f"wflw:{wflw}", "test", 98),
                           (f"300w:{tmp_path / '300w'}", "test", 68), (f"cofw:{tmp_path / 'cofw'}", "test", 29),
                           (f"csv:{tmp_path / 'tab'}", "train", 3), (f"json:{tmp_path / 'tab'}", "test", 2)]:
        for augment in (False, True):
            ds = open_dataset(spec, split, size=32, augment=augment, seed=3)
            s = ds[0]
            assert len(ds) == 1 and s["image"].shape == (3, 32, 32) and s["landmarks"].shape == (k, 2)
            assert isinstance(ds, LandmarkDataset) and (ds.augment is not None) == augment
            if augment:
                assert ds.augment.flip == (0.5 if k in FLIP_PERMUTATIONS else 0.0)
                assert ds.augment.rotation == 30.0 and ds.augment.scale == (0.9, 1.1)
    wflw_ds = open_dataset(f"wflw:{wflw}", "train", size=32)
    np.testing.assert_allclose(apply_affine(wflw_ds[0]["affine"], wflw_ds[0]["landmarks"].double()), pts,
                               atol=1e-4)


def test_open_dataset_synthetic(monkeypatch):
    """The spec is forwarded as SyntheticFaces(split, size=, seed=) (stubbed: rendering is tested elsewhere)."""
    synthetic = pytest.importorskip("fastlmk.data.synthetic")
    monkeypatch.setattr(synthetic, "SyntheticFaces", lambda split, **kw: (split, kw))
    assert open_dataset("synthetic", "test", size=64, augment=True, seed=5) == \
        ("test", {"count": None, "size": 64, "seed": 5})
    assert open_dataset("synthetic:40,8", "test", size=64)[1]["count"] == 8
    assert open_dataset("synthetic:40", "train", size=64)[1]["count"] == 40
    assert open_dataset("synthetic:40", "test", size=64)[1]["count"] is None
    for bad in ("synthetic:/x", "synthetic:0", "synthetic:1,2,3"):
        with pytest.raises(ValueError, match="optional face counts"):
            open_dataset(bad, "test", size=64)


def test_rotation_sign_is_a_similarity():
    """The augmentation affine is a similarity about the crop centre (det > 0 unless flipped)."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, flipped = Augment(flip=0.5, rotation=45.0, scale=(0.5, 2.0)).sample_affine(64, g)
        lin = a[:, :2]
        s = math.sqrt(abs(np.linalg.det(lin)))
        np.testing.assert_allclose(lin @ lin.T, s * s * np.eye(2), atol=1e-12)
        assert (np.linalg.det(lin) < 0) == flipped and 0.5 - 1e-12 <= s <= 2.0 + 1e-12
        np.testing.assert_allclose(apply_affine(a, [31.5, 31.5]), [31.5, 31.5], atol=1e-9)  # no translation


def test_the_library_does_not_import_the_models(tmp_path):
    """fastlmk.data (and the rest of the library) stands below fastlmk.models (docs/layout.md)."""
    code = ("import sys, fastlmk.ops, fastlmk.nn, fastlmk.data, fastlmk.geometry.morphable, fastlmk.metrics; "
            "print(sorted(m for m in sys.modules if m.startswith('fastlmk.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout  # (outside the source tree, as a user's script)
    assert out.strip() == "[]"
