"""The interface every trainable model of ``fastlmk.models`` implements, so that one trainer drives them all.

A batch is a dict of tensors as built by ``fastlmk.data`` (default-collated):

- ``"image"`` (B, 3, S, S) float32 in [0, 1];
- ``"landmarks"`` (B, K, 2) float32 ``(x, y)`` in input pixels (pixel ``(i, j)`` centred at ``(x=j, y=i)``),
  NaN where a landmark is missing;
- ``"affine"`` (B, 2, 3) float64 mapping input pixels to the original image's pixels;
- ``"index"`` (B,) int64; synthetic data adds ``"params"`` (B, P) and ``"camera"`` (B, 2, 4) (the 3DMM
  parameters and the projection ``M`` that rendered the face, used by PIFA's parameter loss).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["LandmarkModel"]


class LandmarkModel(nn.Module):
    """A landmark network: ``forward(images)`` returns model-specific outputs, ``loss(outputs, batch)`` the
    scalar training loss, ``predict(outputs)`` the landmarks (B, K, 2) in input pixels per decoder.

    ``decoders`` names the keys of ``predict``: the first is the model's own decoder, the others are
    baselines decoded from the same outputs (e.g. plain argmax), so one evaluation compares them.
    ``config`` holds the constructor arguments, so that a checkpoint rebuilds the model.
    """

    num_landmarks: int
    input_size: int
    decoders: tuple[str, ...]
    config: dict[str, Any]

    def loss(self, outputs: Any, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def predict(self, outputs: Any) -> dict[str, Tensor]:
        raise NotImplementedError
