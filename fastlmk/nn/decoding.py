"""Decoders as modules, for deployment: put one after a heatmap network and export the whole to ONNX
(``fastlmk.export.to_onnx`` or ``torch.onnx.export(..., dynamo=True)``); each runs ``fastlmk.ops`` in eager
mode and its reference formulas, standard ONNX operators, in an ONNX graph."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import ops

__all__ = ["HIHDecoder", "KeypointDecoder", "SoftArgmax"]


class KeypointDecoder(nn.Module):
    """``fastlmk.ops.decode``: ``forward(heatmaps (B, K, H, W), affine (B, 2, 3) = None)`` returns
    ``(coords (B, K, 2), scores (B, K))``; with ``affine`` the coordinates are mapped to image space (e.g.
    from heatmap to input pixels). ``method``, ``blur``, ``window``, ``k``: as ``decode``'s (``"offset"``,
    which needs a second network output, is not offered here)."""

    def __init__(self, method: str = "argmax", *, blur: int = 11, window: int = 1, k: int = 9,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        if method == "offset":
            raise ValueError("KeypointDecoder does not take method='offset'; call fastlmk.ops.decode with offsets")
        ops.decode(torch.zeros(1, 1, 1, 1), method, blur=blur, window=window, k=1)  # validates the arguments
        self.method, self.blur, self.window, self.k, self.backend = method, blur, window, k, backend

    def forward(self, heatmaps: Tensor, affine: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        return ops.decode(heatmaps, self.method, blur=self.blur, window=self.window, k=self.k, affine=affine,
                          backend=self.backend)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, blur={self.blur}, window={self.window}, k={self.k}"


class HIHDecoder(nn.Module):
    """``fastlmk.ops.decode_hih``: ``forward(integer_maps, decimal_maps, affine=None)`` returns
    ``(coords (B, K, 2), scores (B, K))``."""

    def __init__(self, convention: str = "paper", *, backend: Optional[str] = None) -> None:
        super().__init__()
        if convention not in ("paper", "unbiased"):
            raise ValueError(f"convention must be one of ('paper', 'unbiased'), got {convention!r}")
        self.convention, self.backend = convention, backend

    def forward(self, integer_maps: Tensor, decimal_maps: Tensor,
                affine: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        return ops.decode_hih(integer_maps, decimal_maps, convention=self.convention, affine=affine,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}"


class SoftArgmax(nn.Module):
    """``fastlmk.ops.soft_argmax`` (differentiable): ``forward(heatmaps (B, K, H, W))`` returns
    ``coords (B, K, 2)``."""

    def __init__(self, beta: float = 1.0, normalize: str = "softmax", *, backend: Optional[str] = None) -> None:
        super().__init__()
        ops.soft_argmax(torch.zeros(1, 1, 1, 1), beta=beta, normalize=normalize)  # validates the arguments
        self.beta, self.normalize, self.backend = float(beta), normalize, backend

    def forward(self, heatmaps: Tensor) -> Tensor:
        return ops.soft_argmax(heatmaps, beta=self.beta, normalize=self.normalize, backend=self.backend)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, normalize={self.normalize!r}"
