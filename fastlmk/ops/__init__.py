"""Functional ops of fastlmk; each is a torch.library custom op in the ``fastlmk`` namespace."""

from .decode import decode, decode_hih, decode_simcc, soft_argmax
from .encode import (
    encode_h3r,
    encode_hih,
    heatmap_loss,
    hih_centers,
    randomized_round,
    render_disc,
    render_gaussian,
    render_offsets,
    render_simcc,
)
from .splat import splat
from .xnor import binary_conv2d, binary_linear, pack_bits, unpack_bits

__all__ = ["binary_conv2d", "binary_linear", "decode", "decode_hih", "decode_simcc", "encode_h3r", "encode_hih",
           "heatmap_loss", "hih_centers", "pack_bits", "randomized_round", "render_disc", "render_gaussian",
           "render_offsets", "render_simcc", "soft_argmax", "splat", "unpack_bits"]
