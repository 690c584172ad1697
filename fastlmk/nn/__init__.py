"""Modules built on fastlmk.ops."""

from .visualization import VisualizationLayer, frontal_projection

__all__ = ["VisualizationLayer", "frontal_projection"]
