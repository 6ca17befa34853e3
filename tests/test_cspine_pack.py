"""The packer builds the C-spine subset from a competition layout as the public notebook does."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest

from helpers.data import cspine_pack
from helpers.data.__main__ import main as data_cli
from helpers.data.cspine_pack import PackError, pack_cspine
from helpers.data.hdf5 import open_cspine
from tests.competition_layout import competition_folder


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    return competition_folder(tmp_path_factory.mktemp("rsna2022"))


@pytest.fixture(scope="module")
def packed(competition, tmp_path_factory):
    return pack_cspine(competition, tmp_path_factory.mktemp("packed") / "subset.h5",
                       progress=False)


def _column(f, key):
    return np.array([v.decode() if isinstance(v, bytes) else v for v in f[key][()]])


def test_layout_is_the_notebooks(packed):
    with open_cspine(packed) as f:  # the course's own schema check accepts it
        assert f["images"].chunks == (20, 256, 256) and f["images"].dtype == np.float32
        assert f["bboxes"].fillvalue == -1.0 and f["bboxes"].dtype == np.float32
        assert f["labels"].dtype == np.int8 and f["split"].dtype == np.int8
        assert h5py.check_string_dtype(f["StudyInstanceUID"].dtype).encoding == "utf-8"
        assert "study_fractured" not in f and not dict(f.attrs)


def test_boxes_are_xywh_at_half_scale_with_minus_one_padding(packed, competition):
    csv = pd.read_csv(competition / "train_bounding_boxes.csv")
    with h5py.File(packed) as f:
        uids, slices = _column(f, "StudyInstanceUID"), _column(f, "SliceNumber")
        bboxes, labels = f["bboxes"][()], f["labels"][()]
    for i, (uid, k) in enumerate(zip(uids, slices, strict=True)):
        rows = csv[(csv["StudyInstanceUID"] == uid) & (csv["slice_number"] == int(k))]
        want = rows[["x", "y", "width", "height"]].to_numpy(np.float32) * 0.5
        assert labels[i] == int(len(want) > 0)
        np.testing.assert_allclose(bboxes[i, :len(want)], want)
        assert (bboxes[i, len(want):] == -1.0).all()
    assert labels.sum() == 6 and (bboxes != -1).any(axis=2).sum() == 7


def test_splits_by_study_and_three_negatives_per_positive(packed, competition):
    with h5py.File(packed) as f:
        uids, split, labels = _column(f, "StudyInstanceUID"), f["split"][()], f["labels"][()]
    assert all(len(set(split[uids == u])) == 1 for u in set(uids))
    assert "1.2.826.0.1.3680043.10000" not in set(uids)  # the 768 px series is skipped
    plan = cspine_pack.plan_subset(competition)  # every 512 px study, with its split
    study_split = plan.groupby("StudyInstanceUID")["split"].first()
    assert len(study_split) <= 7 and set(study_split.index) >= set(uids)
    for code in (0, 1, 2):
        pos = int(labels[split == code].sum())
        # negatives come from the split's own studies, 6 slices each, as many as exist
        available = 6 * int((study_split == code).sum()) - pos
        assert int((labels[split == code] == 0).sum()) == min(3 * pos, available)
    assert labels.sum() == 6 and 0 < (labels == 0).sum() < 18


def test_images_are_raw_pixels_min_max_per_slice_then_resized(packed, competition):
    with h5py.File(packed) as f:
        uid, k = _column(f, "StudyInstanceUID")[0], _column(f, "SliceNumber")[0]
        stored = f["images"][0]
    raw = pydicom.dcmread(competition / "train_images" / uid / f"{k}.dcm").pixel_array
    raw = raw.astype(np.float32)  # the raw values, not Hounsfield units
    want = cv2.resize((raw - raw.min()) / (raw.max() - raw.min()), (256, 256),
                      interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(stored, want, atol=1e-6)


def test_bone_window_and_study_fractured_are_opt_in(competition, tmp_path):
    out = pack_cspine(competition, tmp_path / "hu.h5", window="bone", study_fractured=True,
                      size=128, progress=False)
    with h5py.File(out) as f:
        assert "bone window" in f.attrs["intensity"]
        uids, fractured = _column(f, "StudyInstanceUID"), f["study_fractured"][()]
        images = f["images"][()]
    truth = pd.read_csv(competition / "train.csv").set_index("StudyInstanceUID")
    assert fractured.tolist() == [truth.loc[u, "patient_overall"] for u in uids]
    # raw 0..2000 with intercept -1024 is -1024..976 HU: below the window's -500 is 0
    assert images.shape[1:] == (128, 128) and images.min() == 0.0 and images.max() < 1.0


def test_an_interrupted_run_resumes_to_the_same_file(competition, packed, tmp_path,
                                                     monkeypatch):
    out, calls = tmp_path / "subset.h5", {"n": 0}
    real = cspine_pack._slice_image

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cspine_pack, "_slice_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        pack_cspine(competition, out, progress=False)
    assert not out.exists() and out.with_name("subset.h5.partial").exists()
    monkeypatch.setattr(cspine_pack, "_slice_image", real)
    pack_cspine(competition, out, progress=False)
    assert not out.with_name("subset.h5.partial").exists()
    with h5py.File(out) as a, h5py.File(packed) as b:
        for key in b:
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_missing_competition_file_is_named(competition, tmp_path):
    (tmp_path / "train_images").mkdir()
    (tmp_path / "train.csv").write_text("StudyInstanceUID,patient_overall\n")
    with pytest.raises(PackError, match="train_bounding_boxes.csv: missing"):
        pack_cspine(tmp_path, tmp_path / "out.h5", progress=False)


def test_undecodable_slice_names_the_codec(competition, tmp_path):
    import shutil

    root = shutil.copytree(competition, tmp_path / "comp")
    for path in (root / "train_images").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1  # as the real files
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not a real stream \xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(PackError, match="pip install pylibjpeg pylibjpeg-libjpeg"):
        pack_cspine(root, tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists()


def test_command_line(competition, tmp_path, capsys):
    assert data_cli(["pack-cspine", str(competition), str(tmp_path / "s.h5"), "--seed", "1",
                     "--negatives-per-positive", "1"]) == 0
    printed = capsys.readouterr().out
    assert "6 with boxes" in printed and "slices" in printed
    with h5py.File(tmp_path / "s.h5") as f:
        assert (f["labels"][()] == 0).sum() == 6
