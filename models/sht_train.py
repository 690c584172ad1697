"""SHT training and evaluation (seed 004 sections 3.3 and 4.1; docs/sht.md): the engine of ``fastlmk train
--model sht``, ``--model dhln`` and ``--model fan-bicubic``, and of ``fastlmk eval`` and ``predict`` on their
checkpoints.

The data are ``HallucinationPairs`` of the training split at ``hr_size`` (two views of each face), the
low-resolution input ``lr_size`` resized to the network's ``net_size``. ``model="sht"`` runs the staged
schedule of section 4.1, each stage for its number of ``epochs``:

1. ``dhln``: DHLN alone on the labelled faces, loss L_DH (Eq. 4);
2. ``fptn``: FPTN on the ground-truth heatmaps of the labelled pairs (each view generated from the other's
   true face), the discriminators against it (Eqs. 5-8);
3. ``sht``: the two combined and finetuned on the labelled faces: DHLN's hallucinated face and heatmaps of
   one view are FPTN's condition, the heatmaps of the other view its target pose (Eq. 9, N terms);
4. ``weak``: the same finetune over the labelled and the unlabelled faces, L'_DH (Eq. 10, gamma_1 = 0) for
   the unlabelled ones (Eq. 9, N and M terms).

``model="dhln"`` runs stage 1 only (``gamma=(0, g2, g3)`` is the face-hallucination stream trained without
landmarks); ``model="fan-bicubic"`` trains FAN (``models.heatmap.FAN``) on the low-resolution face upsampled
(bicubic) to ``hr_size``, the baseline of the seed's Table 1. The unlabelled faces are the fraction
``unlabelled`` of the training split (their landmarks are never read) or the dataset ``unlabelled_data``.

FPTN's perceptual term (Eq. 8) needs VGG-19's conv1_2, whose weights cannot be downloaded here; the
substitute (``perceptual="landmark"``) is the first conv-BN-ReLU of DHLN's landmark stream as stage 1
trained it, frozen. ``perceptual="none"`` drops the term (the L1 term alone).

Evaluation: on the test split's faces (one view, no rotation, unit scale), NME normalised by the inter-ocular
distance and by the face width (NME_wid), AUC and FR at 10% of the inter-ocular NME, and PSNR and SSIM on Y
of the hallucinated faces (``fastlmk.metrics``), next to those of the bicubic upsampling.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from .. import metrics, ops, viz
from ..data import HallucinationPairs, load_image, open_dataset, split_labelled
from .evaluation import (THRESHOLD, checkpoint_kind, limit, progress, read_checkpoint, resolve_device,
                         save_checkpoint)
from .heatmap import FAN
from .sht import DHLN, FPTN, GAMMA, LAMBDA, PatchDiscriminator, dhln_loss, fptn_losses

__all__ = ["SHT_MODELS", "STAGES", "SHTConfig", "SHT", "train_sht", "evaluate_sht", "eval_loader", "load_sht",
           "predict_sht", "format_sht"]

SHT_MODELS = ("sht", "dhln", "fan-bicubic")
STAGES = ("dhln", "fptn", "sht", "weak")
PERCEPTUAL = ("landmark", "none")
FPTN_DOWNSAMPLE = 2  # FPTN's stride-2 convs (its default)


@dataclass
class SHTConfig:
    """Everything ``fastlmk train --model sht|dhln|fan-bicubic`` takes (module docstring). ``epochs``: one
    count per stage of ``STAGES`` (``dhln`` and ``fan-bicubic`` use the first); ``batch_size`` counts pairs
    (8 pairs, 16 faces, as the paper); ``model_args`` go to DHLN (``stacks``, ``channels``, ``sr_channels``,
    ``sr_blocks``, ``depth``) or FAN; ``sigma`` is the heatmaps' in the network's pixels. ``unlabelled``: the
    fraction of the training faces set apart as unlabelled (None: 0.5 for sht, else 0); ``dhln`` and
    ``fan-bicubic`` train on the labelled part only, so that with one fraction every model sees the same
    labelled faces. ``lr`` is the learning rate of the stages that start a network (dhln, fptn),
    ``finetune_lr`` of those that finetune the pretrained pair (sht, weak). ``resume_from``: a checkpoint of
    this trainer whose completed stages are kept (weights and history; the data, sizes and networks must be
    this run's, the later stages' settings may differ): training goes on with the next stage."""

    model: str = "sht"
    data: str = "synthetic:600,100"
    out: str = "runs/sht"
    lr_size: int = 16
    net_size: int = 32
    hr_size: int = 64
    epochs: tuple[int, ...] = (4, 2, 1, 1)
    batch_size: int = 8
    lr: float = 1e-3
    finetune_lr: float = 1e-4
    sigma: float = 1.0
    unlabelled: Optional[float] = None
    unlabelled_data: Optional[str] = None
    gamma: tuple[float, float, float] = GAMMA
    lam: tuple[float, float, float] = LAMBDA
    perceptual: str = "landmark"
    model_args: dict[str, Any] = field(default_factory=dict)
    resume_from: Optional[str] = None
    device: str = "auto"
    seed: int = 0
    limit_train: Optional[int] = None
    limit_val: Optional[int] = None
    progress: bool = True


def _check(cfg: SHTConfig) -> None:
    if cfg.model not in SHT_MODELS:
        raise ValueError(f"model must be one of {SHT_MODELS}, got {cfg.model!r}")
    if cfg.perceptual not in PERCEPTUAL:
        raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {cfg.perceptual!r}")
    stages = len(STAGES) if cfg.model == "sht" else 1
    if len(cfg.epochs) != stages or any(not isinstance(e, int) or e < 0 for e in cfg.epochs):
        raise ValueError(f"epochs must be {stages} non-negative int(s) for model {cfg.model!r} (one per stage of "
                         f"{STAGES[:stages]}), got {tuple(cfg.epochs)}")
    if cfg.net_size % cfg.lr_size:
        raise ValueError(f"the low-resolution size {cfg.lr_size} must divide the network's size {cfg.net_size}")
    step = 2 ** FPTN_DOWNSAMPLE
    if cfg.model == "sht" and cfg.hr_size % step:
        raise ValueError(f"the high-resolution size {cfg.hr_size} must be a multiple of {step} for FPTN")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if not 0 <= _unlabelled(cfg) < 1:
        raise ValueError(f"the unlabelled fraction must be in [0, 1), got {cfg.unlabelled}")
    if cfg.unlabelled_data is not None and cfg.model != "sht":
        raise ValueError(f"an unlabelled dataset applies to sht, not {cfg.model}")
    weak = cfg.model == "sht" and cfg.epochs[3] > 0
    if weak and _unlabelled(cfg) == 0 and cfg.unlabelled_data is None:
        raise ValueError(f"the weakly-supervised stage (epochs {cfg.epochs[3]}) needs unlabelled faces: an "
                         "unlabelled fraction above 0 or an unlabelled dataset")


def _unlabelled(cfg: SHTConfig) -> float:
    return cfg.unlabelled if cfg.unlabelled is not None else 0.5 if cfg.model == "sht" else 0.0


def _pairs(cfg: SHTConfig, spec: str, split: str, labelled: bool, train: bool) -> Dataset:
    source = open_dataset(spec, split, size=cfg.hr_size, seed=cfg.seed)
    kw = {} if train else dict(rotation=0.0, scale=(1.0, 1.0))  # the test faces as they are
    return HallucinationPairs(source, cfg.hr_size, cfg.net_size, cfg.lr_size, labelled=labelled,
                              seed=cfg.seed + (0 if train else 1), **kw)


def datasets(cfg: SHTConfig) -> tuple[Dataset, Optional[Dataset], Dataset]:
    """(labelled training pairs, unlabelled training pairs or None, test pairs) of ``cfg``."""
    train = limit(_pairs(cfg, cfg.data, "train", True, True), cfg.limit_train, "limit_train")
    test = limit(_pairs(cfg, cfg.data, "test", True, False), cfg.limit_val, "limit_val")
    unlabelled = None
    if cfg.unlabelled_data is not None:
        unlabelled = _pairs(cfg, cfg.unlabelled_data, "train", False, True)
    elif _unlabelled(cfg) > 0:
        keep, rest = split_labelled(len(train), _unlabelled(cfg), cfg.seed)
        pairs = _pairs(cfg, cfg.data, "train", False, True)
        base = train.indices if isinstance(train, Subset) else range(len(train))
        train, unlabelled = Subset(train, keep), Subset(pairs, [base[i] for i in rest])
    return train, unlabelled, test


def _views(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """A batch of pairs (B, 2, ...) as 2B views, each view's partner at ``index ^ 1``."""
    out = {k: v.to(device).flatten(0, 1) for k, v in batch.items() if k != "labelled"}
    out["labelled"] = batch["labelled"].to(device).repeat_interleave(2)
    return out


