import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from autograder.reference_datasets import CSpineH5Dataset, PneumoniaDataset, sanitize_boxes
from helpers.data import collate, pneumonia_layout, read_labels
from helpers.data.hdf5 import read_column
from helpers.transforms import eval_transforms


def check_sample(image, target, size):
    assert image.dtype == torch.float32 and image.shape == (3, size, size)
    assert 0.0 <= image.min() and image.max() <= 1.0
    boxes = target["boxes"]
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert target["labels"].dtype == torch.int64 and len(target["labels"]) == len(boxes)
    assert target["iscrowd"].dtype == torch.int64 and len(target["iscrowd"]) == len(boxes)
    assert target["image_id"].dtype == torch.int64
    assert torch.all(boxes[:, 2] > boxes[:, 0]) and torch.all(boxes[:, 3] > boxes[:, 1])
    assert torch.all(boxes >= 0) and torch.all(boxes <= size)
    expected_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    torch.testing.assert_close(target["area"], expected_area)


def test_sanitize_repairs_clips_and_drops():
    boxes = np.array([
        [50, 10, 20, 40],     # x corners swapped -> repaired
        [-5, -5, 30, 30],     # partly outside -> clipped
        [10, 10, 10, 40],     # zero width -> dropped
        [120, 120, 150, 150],  # wholly outside -> dropped
    ], np.float32)
    fixed, keep = sanitize_boxes(boxes, height=100, width=100)
    np.testing.assert_array_equal(fixed[0], [20, 10, 50, 40])
    np.testing.assert_array_equal(fixed[1], [0, 0, 30, 30])
    assert keep.tolist() == [True, True, False, False]


def test_pneumonia_dataset_positives_and_all(pneumonia_dir):
    csv, images = pneumonia_layout(pneumonia_dir)
    labels = read_labels(csv)
    positives = labels.loc[labels["Target"] == 1, "patientId"].nunique()
    ds = PneumoniaDataset(labels, images)
    assert len(ds) == positives > 0
    everyone = PneumoniaDataset(labels, images, positives_only=False)
    assert len(everyone) == labels["patientId"].nunique()
    for i in range(len(everyone)):
        image, target = everyone[i]
        check_sample(image, target, 256)
        pid = everyone.patient_ids[i]
        rows = labels[(labels["patientId"] == pid) & (labels["Target"] == 1)]
        np.testing.assert_allclose(target["boxes"].numpy(),
                                   rows[["x1", "y1", "x2", "y2"]].to_numpy(), rtol=1e-6)
        assert target["boxes"].shape == (len(rows), 4)  # negatives: (0, 4)
    assert any(len(everyone[i][1]["boxes"]) == 0 for i in range(len(everyone)))


def test_pneumonia_boxes_follow_a_resize(pneumonia_dir):
    csv, images = pneumonia_layout(pneumonia_dir)
    labels = read_labels(csv)
    plain = PneumoniaDataset(labels, images)
    small = PneumoniaDataset(labels, images, transform=eval_transforms(128))
    image, target = small[0]
    check_sample(image, target, 128)
    torch.testing.assert_close(target["boxes"], plain[0][1]["boxes"] / 2, atol=0.01, rtol=0)


def test_pneumonia_boxes_outside_the_image_are_clipped_or_dropped(pneumonia_dir):
    csv, images = pneumonia_layout(pneumonia_dir)
    labels = read_labels(csv)
    pid = labels.loc[labels["Target"] == 1, "patientId"].iloc[0]
    extra = pd.DataFrame({"patientId": [pid, pid], "Target": [1, 1],
                          "x1": [200.0, 300.0], "y1": [-20.0, 10.0],
                          "x2": [400.0, 350.0], "y2": [60.0, 50.0]})
    ds = PneumoniaDataset(pd.concat([labels, extra]), images, patient_ids=[pid])
    image, target = ds[0]
    check_sample(image, target, 256)
    assert [200.0, 0.0, 256.0, 60.0] in target["boxes"].tolist()  # clipped
    assert not any(b[0] >= 256 for b in target["boxes"].tolist())  # outside: dropped


def test_collate_keeps_lists(pneumonia_dir):
    csv, images = pneumonia_layout(pneumonia_dir)
    ds = PneumoniaDataset(read_labels(csv), images)
    imgs, targets = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert isinstance(imgs, list) and isinstance(targets, list) and len(imgs) == 3
    assert all(t["boxes"].shape[1] == 4 for t in targets)


def test_cspine_dataset_samples(cspine_h5):
    labels = read_column(cspine_h5, "labels")
    ds = CSpineH5Dataset(cspine_h5)
    assert len(ds) == len(labels)
    raw_boxes = read_column(cspine_h5, "bboxes")
    swapped = int(np.sum(raw_boxes[..., 0] > raw_boxes[..., 2]))
    assert swapped > 0  # the file has swapped corners for the dataset to repair
    for i in range(len(ds)):
        image, target = ds[i]
        check_sample(image, target, 256)
        assert image.min() == 0.0 and image.max() == 1.0  # stretched per slice
        assert (len(target["boxes"]) > 0) == bool(labels[i]), i
        assert int(target["image_id"]) == i


def test_cspine_split_and_indices(cspine_h5):
    split = read_column(cspine_h5, "split")
    for name, code in (("train", 0), ("val", 1), ("test", 2)):
        ds = CSpineH5Dataset(cspine_h5, split=name)
        assert len(ds) == int(np.sum(split == code)) > 0
    ds = CSpineH5Dataset(cspine_h5, indices=[5, 2])
    assert [int(ds[i][1]["image_id"]) for i in range(2)] == [5, 2]
    with pytest.raises(IndexError, match="indices must lie in"):
        CSpineH5Dataset(cspine_h5, indices=[10_000])
    with pytest.raises(ValueError, match="split or indices"):
        CSpineH5Dataset(cspine_h5, split="train", indices=[1])


def test_cspine_is_fork_safe_and_pickles(cspine_h5):
    ds = CSpineH5Dataset(cspine_h5, indices=range(12))
    ds[0]  # the parent opens its handle before the workers fork
    serial = [t["boxes"] for _, t in (ds[i] for i in range(12))]
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    parallel = [t["boxes"] for _, targets in loader for t in targets]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3][0], ds[3][0])
