"""Pure-PyTorch reference implementations, one module per op family (the baseline of tests and benchmarks).

The encoding family is re-exported here; the decoding family is used as ``fastlmk.reference.decode``
(the module, whose ``decode`` function would otherwise shadow it).
"""

from . import decode
from .encode import (
    heatmap_loss,
    heatmap_loss_backward,
    render_disc,
    render_gaussian,
    render_offsets,
)

__all__ = ["decode", "heatmap_loss", "heatmap_loss_backward", "render_disc", "render_gaussian", "render_offsets"]
