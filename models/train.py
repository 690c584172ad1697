"""The trainer of ``fastlmk.models`` (the engine of ``fastlmk train``).

One process or ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU; each rank trains on its
shard of every epoch, rank 0 evaluates with ``fastlmk.models.evaluation``, writes checkpoints, results and
pictures).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .. import viz
from ..data import open_dataset
from .base import LandmarkModel
from .evaluation import (evaluate, format_results, limit, progress, read_checkpoint, resolve_device,
                         save_checkpoint)
from .zoo import build

__all__ = ["TrainConfig", "train"]


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


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)


def _save_pictures(shown: list, path: Path) -> None:
    upscale = max(1, 256 // shown[0][0].shape[-1])
    viz.grid([viz.draw_landmarks(img, (pred, target), upscale=upscale) for img, pred, target in shown]).save(path)


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


def _resume_checkpoint(cfg: TrainConfig, out: Path) -> Optional[dict[str, Any]]:
    """``out/last.pt`` when ``cfg.resume``, checked against ``cfg``; else None."""
    if not cfg.resume:
        return None
    try:
        ckpt = read_checkpoint(out / "last.pt")
    except (OSError, ValueError) as exc:
        raise type(exc)(f"--resume: {exc}") from None
    if ckpt.get("model") != cfg.model:
        raise ValueError(f"--resume: {out / 'last.pt'} holds a {ckpt.get('model', ckpt.get('kind'))!r} model, not {cfg.model!r}")
    for key, value in [("input_size", cfg.input_size), *cfg.model_args.items()]:
        if value is not None and ckpt["config"].get(key) != value:
            raise ValueError(f"--resume: {out / 'last.pt'} has {key}={ckpt['config'].get(key)}, not {value}")
    return ckpt


def _build_model(cfg: TrainConfig, ckpt: Optional[dict[str, Any]], num_landmarks: int, size: int,
                 out: Path) -> LandmarkModel:
    """The model of the checkpoint being resumed (its weights are loaded later, with the optimizer's), or a
    new one, built after seeding so that every rank starts from the same weights."""
    torch.manual_seed(cfg.seed)
    if ckpt is None:
        return build(cfg.model, num_landmarks=num_landmarks, input_size=size, **cfg.model_args)
    if ckpt["config"]["num_landmarks"] != num_landmarks:
        raise ValueError(f"--resume: {out / 'last.pt'} has {ckpt['config']['num_landmarks']} landmarks, "
                         f"{cfg.data} has {num_landmarks}")
    return build(ckpt["model"], **ckpt["config"])


def _train_epoch(model: LandmarkModel, net: torch.nn.Module, loader: DataLoader, optimizer, schedule,
                 device: torch.device, world: int, epoch: int, show: bool, desc: str) -> float:
    """One epoch of steps; the mean loss. A non-finite loss on any rank stops every rank."""
    net.train()
    total = 0.0
    bar = progress(loader, show, desc)
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
    return total / len(loader)


def _on_rank0(rank: int, world: int, what: str, fn) -> Any:
    """``fn()`` on rank 0, its failure re-raised on every rank (the others stop instead of waiting at a
    collective); the value on rank 0, None elsewhere."""
    failed: Optional[BaseException] = None
    value = None
    if rank == 0:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 (re-raised below, after telling the other ranks)
            failed = exc
    if _any(failed is not None, world):
        raise failed if failed is not None else RuntimeError(f"rank 0 failed {what}")
    return value


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    out = Path(cfg.out)
    ckpt = _resume_checkpoint(cfg, out)
    size = ckpt["config"]["input_size"] if ckpt else cfg.input_size or \
        (128 if cfg.data.partition(":")[0] == "synthetic" else 256)
    train_set = limit(open_dataset(cfg.data, "train", size=size, augment=True, seed=cfg.seed),
                      cfg.limit_train, "limit_train")
    val_set = limit(open_dataset(cfg.data, "test", size=size, seed=cfg.seed), cfg.limit_val, "limit_val")
    if len(train_set) < cfg.batch_size * world:
        raise ValueError(f"the training set has {len(train_set)} samples, fewer than one batch of "
                         f"{cfg.batch_size} per process x {world} processes")
    num_landmarks = train_set[0]["landmarks"].shape[0]
    model = _build_model(cfg, ckpt, num_landmarks, size, out).to(device)
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
        tic = time.perf_counter()
        loss = _train_epoch(model, net, loader, optimizer, schedule, device, world, epoch,
                            cfg.progress and rank == 0, f"epoch {epoch + 1}/{cfg.epochs}")
        seconds = time.perf_counter() - tic
        elapsed += seconds

        def checkpoint() -> dict[str, Any]:
            nonlocal best
            evaluated = evaluate(model, val_loader, device)
            score = evaluated["metrics"][primary]["nme"]
            history.append({"epoch": epoch + 1, "loss": loss, "seconds": seconds,
                            "step_ms": 1000 * seconds / len(loader), "val": evaluated["metrics"]})
            print(f"epoch {epoch + 1}: loss {loss:.4g}, validation NME {primary} {score:.3f}% "
                  f"(mean shape {evaluated['metrics']['mean-shape']['nme']:.3f}%), {seconds:.0f} s", flush=True)
            payload = {"model": cfg.model, "config": model.config, "state": model.state_dict(),
                       "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                       "epoch": epoch + 1, "best": min(best, score), "history": history, "elapsed": elapsed,
                       "rng": torch.get_rng_state(), "train_config": asdict(cfg)}
            save_checkpoint(out / "last.pt", payload)
            if score < best:
                best = score
                save_checkpoint(out / "best.pt", payload)
            return evaluated

        result = _on_rank0(rank, world, "at the end of the epoch", checkpoint)

    def finish() -> dict[str, Any]:
        final = result if result is not None else evaluate(model, val_loader, device)  # a finished run resumed
        _save_pictures(final.pop("shown"), out / "predictions.png")
        summary = {"model": cfg.model, "data": cfg.data, "config": model.config, "train": asdict(cfg),
                   "device": str(device), "processes": world, "train_images": len(train_set),
                   "train_seconds": elapsed, "history": history, "final": final}
        (out / "results.json").write_text(json.dumps(summary, indent=2))
        print(format_results(final, f"{cfg.model} on {cfg.data}, validation after epoch {cfg.epochs}"), end="")
        print(f"wrote {out / 'results.json'}, {out / 'predictions.png'}, {out / 'last.pt'}, {out / 'best.pt'}")
        return summary

    # The last collective: every rank leaves together, once rank 0 is done, and then tears its group down (no
    # rank closes its connections while another still works).
    return _on_rank0(rank, world, "writing the results", finish) or {}
