"""Model definitions and trainers that use fastlmk's ops, installed as ``fastlmk.models``.

Submodules are imported on demand; nothing heavy is imported here. The 3D morphable face models the PIFA
model uses live in the core package, ``fastlmk.geometry.morphable``.
"""
