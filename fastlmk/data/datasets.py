"""Landmark datasets: annotations -> square crops (the sample dict of ``fastlmk.models.base``), and
:func:`open_dataset`, which opens a dataset from a ``"kind:ROOT"`` spec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .annotations import Annotation, load_image, read_300w, read_cofw, read_csv, read_json, read_wflw
from .transforms import FLIP_PERMUTATIONS, Augment, apply_affine, box_from_landmarks, crop_affine, invert_affine, \
    warp

__all__ = ["LandmarkDataset", "open_dataset", "DATASET_KINDS"]

DATASET_KINDS = ("synthetic", "wflw", "300w", "cofw", "csv", "json")
SPLITS = ("train", "test")


class LandmarkDataset(Dataset):
    """Square ``size`` crops of ``annotations``: the box (the annotation's, else the landmarks') enlarged by
    ``scale`` (:func:`crop_affine`), then the optional ``augment`` similarity, composed into one affine so the
    image is warped once from the original. Items are dicts: ``"image"`` float32 (3, S, S) in [0, 1],
    ``"landmarks"`` float32 (K, 2) crop pixels (NaN = missing; permuted when flipped), ``"affine"`` float64
    (2, 3) crop -> original pixels (the exact inverse of the warp), ``"index"`` int64.

    Augmentation draws from a generator seeded by ``(seed, epoch, index)`` (:meth:`set_epoch`), so an item
    does not depend on DataLoader workers or the DDP rank.
    """

    def __init__(self, annotations: Sequence[Annotation], size: int = 256, scale: float = 1.25,
                 augment: Optional[Augment] = None, seed: int = 0):
        if len(annotations) == 0:
            raise ValueError("annotations is empty")
        if size <= 0 or scale <= 0 or seed < 0:
            raise ValueError(f"need size > 0, scale > 0 and seed >= 0, got size={size}, scale={scale}, seed={seed}")
        k = annotations[0].landmarks.shape[0]
        for a in annotations:
            if a.landmarks.shape != (k, 2):
                raise ValueError(f"{a.source}: landmarks have shape {a.landmarks.shape}, expected ({k}, 2) "
                                 f"as in {annotations[0].source}")
        self.permutation = augment.permutation(k) if augment is not None and augment.flip > 0 else None
        self.annotations = annotations
        self.size, self.scale, self.augment, self.seed = size, scale, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.annotations)

    def generator(self, index: int) -> torch.Generator:
        """The augmentation generator of item ``index`` in the current epoch."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ann = self.annotations[index]
        box = ann.box
        if box is None:
            try:
                box = box_from_landmarks(ann.landmarks)
            except ValueError:
                raise ValueError(f"{ann.source}: no box and no finite landmark to take one from") from None
        total = crop_affine(box, self.size, self.scale)
        flipped = False
        if self.augment is not None:
            jitter, flipped = self.augment.sample_affine(self.size, self.generator(index))
            total = jitter @ np.vstack([total, [0.0, 0.0, 1.0]])
        landmarks = apply_affine(total, ann.landmarks)
        if flipped:
            landmarks = landmarks[self.permutation]
        return {
            "image": warp(load_image(ann.image, ann.source), total, self.size),
            "landmarks": torch.from_numpy(landmarks).to(torch.float32),
            "affine": torch.from_numpy(invert_affine(total)),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def open_dataset(spec: str, split: str, *, size: int, augment: bool = False, seed: int = 0) -> Dataset:
    """The ``split`` ("train" or "test") of the dataset named by ``spec``:

    - ``"synthetic"`` or ``"synthetic:TRAIN[,TEST]"`` (face counts; default 2000, 200):
      :class:`~fastlmk.data.synthetic.SyntheticFaces` (``augment`` is ignored: its poses are already random);
    - ``"wflw:ROOT"``: ``ROOT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{split}.txt``,
      images under ``ROOT/WFLW_images/``;
    - ``"300w:ROOT"``: ``.pts`` files with their images (same stem) anywhere under ``ROOT/{split}/``;
    - ``"cofw:ROOT"``: ``ROOT/COFW_{split}_color.mat``;
    - ``"csv:PATH"`` / ``"json:PATH"``: ``PATH/{split}.csv`` / ``PATH/{split}.json``, image paths relative to
      ``PATH``.

    ``augment=True`` (meant for training) flips (where the landmark count has a permutation), rotates within
    +-30 degrees, zooms by 0.9-1.1 and shifts by up to 5% of the crop.
    """
    kind, _, root = spec.partition(":")
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r} in spec {spec!r}; choose one of "
                         f"{', '.join(DATASET_KINDS)} (as 'synthetic' or 'kind:ROOT')")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if kind == "synthetic":
        from . import synthetic  # looked up at the call (tests stub the class)
        counts = root.split(",") if root else []
        if len(counts) > 2 or not all(c.isdigit() and int(c) > 0 for c in counts):
            raise ValueError(f"spec {spec!r}: 'synthetic' takes optional face counts, 'synthetic:TRAIN[,TEST]'")
        count = int(counts[SPLITS.index(split)]) if len(counts) > SPLITS.index(split) else None
        return synthetic.SyntheticFaces(split, count=count, size=size, seed=seed)
    if not root:
        raise ValueError(f"spec {spec!r} needs a path: '{kind}:ROOT'")
    base = Path(root)
    if kind == "wflw":
        annotations = read_wflw(base / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
                                / f"list_98pt_rect_attr_{split}.txt", base / "WFLW_images")
    elif kind == "300w":
        annotations = read_300w(base / split)
    elif kind == "cofw":
        annotations = read_cofw(base / f"COFW_{split}_color.mat")
    elif kind == "csv":
        annotations = read_csv(base / f"{split}.csv")
    else:
        annotations = read_json(base / f"{split}.json")
    jitter = None
    if augment:
        flip = 0.5 if annotations[0].landmarks.shape[0] in FLIP_PERMUTATIONS else 0.0
        jitter = Augment(flip=flip, rotation=30.0, scale=(0.9, 1.1), translation=0.05)
    return LandmarkDataset(annotations, size=size, augment=jitter, seed=seed)
