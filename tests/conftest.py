"""Shared fixtures: the backends under test and input generators.

Without a GPU, Triton kernels run under TRITON_INTERPRET=1 on CPU tensors (set here, before triton is
imported), so the Triton backend is exercised in CI too.
"""

import contextlib
import importlib.util
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastlmk import _native  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
GPU_DEVICE = "cuda" if HAS_CUDA else "cpu"

# (id, backend, device, cpu instruction set or None)
CPU_BACKENDS = [
    pytest.param(("cpu", "cpu", "avx2"), id="cpu-avx2",
                 marks=pytest.mark.skipif(_native.cpu is None or not _native.cpu.isa_supported("avx2"),
                                          reason="needs fastlmk._C on an AVX2 CPU")),
    pytest.param(("cpu", "cpu", "scalar"), id="cpu-scalar",
                 marks=pytest.mark.skipif(_native.cpu is None, reason="fastlmk._C not built")),
]
BACKENDS = [
    *CPU_BACKENDS,
    pytest.param(("triton", GPU_DEVICE, None), id="triton" if HAS_CUDA else "triton-interpret",
                 marks=pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")),
]

# the CUDA extension's backend (splat, XNOR): GPU tests, skipped without a GPU
CUDA_EXTENSION = pytest.param(("cuda", "cuda", None), id="cuda",
                              marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA or _native.cuda is None,
                                                                         reason="needs a GPU and fastlmk._cuda")])


@pytest.fixture
def threaded(monkeypatch):
    """Every CPU kernel call uses all of torch's threads, however small (the parallel paths are what runs)."""
    monkeypatch.setattr(_native, "SERIAL_ELEMENTS", 0)


@contextlib.contextmanager
def active(param):
    """(backend, device) of a BACKENDS entry, with its CPU instruction set active meanwhile."""
    name, device, isa = param
    if isa is None:
        yield name, device
        return
    previous = _native.cpu.isa()
    _native.cpu.set_isa(isa)
    try:
        yield name, device
    finally:
        _native.cpu.set_isa(previous)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Yields (backend, device) with the requested CPU instruction set active."""
    with active(request.param) as selected:
        yield selected


def random_keypoints(b, k, h, w, *, dtype=torch.float32, device="cpu", generator=None, missing=True):
    """Keypoints spread over and beyond the map (x in [-0.2 W, 1.2 W]), some on pixel centres and half-pixels
    (rounding ties), and, when ``missing``, one NaN and one inf keypoint."""
    g = generator
    u = torch.rand(b, k, 2, generator=g, dtype=torch.float64)
    kp = u * 1.4 - 0.2
    kp = kp * torch.tensor([w, h], dtype=torch.float64)
    flat = kp.view(-1, 2)
    n = flat.shape[0]
    if n >= 4:
        flat[1] = torch.floor(flat[1])  # on a pixel centre
        flat[2] = torch.floor(flat[2]) + 0.5  # rounding tie
    if missing and n >= 6:
        flat[3, 0] = float("nan")
        flat[5, 1] = float("inf")
    return kp.to(dtype=dtype, device=device)


@pytest.fixture(autouse=True)
def test_seed(request):
    """Each test's seed, fresh each run unless ``FASTLMK_TEST_SEED`` (or ``--seeds``) gives it; printed, so a
    failure can be replayed. It also seeds torch's global generator."""
    seed = getattr(request, "param", None)
    if seed is None:
        seed = int(os.environ.get("FASTLMK_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"seed = {seed}")
    torch.manual_seed(seed)
    return seed


@pytest.fixture
def gen(test_seed):
    """A generator seeded with the test's seed."""
    return torch.Generator().manual_seed(test_seed)


def tolerance(dtype):
    """(rtol, atol) for comparing a backend with the reference in ``dtype`` (one unit in the last place for
    half types, whose rounding of a float32 value may differ by that)."""
    return {torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3), torch.float64: (1e-6, 1e-9)}.get(
        dtype, (1e-5, 1e-6))


def close(actual, expected, dtype=torch.float32, scale=1.0):
    """``actual`` (any device) equals the reference ``expected`` within ``scale`` times ``tolerance(dtype)``."""
    rtol, atol = tolerance(dtype)
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=rtol * scale, atol=atol * scale, equal_nan=True)


def assert_decoded(got, want, size):
    """A decode's (coords, scores) against the reference's: coordinates within float32 accumulation error
    (relative to their magnitude ``max(size)``), scores exact, NaN where the reference has NaN."""
    (c1, s1), (c2, s2) = tuple(t.cpu() for t in got), want
    assert c1.dtype == c2.dtype and s1.dtype == s2.dtype
    tol = 2e-5 * max(size) + 1e-6 if c1.dtype != torch.float64 else 1e-9 * max(size)
    torch.testing.assert_close(c1, c2, rtol=0, atol=tol, equal_nan=True)
    torch.testing.assert_close(s1, s2, rtol=0, atol=0, equal_nan=True)


def away_from_targets(pred, kp, sigma, margin=0.05, *, weights=None, centers=("continuous", "rounded")):
    """Move pred at least ``margin`` away from the targets of ``centers`` (by default both the continuous and
    the rounded centre; ``weights`` as render_gaussian's, e.g. of instances). Adaptive Wing's loss
    omega ln(1 + d^(alpha - t)) and its gradient, with the factor d^(alpha - t - 1), change relatively by about
    (alpha - t) e / d and (alpha - t - 1) e / d under a float32 rounding e of the target (up to 2e-7 for
    weighted targets above 1): at d = |pred - t| -> 0 no backend can match another, and the comparison would
    test the input, not the kernels. At d >= 0.05 these stay under 1e-5 (seed 3328019642 failed at 0.01)."""
    from fastlmk.reference import encode as ref_enc

    size, s = tuple(pred.shape[-2:]), sigma.double()
    w = None if weights is None else weights.double()
    t = torch.stack([ref_enc.render_gaussian(kp.double(), size, s, weights=w, center=c, dtype=torch.float64)
                     for c in centers])
    near = ((pred.double() - t).abs() < margin).any(0)
    return torch.where(near, (t.amax(0) + 2 * margin).float(), pred)


def pytest_addoption(parser):
    parser.addoption("--seeds", metavar="FIRST:END", default=None,
                     help="seed sweep: run only the tests drawing from the gen fixture, once per seed in "
                          "range(FIRST, END) (hypothesis tests: loop over FASTLMK_TEST_SEED instead)")


def _seeds(config):
    spec = config.getoption("--seeds")
    if spec is None:
        return None
    first, end = (int(v) for v in spec.split(":"))
    return range(first, end)


def pytest_generate_tests(metafunc):
    seeds = _seeds(metafunc.config)
    if seeds is not None and "gen" in metafunc.fixturenames:
        metafunc.parametrize("test_seed", seeds, indirect=True, ids=lambda s: f"seed{s}")


def pytest_collection_modifyitems(config, items):
    if _seeds(config) is None:
        return
    keep = [item for item in items if "gen" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep
