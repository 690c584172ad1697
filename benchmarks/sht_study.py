"""The seed 004 study at this machine's budget: the rows of SHT's Table 1 and the gradient-loss ablation of its
Table 5, on the synthetic faces, every model on the same labelled faces and test faces.

    python benchmarks/sht_study.py [--epochs 8 3 2 2] [--out runs/sht-study] [--markdown PATH]

Rows: bicubic upsampling (PSNR/SSIM only); the face-hallucination stream trained without landmarks (DHLN with
gamma_1 = 0: FHS); FAN on the bicubic-upsampled input (NME only); DHLN; DHLN without the gradient loss
(gamma_3 = 0, Table 5's DHLN*); SHT after the combined finetune; SHT after the weakly-supervised finetune
with the unlabelled half; and SHT with FPTN's L1 term alone instead of the perceptual substitute (resumed
from the same DHLN). Each run is ``fastlmk.models.sht_train.train_sht``, as ``fastlmk train`` runs it.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from fastlmk.models.sht_train import SHTConfig, train_sht


def _row(name: str, m: dict, seconds: float, face: bool = True, landmarks: bool = True) -> str:
    lm = f"{m['nme_io']:.2f} | {m['nme_wid']:.2f} | {m['auc']:.1f} | {m['fr']:.1f}" if landmarks else " | | | "
    hr = f"{m['psnr']:.2f} | {m['ssim']:.4f}" if face else " | "
    return f"| {name} | {lm} | {hr} | {seconds / 60:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, nargs=4, default=(8, 3, 2, 2), metavar=("DHLN", "FPTN", "SHT", "WEAK"))
    parser.add_argument("--data", default=SHTConfig.data)
    parser.add_argument("--out", type=Path, default=Path("runs/sht-study"))
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    base = SHTConfig(data=args.data, unlabelled=0.5, progress=False)
    e1 = args.epochs[0]

    def run(name: str, **kw) -> dict:
        cfg = replace(base, out=str(args.out / name), **kw)
        tic = time.perf_counter()
        result = train_sht(cfg)
        print(f"[{name}: {time.perf_counter() - tic:.0f} s]", flush=True)
        return result

    sht = run("sht", epochs=tuple(args.epochs))
    l1 = run("sht-l1", epochs=tuple(args.epochs), perceptual="none", resume_from=str(args.out / "sht" / "dhln.pt"))
    fhs = run("fhs", model="dhln", epochs=(e1,), gamma=(0.0, 0.01, 0.01))
    fan = run("fan-bicubic", model="fan-bicubic", epochs=(e1,))
    no_grad = run("dhln-no-gradient", model="dhln", epochs=(e1,), gamma=(1.0, 0.01, 0.0))

    stages = {h["stage"]: h for h in sht["history"]}
    l1_stages = {h["stage"]: h for h in l1["history"]}
    first = stages["dhln"]["test"]

    def seconds(history: list, upto: str) -> float:
        names = [h["stage"] for h in history]
        return sum(h["seconds"] for h in history[:names.index(upto) + 1])

    rows = [
        _row("bicubic", {"psnr": first["bicubic_psnr"], "ssim": first["bicubic_ssim"]}, 0, landmarks=False),
        _row("FHS (DHLN, gamma_1 = 0)", fhs["final"], fhs["train_seconds"], landmarks=False),
        _row("FAN on the bicubic input", fan["final"], fan["train_seconds"], face=False),
        _row("DHLN", first, seconds(sht["history"], "dhln")),
        _row("DHLN* (no gradient loss)", no_grad["final"], no_grad["train_seconds"]),
        _row("SHT", stages["sht"]["test"], seconds(sht["history"], "sht")),
        _row("SHT + unlabelled faces", stages["weak"]["test"], seconds(sht["history"], "weak")),
        _row("SHT, FPTN L1 only", l1_stages["sht"]["test"], seconds(l1["history"], "sht")),
        _row("SHT + unlabelled, FPTN L1 only", l1_stages["weak"]["test"], seconds(l1["history"], "weak")),
    ]
    c = sht["config"]
    caption = (f"SHT study on {c['data']} ({first['count']} test faces): {c['lr_size']} px low-resolution input "
               f"resized to {c['net_size']} px, {c['hr_size']} px faces; stage epochs {tuple(args.epochs)} over "
               f"{c['batch_size']} pairs a step, the same labelled half of the training faces for every model; "
               f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads. NME in %, AUC "
               f"and FR at 10% of the inter-ocular NME, PSNR (dB) and SSIM on Y; minutes: training time up to "
               f"that row's stage (the L1-only rows reuse SHT's DHLN stage).")
    table = "\n".join([caption, "", "| model | NME_io | NME_wid | AUC | FR | PSNR | SSIM | minutes |",
                       "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows]) + "\n"
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
