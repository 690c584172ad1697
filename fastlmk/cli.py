"""The ``fastlmk`` command line: ``fastlmk bench`` measures the ops against pure PyTorch and the floor;
``fastlmk quantization`` tabulates the error of every heatmap encoding/decoding pair with no network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import bench, metrics, quantization


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
    q = commands.add_parser("quantization", help="NME of every heatmap encoding/decoding pair with no network",
                            description="The quantization study (the 'ideal condition' of HIH, Table 1): "
                                        "encode ground-truth landmarks as heatmaps, decode them back to image "
                                        "space with every method and print the NME (%%) and the per-axis RMS "
                                        "and max error in heatmap pixels as a markdown table.")
    source = q.add_mutually_exclusive_group()
    source.add_argument("--landmarks", type=Path, metavar="PATH",
                        help="a .npy or .pt (N, K, 2) array of image-space landmarks (default: synthetic "
                             "WFLW-like faces)")
    source.add_argument("--faces", type=int, default=500, metavar="N",
                        help="number of synthetic faces (default: 500)")
    q.add_argument("--image-size", type=int, default=256, metavar="N", help="square image size (default: 256)")
    q.add_argument("--heatmap-size", type=int, action="append", metavar="N",
                   help="square heatmap size (repeatable; default: 64 and 32)")
    q.add_argument("--norm", choices=metrics.NORMS, default="inter_ocular",
                   help="NME normaliser (default: inter_ocular)")
    q.add_argument("--sigma", type=float, default=1.5, help="Gaussian sigma in heatmap pixels (default: 1.5)")
    q.add_argument("--seed", type=int, default=0, help="seed of the synthetic faces and of H3R's rounding")
    q.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    q.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
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


def _quantization(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    try:
        if args.landmarks is not None:
            landmarks, source = quantization.load_landmarks(args.landmarks), str(args.landmarks)
        else:
            if args.faces <= 0:
                raise ValueError(f"--faces must be positive, got {args.faces}")
            landmarks = quantization.synthetic_faces(args.faces, image_size=args.image_size, seed=args.seed)
            source = f"synthetic WFLW-like faces, seed {args.seed}"
        sizes = tuple(args.heatmap_size or (64, 32))
        rows = quantization.study(landmarks, image_size=args.image_size, heatmap_sizes=sizes, norm=args.norm,
                                  sigma=args.sigma, seed=args.seed, device=args.device)
    except (OSError, TypeError, ValueError) as exc:
        parser.error(f"quantization: {exc}")
    n, k = landmarks.shape[:2]
    caption = (f"Quantization error alone (no network: the 'ideal condition' of HIH Table 1). {n} x {k} landmarks "
               f"({source}) in a {args.image_size} px image; Gaussian sigma {args.sigma:g} heatmap px; NME (%) "
               f"normalised by {args.norm}; RMS and max: per-axis error in heatmap px; device {args.device}.")
    table = quantization.format_table(rows, caption=caption)
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
    return {"bench": _bench, "quantization": _quantization}[args.command](args, parser)


if __name__ == "__main__":
    sys.exit(main())
