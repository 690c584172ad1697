"""fastlmk: fused kernels for heatmap-based landmark localization.

``fastlmk.ops`` holds the functional ops, ``fastlmk.reference`` their pure-PyTorch references.
"""

from . import ops, reference

__version__ = "0.1.0"
__all__ = ["ops", "reference", "__version__"]
