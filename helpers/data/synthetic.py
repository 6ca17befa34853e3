"""Synthetic stand-ins for both data sets, written in their real on-disk formats.

* ``synth_pneumonia`` - the RSNA Pneumonia Detection Challenge layout (summer-school
  variant): ``labels.csv``, ``detailed_class_info.csv`` and ``images/<patientId>.dcm``.
* ``synth_cspine``    - the course's RSNA 2022 cervical-spine HDF5 subset, laid out as
  the public notebook that packed it (see ``cspine_pack``).

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
from helpers.data.cspine_pack import MAX_BOXES, create_cspine_file

__all__ = ["BOX_COUNT_P", "BOX_COUNTS", "CSPINE_UID_ROOT", "NEGATIVE_CLASSES",
           "NEGATIVES_PER_POSITIVE", "PIXEL_SPACING_1024", "SPLIT_FRACTIONS", "synth_cspine",
           "synth_pneumonia"]

# Boxes per positive patient; two (one per lung) is the most common in the real labels.
BOX_COUNTS = (1, 2, 3, 4)
BOX_COUNT_P = (0.45, 0.45, 0.07, 0.03)
PIXEL_SPACING_1024 = 0.143  # mm; the field of view stays the same at any size
NEGATIVE_CLASSES = ("Normal", "No Lung Opacity / Not Normal")
CSPINE_UID_ROOT = "1.2.826.0.1.3680043."  # the root of the RSNA 2022 study UIDs
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
NEGATIVES_PER_POSITIVE = 3  # as the public notebook: 3 negative slices per positive slice
# The drawing and the study mix, which the packer leaves free (the encoding does not).
# Short runs make many fractured studies out of the same quarter of positive slices, and
# the cracks are plainly visible cortical breaks with boxes of 14-50 px (as real fracture
# boxes at 256 px). With runs of 3-10 slices and 1-3 px cracks the smoke model reached AP50
# 0.02 on the synthetic test split; with these, 0.14-0.28 mean over three files in 259-296
# steps; in ~600 steps, what the smoke profile now trains, 0.66 mean over seven runs, but
# single runs 0.24-0.92 (bench/README.md).
RUN_SLICES = (1, 4)  # consecutive slices one fracture shows on
CRACK_WIDTH = (3.0, 5.0)  # px at 256: a displaced break, not a hairline
CRACK_DEPTH = (0.9, 1.0)  # share of the bone's density a crack takes away
CRACK_HALF = (0.6, 1.3)  # half length, in vertebral-body radii
ARCH_P = 0.35  # share of fractures that also break the posterior arch
BOX_MARGIN, BOX_LEAST = 4.0, 14.0  # px at 256 around a crack; least box side
# Healthy studies hold at least this share of each split's pool of negative slices. The
# packer samples negatives from every study of the split (in the real file mostly studies
# without boxes); without healthy studies here, small validation and test splits held only
# fractured studies and a study-level specificity had nothing to count.
HEALTHY_SHARE = 0.5


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


def _split_counts(total: int) -> list[int]:
    """Cut a count into train/val/test about 70/15/15, none empty when total >= 3."""
    val = max(1, round(SPLIT_FRACTIONS[1] * total)) if total >= 3 else 0
    test = max(1, round(SPLIT_FRACTIONS[2] * total)) if total >= 3 else 0
    return [total - val - test, val, test]


def _cspine_slice(seed: int, study: dict, t: int, size: int) -> tuple[np.ndarray, list]:
    """Slice t of a study as the subset stores it (min-max scaled to [0, 1]) and its
    ``[x, y, width, height]`` boxes."""
    img, geo = draw_neck(np.random.default_rng([seed, 5, study["id"], t]), study["anatomy"],
                         t, size)
    boxes = []
    for crack in study["plan"].get(t, []):
        x1, y1, x2, y2 = (float(v) for v in draw_crack(img, geo, crack, BOX_MARGIN,
                                                               BOX_LEAST))
        if x2 > x1 and y2 > y1:
            boxes.append([x1, y1, x2 - x1, y2 - y1])
    # As the packer: min-max per slice (a constant slice becomes 0), nothing else.
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img.astype(np.float32), boxes[:MAX_BOXES]


def synth_cspine(out_path: str | Path, slices: int = 300, seed: int = 0, size: int = 256,
                 study_fractured: bool = False) -> Path:
    """Write a synthetic C-spine HDF5 file laid out as the real subset; return its path.

    The real file was written by the public notebook ``00_CreatePrivateDataset.ipynb``
    (``apmalinsky/AAI-590-Capstone``); this writes the same layout with
    ``cspine_pack.create_cspine_file``: ``[x, y, width, height]`` boxes with -1.0 fill,
    the same chunks and dtypes, variable-length strings. As there, studies are split
    70/15/15, each split keeps all its positive slices and 3 random negative slices per
    positive (drawn at random from all the negative slices of its studies, fractured and
    healthy alike), and the rows are shuffled. About ``slices`` rows are written: a quarter
    of them (rounded down) are positive. Each fractured study shows one fracture on
    ``RUN_SLICES`` consecutive slices, so the file holds many different ones; healthy
    studies make up at least ``HEALTHY_SHARE`` of each split's negative pool, so every
    split holds studies of both kinds.
    """
    if slices < 4 * 3 or size < 32:
        raise ValueError(f"need slices >= 12 (a positive and 3 negatives in each split) and "
                         f"size >= 32, got {slices} and {size}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    studies: list[dict] = []
    images: list[np.ndarray] = []
    rows: list[tuple[int, int, list]] = []  # (study, slice, boxes) of the kept slices

    def new_study(code: int, fractured: bool) -> dict:
        srng = np.random.default_rng([seed, 4, len(studies)])
        length = int(rng.integers(20, 41))
        study = {"id": len(studies), "split": code, "length": length,
                 "anatomy": neck_anatomy(srng, size), "fractured": int(fractured),
                 "plan": fracture_plan(srng, length, size, max_runs=1, run_slices=RUN_SLICES,
                                       width=CRACK_WIDTH, depth=CRACK_DEPTH,
                                       half=CRACK_HALF, arch_p=ARCH_P)
                 if fractured else {}}
        studies.append(study)
        return study

    for code, n_pos in enumerate(_split_counts(slices // (1 + NEGATIVES_PER_POSITIVE))):
        here, pool = [], []
        while len(here) < n_pos:  # fractured studies until the split has its positives
            study = new_study(code, True)
            for t in range(study["length"]):
                if t not in study["plan"]:
                    pool.append((study, t))
                elif len(here) < n_pos:
                    img, boxes = _cspine_slice(seed, study, t, size)
                    if boxes:  # a crack that misses the bone leaves no box: not kept
                        here.append((study["id"], t, boxes))
                        images.append(img)
        n_neg = NEGATIVES_PER_POSITIVE * n_pos
        healthy = 0
        while len(pool) < 2 * n_neg or healthy < HEALTHY_SHARE * len(pool):
            study = new_study(code, False)  # healthy studies, so negatives are a sample
            pool += [(study, t) for t in range(study["length"])]
            healthy += study["length"]
        for k in np.sort(rng.choice(len(pool), n_neg, replace=False)):
            study, t = pool[int(k)]
            img, _ = _cspine_slice(seed, dict(study, plan={}), int(t), size)
            here.append((study["id"], int(t), []))
            images.append(img)
        rows += here
    order = rng.permutation(len(rows))  # shuffled, as the public notebook's table
    numbers = rng.choice(np.arange(1000, 1000 + max(40000, 4 * len(studies))), len(studies),
                         replace=False)
    n = len(rows)
    bboxes = np.full((n, MAX_BOXES, 4), -1.0, np.float32)
    for row, k in enumerate(order):
        boxes = rows[k][2]
        if boxes:
            bboxes[row, :len(boxes)] = boxes
    study_of = np.array([rows[k][0] for k in order])
    with h5py.File(out_path, "w") as f:
        create_cspine_file(f, n, size, study_fractured)
        for lo in range(0, n, 32):  # one chunk of 32 slices at a time
            f["images"][lo:lo + 32] = np.stack([images[k] for k in order[lo:lo + 32]])
        f["bboxes"][...] = bboxes
        f["labels"][...] = (bboxes != -1.0).any(axis=(1, 2)).astype(np.int8)
        f["split"][...] = np.array([studies[s]["split"] for s in study_of], np.int8)
        f["StudyInstanceUID"][...] = [f"{CSPINE_UID_ROOT}{numbers[s]}" for s in study_of]
        f["SliceNumber"][...] = [str(rows[k][1] + 1) for k in order]
        if study_fractured:
            f["study_fractured"][...] = np.array([studies[s]["fractured"] for s in study_of],
                                                 np.int8)
    return out_path