def _partner(t: Tensor) -> Tensor:
    """The other view of each pair, for 2B views ordered pair by pair."""
    return t.view(-1, 2, *t.shape[1:]).flip(1).flatten(0, 1)


def _heatmap_targets(v: dict[str, Tensor]) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """(keypoints, weights) of the labelled views for ``heatmap_loss``: the weights are 0 for unlabelled views
    and missing landmarks and scaled so that the loss is the mean over the labelled views; None, None when
    the batch has none."""
    kp = v["landmarks"]
    weights = (torch.isfinite(kp).all(-1) & v["labelled"][:, None]).float()
    if not v["labelled"].any():
        return None, None
    return torch.nan_to_num(kp), weights / v["labelled"].float().mean()


class SHT(nn.Module):
    """The networks of one run: DHLN (or FAN for ``fan-bicubic``), FPTN and its two discriminators."""

    def __init__(self, cfg: SHTConfig, num_points: int) -> None:
        super().__init__()
        self.model, self.num_points = cfg.model, num_points
        self.net_size, self.hr_size, self.lr_size = cfg.net_size, cfg.hr_size, cfg.lr_size
        if cfg.model == "fan-bicubic":
            self.detector = FAN(num_points, cfg.hr_size, **{"stacks": 2, **cfg.model_args})
        else:
            self.detector = DHLN(num_points, upscale=cfg.hr_size // cfg.net_size, **cfg.model_args)
        if cfg.model == "sht":
            self.fptn = FPTN(num_points, downsample=FPTN_DOWNSAMPLE)
            self.appearance, self.shape = PatchDiscriminator(6), PatchDiscriminator(num_points + 3)
        self.phi: Optional[nn.Module] = None

    def forward(self, v: dict[str, Tensor]) -> tuple[Any, Optional[Tensor]]:
        """(the detector's outputs, the hallucinated faces or None) of the views ``v``."""
        if self.model == "fan-bicubic":
            up = F.interpolate(v["low"], size=self.hr_size, mode="bicubic", align_corners=False)
            return self.detector(up), None
        return self.detector(v["input"])

    def landmarks(self, outputs: Any) -> Tensor:
        """The landmarks (B, K, 2) in the high-resolution face's pixels (DHLN: the last unit's maps, FAN's
        quarter-offset decoding, scaled from the network's pixels)."""
        if self.model == "fan-bicubic":
            return self.detector.predict(outputs)["quarter"]
        coords, _ = ops.decode(outputs[-1].detach().float(), "quarter")
        return self.to_hr(coords)

    def to_hr(self, points: Tensor) -> Tensor:
        """Points in the network's pixels to the high-resolution face's (pixel centres kept)."""
        return (points + 0.5) * (self.hr_size / self.net_size) - 0.5

    def train(self, mode: bool = True) -> "SHT":
        super().train(mode)
        if self.phi is not None:
            self.phi.eval()  # frozen, batch norm included
        return self

    def take_perceptual(self) -> None:
        """Freeze a copy of the landmark stream's first conv-BN-ReLU as FPTN's phi (the module docstring)."""
        self.phi = copy.deepcopy(self.detector.stem[:3]).eval().requires_grad_(False)


def _dh_loss(net: SHT, cfg: SHTConfig, outputs: Any, hallucinated: Optional[Tensor], v: dict[str, Tensor]
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """L_DH (L'_DH, Eq. 10, for the unlabelled views), or FAN's own loss for ``fan-bicubic``."""
    if net.model == "fan-bicubic":
        loss = net.detector.loss(outputs, {"landmarks": net.to_hr(v["landmarks"])})
        return loss, {"heatmap": loss}
    kp, weights = _heatmap_targets(v)
    gamma = cfg.gamma if kp is not None else (0.0, *cfg.gamma[1:])
    return dhln_loss(outputs, hallucinated, v["face"], kp, cfg.sigma, gamma, weights)


def _transfer(net: SHT, cfg: SHTConfig, faces: Tensor, maps: Tensor, targets: Tensor
              ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """FPTN between the two views of each pair, both ways: view j's ``faces`` and ``maps`` and view k's maps
    generate view k, compared with ``targets`` (view k's true face). (generator loss, discriminator loss,
    terms) of ``fptn_losses``."""
    target_maps = _partner(maps)
    generated = net.fptn(faces, maps, target_maps)
    return fptn_losses(faces, target_maps, _partner(targets), generated, net.appearance, net.shape,
                       net.phi if cfg.perceptual == "landmark" else None, cfg.lam)


def _step(net: SHT, cfg: SHTConfig, stage: str, v: dict[str, Tensor]) -> tuple[Tensor, Optional[Tensor],
                                                                              dict[str, float]]:
    """(generator-side loss, discriminator loss or None, logged terms) of one batch of views."""
    if stage == "fptn":  # FPTN on the ground-truth heatmaps and faces
        maps = ops.render_gaussian(v["landmarks"], (cfg.net_size,) * 2, cfg.sigma)
        g, d, terms = _transfer(net, cfg, v["face"], maps, v["face"])
        return g, d, _logged(terms)
    outputs, hallucinated = net(v)
    loss, terms = _dh_loss(net, cfg, outputs, hallucinated, v)
    if stage == "dhln":
        return loss, None, _logged(terms)
    g, d, pt = _transfer(net, cfg, hallucinated, outputs[-1], v["face"])
    return loss + g, d, {**_logged(terms), **_logged(pt, "fptn_")}


def _logged(terms: dict[str, Tensor], prefix: str = "") -> dict[str, float]:
    return {prefix + k: t.detach().item() for k, t in terms.items()}


def _stage_data(stage: str, train: Dataset, unlabelled: Optional[Dataset]) -> Dataset:
    return ConcatDataset([train, unlabelled]) if stage == "weak" and unlabelled is not None else train


def _optimizers(net: SHT, cfg: SHTConfig, stage: str, steps: int) -> tuple[list, list]:
    """(optimizers, schedules) of a stage: Adam on what it trains (the discriminators with betas (0.5, 0.999)
    as GANs usually are) at the stage's learning rate, cosine decay to 0 over the stage."""
    if stage == "dhln":
        groups = [list(net.detector.parameters())]
    elif stage == "fptn":
        groups = [list(net.fptn.parameters())]
    else:
        groups = [list(net.detector.parameters()) + list(net.fptn.parameters())]
    lr = cfg.lr if stage in ("dhln", "fptn") else cfg.finetune_lr
    optimizers = [torch.optim.Adam(groups[0], lr)]
    if stage != "dhln":
        optimizers.append(torch.optim.Adam(list(net.appearance.parameters()) + list(net.shape.parameters()), lr,
                                           betas=(0.5, 0.999)))
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1))))
                 for o in optimizers]
    return optimizers, schedules


