"""Run from the repository root, ``pytest`` and ``python -m pytest`` both put the root on ``sys.path``, where
the source folder ``fastlmk/`` would shadow the installed package (which has ``fastlmk.models``,
``fastlmk.kernels`` and the built extensions beside it). Take the root off before any test imports fastlmk;
an editable install (``pip install -e .``) resolves through its own finder either way."""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
