"""Geometry assets the core uses: 3D morphable face models (``fastlmk.geometry.morphable``), needed by the
synthetic faces of ``fastlmk.data``, the visualization layer of ``fastlmk.nn`` and the PIFA model."""
