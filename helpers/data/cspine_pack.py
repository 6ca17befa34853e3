"""Build the course's C-spine HDF5 subset from the RSNA 2022 competition files.

    python -m helpers.data pack-cspine RSNA2022_DIR OUT.h5 [--seed 42] [--size 256]

The file the course uses was written by a public Kaggle notebook,
``00_CreatePrivateDataset.ipynb`` in the repository ``apmalinsky/AAI-590-Capstone``. This
module does what that notebook does, from the competition's own files
(``train_images/<StudyInstanceUID>/<slice>.dcm``, ``train_bounding_boxes.csv``,
``train.csv``):

* only 512x512 series are kept (the notebook filters on ImageHeight/ImageWidth);
* a slice is positive when ``train_bounding_boxes.csv`` has a box on it; its boxes are
  stored as ``[x, y, width, height]`` times ``size / 512``, at most 10 per slice, unused
  rows holding the dataset's fill value -1.0;
* studies are split 70/15/15 by two ``GroupShuffleSplit`` calls (train vs rest, then the
  rest in halves), so a study's slices share one split;
* each split keeps all its positive slices and ``negatives_per_positive`` (3) randomly
  sampled negative slices per positive; the rows are then shuffled;
* each image is the raw ``pixel_array`` (no RescaleSlope/Intercept, no window) min-max
  scaled per slice to [0, 1], resized linearly (``cv2.INTER_LINEAR``) to ``size``;
* keys, dtypes and chunks as the notebook: ``images`` f4 (32,S,S), ``bboxes`` f4 (32,10,4),
  ``labels``/``split`` i1 and the strings ``StudyInstanceUID``/``SliceNumber`` chunked 512.

The notebook slices its table from a metadata CSV of another Kaggle data set; here the
slices are listed from ``train_images/`` (the series size read from one header per study),
so the same seed does not pick the very same negatives. Two optional improvements leave
the default file as it is: ``window="bone"`` writes Hounsfield units through
RescaleSlope/Intercept and a bone window, and ``study_fractured=True`` adds a per-slice
``study_fractured`` column from ``train.csv`` (``patient_overall``).

The file is written as ``OUT.partial`` and renamed when complete, so OUT is never half
written; an interrupted run resumes from its last completed chunk when started again with
the same arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pydicom
from pydicom.pixels import apply_modality_lut
from sklearn.model_selection import GroupShuffleSplit
from tqdm.auto import tqdm

from helpers.data.dicom import DicomReadError, decode_pixels

__all__ = ["BONE_WINDOW", "MAX_BOXES", "SOURCE_SIZE", "PackError", "create_cspine_file",
           "pack_cspine", "plan_subset"]

MAX_BOXES = 10
SOURCE_SIZE = 512  # the notebook keeps 512x512 series only and halves the boxes for 256 px
FILL = -1.0  # the bboxes dataset's fill value: a row of -1 is no box
IMAGE_CHUNK_ROWS = 32
TEXT_CHUNK = 512
BONE_WINDOW = (400.0, 1800.0)  # level, width in HU (a usual bone window: -500 .. 1300 HU)
COMPETITION_FILES = ("train_images", "train_bounding_boxes.csv", "train.csv")


class PackError(ValueError):
    """The competition folder cannot be packed: a file is missing or unreadable."""


def create_cspine_file(f: h5py.File, n: int, size: int = 256,
                       study_fractured: bool = False) -> None:
    """Create the subset's datasets in an open file, laid out as the public notebook does."""
    strings = h5py.special_dtype(vlen=str)
    text = (min(TEXT_CHUNK, max(n, 1)),)
    f.create_dataset("images", (n, size, size), "f4",
                     chunks=(min(IMAGE_CHUNK_ROWS, max(n, 1)), size, size))
    f.create_dataset("labels", (n,), "i1", chunks=text)
    f.create_dataset("bboxes", (n, MAX_BOXES, 4), "f4", fillvalue=FILL,
                     chunks=(min(IMAGE_CHUNK_ROWS, max(n, 1)), MAX_BOXES, 4))
    f.create_dataset("StudyInstanceUID", (n,), strings, chunks=text)
    f.create_dataset("SliceNumber", (n,), strings, chunks=text)
    f.create_dataset("split", (n,), "i1", chunks=text)
    if study_fractured:
        f.create_dataset("study_fractured", (n,), "i1", chunks=text)


