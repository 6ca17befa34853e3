"""A tiny RSNA 2022 Cervical Spine Fracture Detection folder, for testing the packer.

Written from the competition's data description (Kaggle, "RSNA 2022 Cervical Spine
Fracture Detection", Data tab): ``train.csv`` has ``StudyInstanceUID, patient_overall,
C1..C7``; ``train_bounding_boxes.csv`` has ``StudyInstanceUID, x, y, width, height,
slice_number`` in pixels of the 512 px slices; ``train_images/<StudyInstanceUID>/
<slice_number>.dcm`` holds one axial CT slice per file. The slices are 16-bit signed
MONOCHROME2 CT with RescaleIntercept -1024 (raw values are not Hounsfield units); most are
512x512, a few series are larger. The real files are JPEG Lossless; here they are written
uncompressed, or RLE Lossless (which pydicom decodes and encodes without plugins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

UID_ROOT = "1.2.826.0.1.3680043."


def write_slice(path: Path, pixels: np.ndarray, rle: bool = False) -> None:
    """One CT slice as a DICOM file (int16 raw values, intercept -1024)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}9.{abs(hash(path)) % 10**8}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.set_pixel_data(pixels.astype(np.int16), "MONOCHROME2", 16)
    if rle:
        ds.compress(RLELossless)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def competition_folder(root: Path, studies: int = 8, slices: int = 6, seed: int = 0) -> Path:
    """Write a small competition layout; study 0 also gets a 768 px series to be skipped.

    Studies 1-3 have boxes on slices 2-3; study 4 is fractured (patient_overall 1) without
    boxes, as many real fractured studies are; study 5 is RLE compressed.
    """
    rng = np.random.default_rng(seed)
    boxes, overall = [], []
    for s in range(studies):
        uid = f"{UID_ROOT}{10000 + s}"
        side = 768 if s == 0 else 512
        for k in range(1, slices + 1):
            raw = rng.integers(0, 2000, (side, side)).astype(np.int16)
            write_slice(root / "train_images" / uid / f"{k}.dcm", raw, rle=s == 5)
            if s in (1, 2, 3) and k in (2, 3):
                boxes.append((uid, 100.0 + 10 * s, 200.5, 40.0 + k, 30.25, k))
                if s == 1 and k == 2:  # two boxes on one slice
                    boxes.append((uid, 300.0, 310.0, 20.0, 22.0, k))
        overall.append((uid, int(s in (1, 2, 3, 4)), *([0] * 7)))
    pd.DataFrame(boxes, columns=["StudyInstanceUID", "x", "y", "width", "height",
                                 "slice_number"]).to_csv(root / "train_bounding_boxes.csv",
                                                         index=False)
    pd.DataFrame(overall, columns=["StudyInstanceUID", "patient_overall",
                                   *[f"C{i}" for i in range(1, 8)]]).to_csv(
        root / "train.csv", index=False)
    return root
