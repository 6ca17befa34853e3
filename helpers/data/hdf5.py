"""The course's RSNA 2022 cervical-spine HDF5 subset: its schema, checked before use.

Keys (N slices): ``images`` (N,H,W) float32, ``bboxes`` (N,10,4) float32 zero-padded
``[x1,y1,x2,y2]`` (corners sometimes swapped), ``labels`` (N,) int8, ``split`` (N,) int8
(0 train, 1 val, 2 test), ``StudyInstanceUID`` and ``SliceNumber`` (N,) strings.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

__all__ = ["SCHEMA", "SPLITS", "check_cspine_schema", "H5SchemaError", "open_cspine",
           "read_column", "split_code", "split_indices"]

SPLITS = {"train": 0, "val": 1, "test": 2}

# key -> (number of dimensions, dtype kind check, what to say)
SCHEMA = {
    "images": (3, lambda dt: dt == np.float32, "float32 (N,H,W)"),
    "bboxes": (3, lambda dt: dt == np.float32, "float32 (N,10,4)"),
    "labels": (1, lambda dt: dt.kind in "iu", "int8 (N,)"),
    "split": (1, lambda dt: dt.kind in "iu", "int8 (N,)"),
    "StudyInstanceUID": (1, lambda dt: h5py.check_string_dtype(dt) is not None or dt.kind in "OSU",
                         "strings (N,)"),
    "SliceNumber": (1, lambda dt: h5py.check_string_dtype(dt) is not None or dt.kind in "OSU",
                    "strings (N,)"),
}


class H5SchemaError(ValueError):
    """An HDF5 file does not have the C-spine subset's keys, shapes or dtypes."""


def check_cspine_schema(f: h5py.File, path: str | Path = "") -> int:
    """Check an open C-spine file against the schema; return the number of slices N."""
    where = str(path or f.filename)
    missing = [k for k in SCHEMA if k not in f]
    if missing:
        raise H5SchemaError(
            f"{where}: missing key(s) {missing}; expected keys {list(SCHEMA)}, "
            f"found {list(f.keys())}"
        )
    n = f["images"].shape[0]
    for key, (ndim, dtype_ok, expected) in SCHEMA.items():
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise H5SchemaError(f"{where}: '{key}' is a group; expected a dataset of {expected}")
        if ds.ndim != ndim or ds.shape[0] != n:
            raise H5SchemaError(
                f"{where}: key '{key}' has shape {ds.shape}; expected {expected} with N={n}"
            )
        if not dtype_ok(ds.dtype):
            raise H5SchemaError(f"{where}: key '{key}' has dtype {ds.dtype}; expected {expected}")
    if f["bboxes"].shape[1:] != (10, 4):
        raise H5SchemaError(
            f"{where}: key 'bboxes' has shape {f['bboxes'].shape}; expected (N,10,4)"
        )
    return n


def open_cspine(path: str | Path) -> h5py.File:
    """Open a C-spine HDF5 file read-only and check its schema."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such HDF5 file (expected the C-spine subset)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise H5SchemaError(f"{path}: not a readable HDF5 file ({err})") from err
    try:
        check_cspine_schema(f, path)
    except Exception:
        f.close()
        raise
    return f


def read_column(path: str | Path, key: str) -> np.ndarray:
    """Read one small per-slice column (labels, split, UIDs) fully into memory."""
    with open_cspine(path) as f:
        values = f[key][()]
    if values.dtype.kind == "O":
        values = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])
    return values


def split_code(split: str | int) -> int:
    """The file's code (0, 1, 2) for a split given as 'train', 'val', 'test' or a code."""
    code = SPLITS.get(split, split) if isinstance(split, str) else split
    if code not in SPLITS.values():
        raise ValueError(f"split={split!r}; expected one of {list(SPLITS)} or 0/1/2")
    return int(code)


def split_indices(path: str | Path, split: str | int) -> np.ndarray:
    """Indices of the slices in one split ('train', 'val', 'test' or 0/1/2)."""
    code = split_code(split)
    return np.flatnonzero(read_column(path, "split") == code)
