"""The quantization study (HIH Table 1, "ideal condition"): the NME that heatmap encoding and decoding alone
cost, for every encoding/decoding pair, on synthetic WFLW-like faces or your own landmarks.

    python benchmarks/quantization_study.py [--landmarks PATH | --faces N] [--image-size 256]
        [--heatmap-size 64 --heatmap-size 32] [--norm inter_ocular] [--markdown PATH]

Same options as ``fastlmk quantization`` (see ``--help``), which this script runs.
"""

from __future__ import annotations

import sys

from fastlmk import cli

if __name__ == "__main__":
    sys.exit(cli.main(["quantization", *sys.argv[1:]]))
