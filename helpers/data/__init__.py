"""Data for both assignments: readers of the real formats, synthetic stand-ins, datasets.

* ``dicom``     - RSNA pneumonia DICOMs and labels CSV
* ``hdf5``      - the C-spine HDF5 subset and its schema
* ``synthetic`` - generators writing those same formats, offline, from a seed
* ``datasets``  - torch Datasets returning (image, target), and ``collate``
* ``splits``    - patient-wise train/val/test splits
* ``sources``   - ``locate``: real data when present, synthetic otherwise (with a banner)
"""

from helpers.data.datasets import (
    CSpineH5Dataset,
    PneumoniaDataset,
    collate,
    make_target,
    sanitize_boxes,
)
from helpers.data.dicom import (
    DicomReadError,
    LabelsError,
    patient_table,
    pneumonia_layout,
    read_dicom_image,
    read_labels,
)
from helpers.data.hdf5 import H5SchemaError, check_cspine_schema, open_cspine, split_indices
from helpers.data.sources import DataSource, locate
from helpers.data.splits import patient_split

__all__ = [
    "CSpineH5Dataset", "DataSource", "DicomReadError", "H5SchemaError", "LabelsError",
    "PneumoniaDataset", "check_cspine_schema", "collate", "locate", "make_target",
    "open_cspine", "patient_split", "patient_table", "pneumonia_layout", "read_dicom_image",
    "read_labels", "sanitize_boxes", "split_indices",
]
