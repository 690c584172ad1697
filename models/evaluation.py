"""Evaluation, checkpoints and prediction for ``fastlmk.models``, shared by the trainer and the ``fastlmk eval`` and
``predict`` commands.

Evaluation maps every prediction and target back to the original image (``batch["affine"]``) and reports, per
decoder of the model, NME (``fastlmk.metrics``, inter-ocular for the 68/98/29/19-point layouts, else bbox), AUC
and failure rate at ``THRESHOLD``, next to the NME of predicting the mean shape of the evaluation set for every
image. A checkpoint is a ``torch.save`` dict of plain data (model name, constructor config, state dict), loaded
with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from .. import metrics, reference
from ..data import apply_affine, check_box, crop_affine, invert_affine, load_image, warp
from .base import LandmarkModel
from .zoo import build

__all__ = ["THRESHOLD", "checkpoint_kind", "evaluate", "format_results", "limit", "load_checkpoint", "predict_image",
           "progress", "read_checkpoint", "resolve_device", "save_checkpoint"]

THRESHOLD = 0.1  # AUC / FR threshold on the NME (WFLW's 10%)


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


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save(payload, path)`` through a temporary file: a crash mid-write never leaves a truncated
    checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def progress(loader: DataLoader, show: bool, desc: str) -> Any:
    """``loader`` wrapped in a tqdm progress bar when ``show``."""
    if not show:
        return loader
    from tqdm import tqdm
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The dict a ``fastlmk train`` run saved at ``path`` (either kind: ``"sht"`` for the low-resolution models,
    ``"heatmap"`` for the others, told by :func:`checkpoint_kind`). A missing file raises ``FileNotFoundError``;
    anything else that is not such a checkpoint (another file type, a truncated or foreign ``.pt``) raises a
    one-line ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (another file type), EOFError (empty), RuntimeError (truncated zip)
        raise ValueError(f"{path} is not a fastlmk checkpoint (torch.load: {type(exc).__name__})") from None
    need = {"kind", "config", "state"} if isinstance(ckpt, dict) and ckpt.get("kind") == "sht" else \
        {"model", "config", "state"}
    if not isinstance(ckpt, dict) or not need <= ckpt.keys():
        raise ValueError(f"{path} is not a fastlmk checkpoint (a dict with {', '.join(sorted(need))}, written by "
                         "fastlmk train)")
    return ckpt


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """``"sht"`` for a checkpoint of the low-resolution models (``fastlmk.models.sht_train``), else
    ``"heatmap"``."""
    return "sht" if ckpt.get("kind") == "sht" else "heatmap"


def load_checkpoint(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
                    ) -> tuple[LandmarkModel, dict[str, Any]]:
    """The model of a ``fastlmk train`` checkpoint (in eval mode, on ``device``) and the checkpoint dict."""
    ckpt = read_checkpoint(path)
    if checkpoint_kind(ckpt) != "heatmap":
        raise ValueError(f"{path} is a checkpoint of the low-resolution models: load it with "
                         "fastlmk.models.sht_train.load_sht")
    model = build(ckpt["model"], **ckpt["config"])
    model.load_state_dict(ckpt["state"])
    return model.to(device).eval(), ckpt


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
        to_crop = crop_affine(check_box(box, w, h), model.input_size, scale=scale)
    crop = warp(pixels, to_crop, model.input_size)[None].to(next(model.parameters()).device)
    landmarks = model.predict(model(crop))[model.decoders[0]].cpu()[0]
    return torch.from_numpy(apply_affine(invert_affine(to_crop), landmarks.double().numpy())), pixels
