"""Pure-PyTorch reference implementations, one module per op family (the baseline of tests and benchmarks).

The encoding family is re-exported here; the decoding, splat and xnor families are used as modules
(``fastlmk.reference.decode``, ``.splat``, ``.xnor``), whose functions would otherwise shadow them.
"""

from . import decode, splat, xnor
from .encode import (
    heatmap_loss,
    heatmap_loss_backward,
    render_disc,
    render_gaussian,
    render_offsets,
    render_simcc,
)

__all__ = ["decode", "splat", "xnor", "heatmap_loss", "heatmap_loss_backward", "render_disc", "render_gaussian", "render_offsets", "render_simcc"]
