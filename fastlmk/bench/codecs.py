"""Codec suites: fastlmk.codecs against mmpose's codecs (the real package when importable, else the NumPy
transcription of its loops, fastlmk.bench.mmpose_numpy), per sample as a data loader calls them and per batch
as a training step can."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from .. import _dispatch, codecs
from ..ops.encode import BACKENDS
from . import mmpose_numpy as mm
from .harness import Case, Suite


def _peer():
    """mmpose's codec module and generate_gaussian_heatmaps, or None (the transcription is used)."""
    if importlib.util.find_spec("mmpose") is None:
        return None
    try:
        import mmpose.codecs as peer
        from mmpose.codecs.utils import generate_gaussian_heatmaps
    except Exception:
        return None
    return peer, generate_gaussian_heatmaps


def suites(device: torch.device, quick: bool = False) -> list[Suite]:
    """MSRAHeatmap.encode (K=17 at 64x48 and K=98 at 64x64, one instance; 10 instances), the batched DARK
    decode of 32 (8 when quick) samples, SimCCLabel.encode; fastlmk's NumPy calls run on the CPU, the batched
    ones on ``device``."""
    device = torch.device(device)
    peer = _peer()
    who = "mmpose 1.3" if peer else "mmpose's loops in NumPy"
    rng = np.random.default_rng(0)
    batch = 8 if quick else 32
    backend = _dispatch.select("render_gaussian", BACKENDS, device)
    out = []

    def mmpose_codec(name, *args, **kwargs):
        return getattr(peer[0], name)(*args, **kwargs) if peer else None

    for inp, hm, k, sigma in (((192, 256), (48, 64), 17, 2.0), ((256, 256), (64, 64), 98, 1.5)):
        kp = (rng.random((1, k, 2)) * inp).astype(np.float32)
        vis = np.ones((1, k), np.float32)
        ours = codecs.MSRAHeatmap(inp, hm, sigma)
        theirs = mmpose_codec("MSRAHeatmap", inp, hm, sigma)
        base = ((lambda t=theirs, kp=kp, vis=vis: t.encode(kp, vis)) if theirs
                else (lambda inp=inp, hm=hm, sigma=sigma, kp=kp, vis=vis: mm.msra_encode(inp, hm, sigma, kp, vis)))
        out.append(Suite(f"MSRAHeatmap.encode K={k}", f"one sample, {hm[1]}x{hm[0]}, sigma={sigma:g}", [
            Case("fastlmk", lambda o=ours, kp=kp, vis=vis: o.encode(kp, vis), "fastlmk"),
            Case("floor: np.zeros (one write)", lambda shape=(k, hm[1], hm[0]): np.zeros(shape, np.float32), "floor"),
            Case(who, base)], who, backend, torch.device("cpu")))

    inst = (rng.random((10, 17, 2)) * (48, 64)).astype(np.float32)
    vis10 = np.ones((10, 17), np.float32)
    multi = codecs.MSRAHeatmap((48, 64), (48, 64), 2.0)
    base = ((lambda: peer[1]((48, 64), inst, vis10, 2.0)) if peer
            else (lambda: mm.gaussian_heatmaps((48, 64), inst, vis10, 2.0)))
    out.append(Suite("generate_gaussian_heatmaps", "10 instances, K=17, 64x48, sigma=2", [
        Case("fastlmk", lambda: multi.encode(inst, vis10), "fastlmk"),
        Case("floor: np.zeros (one write)", lambda: np.zeros((17, 64, 48), np.float32), "floor"),
        Case(who, base)], who, backend, torch.device("cpu")))

    dark = codecs.MSRAHeatmap((192, 256), (48, 64), 2.0, unbiased=True)
    samples = [dark.encode((rng.random((1, 17, 2)) * (192, 256)).astype(np.float32))["heatmaps"] for _ in range(batch)]
    maps = np.stack(samples) + np.float32(0.01) * rng.random((batch, 17, 64, 48), dtype=np.float32)
    maps_t = torch.from_numpy(maps).to(device)
    theirs = mmpose_codec("MSRAHeatmap", (192, 256), (48, 64), 2.0, unbiased=True)
    loop = ((lambda t=theirs: [t.decode(m.copy()) for m in maps]) if theirs
            else (lambda: [mm.msra_decode((192, 256), (48, 64), m, True) for m in maps]))
    out.append(Suite("MSRAHeatmap.decode (DARK)", f"B={batch} samples, K=17, 64x48", [
        Case("fastlmk", lambda: dark.decode_batch(maps_t), "fastlmk"),
        Case("floor: amax (one read)", lambda: maps_t.amax((-2, -1)), "floor"),
        Case(f"{who}, per sample", loop)], f"{who}, per sample", _dispatch.select("decode", BACKENDS, device),
        device))

    kp = (rng.random((1, 17, 2)) * (192, 256)).astype(np.float32)
    simcc = codecs.SimCCLabel((192, 256), sigma=(4.9, 5.66))
    theirs = mmpose_codec("SimCCLabel", (192, 256), sigma=(4.9, 5.66))
    base = ((lambda t=theirs: t.encode(kp)) if theirs
            else (lambda: mm.simcc_encode((192, 256), kp, sigma=(4.9, 5.66))))
    out.append(Suite("SimCCLabel.encode", "one sample, K=17, 384+512 bins, sigma=(4.9, 5.66)", [
        Case("fastlmk", lambda: simcc.encode(kp), "fastlmk"),
        Case("floor: np.zeros (one write)", lambda: np.zeros((17, 384 + 512), np.float32), "floor"),
        Case(who, base)], who, backend, torch.device("cpu")))
    return out
