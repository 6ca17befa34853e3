"""Synthetic stand-ins for both data sets, written in their real on-disk formats.

* ``synth_pneumonia`` - the RSNA Pneumonia Detection Challenge layout (summer-school
  variant): ``labels.csv``, ``detailed_class_info.csv`` and ``images/<patientId>.dcm``.
* ``synth_cspine``    - the course's RSNA 2022 cervical-spine HDF5 subset.

Everything is derived from the seed (no clock, no random UIDs): the same arguments give
byte-identical files. The pictures are drawn in ``_synth_shapes``.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from helpers.data._synth_shapes import (
    add_opacity,
    chest_anatomy,
    draw_chest,
    draw_crack,
    draw_neck,
    fracture_plan,
    neck_anatomy,
    sample_lung_box,
)

__all__ = ["BOX_COUNT_P", "BOX_COUNTS", "CSPINE_UID_ROOT", "NEGATIVE_CLASSES",
           "PIXEL_SPACING_1024", "SPLIT_FRACTIONS", "synth_cspine", "synth_pneumonia"]

# Boxes per positive patient; two (one per lung) is the most common in the real labels.
BOX_COUNTS = (1, 2, 3, 4)
BOX_COUNT_P = (0.45, 0.45, 0.07, 0.03)
PIXEL_SPACING_1024 = 0.143  # mm; the field of view stays the same at any size
NEGATIVE_CLASSES = ("Normal", "No Lung Opacity / Not Normal")
CSPINE_UID_ROOT = "1.2.826.0.1.3680043."  # the root of the RSNA 2022 study UIDs
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def _patient_boxes(rng: np.random.Generator, lungs: list, n_boxes: int, size: int) -> list:
    """Place n_boxes in the lung fields, alternating lungs, without much overlap."""
    first = int(rng.integers(2))
    sides = [(first + k) % 2 for k in range(n_boxes)]
    boxes: list[tuple[int, int, int, int]] = []
    for k, side in enumerate(sides):
        # A lung holding two boxes gets one in its upper and one in its lower half.
        zone = ("upper", "lower")[k // 2] if sides.count(side) > 1 else "all"
        for _ in range(30):
            box = sample_lung_box(rng, lungs[side], zone, size)
            if all(_iou(box, other) <= 0.1 for other in boxes):
                boxes.append(box)
                break
    return boxes


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _write_dicom(path: Path, pixels: np.ndarray, tags: dict, uids: dict, compress: bool) -> None:
    """Write one 8-bit MONOCHROME2 secondary-capture DICOM like the RSNA files."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uids["sop"]
    meta.TransferSyntaxUID = JPEGBaseline8Bit if compress else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uids["sop"]
    # The real files carry this placeholder date: no wall clock, so the bytes repeat.
    ds.StudyDate, ds.StudyTime = "19010101", "000000.00"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality, ds.ConversionType = "CR", "WSD"
    ds.SeriesDescription = f"view: {tags['view']}"
    ds.PatientName = ds.PatientID = tags["patientId"]
    ds.PatientBirthDate = ""
    ds.PatientSex = tags["sex"]
    with disable_value_validation():  # the real files store a bare '51', not the standard '051Y'
        ds.PatientAge = tags["age"]
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", tags["view"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.PatientOrientation = ""
    spacing = f"{PIXEL_SPACING_1024 * 1024 / pixels.shape[0]:.10g}"[:16]
    ds.PixelSpacing = [spacing, spacing]
    if compress:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.set_pixel_data(pixels, "MONOCHROME2", 8, generate_instance_uid=False)
    dcmwrite(path, ds, enforce_file_format=True)


