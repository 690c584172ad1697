"""Training, evaluation and prediction for ``fastlmk.models`` (the engine of ``fastlmk train``, ``eval`` and
``predict``).

One process or ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU; each rank trains on its
shard of every epoch, rank 0 evaluates, writes checkpoints, results and pictures). Evaluation maps every
prediction and target back to the original image (``batch["affine"]``) and reports, per decoder of the
model, NME (``fastlmk.metrics``, inter-ocular for the 68/98/29/19-point layouts, else bbox), AUC and failure
rate at ``threshold``, next to the NME of predicting the mean shape of the evaluation set for every image.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .. import metrics, reference, viz
from ..data import apply_affine, crop_affine, invert_affine, load_image, open_dataset, warp
from .base import LandmarkModel
from .zoo import build

__all__ = ["TrainConfig", "train", "evaluate", "load_checkpoint", "predict_image", "format_results",
           "resolve_device", "limit"]

THRESHOLD = 0.1  # AUC / FR threshold on the NME (WFLW's 10%)


@dataclass
class TrainConfig:
    """Everything ``fastlmk train`` takes. ``input_size`` None: 128 on the synthetic set, else 256.
    ``model_args`` go to the model's constructor (e.g. ``channels``, ``stacks``, ``depth``).
    ``limit_train``/``limit_val`` keep the first N samples of each split (reported, never silent)."""

    model: str = "fan"
    data: str = "synthetic"
    out: str = "runs/fan"
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-3
    input_size: Optional[int] = None
    model_args: dict[str, Any] = field(default_factory=dict)
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    limit_train: Optional[int] = None
    limit_val: Optional[int] = None
    progress: bool = True


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"`` (device ``local_rank``) as a device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda': no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


def limit(dataset: Dataset, n: Optional[int], what: str) -> Dataset:
    """The first ``n`` samples of ``dataset`` (all when ``n`` is None); ``what`` names ``n`` in errors."""
    if n is None:
        return dataset
    if n <= 0:
        raise ValueError(f"{what} must be positive, got {n}")
    return Subset(dataset, range(min(n, len(dataset))))


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)


def _to_original(points: Tensor, affine: Tensor) -> Tensor:
    """``affine (N, 2, 3) @ (x, y, 1)`` for points (N, K, 2), in float64."""
    return reference.decode.apply_affine(points.double(), affine)


def _scores(pred: Tensor, target: Tensor, norm: str) -> dict[str, float]:
    errors = metrics.nme(pred, target, norm=norm, reduction="none")
    return {"nme": 100 * float(errors.nanmean()), "auc": 100 * metrics.auc(errors, THRESHOLD),
            "fr": 100 * metrics.failure_rate(errors, THRESHOLD)}


@torch.no_grad()
def evaluate(model: LandmarkModel, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """NME (%), AUC and FR (% at ``THRESHOLD``) of each of the model's decoders on ``loader``, and of the mean
    shape (the evaluation set's mean landmarks in input pixels, predicted for every image), all in original
    image pixels. Also returns the first images with their predictions (crop pixels) for pictures."""
    model.eval()
    preds: dict[str, list[Tensor]] = {name: [] for name in model.decoders}
    targets, affines, shown = [], [], []
    for batch in loader:
        decoded = model.predict(model(batch["image"].to(device)))
        for name in model.decoders:
            preds[name].append(decoded[name].cpu())
        targets.append(batch["landmarks"])
        affines.append(batch["affine"])
        if len(shown) < 16:
            shown += list(zip(batch["image"], decoded[model.decoders[0]].cpu(), batch["landmarks"]))[:16 - len(shown)]
    target, affine = torch.cat(targets), torch.cat(affines)
    norm = "inter_ocular" if target.shape[1] in metrics.EYES else "bbox"
    original = _to_original(target, affine)
    results = {name: _scores(_to_original(torch.cat(p), affine), original, norm) for name, p in preds.items()}
    mean_shape = target.double().nanmean(0, keepdim=True).expand_as(target)
    results["mean-shape"] = _scores(_to_original(mean_shape, affine), original, norm)
    return {"metrics": results, "count": len(target), "norm": norm, "shown": shown}


def format_results(result: dict[str, Any], title: str) -> str:
    """The metrics of ``evaluate`` as a markdown table."""
    lines = [f"{title} ({result['count']} images, NME normalised by {result['norm']}, AUC and FR at "
             f"{100 * THRESHOLD:g}%)", "", "| decoder | NME (%) | AUC (%) | FR (%) |", "| --- | ---: | ---: | ---: |"]
    for name, m in result["metrics"].items():
        lines.append(f"| {name} | {m['nme']:.3f} | {m['auc']:.2f} | {m['fr']:.2f} |")
    return "\n".join(lines) + "\n"


def _save_pictures(shown: list, path: Path) -> None:
    upscale = max(1, 256 // shown[0][0].shape[-1])
    viz.grid([viz.draw_landmarks(img, (pred, target), upscale=upscale) for img, pred, target in shown]).save(path)


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint


def load_checkpoint(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
                    ) -> tuple[LandmarkModel, dict[str, Any]]:
    """The model of a ``fastlmk train`` checkpoint (in eval mode, on ``device``) and the checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build(ckpt["model"], **ckpt["config"])
    model.load_state_dict(ckpt["state"])
    return model.to(device).eval(), ckpt


def _any(flag: bool, world: int) -> bool:
    """True on every rank when ``flag`` is true on any (so that all ranks stop together)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t, dist.ReduceOp.MAX)
    return bool(t.item())


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; writes ``out/last.pt`` (every epoch), ``out/best.pt`` (best
    validation NME of the model's own decoder), ``out/results.json`` and ``out/predictions.png``; returns
    the results dict. ``cfg.resume`` continues from ``out/last.pt`` (its model, optimizer, schedule, epoch
    and history). A non-finite loss stops training with an error naming the epoch and step."""
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)
    if world == 1:
        return _train(cfg, 0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # DistributedDataParallel imports torch._dynamo, which imports torch.distributed.nn, whose functions take
    # group=group.WORLD as a default argument: imported after init_process_group, that default would hold the
    # process group for good, so that destroy_process_group could not free it and its gloo threads (the TCP
    # loop and the workers) would still run while the interpreter exits, racing the peers' teardown (rank 1
    # aborted: "terminate called without an active exception"). Imported first, the default is None.
    import torch._dynamo  # noqa: F401
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, dist.get_rank(), world, device)
    finally:
        if owner:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    out = Path(cfg.out)
    ckpt = None
    if cfg.resume:
        if not (out / "last.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {out / 'last.pt'}")
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        if ckpt["model"] != cfg.model:
            raise ValueError(f"--resume: {out / 'last.pt'} holds a {ckpt['model']!r} model, not {cfg.model!r}")
        for key, value in [("input_size", cfg.input_size), *cfg.model_args.items()]:
            if value is not None and ckpt["config"].get(key) != value:
                raise ValueError(f"--resume: {out / 'last.pt'} has {key}={ckpt['config'].get(key)}, not {value}")
    size = ckpt["config"]["input_size"] if ckpt else cfg.input_size or \
        (128 if cfg.data.partition(":")[0] == "synthetic" else 256)
    train_set = limit(open_dataset(cfg.data, "train", size=size, augment=True, seed=cfg.seed),
                       cfg.limit_train, "limit_train")
    val_set = limit(open_dataset(cfg.data, "test", size=size, seed=cfg.seed), cfg.limit_val, "limit_val")
    if len(train_set) < cfg.batch_size * world:
        raise ValueError(f"the training set has {len(train_set)} samples, fewer than one batch of "
                         f"{cfg.batch_size} per process x {world} processes")
    num_landmarks = train_set[0]["landmarks"].shape[0]
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    if ckpt is not None:
        if ckpt["config"]["num_landmarks"] != num_landmarks:
            raise ValueError(f"--resume: {out / 'last.pt'} has {ckpt['config']['num_landmarks']} landmarks, "
                             f"{cfg.data} has {num_landmarks}")
        model = build(ckpt["model"], **ckpt["config"])
    else:
        model = build(cfg.model, num_landmarks=num_landmarks, input_size=size, **cfg.model_args)
    model.to(device)
    sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) \
        if world > 1 else None
    order = torch.Generator()
    loader = DataLoader(train_set, cfg.batch_size, shuffle=sampler is None, sampler=sampler, generator=order,
                        num_workers=cfg.workers, drop_last=True, pin_memory=device.type == "cuda")
    val_loader = DataLoader(val_set, cfg.batch_size, num_workers=cfg.workers)
    steps = cfg.epochs * len(loader)
    optimizer = torch.optim.Adam(model.parameters(), cfg.lr)
    warmup = min(100, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine to zero
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * s / steps)))
    history: list[dict[str, Any]] = []
    start, best, elapsed = 0, math.inf, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        start, best, history, elapsed = ckpt["epoch"], ckpt["best"], ckpt["history"], ckpt["elapsed"]
        torch.set_rng_state(ckpt["rng"])
    net = torch.nn.parallel.DistributedDataParallel(model, [device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        print(f"fastlmk train: {cfg.model} ({sum(p.numel() for p in model.parameters()):,} parameters) on "
              f"{cfg.data}: {len(train_set)} training / {len(val_set)} validation images of {size} px, "
              f"{num_landmarks} landmarks; {world} process(es) on {device}, epochs {start + 1}-{cfg.epochs}")
    primary = model.decoders[0]
    result: Optional[dict[str, Any]] = None
    for epoch in range(start, cfg.epochs):
        _set_epoch(train_set, epoch)
        order.manual_seed(cfg.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        tic, total = time.perf_counter(), 0.0
        bar = _progress(loader, cfg.progress and rank == 0, f"epoch {epoch + 1}/{cfg.epochs}")
        for step, batch in enumerate(bar):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = model.loss(net(batch["image"]), batch)
            if _any(not torch.isfinite(loss).item(), world):
                raise FloatingPointError(f"the training loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4g}")
        seconds = time.perf_counter() - tic
        elapsed += seconds
        failed: Optional[BaseException] = None
        if rank == 0:
            try:
                result = evaluate(model, val_loader, device)
                score = result["metrics"][primary]["nme"]
                history.append({"epoch": epoch + 1, "loss": total / len(loader), "seconds": seconds,
                                "step_ms": 1000 * seconds / len(loader), "val": result["metrics"]})
                print(f"epoch {epoch + 1}: loss {total / len(loader):.4g}, validation NME {primary} {score:.3f}% "
                      f"(mean shape {result['metrics']['mean-shape']['nme']:.3f}%), {seconds:.0f} s", flush=True)
                payload = {"model": cfg.model, "config": model.config, "state": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                           "epoch": epoch + 1, "best": min(best, score), "history": history, "elapsed": elapsed,
                           "rng": torch.get_rng_state(), "train_config": asdict(cfg)}
                _save(out / "last.pt", payload)
                if score < best:
                    best = score
                    _save(out / "best.pt", payload)
            except BaseException as exc:  # noqa: BLE001 (re-raised below, after telling the other ranks)
                failed = exc
        if _any(failed is not None, world):  # the other ranks stop too instead of waiting at a collective
            raise failed if failed is not None else RuntimeError("rank 0 failed at the end of the epoch")
    summary: dict[str, Any] = {}
    failed = None
    if rank == 0:
        try:
            if result is None:  # resumed a finished run: evaluate the final weights again
                result = evaluate(model, val_loader, device)
            _save_pictures(result.pop("shown"), out / "predictions.png")
            summary = {"model": cfg.model, "data": cfg.data, "config": model.config, "train": asdict(cfg),
                       "device": str(device), "processes": world, "train_images": len(train_set),
                       "train_seconds": elapsed, "history": history, "final": result}
            (out / "results.json").write_text(json.dumps(summary, indent=2))
            print(format_results(result, f"{cfg.model} on {cfg.data}, validation after epoch {cfg.epochs}"), end="")
            print(f"wrote {out / 'results.json'}, {out / 'predictions.png'}, {out / 'last.pt'}, {out / 'best.pt'}")
        except BaseException as exc:  # noqa: BLE001 (re-raised below, after telling the other ranks)
            failed = exc
    # The last collective: every rank leaves together, once rank 0 is done, and then tears its group down (no
    # rank closes its connections while another still works).
    if _any(failed is not None, world):
        raise failed if failed is not None else RuntimeError("rank 0 failed writing the results")
    return summary


def _progress(loader: DataLoader, show: bool, desc: str) -> Any:
    if not show:
        return loader
    from tqdm import tqdm
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)


@torch.no_grad()
def predict_image(checkpoint: Union[str, os.PathLike], image: Union[str, os.PathLike],
                  box: Optional[tuple[float, float, float, float]] = None, device: str = "cpu",
                  scale: float = 1.25) -> tuple[Tensor, Tensor]:
    """Landmarks (K, 2) of one image in its own pixels, and the image (3, H, W) uint8. ``box``
    ``(x_min, y_min, x_max, y_max)``: the face box (cropped with ``scale`` as in training); None: the whole
    image's centred square (as the synthetic set, whose images are whole frames)."""
    model, _ = load_checkpoint(checkpoint, resolve_device(device))
    pixels = load_image(str(image))
    h, w = pixels.shape[-2:]
    if box is None:
        to_crop = crop_affine(np.array([-0.5, -0.5, w - 0.5, h - 0.5]), model.input_size, scale=1.0)
    else:
        to_crop = crop_affine(np.asarray(box, dtype=np.float64), model.input_size, scale=scale)
    crop = warp(pixels, to_crop, model.input_size)[None].to(next(model.parameters()).device)
    landmarks = model.predict(model(crop))[model.decoders[0]].cpu()[0]
    return torch.from_numpy(apply_affine(invert_affine(to_crop), landmarks.double().numpy())), pixels
