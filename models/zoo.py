"""The models ``fastlmk train --model NAME`` builds, by name, and their rebuild from a checkpoint."""

from __future__ import annotations

from typing import Any, Callable

from .base import LandmarkModel

__all__ = ["MODELS", "build"]


def _fan(**kw: Any) -> LandmarkModel:
    from .heatmap import FAN
    return FAN(**kw)


def _fan_binary(**kw: Any) -> LandmarkModel:
    from .heatmap import FAN
    return FAN(**{"binary": True, **kw})


def _hih(**kw: Any) -> LandmarkModel:
    from .heatmap import HIH
    return HIH(**kw)


def _hih_cnn(**kw: Any) -> LandmarkModel:
    from .heatmap import HIH
    return HIH(**{"head": "cnn", **kw})


def _hih_transformer(**kw: Any) -> LandmarkModel:
    from .heatmap import HIH
    return HIH(**{"head": "transformer", **kw})


def _h3r(**kw: Any) -> LandmarkModel:
    from .heatmap import H3R
    return H3R(**kw)


def _pifa(**kw: Any) -> LandmarkModel:
    from .pifa import PIFA
    return PIFA(**kw)


MODELS: dict[str, Callable[..., LandmarkModel]] = {
    "fan": _fan,  # stacked hourglass, Gaussian MSE, quarter-offset decoding (seed 002 ch. 4)
    "fan-binary": _fan_binary,  # the same with binary HPM blocks (seed 002 ch. 5)
    "hih": _hih,  # Heatmap in Heatmap (seed 000), local decimal head at each integer maximum
    "hih-cnn": _hih_cnn,  # Heatmap in Heatmap, the paper's CNN decimal head
    "hih-transformer": _hih_transformer,  # Heatmap in Heatmap, the paper's Transformer decimal head
    "h3r": _h3r,  # randomized-rounding one-hot targets, BCE, top-k decoding (seed 001)
    "pifa": _pifa,  # visualization-block CNN (seed 003)
}


def build(name: str, **config: Any) -> LandmarkModel:
    """``MODELS[name](**config)``; ``config`` is a model's ``config`` dict (e.g. from a checkpoint) or the
    constructor arguments (``num_landmarks``, ``input_size``, ...)."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**config)
