"""Pure-PyTorch reference implementations, one module per op family (the baseline of tests and benchmarks)."""

from .encode import (
    heatmap_loss,
    heatmap_loss_backward,
    render_disc,
    render_gaussian,
    render_offsets,
)

__all__ = ["heatmap_loss", "heatmap_loss_backward", "render_disc", "render_gaussian", "render_offsets"]
