"""Model definitions and trainers that use fastlmk's ops, installed as ``fastlmk.models``.

Submodules are imported on demand; nothing heavy is imported here. ``fastlmk.models.morphable`` holds the
3D morphable face models of the PIFA visualization layer (a procedural face shipped in code, a BFM ``.mat``
loader).
"""
