"""Read the RSNA Pneumonia Detection Challenge layout: DICOM images and the labels CSV.

Two layouts are accepted, both one DICOM per patient named ``<patientId>.dcm``:

* Kaggle:        ``stage_2_train_labels.csv`` + ``stage_2_train_images/``
* summer school: ``labels.csv`` + ``images/``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.pixels import apply_modality_lut

__all__ = ["LABEL_COLUMNS", "LAYOUTS", "DicomReadError", "LabelsError", "patient_table",
           "pneumonia_layout", "read_dicom_image", "read_labels"]

LABEL_COLUMNS = ["patientId", "x", "y", "width", "height", "Target"]
LAYOUTS = (("labels.csv", "images"), ("stage_2_train_labels.csv", "stage_2_train_images"))

# Transfer syntaxes whose decoder is not part of pydicom + Pillow, and what provides one.
_CODECS = {
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.50": "pillow",  # JPEG Baseline: the real RSNA files
}


class DicomReadError(ValueError):
    """A DICOM file could not be read as a 2-D image."""


class LabelsError(ValueError):
    """A labels CSV does not have the RSNA layout."""


def decode_pixels(path: str | Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """Read a DICOM file and decode its pixel data as stored (no rescale, no window).

    A compressed transfer syntax without a decoder here is a DicomReadError that names the
    package to install (the RSNA 2022 CT slices are JPEG Lossless or JPEG 2000).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # pydicom raises several types for a damaged header
        raise DicomReadError(f"{path}: not a readable DICOM file ({err})") from err
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "unknown"))
    try:
        raw = ds.pixel_array
    except RuntimeError as err:  # pydicom's "plugins are missing dependencies"
        package = _CODECS.get(syntax, "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
        raise DicomReadError(
            f"{path}: pixel data compressed as {syntax} ({pydicom.uid.UID(syntax).name}) "
            f"cannot be decoded here; install a codec: pip install {package}"
        ) from err
    except Exception as err:  # truncated pixel data, missing pixel tags, ...
        raise DicomReadError(f"{path}: pixel data is unreadable ({err})") from err
    return ds, raw


def read_dicom_image(path: str | Path) -> np.ndarray:
    """Read a single-frame grayscale DICOM as a 2-D float32 array in [0, 1].

    RescaleSlope/Intercept are applied. 8-bit images keep their absolute scale
    (value / 255); deeper images (CT, MR) are stretched to their own min..max.
    MONOCHROME1 (white = low) is inverted so that bright always means dense.
    """
    path = Path(path)
    ds, raw = decode_pixels(path)
    if raw.ndim != 2:
        raise DicomReadError(
            f"{path}: expected one grayscale frame (2-D pixels), got shape {raw.shape}"
        )
    pixels = apply_modality_lut(raw, ds).astype(np.float32)
    bits = int(getattr(ds, "BitsStored", 8))
    rescaled = float(getattr(ds, "RescaleSlope", 1)) != 1 or float(
        getattr(ds, "RescaleIntercept", 0)
    ) != 0
    if bits <= 8 and not rescaled:
        img = pixels / 255.0
    else:
        lo, hi = float(pixels.min()), float(pixels.max())
        img = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        img = 1.0 - img
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def pneumonia_layout(root: str | Path) -> tuple[Path, Path]:
    """Return (labels CSV, image folder) of an RSNA pneumonia folder, or say what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder (expected the RSNA pneumonia data)")
    for csv_name, image_dir in LAYOUTS:
        if (root / csv_name).is_file() and (root / image_dir).is_dir():
            return root / csv_name, root / image_dir
    expected = " or ".join(f"{c} + {d}/" for c, d in LAYOUTS)
    raise FileNotFoundError(f"{root}: not an RSNA pneumonia folder; expected {expected}")


def read_labels(csv_path: str | Path) -> pd.DataFrame:
    """Read an RSNA labels CSV: one row per box, with x1,y1,x2,y2 added from x,y,width,height.

    Negative patients keep their single row with NaN box fields and Target 0.
    """
    csv_path = Path(csv_path)
    expected = ",".join(LABEL_COLUMNS)
    try:
        df = pd.read_csv(csv_path, dtype={"patientId": str})
    except pd.errors.EmptyDataError as err:
        raise LabelsError(f"{csv_path}: file is empty; expected the header {expected}") from err
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise LabelsError(
            f"{csv_path}: missing column(s) {missing}; expected the header {expected}, "
            f"found {list(df.columns)}"
        )
    if df.empty:
        raise LabelsError(f"{csv_path}: has a header but no rows")
    if not df["Target"].isin([0, 1]).all():
        raise LabelsError(f"{csv_path}: Target must be 0 or 1")
    positive = df["Target"] == 1
    box = df.loc[positive, ["x", "y", "width", "height"]]
    if box.isna().any().any():
        bad = df.loc[positive & df[["x", "y", "width", "height"]].isna().any(axis=1)]
        raise LabelsError(
            f"{csv_path}: rows with Target=1 need x,y,width,height; "
            f"patient {bad['patientId'].iloc[0]} has empty box fields"
        )
    df["x1"], df["y1"] = df["x"], df["y"]
    df["x2"], df["y2"] = df["x"] + df["width"], df["y"] + df["height"]
    return df


def patient_table(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: patientId, Target, number of boxes."""
    g = labels.groupby("patientId", sort=False)
    return pd.DataFrame(
        {"Target": g["Target"].max(), "n_boxes": g["x"].count()}
    ).reset_index()
