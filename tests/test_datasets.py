import pickle
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from autograder.reference_datasets import CSpineH5Dataset, PneumoniaDataset, sanitize_boxes
from helpers.data import collate, pneumonia_layout, read_labels
from helpers.data.cspine_pack import pack_cspine
from helpers.data.hdf5 import check_labels, read_column
from helpers.transforms import eval_transforms
from tests.competition_layout import competition_folder


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
    assert (raw_boxes == -1).all(axis=2).any()  # -1 rows for the dataset to drop
    with h5py.File(cspine_h5) as f:
        stored = f["images"][()]
    for i in range(len(ds)):
        image, target = ds[i]
        check_sample(image, target, 256)
        torch.testing.assert_close(image[0], torch.from_numpy(stored[i]))  # as stored
        assert (len(target["boxes"]) > 0) == bool(labels[i]), i
        assert int(target["image_id"]) == i
        rows = raw_boxes[i][(raw_boxes[i] != -1).any(axis=1)]  # [x, y, width, height]
        want = np.column_stack([rows[:, 0], rows[:, 1], rows[:, 0] + rows[:, 2],
                                rows[:, 1] + rows[:, 3]])
        np.testing.assert_allclose(target["boxes"].numpy(), want.reshape(-1, 4))


def test_cspine_decodes_planted_rows(tmp_path, cspine_h5):
    """Known rows: xywh decoded, -1 padding and a sub-pixel box dropped, image kept as is."""
    path = tmp_path / "planted.h5"
    shutil.copy(cspine_h5, path)
    with h5py.File(path, "r+") as f:
        i = int(np.flatnonzero(f["labels"][()])[0])
        rows = np.full((10, 4), -1.0, np.float32)
        rows[:3] = [[60.0, 80.0, 20.0, 30.0], [10.0, 10.0, 0.5, 30.0], [120, 110, 20, 15]]
        f["bboxes"][i] = rows
        empty = int(np.flatnonzero(f["labels"][()] == 0)[0])
        f["images"][empty] = 0.0  # a constant slice, as the packer writes it
        f["images"][i] = 0.9 * f["images"][i]  # a slice short of 1 after the resize
    ds = CSpineH5Dataset(path, indices=[i, empty])
    image, target = ds[0]
    assert target["boxes"].tolist() == [[60, 80, 80, 110], [120, 110, 140, 125]]
    assert target["area"].tolist() == [600, 300] and target["labels"].tolist() == [1, 1]
    assert abs(float(image.max()) - 0.9) < 1e-6  # not stretched again
    image, target = ds[1]
    assert float(image.abs().max()) == 0.0 and target["boxes"].shape == (0, 4)


def test_cspine_reads_a_packed_competition_layout(tmp_path):
    """A file packed the way the public notebook packs it, end to end through the reader,
    its labels check and the reference Dataset."""
    out = pack_cspine(competition_folder(tmp_path / "rsna2022"), tmp_path / "subset.h5",
                      progress=False)
    check_labels(out)
    truth = pd.read_csv(tmp_path / "rsna2022" / "train_bounding_boxes.csv")
    ds = CSpineH5Dataset(out)
    uids, numbers = read_column(out, "StudyInstanceUID"), read_column(out, "SliceNumber")
    seen = 0
    for i in range(len(ds)):
        image, target = ds[i]
        check_sample(image, target, 256)
        rows = truth[(truth["StudyInstanceUID"] == uids[i])
                     & (truth["slice_number"] == int(numbers[i]))]
        xywh = rows[["x", "y", "width", "height"]].to_numpy(np.float32) * 0.5  # 512 -> 256
        want = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]).reshape(-1, 4)
        np.testing.assert_allclose(target["boxes"].numpy(), want, rtol=1e-6)
        seen += len(want)
    assert seen == 7  # every competition box, none of the -1 rows


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
