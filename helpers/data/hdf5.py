"""The course's RSNA 2022 cervical-spine HDF5 subset: its schema, checked before use.

The file is the one the public notebook ``00_CreatePrivateDataset.ipynb``
(``apmalinsky/AAI-590-Capstone``) writes; ``helpers.data.cspine_pack`` rebuilds it. Keys
(N slices):

* ``images`` (N,H,W) float32: each slice min-max scaled to [0,1] by the packer (raw pixel
  values, not Hounsfield units), then resized; a constant slice is all 0;
* ``bboxes`` (N,10,4) float32: up to 10 boxes per slice as ``[x, y, width, height]`` in
  pixels of the stored slice; unused rows hold the dataset's fill value ``-1.0`` (a slice
  without a fracture is all -1);
* ``labels`` (N,) int8: 1 exactly when the slice has a box (a row that is not fill);
* ``split`` (N,) int8: 0 train, 1 val, 2 test, assigned per study;
* ``StudyInstanceUID`` and ``SliceNumber`` (N,) variable-length strings;
* optional ``study_fractured`` (N,) int8: the study's ``patient_overall`` in the
  competition's ``train.csv`` (a study can be fractured without boxes on its slices).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

__all__ = ["BOX_FILL", "OPTIONAL", "SCHEMA", "SPLITS", "check_cspine_schema", "check_labels",
           "H5SchemaError", "fill_rows", "open_cspine", "read_column", "split_code",
           "split_indices"]

SPLITS = {"train": 0, "val": 1, "test": 2}
BOX_FILL = -1.0  # the bboxes dataset's fill value: a row of -1 is no box

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
# keys a file may have or not (checked when present)
OPTIONAL = {"study_fractured": (1, lambda dt: dt.kind in "iu", "int8 (N,)")}


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
    present = {**SCHEMA, **{k: v for k, v in OPTIONAL.items() if k in f}}
    for key, (ndim, dtype_ok, expected) in present.items():
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


def fill_rows(bboxes: np.ndarray) -> np.ndarray:
    """Which box rows are padding (all four values the fill value -1): shape bboxes[..., 0]."""
    return np.all(np.asarray(bboxes) == BOX_FILL, axis=-1)


def check_labels(f: h5py.File | str | Path, path: str | Path = "") -> None:
    """Check that ``labels`` is 1 exactly on the slices with a box (a row that is not -1).

    Reads the small ``bboxes`` and ``labels`` arrays (about 5 MB for the real 28,812
    slices); raises H5SchemaError naming the first slice where they disagree.
    """
    if not isinstance(f, h5py.File):
        with open_cspine(f, labels=False) as opened:
            return check_labels(opened, f)
    where = str(path or f.filename)
    has_box = ~fill_rows(f["bboxes"][()]).all(axis=1)
    labels = f["labels"][()]
    wrong = np.flatnonzero(has_box != (labels == 1))
    if len(wrong):
        i = int(wrong[0])
        hint = ("; unused rows must hold the fill value -1 (a row of zeros is a box)"
                if has_box[i] else "")
        raise H5SchemaError(
            f"{where}: slice {i} has labels={int(labels[i])} but "
            f"{'a box row' if has_box[i] else 'no box row (all rows are -1)'} in bboxes "
            f"{f['bboxes'][i].tolist()}{hint}; {len(wrong)} slice(s) disagree"
        )
    return None


def open_cspine(path: str | Path, labels: bool = True) -> h5py.File:
    """Open a C-spine HDF5 file read-only and check its schema (and, by default, that
    ``labels`` agrees with ``bboxes``: see ``check_labels``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such HDF5 file (expected the C-spine subset)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise H5SchemaError(f"{path}: not a readable HDF5 file ({err})") from err
    try:
        check_cspine_schema(f, path)
        if labels:
            check_labels(f, path)
    except Exception:
        f.close()
        raise
    return f


def read_column(path: str | Path, key: str) -> np.ndarray:
    """Read one small per-slice column (labels, split, UIDs) fully into memory."""
    with open_cspine(path, labels=False) as f:
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