def _train_stage(net: SHT, cfg: SHTConfig, stage: str, index: int, epochs: int, data: Dataset,
                 device: torch.device) -> dict[str, Any]:
    loader = DataLoader(data, cfg.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed + 100 * index))
    if len(loader) == 0:
        raise ValueError(f"stage {stage}: {len(data)} training pairs, fewer than one batch of {cfg.batch_size}")
    optimizers, schedules = _optimizers(net, cfg, stage, epochs * len(loader))
    tic, sums, count = time.perf_counter(), {}, 0
    for epoch in range(epochs):
        net.train()
        bar = progress(loader, cfg.progress, f"stage {index + 1} {stage}, epoch {epoch + 1}/{epochs}")
        for step, batch in enumerate(bar):
            v = _views(batch, device)
            loss, d_loss, logged = _step(net, cfg, stage, v)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"stage {stage}: the training loss is {loss.item()} at epoch {epoch + 1}, "
                                         f"step {step + 1}")
            optimizers[0].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[0].step()
            if d_loss is not None:  # its graph holds no generator tensor (fptn_losses detaches them)
                optimizers[1].zero_grad(set_to_none=True)
                d_loss.backward()
                optimizers[1].step()
                logged["discriminator"] = d_loss.detach().item()
            for schedule in schedules:
                schedule.step()
            logged["loss"] = loss.detach().item()
            for k, value in logged.items():
                sums[k] = sums.get(k, 0.0) + value
            count += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4g}")
    return {"stage": stage, "epochs": epochs, "steps": count, "seconds": time.perf_counter() - tic,
            "losses": {k: value / max(count, 1) for k, value in sums.items()}}


