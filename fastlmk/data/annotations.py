"""Annotation readers for WFLW, 300W (iBUG ``.pts``), COFW, and plain CSV / JSON files.

Every reader returns ``list[Annotation]`` with landmarks ``(K, 2)`` float64 ``(x, y)`` in the library
convention: 0-based, pixel ``(row i, col j)`` centred at ``(x=j, y=i)``, NaN for a missing landmark (both
coordinates). 1-based formats (``.pts``, COFW) are shifted by -1. Malformed input raises ``ValueError`` naming
the file and line (or record), a missing path ``FileNotFoundError``; no record is ever skipped.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["Annotation", "load_image", "read_wflw", "read_pts", "read_300w", "read_cofw", "read_csv",
           "read_json"]

PathLike = Union[str, Path]
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
PREFERRED_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Annotation:
    """One face: ``image`` a path or an HxWx3 uint8 array (formats that embed images), ``landmarks`` (K, 2)
    float64 0-based pixel centres (NaN = missing), ``box`` (4,) ``x_min, y_min, x_max, y_max`` or None,
    ``attributes`` integer flags, ``source`` where it came from (``"file:line"`` or ``"file[index]"``)."""

    image: Union[str, np.ndarray]
    landmarks: np.ndarray
    box: Optional[np.ndarray] = None
    attributes: dict[str, int] = field(default_factory=dict)
    source: str = ""


# ------------------------------------------------------------------------------------------------- helpers

def _existing(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return p


def _number(token: Optional[str], where: str) -> float:
    """A float; an empty cell (or None) is NaN."""
    if token is None or token.strip() == "":
        return float("nan")
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{where}: not a number: {token!r}") from None


def _landmarks(values: Any, where: str) -> np.ndarray:
    """(K, 2) float64 (K >= 1) with both coordinates NaN where either is non-finite."""
    pts = np.array(values, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        raise ValueError(f"{where}: no landmarks")
    pts[~np.isfinite(pts).all(axis=1)] = np.nan
    return pts


def _box(values: Sequence[float], where: str) -> np.ndarray:
    box = np.array(values, dtype=np.float64)
    if not (np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"{where}: invalid box (x_min, y_min, x_max, y_max) = {box.tolist()}")
    return box


def _same_count(annotations: list[Annotation], path: PathLike) -> list[Annotation]:
    """Non-empty and one landmark count throughout (the first differing record is named)."""
    if not annotations:
        raise ValueError(f"{path}: no annotations")
    k = annotations[0].landmarks.shape[0]
    for a in annotations:
        if a.landmarks.shape[0] != k:
            raise ValueError(f"{a.source}: expected {k} landmarks (as in {annotations[0].source}), "
                             f"got {a.landmarks.shape[0]}")
    return annotations


def _rgb(array: np.ndarray, where: str) -> np.ndarray:
    """HxW, HxWx1 or HxWx3 uint8 -> HxWx3 uint8."""
    if array.dtype != np.uint8:
        raise ValueError(f"{where}: image must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"{where}: image must be HxW or HxWx3, got shape {array.shape}")
    return np.ascontiguousarray(np.broadcast_to(array, (*array.shape[:2], 3)))


def load_image(image: Union[PathLike, np.ndarray], source: str = "") -> Tensor:
    """uint8 (3, H, W) from a path (read with Pillow, converted to RGB) or an HxW / HxWx3 uint8 array.
    A missing file raises ``FileNotFoundError``, an unreadable one ``ValueError``, both naming the file
    and ``source`` (the annotation's origin)."""
    where = f"{source}: " if source else ""
    if isinstance(image, np.ndarray):
        array = _rgb(image, source or "image")
    else:
        try:
            from PIL import Image
        except ImportError:
            raise ImportError("reading image files needs Pillow (pip install pillow)") from None
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{where}image not found: {path}")
        try:
            with Image.open(path) as im:
                array = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise ValueError(f"{where}cannot read image {path}: {err}") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------- WFLW

def read_wflw(path: PathLike, image_root: Optional[PathLike] = None) -> list[Annotation]:
    """WFLW list file: per line 196 floats (98 x, y pairs, 0-based), the box ``x_min y_min x_max y_max``,
    6 attribute flags (pose, expression, illumination, make-up, occlusion, blur) and the image path
    relative to ``image_root`` (default: the list file's folder); 207 whitespace-separated fields."""
    path = _existing(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        if len(fields) != 207:
            raise ValueError(f"{where}: expected 207 fields, got {len(fields)}")
        numbers = [_number(t, where) for t in fields[:200]]
        try:
            flags = [int(t) for t in fields[200:206]]
        except ValueError:
            raise ValueError(f"{where}: attribute flags must be integers, got {fields[200:206]}") from None
        out.append(Annotation(str(root / fields[206]), _landmarks(numbers[:196], where), _box(numbers[196:], where),
                              dict(zip(WFLW_ATTRIBUTES, flags)), where))
    return _same_count(out, path)


# ----------------------------------------------------------------------------------------------- 300W .pts

def read_pts(path: PathLike) -> np.ndarray:
    """One iBUG ``.pts`` file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``) as (N, 2)
    float64 0-based landmarks (the file's 1-based coordinates minus 1)."""
    path = _existing(path)
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i][1] != "{":
        n, text = lines[i]
        key, sep, value = text.partition(":")
        if not sep:
            raise ValueError(f"{path}:{n}: expected 'key: value' or '{{', got {text!r}")
        header[key.strip()] = value.strip()
        i += 1
    if i == len(lines):
        raise ValueError(f"{path}: missing '{{'")
    try:
        count = int(header["n_points"])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: missing or invalid 'n_points' in the header") from None
    rows = []
    for n, text in lines[i + 1:]:
        if text == "}":
            break
        tokens = text.split()
        if len(tokens) != 2:
            raise ValueError(f"{path}:{n}: expected 2 coordinates, got {len(tokens)}")
        rows.append([_number(t, f"{path}:{n}") for t in tokens])
    else:
        raise ValueError(f"{path}: missing '}}'")
    if len(rows) != count:
        raise ValueError(f"{path}: n_points is {count} but {len(rows)} points are listed")
    return _landmarks(rows, str(path)) - 1.0


def image_suffixes() -> tuple[str, ...]:
    """The file suffixes of every image format Pillow opens, lower case: .jpg, .jpeg and .png first (the
    preferred image when a stem has several), then the rest sorted."""
    from PIL import Image
    Image.init()  # registers every plugin's extensions
    opened = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return PREFERRED_SUFFIXES + tuple(sorted(opened - set(PREFERRED_SUFFIXES)))


def read_300w(root: PathLike) -> list[Annotation]:
    """Every ``.pts`` under ``root`` (recursively, sorted), each with the image of the same stem (any format
    Pillow opens, any case; .jpg, .jpeg, .png first when there are several); the box is that of the landmarks
    (``box=None``)."""
    root = _existing(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    suffixes = image_suffixes()
    images: dict[Path, list[Path]] = {}
    for p in files:
        if p.suffix.lower() in suffixes:
            images.setdefault(p.with_suffix(""), []).append(p)
    out = []
    for pts in (p for p in files if p.suffix.lower() == ".pts"):
        found = sorted(images.get(pts.with_suffix(""), []), key=lambda p: suffixes.index(p.suffix.lower()))
        if not found:
            raise FileNotFoundError(f"{pts}: no image {pts.stem}.* beside it in a format Pillow opens")
        out.append(Annotation(str(found[0]), read_pts(pts), source=str(pts)))
    if not out:
        raise ValueError(f"{root}: no .pts files")
    return _same_count(out, root)


# ---------------------------------------------------------------------------------------------------- COFW

def _load_mat(path: Path) -> dict[str, Any]:
    """Variables of a MATLAB file: v5 through scipy, v7.3 (HDF5) through h5py (transposed back to MATLAB's
    shapes; a cell array becomes an object array of its dereferenced elements)."""
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise ImportError("reading COFW .mat files needs scipy (pip install scipy)") from None
    try:
        return loadmat(str(path))
    except NotImplementedError:  # scipy's answer to v7.3 files
        pass
    except (ValueError, MatReadError) as err:
        raise ValueError(f"{path}: not a MATLAB file: {err}") from err
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{path} is a MATLAB v7.3 (HDF5) file: reading it needs h5py (pip install h5py)") \
            from None
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        for key, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            if h5py.check_dtype(ref=ds.dtype) is not None:
                refs = ds[()].T
                cells = np.empty(refs.shape, dtype=object)
                for idx, ref in np.ndenumerate(refs):
                    cells[idx] = np.asarray(f[ref][()]).T
                out[key] = cells
            else:
                out[key] = np.asarray(ds[()]).T
    return out


def read_cofw(path: PathLike) -> list[Annotation]:
    """COFW ``COFW_train_color.mat`` / ``COFW_test_color.mat``: images ``IsTr``/``IsT`` (cell, gray or RGB),
    ``phisTr``/``phisT`` (N, 87) = 29 x, 29 y (1-based), 29 occlusion flags, ``bboxesTr``/``bboxesT``
    (N, 4) = x, y, w, h (1-based). Landmarks are kept when occluded; ``attributes`` holds ``"occluded"``
    (their count) and ``"occlusion_mask"`` (bit k set when landmark k is occluded)."""
    path = _existing(path)
    mat = _load_mat(path)
    for suffix in ("Tr", "T"):
        if f"phis{suffix}" in mat:
            break
    else:
        raise ValueError(f"{path}: no 'phisTr' or 'phisT' variable (not a COFW file?)")
    names = (f"Is{suffix}", f"phis{suffix}", f"bboxes{suffix}")
    missing = [n for n in names if n not in mat]
    if missing:
        raise ValueError(f"{path}: missing variable(s) {missing}")
    images = list(np.asarray(mat[names[0]], dtype=object).ravel())
    phis = np.asarray(mat[names[1]], dtype=np.float64)
    boxes = np.asarray(mat[names[2]], dtype=np.float64)
    if phis.ndim != 2 or phis.shape[1] != 87:
        raise ValueError(f"{path}: {names[1]} must have shape (N, 87), got {phis.shape}")
    if boxes.shape != (phis.shape[0], 4) or len(images) != phis.shape[0]:
        raise ValueError(f"{path}: {names[0]} has {len(images)} images, {names[1]} {phis.shape[0]} rows, "
                         f"{names[2]} shape {boxes.shape}; expected N images, (N, 87) and (N, 4)")
    out = []
    for i, (image, phi, (x, y, w, h)) in enumerate(zip(images, phis, boxes)):
        where = f"{path}[{i}]"
        occluded = phi[58:] > 0
        landmarks = _landmarks(np.stack([phi[:29], phi[29:58]], 1), where) - 1.0
        out.append(Annotation(_rgb(np.asarray(image), where), landmarks,
                              _box([x - 1.0, y - 1.0, x - 1.0 + w, y - 1.0 + h], where),
                              {"occluded": int(occluded.sum()),
                               "occlusion_mask": int(sum(1 << k for k in np.flatnonzero(occluded)))},
                              where))
    return _same_count(out, path)


# ------------------------------------------------------------------------------------------------ CSV, JSON

def read_csv(path: PathLike, image_root: Optional[PathLike] = None) -> list[Annotation]:
    """CSV with header ``image,x0,y0,x1,y1,...`` and optionally ``box_x_min,box_y_min,box_x_max,box_y_max``
    (any column order); 0-based coordinates; an empty cell is a missing landmark (a row whose four box
    cells are all empty has no box). Image paths are relative to ``image_root`` (default: the CSV's folder)."""
    path = _existing(path)
    root = Path(image_root) if image_root is not None else path.parent
    box_names = ("box_x_min", "box_y_min", "box_x_max", "box_y_max")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        column = {name: c for c, name in enumerate(header)}
        k = sum(1 for h in header if re.fullmatch(r"x\d+", h))
        expected = {"image", *(f"{a}{i}" for i in range(k) for a in "xy")}
        has_box = any(n in column for n in box_names)
        if has_box:
            expected.update(box_names)
        if len(column) != len(header) or set(header) != expected or k == 0:
            raise ValueError(f"{path}:1: header must be image,x0,y0,...,x{{K-1}},y{{K-1}}[,box_x_min,box_y_min,"
                             f"box_x_max,box_y_max], got {','.join(header)}")
        xy = [column[f"{a}{i}"] for i in range(k) for a in "xy"]
        out = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{where}: expected {len(header)} fields, got {len(row)}")
            if not row[column["image"]].strip():
                raise ValueError(f"{where}: empty image path")
            box = None
            if has_box:
                cells = [row[column[n]] for n in box_names]
                if any(c.strip() for c in cells):
                    box = _box([_number(c, where) for c in cells], where)
            out.append(Annotation(str(root / row[column["image"]].strip()),
                                  _landmarks([_number(row[c], where) for c in xy], where), box, source=where))
    return _same_count(out, path)


def read_json(path: PathLike, image_root: Optional[PathLike] = None) -> list[Annotation]:
    """JSON list of ``{"image": path, "landmarks": [[x, y], ...], "box": [x_min, y_min, x_max, y_max]}``
    (box optional); 0-based coordinates, ``null`` for a missing landmark or coordinate. Image paths are
    relative to ``image_root`` (default: the JSON file's folder)."""
    path = _existing(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of records, got {type(records).__name__}")
    out = []
    for i, rec in enumerate(records):
        where = f"{path}[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) \
                or not isinstance(rec.get("landmarks"), list):
            raise ValueError(f"{where}: expected {{'image': str, 'landmarks': [[x, y], ...], 'box': optional}}")
        points = []
        for p in rec["landmarks"]:
            if p is None:
                p = [None, None]
            if not (isinstance(p, list) and len(p) == 2
                    and all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool)) for c in p)):
                raise ValueError(f"{where}: each landmark must be [x, y] (numbers or null), got {p!r}")
            points.append([float("nan") if c is None else float(c) for c in p])
        box = rec.get("box")
        if box is not None:
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(c, (int, float)) for c in box)):
                raise ValueError(f"{where}: box must be [x_min, y_min, x_max, y_max], got {box!r}")
            box = _box(box, where)
        out.append(Annotation(str(root / rec["image"]), _landmarks(np.array(points).reshape(-1, 2), where), box,
                              source=where))
    return _same_count(out, path)
