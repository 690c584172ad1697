"""Pure-PyTorch reference implementations, one module per op family (the baseline of tests and benchmarks).

The encoding family is re-exported here; the decoding and splat families are used as modules
(``fastlmk.reference.decode``, ``fastlmk.reference.splat``), whose functions would otherwise shadow them.
"""

from . import decode, splat
from .encode import (
    heatmap_loss,
    heatmap_loss_backward,
    render_disc,
    render_gaussian,
    render_offsets,
)

__all__ = ["decode", "splat", "heatmap_loss", "heatmap_loss_backward", "render_disc", "render_gaussian", "render_offsets"]