def _require(root: Path) -> None:
    for name in COMPETITION_FILES:
        if not (root / name).exists():
            raise PackError(f"{root / name}: missing; expected the RSNA 2022 competition "
                            f"folder holding {', '.join(COMPETITION_FILES)}")


def _series_size(study: Path) -> tuple[int, int] | None:
    """(Rows, Columns) of a study's first slice, read from its header only."""
    first = next(iter(sorted(study.glob("*.dcm"))), None)
    if first is None:
        return None
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True)
    except Exception as err:
        raise PackError(f"{first}: not a readable DICOM header ({err})") from err
    return int(ds.Rows), int(ds.Columns)


def plan_subset(root: str | Path, negatives_per_positive: int = 3,
                seed: int = 42) -> pd.DataFrame:
    """The rows of the subset in file order: study, slice, xywh boxes (512 px), split."""
    root = Path(root)
    _require(root)
    boxes = pd.read_csv(root / "train_bounding_boxes.csv", dtype={"StudyInstanceUID": str})
    overall = pd.read_csv(root / "train.csv", dtype={"StudyInstanceUID": str})
    for table, name, cols in ((boxes, "train_bounding_boxes.csv",
                               ["StudyInstanceUID", "x", "y", "width", "height",
                                "slice_number"]),
                              (overall, "train.csv", ["StudyInstanceUID", "patient_overall"])):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise PackError(f"{root / name}: missing column(s) {missing}; found "
                            f"{list(table.columns)}")
    rows = []
    for study in sorted(p for p in (root / "train_images").iterdir() if p.is_dir()):
        if _series_size(study) != (SOURCE_SIZE, SOURCE_SIZE):
            continue
        numbers = sorted(int(p.stem) for p in study.glob("*.dcm") if p.stem.isdigit())
        rows += [(study.name, k) for k in numbers]
    slices = pd.DataFrame(rows, columns=["StudyInstanceUID", "SliceNumber"])
    if slices.empty:
        raise PackError(f"{root / 'train_images'}: no {SOURCE_SIZE}x{SOURCE_SIZE} series found")
    grouped = (boxes.rename(columns={"slice_number": "SliceNumber"})
               .groupby(["StudyInstanceUID", "SliceNumber"])[["x", "y", "width", "height"]]
               .apply(lambda b: b.to_numpy(np.float32).tolist()).rename("bboxes").reset_index())
    slices = slices.merge(grouped, on=["StudyInstanceUID", "SliceNumber"], how="left")
    slices["is_positive"] = slices["bboxes"].notna().astype(int)
    slices["bboxes"] = slices["bboxes"].apply(lambda b: b if isinstance(b, list) else [])
    fractured = dict(zip(overall["StudyInstanceUID"], overall["patient_overall"], strict=True))
    slices["study_fractured"] = slices["StudyInstanceUID"].map(fractured).fillna(0).astype(int)
    slices["split"] = slices["StudyInstanceUID"].map(_study_splits(slices, seed))
    keep = []
    for code in (0, 1, 2):
        here = slices[slices["split"] == code]
        pos, neg = here[here["is_positive"] == 1], here[here["is_positive"] == 0]
        n_neg = min(int(len(pos) * negatives_per_positive), len(neg))
        keep += [pos, neg.sample(n=n_neg, random_state=seed)]
    return pd.concat(keep).sample(frac=1, random_state=seed).reset_index(drop=True)


def _study_splits(slices: pd.DataFrame, seed: int) -> dict[str, int]:
    """Study -> 0/1/2 (70/15/15), two GroupShuffleSplit calls as in the public notebook."""
    studies = slices.groupby("StudyInstanceUID")["is_positive"].max().reset_index()
    if len(studies) < 3:
        raise PackError(f"need at least 3 studies to split 70/15/15, found {len(studies)}")
    first = GroupShuffleSplit(test_size=0.30, n_splits=1, random_state=seed)
    train, rest = next(first.split(studies, groups=studies["StudyInstanceUID"]))
    rest_studies = studies.iloc[rest]
    second = GroupShuffleSplit(test_size=0.5, n_splits=1, random_state=seed)
    val, test = next(second.split(rest_studies, groups=rest_studies["StudyInstanceUID"]))
    split = dict.fromkeys(studies["StudyInstanceUID"].iloc[train], 0)
    split.update(dict.fromkeys(rest_studies["StudyInstanceUID"].iloc[val], 1))
    split.update(dict.fromkeys(rest_studies["StudyInstanceUID"].iloc[test], 2))
    return split