def synth_pneumonia(
    out_dir: str | Path,
    patients: int = 200,
    seed: int = 0,
    size: int = 1024,
    positive_fraction: float = 0.22,
    compress: bool = True,
) -> Path:
    """Write a synthetic RSNA pneumonia folder (labels.csv, class info, DICOMs); return it."""
    if patients < 1 or size < 32:
        raise ValueError(f"need patients >= 1 and size >= 32, got {patients} and {size}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    n_pos = min(patients, round(positive_fraction * patients))
    if patients >= 2:
        n_pos = max(n_pos, 1)
    positive = rng.permutation(np.arange(patients) < n_pos)
    counts = np.where(positive, rng.choice(BOX_COUNTS, size=patients, p=BOX_COUNT_P), 0)
    if n_pos >= 2 and counts.max() < 2:  # the course shows a multi-box patient
        counts[np.flatnonzero(positive)[0]] = 2
    labels, classes = [], []
    for i in range(patients):
        pid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        # Positives are more often bedside (AP) films, as in the real set.
        tags = {"patientId": pid, "sex": "M" if rng.random() < 0.56 else "F",
                "age": str(int(np.clip(rng.normal(47, 16), 2, 92))),
                "view": "AP" if rng.random() < (0.75 if positive[i] else 0.4) else "PA"}
        negative_class = NEGATIVE_CLASSES[int(rng.integers(2))]
        prng = np.random.default_rng([seed, 2, i])
        anatomy = chest_anatomy(prng)
        boxes = _patient_boxes(prng, anatomy["lungs"], int(counts[i]), size)
        img = draw_chest(prng, anatomy, size)
        for box in boxes:
            add_opacity(prng, img, box)
        pixels = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        uids = {k: generate_uid(entropy_srcs=["synth-pneumonia", str(seed), pid, k])
                for k in ("study", "series", "sop")}
        _write_dicom(out_dir / "images" / f"{pid}.dcm", pixels, tags, uids, compress)
        for x, y, w, h in boxes:
            labels.append((pid, float(x), float(y), float(w), float(h), 1))
            classes.append((pid, "Lung Opacity"))
        if not boxes:
            labels.append((pid, np.nan, np.nan, np.nan, np.nan, 0))
            classes.append((pid, negative_class))
    columns = ["patientId", "x", "y", "width", "height", "Target"]
    pd.DataFrame(labels, columns=columns).to_csv(
        out_dir / "labels.csv", index=False, lineterminator="\n")
    pd.DataFrame(classes, columns=["patientId", "class"]).to_csv(
        out_dir / "detailed_class_info.csv", index=False, lineterminator="\n")
    return out_dir


def _study_lengths(rng: np.random.Generator, slices: int) -> list[int]:
    """Cut N slices into consecutive studies of about 20-40 slices (at least 3 studies)."""
    hi = min(40, max(1, slices // 3))  # small files still get a train, val and test study
    lo = min(20, hi)
    lengths: list[int] = []
    while sum(lengths) < slices:
        lengths.append(min(int(rng.integers(lo, hi + 1)), slices - sum(lengths)))
    return lengths


def _study_splits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Assign 0/1/2 (train/val/test) per study, about 70/15/15, none empty from 3 studies."""
    n_val = max(1, round(SPLIT_FRACTIONS[1] * n)) if n >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * n)) if n >= 3 else int(n == 2)
    codes = np.array([0] * (n - n_val - n_test) + [1] * n_val + [2] * n_test, np.int8)
    return rng.permutation(codes)


def synth_cspine(out_path: str | Path, slices: int = 300, seed: int = 0, size: int = 256) -> Path:
    """Write a synthetic C-spine HDF5 file with the course subset's keys; return its path."""
    if slices < 1 or size < 32:
        raise ValueError(f"need slices >= 1 and size >= 32, got {slices} and {size}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    lengths = _study_lengths(rng, slices)
    n_studies = len(lengths)
    numbers = rng.choice(np.arange(1000, 1000 + max(40000, 4 * n_studies)), n_studies,
                         replace=False)
    study_split = _study_splits(rng, n_studies)
    fractured = rng.permutation(np.arange(n_studies) < int(0.45 * n_studies + 0.5))
    bboxes = np.zeros((slices, 10, 4), np.float32)
    study_col, slice_col, split_col = [], [], np.zeros(slices, np.int8)
    with h5py.File(out_path, "w") as f:
        images = f.create_dataset("images", (slices, size, size), np.float32,
                                  chunks=(1, size, size), track_times=False)
        start = 0
        for s, length in enumerate(lengths):
            srng = np.random.default_rng([seed, 4, s])
            anatomy = neck_anatomy(srng, size)
            plan = fracture_plan(srng, length, size) if fractured[s] else {}
            block = np.empty((length, size, size), np.float32)
            for t in range(length):
                img, geo = draw_neck(srng, anatomy, t, size)
                for k, crack in enumerate(plan.get(t, [])):
                    bboxes[start + t, k] = draw_crack(img, geo, crack)
                # Each slice keeps its own window, so per-slice min-max scaling matters.
                lo, hi = srng.uniform(0.0, 0.15), srng.uniform(0.55, 1.0)
                img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
                block[t] = lo + (hi - lo) * img
            images[start:start + length] = block
            study_col += [f"{CSPINE_UID_ROOT}{numbers[s]}"] * length
            slice_col += [str(t + 1) for t in range(length)]
            split_col[start:start + length] = study_split[s]
            start += length
        # About one box in ten has its x corners swapped, as in the real file.
        filled = np.flatnonzero(bboxes.reshape(-1, 4).any(axis=1))
        if len(filled):
            swap = rng.choice(filled, max(1, round(0.1 * len(filled))), replace=False)
            flat = bboxes.reshape(-1, 4)
            flat[swap] = flat[swap][:, [2, 1, 0, 3]]
        strings = h5py.string_dtype()
        f.create_dataset("bboxes", data=bboxes, track_times=False)
        f.create_dataset("labels", data=bboxes.any(axis=(1, 2)).astype(np.int8),
                         track_times=False)
        f.create_dataset("split", data=split_col, track_times=False)
        f.create_dataset("StudyInstanceUID", data=np.array(study_col, dtype=object),
                         dtype=strings, track_times=False)
        f.create_dataset("SliceNumber", data=np.array(slice_col, dtype=object), dtype=strings,
                         track_times=False)
    return out_path
