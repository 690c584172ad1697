"""The ``fastlmk`` command line: ``fastlmk bench`` measures the ops against pure PyTorch and the floor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import bench


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastlmk", description="fastlmk: fused kernels for heatmap-based "
                                                                 "landmark localization.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    b = commands.add_parser("bench", help="benchmark the ops against pure PyTorch and the physical floor",
                            description="Benchmark the ops against pure PyTorch and the physical floor; prints a "
                                        "markdown table.")
    b.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda if available, else cpu (default)")
    b.add_argument("--family", choices=sorted(bench.FAMILIES), action="append",
                   help="op family to run (repeatable; default: all)")
    b.add_argument("--quick", action="store_true", help="smaller batch and shorter timing (a smoke run)")
    b.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    return parser


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    families = args.family or list(bench.FAMILIES)
    suites = [s for name in families for s in bench.FAMILIES[name](device, args.quick)]
    rows = bench.run(suites, min_time=bench.QUICK_MIN_TIME if args.quick else bench.MIN_TIME)
    table = bench.format_table(rows, bench.device_name(device))
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``fastlmk`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        parser.exit(2)
    return _bench(args, parser)


if __name__ == "__main__":
    sys.exit(main())
