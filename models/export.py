"""A trained model with its own decoder as one module, and its export to ONNX (``fastlmk export``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .. import export
from .base import LandmarkModel
from .evaluation import load_checkpoint


class Predictor(nn.Module):
    """``forward(images (B, 3, S, S))`` -> landmarks (B, K, 2) in input pixels by ``decoder`` (default: the
    model's own, ``model.decoders[0]``): the network and its decoding in one graph."""

    def __init__(self, model: LandmarkModel, decoder: Optional[str] = None) -> None:
        super().__init__()
        decoder = model.decoders[0] if decoder is None else decoder
        if decoder not in model.decoders:
            raise ValueError(f"decoder must be one of {model.decoders}, got {decoder!r}")
        self.model, self.decoder = model.eval(), decoder

    def forward(self, images: Tensor) -> Tensor:
        return self.model.predict(self.model(images))[self.decoder]


def export_onnx(checkpoint: Union[str, os.PathLike], out: Union[str, os.PathLike],
                decoder: Optional[str] = None, batch: int = 2) -> Predictor:
    """Writes the ONNX program of ``Predictor(model of checkpoint, decoder)`` to ``out`` (input ``images``
    of dynamic batch size, output ``landmarks``); returns the eager module it was traced from."""
    model, _ = load_checkpoint(checkpoint)
    predictor = Predictor(model, decoder)
    example = torch.rand(batch, 3, model.input_size, model.input_size)
    export.to_onnx(predictor, (example,), Path(out), input_names=["images"], output_names=["landmarks"])
    return predictor
