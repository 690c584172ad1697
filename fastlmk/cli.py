"""The ``fastlmk`` command line: ``fastlmk bench`` measures the ops against pure PyTorch and the floor;
``fastlmk quantization`` tabulates the error of every heatmap encoding/decoding pair with no network;
``fastlmk train``, ``eval`` and ``predict`` train the models of ``fastlmk.models`` and run them; ``fastlmk export``
writes a checkpoint and its decoder as one ONNX graph."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from . import bench, metrics, quantization


def _bounded(kind: type, low: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)``, finite and at least ``low`` (above it when ``strict``); argparse
    names the argument in the error."""
    def parse(text: str) -> float:
        value = kind(text)
        if not (math.isfinite(value) and (value > low if strict else value >= low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {low:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse's "invalid int value" message for a non-number
    return parse


POSITIVE_INT, NONNEGATIVE_INT = _bounded(int, 1), _bounded(int, 0)
POSITIVE, NONNEGATIVE = _bounded(float, 0, strict=True), _bounded(float, 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastlmk", description="fastlmk: fused kernels for heatmap-based "
                                                                 "landmark localization.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    b = commands.add_parser("bench", help="benchmark the ops against pure PyTorch and the physical floor",
                            description="Benchmark the ops against pure PyTorch and the physical floor; prints a "
                                        "markdown table.", epilog=bench.LEGEND.replace("`", ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda if available, else cpu (default)")
    b.add_argument("--family", choices=sorted(bench.FAMILIES), action="append",
                   help="op family to run (repeatable; default: all)")
    b.add_argument("--quick", action="store_true", help="smaller batch and shorter timing (a smoke run)")
    b.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    q = commands.add_parser("quantization", help="NME of every heatmap encoding/decoding pair with no network",
                            description="The quantization study (the 'ideal condition' of HIH, Table 1): "
                                        "encode ground-truth landmarks as heatmaps, decode them back to image "
                                        "space with every method and print the NME (%) and the per-axis RMS "
                                        "and max error in heatmap pixels as a markdown table.")
    source = q.add_mutually_exclusive_group()
    source.add_argument("--landmarks", type=Path, metavar="PATH",
                        help="a .npy or .pt (N, K, 2) array of image-space landmarks (default: synthetic "
                             "WFLW-like faces)")
    source.add_argument("--faces", type=POSITIVE_INT, default=500, metavar="N",
                        help="number of synthetic faces (default: 500)")
    q.add_argument("--image-size", type=POSITIVE_INT, default=256, metavar="N", help="square image size (default: 256)")
    q.add_argument("--heatmap-size", type=POSITIVE_INT, action="append", metavar="N",
                   help="square heatmap size (repeatable; default: 64 and 32)")
    q.add_argument("--norm", choices=metrics.NORMS, default="inter_ocular",
                   help="NME normaliser (default: inter_ocular)")
    q.add_argument("--sigma", type=POSITIVE, default=1.5, help="Gaussian sigma in heatmap pixels (default: 1.5)")
    q.add_argument("--seed", type=int, default=0, help="seed of the synthetic faces and of H3R's rounding")
    q.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    q.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    _train_parsers(commands)
    for sub in commands.choices.values():  # errors print the subcommand's usage line, not fastlmk's
        sub.set_defaults(command_parser=sub)
    return parser


DATA_HELP = ("synthetic (faces rendered in code, no download), wflw:ROOT, 300w:ROOT, cofw:ROOT, csv:DIR or "
             "json:DIR (see fastlmk.data.open_dataset for the layouts)")


def _train_parsers(commands: argparse._SubParsersAction) -> None:
    from .models.sht_train import SHT_MODELS, STAGES, SHTConfig
    from .models.zoo import MODELS
    t = commands.add_parser("train", help="train a landmark model (checkpoints, evaluation, results, pictures)",
                            description="Train a landmark model; every epoch evaluates NME/AUC/FR on the test "
                                        "split and writes OUT/last.pt (resumable with --resume) and OUT/best.pt; "
                                        "at the end OUT/results.json and OUT/predictions.png. Runs under torchrun "
                                        "(DistributedDataParallel: gloo on CPU, NCCL on GPU). The low-resolution "
                                        "models (sht, dhln, fan-bicubic; seed 004) train on pairs of views of "
                                        "each face, stage by stage, evaluating NME, PSNR and SSIM after each "
                                        "stage and writing OUT/STAGE.pt, OUT/last.pt, OUT/results.json and "
                                        "OUT/hallucinated.png.")
    t.add_argument("--model", choices=sorted(MODELS) + list(SHT_MODELS), default="fan",
                   help="the network (default: fan)")
    t.add_argument("--data", metavar="SPEC",
                   help=DATA_HELP + f" (default: synthetic; {SHTConfig.data} for the low-resolution models)")
    t.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: runs/MODEL)")
    t.add_argument("--epochs", type=POSITIVE_INT, help=f"default: 8 ({SHTConfig.epochs[0]} for dhln and fan-bicubic)")
    t.add_argument("--batch-size", type=POSITIVE_INT, help=f"per process (default: 16; {SHTConfig.batch_size} pairs for "
                                                   "the low-resolution models)")
    t.add_argument("--lr", type=POSITIVE, help=f"Adam learning rate, cosine decay (default: 2e-3; {SHTConfig.lr:g} "
                                            "for the low-resolution models, per stage)")
    t.add_argument("--input-size", type=POSITIVE_INT, metavar="N", help="square input (default: 128 synthetic, else 256)")
    s = t.add_argument_group("low-resolution models (sht, dhln, fan-bicubic)")
    s.add_argument("--lr-size", type=POSITIVE_INT, default=SHTConfig.lr_size, metavar="N",
                   help=f"the low-resolution face's size (default: {SHTConfig.lr_size})")
    s.add_argument("--net-size", type=POSITIVE_INT, default=SHTConfig.net_size, metavar="N",
                   help=f"DHLN's input and heatmap size, a multiple of --lr-size (default: {SHTConfig.net_size})")
    s.add_argument("--hr-size", type=POSITIVE_INT, default=SHTConfig.hr_size, metavar="N",
                   help=f"the high-resolution face's size, a multiple of --net-size (default: {SHTConfig.hr_size})")
    s.add_argument("--stage-epochs", type=NONNEGATIVE_INT, nargs=len(STAGES), metavar=tuple(s_.upper() for s_ in STAGES),
                   help=f"sht: epochs of each stage, {', '.join(STAGES)} (default: "
                        f"{' '.join(map(str, SHTConfig.epochs))})")
    s.add_argument("--finetune-lr", type=POSITIVE, default=SHTConfig.finetune_lr, metavar="LR",
                   help=f"sht: the learning rate of the two finetune stages (default: {SHTConfig.finetune_lr:g})")
    s.add_argument("--unlabelled", type=float, metavar="FRACTION",
                   help="the fraction of the training faces set apart without landmarks: sht's weak stage uses "
                        "them, the other models train on the rest (default: 0.5 for sht, else 0)")
    s.add_argument("--unlabelled-data", metavar="SPEC", help="sht: the unlabelled faces from this dataset instead")
    s.add_argument("--gamma", type=NONNEGATIVE, nargs=3, metavar=("G1", "G2", "G3"), default=SHTConfig.gamma,
                   help="L_DH's weights (Eq. 4): heatmaps, pixels, gradients (default: 1 0.01 0.01; G3 = 0 is "
                        "the ablation without the gradient loss, G1 = 0 the face stream without landmarks)")
    s.add_argument("--perceptual", choices=("landmark", "none"), default=SHTConfig.perceptual,
                   help="FPTN's perceptual term: the frozen first layer of the trained DHLN, or none "
                        "(default: landmark)")
    t.add_argument("--channels", type=POSITIVE_INT, help="hourglass width (heatmap models; default 64)")
    t.add_argument("--stacks", type=POSITIVE_INT, help="hourglass stacks (heatmap models; default 1)")
    t.add_argument("--depth", type=POSITIVE_INT, help="hourglass depth (heatmap models; default 3)")
    t.add_argument("--workers", type=NONNEGATIVE_INT, default=0, help="DataLoader worker processes (default: 0)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    t.add_argument("--seed", type=int, default=0, help="default: 0")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (the low-resolution models: "
                                                         "from the stage after its last completed one)")
    t.add_argument("--limit-train", type=POSITIVE_INT, metavar="N", help="train on the first N samples only")
    t.add_argument("--limit-val", type=POSITIVE_INT, metavar="N", help="evaluate on the first N samples only")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = commands.add_parser("eval", help="evaluate a checkpoint (NME/AUC/FR per decoder)",
                            description="Evaluate a fastlmk train checkpoint on the test split of a dataset (the "
                                        "low-resolution models: NME_io, NME_wid, AUC, FR, and PSNR and SSIM on "
                                        "Y of the hallucinated faces, on the test faces their run used).")
    e.add_argument("checkpoint", type=Path, help="a checkpoint written by fastlmk train")
    e.add_argument("--data", metavar="SPEC", help=DATA_HELP + " (default: synthetic; for the low-resolution "
                                                             "models the run's own)")
    e.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="default: 32")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    e.add_argument("--limit", type=POSITIVE_INT, metavar="N", help="evaluate on the first N samples only")
    e.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to PATH")
    p = commands.add_parser("predict", help="draw a checkpoint's landmarks on an image",
                            description="Predict landmarks on IMAGE, print them (x y per line, image pixels) and "
                                        "save the image with the landmarks drawn. With a checkpoint of the "
                                        "low-resolution models IMAGE is a low-resolution face (its centred "
                                        "square): the picture is the hallucinated face with the landmarks, "
                                        "IMAGE_hallucinated.png beside IMAGE.")
    p.add_argument("image", type=Path, help="an image file (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint written by fastlmk train")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="face box in image pixels (default: the whole image)")
    p.add_argument("--out", type=Path, metavar="PNG",
                   help="output picture (default: IMAGE_landmarks.png, or IMAGE_hallucinated.png, beside IMAGE)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    x = commands.add_parser("export", help="export a checkpoint and its decoder to ONNX",
                            description="Write the network of a fastlmk train checkpoint and its decoder as one "
                                        "ONNX graph of standard operators: input 'images' (N, 3, S, S) in [0, 1] "
                                        "with a dynamic N, output 'landmarks' (N, K, 2) in input pixels. Needs the "
                                        "onnx extra (pip install \".[onnx]\"); onnxruntime checks the graph "
                                        "against PyTorch.")
    x.add_argument("checkpoint", type=Path, help="a checkpoint written by fastlmk train")
    x.add_argument("out", type=Path, metavar="OUT.onnx", help="the ONNX file to write")
    x.add_argument("--decoder", metavar="NAME", help="one of the model's decoders (default: its own)")


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .models.sht_train import SHT_MODELS
    from .models.train import TrainConfig, train
    model_args = {k: getattr(args, k) for k in ("channels", "stacks", "depth") if getattr(args, k) is not None}
    if model_args and args.model == "pifa":
        parser.error(f"{', '.join('--' + k for k in model_args)} apply to the heatmap models, not pifa")
    if args.model in SHT_MODELS:
        return _train_sht(args, parser, model_args)
    cfg = TrainConfig(model=args.model, data=args.data or "synthetic", out=str(args.out or Path("runs") / args.model),
                      epochs=args.epochs or 8, batch_size=args.batch_size or 16,
                      lr=2e-3 if args.lr is None else args.lr, input_size=args.input_size, model_args=model_args,
                      workers=args.workers, device=args.device, seed=args.seed, resume=args.resume,
                      limit_train=args.limit_train, limit_val=args.limit_val, progress=not args.no_progress)
    try:
        train(cfg)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    return 0


def _train_sht(args: argparse.Namespace, parser: argparse.ArgumentParser, model_args: dict) -> int:
    from .models.sht_train import SHTConfig, train_sht
    if args.input_size is not None:
        parser.error(f"--input-size does not apply to {args.model} (the sizes are --lr-size, --net-size "
                     "and --hr-size)")
    if args.workers != 0:
        parser.error(f"--workers does not apply to {args.model}")
    if args.model == "sht" and args.epochs is not None:
        parser.error("sht trains in stages: give --stage-epochs, not --epochs")
    if args.model != "sht" and args.stage_epochs is not None:
        parser.error(f"--stage-epochs applies to sht; {args.model} has one stage (--epochs)")
    default = SHTConfig()
    out = args.out or Path("runs") / args.model
    epochs = tuple(args.stage_epochs) if args.stage_epochs else \
        default.epochs if args.model == "sht" else (args.epochs or default.epochs[0],)
    cfg = SHTConfig(model=args.model, data=args.data or default.data, out=str(out), lr_size=args.lr_size,
                    net_size=args.net_size, hr_size=args.hr_size, epochs=epochs,
                    batch_size=args.batch_size or default.batch_size,
                    lr=default.lr if args.lr is None else args.lr, finetune_lr=args.finetune_lr,
                    unlabelled=args.unlabelled, unlabelled_data=args.unlabelled_data, gamma=tuple(args.gamma), perceptual=args.perceptual, model_args=model_args,
                    device=args.device, seed=args.seed, limit_train=args.limit_train, limit_val=args.limit_val,
                    progress=not args.no_progress, resume_from=str(out / "last.pt") if args.resume else None)
    try:
        train_sht(cfg)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    return 0


def _is_sht(path: Path) -> bool:
    """Whether ``path`` is a checkpoint of the low-resolution models (``fastlmk.models.sht_train``); an error
    naming ``path`` when it is no checkpoint of ``fastlmk train``."""
    from .models.evaluation import checkpoint_kind, read_checkpoint
    return checkpoint_kind(read_checkpoint(path)) == "sht"


def _eval_sht(args: argparse.Namespace) -> str:
    from .models.evaluation import resolve_device
    from .models.sht_train import eval_loader, evaluate_sht, format_sht, load_sht
    device = resolve_device(args.device)
    net, cfg, _ = load_sht(args.checkpoint, device)
    result = evaluate_sht(net, eval_loader(cfg, args.data, args.limit), device)
    return format_sht(result, f"{args.checkpoint} ({cfg.model}) on {args.data or cfg.data}, {cfg.lr_size} px input")


def _eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from torch.utils.data import DataLoader
    from .data import open_dataset
    from .models.evaluation import evaluate, format_results, limit, load_checkpoint, resolve_device
    try:
        if _is_sht(args.checkpoint):
            table = _eval_sht(args)
            print(table, end="")
            if args.markdown:
                args.markdown.write_text(table)
            return 0
        model, ckpt = load_checkpoint(args.checkpoint, resolve_device(args.device))
        args.data = args.data or "synthetic"
        seed = ckpt["train_config"]["seed"]  # the synthetic test faces the run validated on
        data = limit(open_dataset(args.data, "test", size=model.input_size, seed=seed), args.limit, "--limit")
        k = data[0]["landmarks"].shape[0]
        if k != model.num_landmarks:
            raise ValueError(f"{args.checkpoint} predicts {model.num_landmarks} landmarks, {args.data} has {k}")
        result = evaluate(model, DataLoader(data, args.batch_size), next(model.parameters()).device)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    table = format_results(result, f"{args.checkpoint} on {args.data}")
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


def _predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import viz
    from .data import check_box, load_image
    from .models.evaluation import predict_image, resolve_device
    from .models.sht_train import load_sht, predict_sht
    try:
        if _is_sht(args.checkpoint):
            if args.box is not None:
                raise ValueError("--box does not apply to the low-resolution models (the image is the face)")
            net, _, _ = load_sht(args.checkpoint, resolve_device(args.device))
            landmarks, face, on_face = predict_sht(net, args.image)
            out = args.out or args.image.with_name(f"{args.image.stem}_hallucinated.png")
            viz.draw_landmarks(face, (on_face,), upscale=max(1, 256 // face.shape[-1])).save(out)
        else:
            if args.box is not None:
                height, width = load_image(args.image).shape[-2:]
                check_box(args.box, width, height, name="--box")
            landmarks, image = predict_image(args.checkpoint, args.image, box=args.box, device=args.device)
            out = args.out or args.image.with_name(f"{args.image.stem}_landmarks.png")
            viz.draw_landmarks(image, (landmarks,)).save(out)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    for x, y in landmarks.tolist():
        print(f"{x:.2f} {y:.2f}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import importlib.util
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        parser.error(f"needs {', '.join(missing)} (pip install \".[onnx]\")")
    import onnxruntime
    from .models.export import export_onnx
    try:
        predictor = export_onnx(args.checkpoint, args.out, args.decoder)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    images = torch.rand(3, 3, predictor.model.input_size, predictor.model.input_size,
                        generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    with torch.no_grad():
        want = predictor(images)
    print(f"wrote {args.out}: {predictor.decoder} landmarks of {type(predictor.model).__name__}; onnxruntime "
          f"matches PyTorch to {float((got - want).abs().max()):.2g} px on 3 random images")
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    families = args.family or list(bench.FAMILIES)
    suites = [s for name in families for s in bench.FAMILIES[name](device, args.quick)]
    table = bench.report(suites, device, min_time=bench.QUICK_MIN_TIME if args.quick else bench.MIN_TIME)
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
            landmarks = quantization.synthetic_faces(args.faces, image_size=args.image_size, seed=args.seed)
            source = f"synthetic WFLW-like faces, seed {args.seed}"
        sizes = tuple(args.heatmap_size or (64, 32))
        rows = quantization.study(landmarks, image_size=args.image_size, heatmap_sizes=sizes, norm=args.norm,
                                  sigma=args.sigma, seed=args.seed, device=args.device)
    except (OSError, TypeError, ValueError) as exc:
        parser.error(str(exc))
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
    commands = {"bench": _bench, "quantization": _quantization, "train": _train, "eval": _eval, "predict": _predict,
                "export": _export}
    return commands[args.command](args, args.command_parser)


if __name__ == "__main__":
    sys.exit(main())
