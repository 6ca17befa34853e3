"""Data for both assignments: readers of the real formats, synthetic stand-ins, datasets.

* ``dicom``     - RSNA pneumonia DICOMs and labels CSV
* ``hdf5``      - the C-spine HDF5 subset and its schema
* ``synthetic`` - generators writing those same formats, offline, from a seed
* ``datasets``  - ``collate`` for detection DataLoaders (the Datasets are exercises)
* ``splits``    - patient-wise train/val/test splits
* ``sources``   - ``locate``: real data when present, synthetic otherwise (with a banner)
"""

from helpers.data.datasets import collate
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
    "DataSource", "DicomReadError", "H5SchemaError", "LabelsError", "check_cspine_schema",
    "collate", "locate", "open_cspine", "patient_split", "patient_table", "pneumonia_layout",
    "read_dicom_image", "read_labels", "split_indices",
]
