"""Benchmark harness: fastlmk against pure PyTorch (and the peers a user would otherwise pick) and the
physical floor, all measured in one run (docs/layout.md, Checking).

Each op family has a module here whose ``suites(device, quick)`` is listed in ``FAMILIES``; each ``Suite`` is one op at
one shape with its cases: exactly one ``fastlmk`` case, at most one ``floor`` (the memory traffic the op
cannot avoid, e.g. writing its output once) and any number of ``baseline`` cases, one of them the suite's
``reference`` for the headline speed-up. Every input is built when the suite is built, so a case's callable
times exactly the work it names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from . import codecs, decode, encode, splat, train, xnor
from .harness import (LEGEND, MIN_TIME, QUICK_MIN_TIME, ROLES, Case, Result, Suite, calls_per_sample, cpu_busy,
                      device_name, format_table, measure, percentile, report, run, synchronized)

__all__ = ["FAMILIES", "LEGEND", "MIN_TIME", "QUICK_MIN_TIME", "ROLES", "Case", "Result", "Suite", "calls_per_sample",
           "cpu_busy", "device_name", "format_table", "measure", "percentile", "report", "run", "script",
           "synchronized"]

FAMILIES: dict[str, Callable[[torch.device, bool], list[Suite]]] = {
    "encode": encode.suites, "decode": decode.suites, "splat": splat.suites, "xnor": xnor.suites,
    "train": train.suites, "codecs": codecs.suites}


def script(family: str, doc: str, argv: Optional[Sequence[str]] = None) -> None:
    """Command line of the ``benchmarks/bench_<family>.py`` scripts: the family's suites at full size, printed
    as a markdown table (``--markdown PATH`` also writes it)."""
    parser = argparse.ArgumentParser(description=doc, epilog=LEGEND.replace("`", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    table = report(FAMILIES[family](device, False), device)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