def _slice_image(path: Path, size: int, window: str | None) -> np.ndarray:
    """One slice as the subset stores it: float32 (size, size) in [0, 1]."""
    if not path.is_file():
        raise PackError(f"{path}: missing; train_images/ lists the slice but the file is gone")
    try:
        ds, raw = decode_pixels(path)
    except DicomReadError as err:
        raise PackError(str(err)) from err
    if window == "bone":
        level, width = BONE_WINDOW
        hu = apply_modality_lut(raw, ds).astype(np.float32)
        img = np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)
    else:  # the public notebook: raw pixel values, min-max per slice, no rescale, no window
        img = raw.astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros(img.shape, np.float32)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _plan_digest(plan: pd.DataFrame, *settings) -> str:
    text = json.dumps([plan[["StudyInstanceUID", "SliceNumber", "split"]].values.tolist(),
                       plan["bboxes"].tolist(), *settings], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def pack_cspine(root: str | Path, out: str | Path, size: int = 256,
                negatives_per_positive: int = 3, seed: int = 42, window: str | None = None,
                study_fractured: bool = False, progress: bool = True) -> Path:
    """Write the C-spine subset of the competition folder ``root`` to ``out``; return it."""
    if window not in (None, "bone"):
        raise ValueError(f"window={window!r}; expected None (min-max per slice) or 'bone'")
    root, out = Path(root), Path(out)
    plan = plan_subset(root, negatives_per_positive, seed)
    digest = _plan_digest(plan, size, window, study_fractured)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = 0
    if partial.exists():  # resume only a run of the very same plan
        with h5py.File(partial, "r") as f:
            if f.attrs.get("plan") == digest:
                start = int(f.attrs.get("rows_done", 0))
        if start == 0:
            partial.unlink()
    if start == 0:
        with h5py.File(partial, "w") as f:
            create_cspine_file(f, len(plan), size, study_fractured)
            f.attrs["plan"], f.attrs["rows_done"] = digest, 0
            if window == "bone":
                f.attrs["intensity"] = (f"Hounsfield units, bone window level {BONE_WINDOW[0]:g}"
                                        f" width {BONE_WINDOW[1]:g}, scaled to [0, 1]")
    scale = size / SOURCE_SIZE
    with h5py.File(partial, "r+") as f:
        bar = tqdm(total=len(plan), initial=start, desc="packing slices", disable=not progress)
        for lo in range(start, len(plan), IMAGE_CHUNK_ROWS):
            chunk = plan.iloc[lo:lo + IMAGE_CHUNK_ROWS]
            images = np.stack([
                _slice_image(root / "train_images" / r.StudyInstanceUID / f"{r.SliceNumber}.dcm",
                             size, window) for r in chunk.itertuples()])
            boxes = np.full((len(chunk), MAX_BOXES, 4), FILL, np.float32)
            for k, b in enumerate(chunk["bboxes"]):
                if b:
                    boxes[k, :min(len(b), MAX_BOXES)] = np.asarray(b[:MAX_BOXES]) * scale
            hi = lo + len(chunk)
            f["images"][lo:hi] = images
            f["bboxes"][lo:hi] = boxes
            f["labels"][lo:hi] = chunk["is_positive"].to_numpy(np.int8)
            f["split"][lo:hi] = chunk["split"].to_numpy(np.int8)
            f["StudyInstanceUID"][lo:hi] = chunk["StudyInstanceUID"].tolist()
            f["SliceNumber"][lo:hi] = chunk["SliceNumber"].astype(str).tolist()
            if study_fractured:
                f["study_fractured"][lo:hi] = chunk["study_fractured"].to_numpy(np.int8)
            f.attrs["rows_done"] = hi
            f.flush()
            bar.update(len(chunk))
        bar.close()
        del f.attrs["plan"], f.attrs["rows_done"]  # bookkeeping of the partial file only
    os.replace(partial, out)
    return out
