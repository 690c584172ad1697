"""fastlmk: fused kernels for heatmap-based landmark localization.

``fastlmk.ops`` holds the functional ops, ``fastlmk.reference`` their pure-PyTorch references.
"""

import importlib.util as _util
from pathlib import Path as _Path

# The repository's fastlmk/ folder is not the package: pip puts models/, kernels/ and the built extensions
# beside it. Python imports the folder instead when run from the repository root (python -m pytest,
# python -c ...) after a regular install; fail clearly rather than fall back to the slow reference backend.
if (_Path(__file__).resolve().parent.parent / "setup.py").is_file() and _util.find_spec("fastlmk.models") is None:
    raise ImportError(f"fastlmk was imported from the source folder {_Path(__file__).parent}, not from the "
                      "installed package: run from outside the repository, or install in place with "
                      "pip install -e .")

from . import ops, reference  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ops", "reference", "__version__"]
