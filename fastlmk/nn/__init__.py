"""Modules built on fastlmk.ops."""

from .binary import BinaryConv2d, binarize_, pack_binary_, sign_ste, state_dict_bytes
from .decoding import HIHDecoder, KeypointDecoder, SoftArgmax
from .visualization import VisualizationLayer, frontal_projection

__all__ = ["BinaryConv2d", "HIHDecoder", "KeypointDecoder", "SoftArgmax", "VisualizationLayer", "binarize_",
           "frontal_projection", "pack_binary_", "sign_ste", "state_dict_bytes"]
