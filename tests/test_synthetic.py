"""fastlmk.data.synthetic.SyntheticFaces: determinism (per (seed, split, index), independent of count and
threads), the sample format, landmarks == camera @ [S_p; 1], landmarks inside the image, the face drawn where
the landmarks are, DataLoader collation."""

import pytest
import torch

from fastlmk.data import synthetic
from fastlmk.data.synthetic import SyntheticFaces
from fastlmk.geometry.morphable import MIRROR_68, procedural
from fastlmk.nn import VisualizationLayer

SIZE = 64
COUNT = 40  # two render chunks


@pytest.fixture(scope="module")
def train():
    return SyntheticFaces("train", count=COUNT, size=SIZE)


@pytest.fixture(scope="module")
def test_split():
    return SyntheticFaces("test", count=COUNT, size=SIZE)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_and_independent_of_count(train):
    assert same(train[3], train[3])
    small = SyntheticFaces("train", count=5, size=SIZE)
    for i in range(5):
        assert same(small[i], train[i])
    again = SyntheticFaces("train", count=COUNT, size=SIZE)
    assert torch.equal(again.images, train.images) and torch.equal(again.landmarks, train.landmarks)
    assert torch.equal(again.params, train.params) and torch.equal(again.camera, train.camera)
    # an index in the second chunk, with a count that ends inside that chunk
    assert same(SyntheticFaces("train", count=36, size=SIZE)[35], train[35])


def test_independent_of_threads(train):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = SyntheticFaces("train", count=4, size=SIZE)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    for i in range(4):
        assert same(one[i], train[i])


def test_splits_and_seeds_differ(train, test_split):
    other_seed = SyntheticFaces("train", count=2, size=SIZE, seed=1)
    for i in range(2):
        assert not torch.equal(train[i]["params"], test_split[i]["params"])
        assert not torch.equal(train[i]["params"], other_seed[i]["params"])
        assert (train[i]["image"] - test_split[i]["image"]).abs().mean() > 0.02
    # the same face at another size: same parameters, landmarks scaled about the pixel-centre convention
    big = SyntheticFaces("train", count=2, size=2 * SIZE)
    assert torch.equal(big[1]["params"], train[1]["params"])
    torch.testing.assert_close(big[1]["landmarks"] + 0.5, 2 * (train[1]["landmarks"] + 0.5), atol=1e-3, rtol=0)


def test_format(train):
    model = procedural()
    p = model.num_id + model.num_exp
    assert len(train) == COUNT and train.num_landmarks == 68 and tuple(train.flip_permutation) == MIRROR_68
    s = train[7]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, SIZE, SIZE)
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["landmarks"].dtype == torch.float32 and s["landmarks"].shape == (68, 2)
    assert s["affine"].dtype == torch.float64 and torch.equal(s["affine"], torch.eye(2, 3, dtype=torch.float64))
    assert s["index"].dtype == torch.int64 and s["index"].dim() == 0 and int(s["index"]) == 7
    assert s["params"].dtype == torch.float32 and s["params"].shape == (p,)
    assert s["camera"].dtype == torch.float32 and s["camera"].shape == (2, 4)
    assert int(train[-1]["index"]) == COUNT - 1
    with pytest.raises(IndexError):
        train[COUNT]
    assert len(SyntheticFaces("test", count=0)) == 0
    assert synthetic.DEFAULT_COUNTS == {"train": 2000, "test": 200}
    with pytest.raises(ValueError, match="split"):
        SyntheticFaces("val")
    with pytest.raises(ValueError, match="count"):
        SyntheticFaces("train", count=-1)
    with pytest.raises(TypeError, match="size"):
        SyntheticFaces("train", count=1, size=64.0)


def test_landmarks_are_the_projected_landmark_vertices(train):
    model = procedural()
    shape = model.shape(train.params)[:, model.landmarks]  # (N, 68, 3)
    projected = shape @ train.camera[:, :, :3].transpose(1, 2) + train.camera[:, None, :, 3]
    torch.testing.assert_close(projected, train.landmarks, atol=1e-4, rtol=1e-5)
    # a weak perspective: the two rows of M are orthogonal with equal norms (a scaled rotation)
    m = train.camera[:, :, :3].double()
    gram = m @ m.transpose(1, 2)
    torch.testing.assert_close(gram[:, 0, 1], torch.zeros(COUNT, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(gram[:, 0, 0], gram[:, 1, 1], atol=0, rtol=1e-4)


def test_landmarks_inside_the_image(train, test_split):
    for ds in (train, test_split):
        lm = ds.landmarks
        assert torch.isfinite(lm).all()
        assert lm.min() >= 0 and lm.max() <= SIZE - 1
        # the landmark box spans a sizeable part of the image
        extent = (lm.amax(1) - lm.amin(1)).amax(1)
        assert extent.min() > 0.4 * SIZE and extent.max() < 0.75 * SIZE


def test_face_is_drawn_where_the_landmarks_are(train):
    """The image differs from the sample's own background (the same random stream) at the landmarks, and
    matches it (up to the pixel noise) away from the face; PIFA's visualization layer, fed the sample's
    camera and params, covers the nose tip."""
    model = procedural()
    draws = [synthetic._draw(0, "train", i, SIZE, model.id_std, model.exp_std) for i in range(COUNT)]
    background = synthetic._background(draws, SIZE)
    differs = (train.images.float() / 255 - background.clamp(0, 1)).abs().amax(1)  # (N, H, W)
    px = train.landmarks.round().long()
    at_landmarks = differs[torch.arange(COUNT)[:, None], px[..., 1], px[..., 0]]  # (N, 68)
    assert (at_landmarks > 0.1).float().mean() > 0.9

    # away from the face: the visualization layer's support, dilated, tells where the face is not
    layer = VisualizationLayer(model, SIZE, sigma=1.0)
    with torch.no_grad():
        vis = layer(train.camera, train.params)  # (N, 1, H, W)
    nose = px[:, 30]
    assert (vis[torch.arange(COUNT), 0, nose[:, 1], nose[:, 0]] > 0).all()
    support = (vis != 0).float()
    near_face = torch.nn.functional.max_pool2d(support, 9, stride=1, padding=4)[:, 0] > 0
    away = differs[~near_face]
    assert away.numel() > 0.2 * COUNT * SIZE * SIZE
    assert away.mean() < 0.035 and (away < 0.1).float().mean() > 0.99  # the pixel noise: sigma <= 0.03
    inner = -torch.nn.functional.max_pool2d(-support, 5, stride=1, padding=2)[:, 0] > 0
    assert (differs[inner] > 0.1).float().mean() > 0.9  # the face covers its support


def test_dataloader_collates(train):
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (8, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["landmarks"].shape == (8, 68, 2)
    assert batch["affine"].shape == (8, 2, 3) and batch["affine"].dtype == torch.float64
    assert torch.equal(batch["index"], torch.arange(8))
    assert batch["params"].shape == (8, procedural().num_id + procedural().num_exp)
    assert batch["camera"].shape == (8, 2, 4)
