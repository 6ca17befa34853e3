import h5py
import numpy as np
import pytest

from helpers.data import H5SchemaError, open_cspine, split_indices
from helpers.data.hdf5 import check_labels


def write_h5(path, n=4, **changes):
    """A valid C-spine file of n slices; changes replace (or, given None, drop) keys."""
    arrays = {
        "images": np.zeros((n, 16, 16), np.float32),
        "bboxes": np.full((n, 10, 4), -1.0, np.float32),  # no boxes: every row is fill
        "labels": np.zeros(n, np.int8),
        "split": np.zeros(n, np.int8),
        "StudyInstanceUID": np.array(["1.2.3"] * n, dtype=object),
        "SliceNumber": np.array([str(i) for i in range(n)], dtype=object),
    }
    arrays.update(changes)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is None:
                continue
            dtype = h5py.string_dtype() if value.dtype == object else value.dtype
            f.create_dataset(key, data=value, dtype=dtype)
    return path


def test_valid_file_opens(tmp_path):
    with open_cspine(write_h5(tmp_path / "ok.h5")) as f:
        assert f["images"].shape == (4, 16, 16)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bboxes": None}, r"bad.h5: missing key\(s\) \['bboxes'\]"),
        ({"images": np.zeros((4, 16, 16), np.float64)},
         "key 'images' has dtype float64; expected float32"),
        ({"images": np.zeros((4, 16, 16), np.uint8)}, "key 'images' has dtype uint8"),
        ({"bboxes": np.zeros((4, 4), np.float32)}, r"key 'bboxes' has shape \(4, 4\)"),
        ({"bboxes": np.zeros((4, 5, 4), np.float32)}, r"'bboxes' has shape \(4, 5, 4\); "
                                                      r"expected \(N,10,4\)"),
        ({"labels": np.zeros(3, np.int8)}, r"key 'labels' has shape \(3,\); expected int8 \(N,\) "
                                          "with N=4"),
        ({"split": np.zeros(4, np.float32)}, "key 'split' has dtype float32"),
    ],
)
def test_wrong_schema_names_the_key(tmp_path, changes, message):
    path = write_h5(tmp_path / "bad.h5", **changes)
    with pytest.raises(H5SchemaError, match=message):
        open_cspine(path)


def test_optional_study_fractured_column(tmp_path):
    path = write_h5(tmp_path / "sf.h5", study_fractured=np.array([0, 1, 1, 0], np.int8))
    with open_cspine(path) as f:
        assert f["study_fractured"][()].tolist() == [0, 1, 1, 0]
    bad = write_h5(tmp_path / "bad.h5", study_fractured=np.zeros(4, np.float32))
    with pytest.raises(H5SchemaError, match="key 'study_fractured' has dtype float32"):
        open_cspine(bad)


def test_labels_must_match_the_boxes(tmp_path):
    boxes = np.full((4, 10, 4), -1.0, np.float32)
    boxes[1, 0] = [120, 110, 20, 15]  # [x, y, width, height]
    ok = write_h5(tmp_path / "ok.h5", bboxes=boxes, labels=np.array([0, 1, 0, 0], np.int8))
    open_cspine(ok).close()
    check_labels(ok)
    wrong = write_h5(tmp_path / "wrong.h5", bboxes=boxes,
                     labels=np.array([0, 0, 0, 1], np.int8))
    with pytest.raises(H5SchemaError, match=r"wrong.h5: slice 1 has labels=0 but a box row"):
        open_cspine(wrong)
    with pytest.raises(H5SchemaError, match=r"slice 1 has labels=0 .*2 slice\(s\) disagree"):
        check_labels(wrong)
    zeros = write_h5(tmp_path / "zeros.h5", bboxes=np.where(boxes == -1, 0, boxes),
                     labels=np.array([0, 1, 0, 0], np.int8))  # zero padding: not this file
    with pytest.raises(H5SchemaError, match="slice 0 has labels=0 .*a row of zeros is a box"):
        open_cspine(zeros)
    with open_cspine(zeros, labels=False) as f:  # the schema alone does not look at values
        assert f["labels"].shape == (4,)


def test_not_hdf5_and_missing_file(tmp_path):
    (tmp_path / "fake.h5").write_bytes(b"\x89HDF not really" * 10)
    with pytest.raises(H5SchemaError, match="fake.h5: not a readable HDF5 file"):
        open_cspine(tmp_path / "fake.h5")
    with pytest.raises(FileNotFoundError, match="gone.h5: no such HDF5 file"):
        open_cspine(tmp_path / "gone.h5")


def test_split_indices(tmp_path):
    path = write_h5(tmp_path / "s.h5", split=np.array([0, 2, 1, 0], np.int8))
    assert split_indices(path, "train").tolist() == [0, 3]
    assert split_indices(path, 1).tolist() == [2]
    assert split_indices(path, "test").tolist() == [1]
    with pytest.raises(ValueError, match="split='valid'; expected one of"):
        split_indices(path, "valid")
