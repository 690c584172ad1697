"""Landmark data: annotation readers (WFLW, 300W, COFW, CSV, JSON), crops, augmentation and datasets.

Landmarks are ``(x, y)`` pixel coordinates with pixel ``(row i, col j)`` centred at ``(x=j, y=i)`` (0-based;
1-based formats are converted on reading), NaN where missing. Dataset items are the dicts documented in
``fastlmk.models.base``; :func:`open_dataset` opens one from a spec such as ``"wflw:/data/WFLW"``.
"""

from .annotations import Annotation, load_image, read_300w, read_cofw, read_csv, read_json, read_pts, read_wflw
from .datasets import DATASET_KINDS, LandmarkDataset, open_dataset
from .hallucination import HallucinationPairs, split_labelled
from .synthetic import SyntheticFaces
from .transforms import (FLIP_PERMUTATIONS, Augment, apply_affine, box_from_landmarks, check_box, crop_affine,
                         invert_affine, warp)

__all__ = ["Annotation", "load_image", "read_wflw", "read_pts", "read_300w", "read_cofw", "read_csv", "read_json",
           "FLIP_PERMUTATIONS", "Augment", "apply_affine", "box_from_landmarks", "check_box", "crop_affine",
           "invert_affine", "warp", "DATASET_KINDS", "LandmarkDataset", "open_dataset", "HallucinationPairs",
           "split_labelled", "SyntheticFaces"]
