"""Functional ops of fastlmk; each is a torch.library custom op in the ``fastlmk`` namespace."""

from .encode import (
    encode_h3r,
    encode_hih,
    heatmap_loss,
    randomized_round,
    render_disc,
    render_gaussian,
    render_offsets,
)

__all__ = ["encode_h3r", "encode_hih", "heatmap_loss", "randomized_round", "render_disc", "render_gaussian",
           "render_offsets"]