@torch.no_grad()
def evaluate_sht(net: SHT, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """The metrics of the module docstring on ``loader``'s pairs (their first view), in the high-resolution
    face's pixels; ``hallucinated`` is None for ``fan-bicubic``."""
    net.eval()
    preds, targets, psnr, ssim, bicubic_psnr, bicubic_ssim = [], [], [], [], [], []
    for batch in loader:
        v = {k: t[:, 0].to(device) for k, t in batch.items() if k != "labelled"}
        outputs, hallucinated = net(v)
        preds.append(net.landmarks(outputs).cpu())
        targets.append(net.to_hr(v["landmarks"]).cpu())
        bicubic = F.interpolate(v["low"], size=net.hr_size, mode="bicubic", align_corners=False)
        bicubic_psnr.append(metrics.psnr(bicubic, v["face"]).cpu())
        bicubic_ssim.append(metrics.ssim(bicubic, v["face"]).cpu())
        if hallucinated is not None:
            psnr.append(metrics.psnr(hallucinated, v["face"]).cpu())
            ssim.append(metrics.ssim(hallucinated, v["face"]).cpu())
    pred, target = torch.cat(preds), torch.cat(targets)
    io = metrics.nme(pred, target, norm="inter_ocular" if target.shape[1] in metrics.EYES else "bbox",
                     reduction="none")
    wid = metrics.nme(pred, target, norm="width", reduction="none")
    result = {"count": len(target), "nme_io": 100 * float(io.nanmean()), "nme_wid": 100 * float(wid.nanmean()),
              "auc": 100 * metrics.auc(io, THRESHOLD), "fr": 100 * metrics.failure_rate(io, THRESHOLD),
              "bicubic_psnr": float(torch.cat(bicubic_psnr).mean()),
              "bicubic_ssim": float(torch.cat(bicubic_ssim).mean())}
    if psnr:
        result.update(psnr=float(torch.cat(psnr).mean()), ssim=float(torch.cat(ssim).mean()))
    return result


def _payload(net: SHT, cfg: SHTConfig, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "sht", "config": asdict(cfg), "num_points": net.num_points, "state": net.state_dict(),
            "history": history}


_SAME_ON_RESUME = ("model", "data", "lr_size", "net_size", "hr_size", "unlabelled", "unlabelled_data", "seed",
                   "model_args", "sigma", "limit_train", "limit_val")


def _read(path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    if checkpoint_kind(ckpt) != "sht":
        raise ValueError(f"{path} is not a checkpoint of the low-resolution models (fastlmk train --model sht, "
                         "dhln or fan-bicubic)")
    return ckpt


def _resume(net: SHT, cfg: SHTConfig) -> list[dict[str, Any]]:
    """Load ``cfg.resume_from`` into ``net``; the history of its completed stages (those run for at least one
    epoch), which are skipped."""
    path = Path(cfg.resume_from)
    ckpt = _read(path)
    for key in _SAME_ON_RESUME:
        if ckpt["config"].get(key) != asdict(cfg).get(key):
            raise ValueError(f"resume: {path} has {key}={ckpt['config'].get(key)!r}, not {asdict(cfg).get(key)!r}")
    if any(k.startswith("phi.") for k in ckpt["state"]):
        net.take_perceptual()
    net.load_state_dict(ckpt["state"])
    return list(ckpt["history"])


def train_sht(cfg: SHTConfig) -> dict[str, Any]:
    """Train ``cfg`` stage by stage; after each stage evaluate on the test pairs and write ``out/STAGE.pt``
    and ``out/last.pt``; at the end ``out/results.json`` and ``out/hallucinated.png`` (hallucinated test
    faces with their landmarks). Returns the results dict."""
    _check(cfg)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    train, unlabelled, test = datasets(cfg)
    num_points = train[0]["landmarks"].shape[1]
    torch.manual_seed(cfg.seed)
    net = SHT(cfg, num_points).to(device)
    test_loader = DataLoader(test, 16)
    out.mkdir(parents=True, exist_ok=True)
    stages = STAGES if cfg.model == "sht" else (cfg.model,)
    print(f"fastlmk train: {cfg.model} ({sum(p.numel() for p in net.parameters()):,} parameters) on {cfg.data}: "
          f"{len(train)} labelled{'' if unlabelled is None else f' + {len(unlabelled)} unlabelled'}"
          f"{' (unused by this model)' if unlabelled is not None and cfg.model != 'sht' else ''} training "
          f"pairs, {len(test)} test faces; {cfg.lr_size} px low-resolution input at {cfg.net_size} px, "
          f"{cfg.hr_size} px faces; stages {', '.join(f'{s} ({e} epochs)' for s, e in zip(stages, cfg.epochs))}; "
          f"{device}", flush=True)
    history = _resume(net, cfg) if cfg.resume_from else []
    for index, (stage, epochs) in enumerate(zip(stages, cfg.epochs)):
        if epochs == 0 or stage in {h["stage"] for h in history}:  # skipped, or completed before resuming
            continue
        if stage == "fptn" and cfg.perceptual == "landmark":
            net.take_perceptual()
        record = _train_stage(net, cfg, "dhln" if stage == "fan-bicubic" else stage, index, epochs,
                              _stage_data(stage, train, unlabelled), device)
        record["stage"] = stage
        record["test"] = evaluate_sht(net, test_loader, device)
        history.append(record)
        print(f"stage {index + 1} {stage}: {record['steps']} steps in {record['seconds']:.0f} s, loss "
              f"{record['losses']['loss']:.4g}; test {_summary(record['test'])}", flush=True)
        save_checkpoint(out / f"{stage}.pt", _payload(net, cfg, history))
        save_checkpoint(out / "last.pt", _payload(net, cfg, history))
    _save_pictures(net, test, device, out / "hallucinated.png")
    summary = {"model": cfg.model, "config": asdict(cfg), "device": str(device),
               "train_seconds": sum(h["seconds"] for h in history), "history": history,
               "final": history[-1]["test"]}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(format_sht(summary["final"], f"{cfg.model} on {cfg.data}, {cfg.lr_size} px input, after stage "
                                         f"{history[-1]['stage']}"), end="")
    print(f"wrote {out / 'results.json'}, {out / 'hallucinated.png'}, {out / 'last.pt'}")
    return summary


def _summary(m: dict[str, Any]) -> str:
    face = f", PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}" if "psnr" in m else ""
    return f"NME_io {m['nme_io']:.3f}%, NME_wid {m['nme_wid']:.3f}%{face}"


def format_sht(m: dict[str, Any], title: str) -> str:
    """The metrics of ``evaluate_sht`` as a markdown table."""
    rows = [f"{title} ({m['count']} test faces; AUC and FR at {100 * THRESHOLD:g}% of the inter-ocular NME; PSNR "
            "and SSIM on Y)", "", "| | NME_io (%) | NME_wid (%) | AUC (%) | FR (%) | PSNR (dB) | SSIM |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| bicubic | | | | | {m['bicubic_psnr']:.2f} | {m['bicubic_ssim']:.4f} |"]
    face = f"{m['psnr']:.2f} | {m['ssim']:.4f}" if "psnr" in m else " | "
    rows.append(f"| model | {m['nme_io']:.3f} | {m['nme_wid']:.3f} | {m['auc']:.2f} | {m['fr']:.2f} | {face} |")
    return "\n".join(rows) + "\n"


@torch.no_grad()
def _save_pictures(net: SHT, test: Dataset, device: torch.device, path: Path) -> None:
    net.eval()
    items = [test[i] for i in range(min(8, len(test)))]
    v = {k: torch.stack([it[k][0] for it in items]).to(device) for k in ("face", "low", "input", "landmarks")}
    outputs, hallucinated = net(v)
    faces = hallucinated if hallucinated is not None else F.interpolate(v["low"], size=net.hr_size, mode="bicubic",
                                                                        align_corners=False)
    pred = net.landmarks(outputs)
    target = net.to_hr(v["landmarks"])
    viz.grid([viz.draw_landmarks(f.clamp(0, 1).cpu(), (p.cpu(), t.cpu()), upscale=max(1, 256 // net.hr_size))
              for f, p, t in zip(faces, pred, target)]).save(path)


def load_sht(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
             ) -> tuple[SHT, SHTConfig, dict[str, Any]]:
    """The networks of an SHT checkpoint (eval mode, on ``device``), its config and the checkpoint dict."""
    ckpt = _read(Path(path))
    raw = dict(ckpt["config"])
    raw.update(epochs=tuple(raw["epochs"]), gamma=tuple(raw["gamma"]), lam=tuple(raw["lam"]))
    cfg = SHTConfig(**raw)
    net = SHT(cfg, ckpt["num_points"])
    if any(k.startswith("phi.") for k in ckpt["state"]):
        net.take_perceptual()
    net.load_state_dict(ckpt["state"])
    return net.to(device).eval(), cfg, ckpt


def eval_loader(cfg: SHTConfig, data: Optional[str] = None, limit_n: Optional[int] = None) -> DataLoader:
    """The test pairs of ``cfg`` (or of the dataset ``data``), as training evaluated them."""
    pairs = _pairs(cfg, data or cfg.data, "test", True, False)
    return DataLoader(limit(pairs, limit_n if limit_n is not None else cfg.limit_val, "--limit"), 16)


@torch.no_grad()
def predict_sht(net: SHT, image: Union[str, os.PathLike]) -> tuple[Tensor, Tensor, Tensor]:
    """(landmarks (K, 2) in the image's pixels, the hallucinated face (3, hr, hr) in [0, 1], the landmarks in
    its pixels) of a low-resolution face image: its centred square reduced (bicubic, antialiased) to the
    low-resolution size, then resized to the network's, as the training pairs are."""
    pixels = load_image(str(image)).float() / 255
    h, w = pixels.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = pixels[:, top:top + side, left:left + side][None]
    low = F.interpolate(square, size=net.lr_size, mode="bicubic", align_corners=False, antialias=side > net.lr_size)
    x = F.interpolate(low, size=net.net_size, mode="bicubic", align_corners=False)  # as HallucinationPairs
    device = next(net.parameters()).device
    outputs, hallucinated = net({"input": x.to(device), "low": low.to(device)})
    if hallucinated is None:
        hallucinated = F.interpolate(low, size=net.hr_size, mode="bicubic", align_corners=False)
    on_face = net.landmarks(outputs)[0].cpu()
    scale = side / net.hr_size
    in_image = (on_face + 0.5) * scale - 0.5 + torch.tensor([left, top], dtype=on_face.dtype)
    return in_image, hallucinated[0].clamp(0, 1).cpu(), on_face
