"""Reference Datasets of the two Dataset exercises, for the hidden checks (never shipped).

Each returns ``(image, target)`` in torchvision's detection convention: image float32
``[3,H,W]`` in [0,1] (the model normalises it itself), target a dict with ``boxes`` float32
``[N,4]`` as ``[x1,y1,x2,y2]`` pixels, ``labels`` int64 ``[N]``, ``image_id`` int64,
``area`` float32 ``[N]`` and ``iscrowd`` int64 ``[N]``. An image without lesions has
``boxes`` of shape ``(0, 4)``.

They are the exercises' answers, so they live here and not in ``helpers`` (which ships to
students); the instructor-side demo figure and the benchmarks use them too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from helpers.data.dicom import read_dicom_image
from helpers.data.hdf5 import fill_rows, open_cspine, split_code

__all__ = ["CSpineH5Dataset", "PneumoniaDataset", "make_target", "sanitize_boxes", "to_sample"]

Transform = Callable[..., dict]


def sanitize_boxes(
    boxes: np.ndarray, height: int, width: int, min_size: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Repair swapped corners, clip to the image and find boxes too small to keep.

    Returns the repaired float32 ``[N,4]`` boxes and a boolean mask of the ones to keep
    (both sides at least ``min_size`` pixels after clipping). torchvision raises on a
    zero-width box, so such boxes never reach the model.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    b = np.stack([x1, y1, x2, y2], axis=1)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return b, keep


def make_target(boxes: np.ndarray, labels: np.ndarray, image_id: int) -> dict[str, torch.Tensor]:
    """Build torchvision's target dict from xyxy boxes and their labels."""
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return {
        "boxes": boxes_t,
        "labels": torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1),
        "image_id": torch.tensor(image_id, dtype=torch.int64),
        "area": (boxes_t[:, 2] - boxes_t[:, 0]) * (boxes_t[:, 3] - boxes_t[:, 1]),
        "iscrowd": torch.zeros(len(boxes_t), dtype=torch.int64),
    }


def to_sample(
    image: np.ndarray,
    boxes: np.ndarray,
    image_id: int,
    transform: Transform | None = None,
    label: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Turn a 2-D image in [0,1] and its boxes into ``(image [3,H,W], target)``."""
    h, w = image.shape
    boxes, keep = sanitize_boxes(boxes, h, w)
    boxes = boxes[keep]
    labels = np.full(len(boxes), label, dtype=np.int64)
    # The detector's backbone expects 3 channels: the gray image is copied into each.
    if transform is None:
        img = torch.empty((3, h, w), dtype=torch.float32)
        img[:] = torch.from_numpy(np.asarray(image, dtype=np.float32))
    else:
        rgb = np.repeat(image[:, :, None], 3, axis=2)
        out = transform(image=rgb, bboxes=boxes, labels=labels)
        img, boxes, labels = out["image"], out["bboxes"], out["labels"]
        if isinstance(img, torch.Tensor):  # the pipeline ended in ToTensorV2: [3,H,W]
            img = img.to(torch.float32)
        else:
            img = torch.from_numpy(np.ascontiguousarray(np.transpose(img, (2, 0, 1)), np.float32))
    # A transform may push a box partly out or squash it: repair again, after the fact.
    boxes, keep = sanitize_boxes(np.asarray(boxes), img.shape[1], img.shape[2])
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)[keep]  # albumentations gives floats
    return img, make_target(boxes[keep], labels, image_id)


class PneumoniaDataset(Dataset):
    """RSNA pneumonia patients as detection samples (one DICOM per patient)."""

    def __init__(
        self,
        labels: pd.DataFrame,
        image_dir: str | Path,
        patient_ids: Sequence[str] | None = None,
        positives_only: bool = True,
        transform: Transform | None = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.transform = transform
        if patient_ids is None:
            patient_ids = labels["patientId"].drop_duplicates().tolist()
        wanted = labels[labels["patientId"].isin(set(patient_ids))]
        if positives_only:
            wanted = wanted[wanted["Target"] == 1]
        self.boxes = {
            pid: rows.loc[rows["Target"] == 1, ["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
            for pid, rows in wanted.groupby("patientId", sort=False)
        }
        present = set(self.boxes)
        self.patient_ids = [p for p in dict.fromkeys(patient_ids) if p in present]

    def __len__(self) -> int:
        return len(self.patient_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pid = self.patient_ids[idx]
        image = read_dicom_image(self.image_dir / f"{pid}.dcm")
        return to_sample(image, self.boxes[pid], idx, self.transform)


class CSpineH5Dataset(Dataset):
    """Slices of the C-spine HDF5 file as detection samples.

    The file stores boxes as ``[x, y, width, height]`` with rows of -1 as padding (the
    public packing notebook's encoding); they are decoded to ``[x1, y1, x2, y2]`` here.

    The file is opened lazily, once per process: a handle opened before a DataLoader
    forks its workers must not be shared with them, and opening the file (and looking up
    its datasets) per item costs more than reading one slice. The small ``bboxes`` array
    is read into memory up front; only the slices are read per item.
    """

    def __init__(
        self,
        path: str | Path,
        split: str | int | None = None,
        indices: Sequence[int] | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.path = Path(path)
        if split is not None and indices is not None:
            raise ValueError("pass split or indices, not both")
        with open_cspine(self.path) as f:  # checks the schema, and labels against bboxes
            n = f["images"].shape[0]
            self.bboxes = f["bboxes"][()]  # small: (N,10,4) floats, [x, y, w, h], -1 fill
            self.labels = f["labels"][()]  # 1 exactly when the slice has a box
            if split is not None:
                indices = np.flatnonzero(f["split"][()] == split_code(split))
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"{self.path}: indices must lie in [0, {n}), the file has {n} slices")
        self.transform = transform
        self._file = None
        self._handles = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_handles"], state["_pid"] = None, None, None  # no pickling
        return state

    def _store(self) -> dict:
        """This process's open ``images`` dataset and the in-memory boxes."""
        if self._handles is None or self._pid != os.getpid():
            # A handle inherited through fork is left alone: closing it would touch the
            # parent's HDF5 state. Looking a dataset up by name is slow, so keep the object.
            self._file = open_cspine(self.path)
            self._handles = {"images": self._file["images"], "bboxes": self.bboxes}
            self._pid = os.getpid()
        return self._handles

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.load(self._store(), idx)

    def load(self, store, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Build sample ``idx`` from any mapping with ``images`` and ``bboxes`` arrays
        (the open file's datasets, NumPy arrays in memory, ...)."""
        i = int(self.indices[idx])
        # Used as stored: the packer already min-max scaled each slice to [0, 1] (then
        # resized it), so stretching it again would change a slice that does not reach
        # exactly 0 or 1 after the resize, and a constant slice stays what it is (0 in the
        # real file). Clipping only guards against a value a hair outside [0, 1].
        image = np.clip(np.asarray(store["images"][i], dtype=np.float32), 0.0, 1.0)
        rows = np.asarray(store["bboxes"][i], dtype=np.float32)
        rows = rows[~fill_rows(rows)]  # rows of -1 are padding (none left when labels[i] is 0)
        # [x, y, width, height] -> [x1, y1, x2, y2]; to_sample drops boxes under 1 px.
        boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1)
        return to_sample(image, boxes, i, self.transform)
