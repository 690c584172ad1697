"""Encoding-family benchmark (render_gaussian, fused MSE heatmap loss) at full size: fastlmk vs pure PyTorch,
a numpy dataset-pipeline loop and the physical floor, measured in one run.

    python benchmarks/bench_encode.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fastlmk import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    table = bench.format_table(bench.run(bench.encode_suites(device)), bench.device_name(device))
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
