"""The synthetic stand-ins: repeatable, and readable by code that knows only the real formats."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest

from helpers.data.__main__ import main
from helpers.data.hdf5 import open_cspine
from helpers.data.synthetic import synth_cspine, synth_pneumonia

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
H5_KEYS = {"images", "bboxes", "labels", "split", "StudyInstanceUID", "SliceNumber"}


def digests(root):
    """sha256 of every file under root, by relative path."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


@pytest.fixture(scope="module")
def pneumonia(tmp_path_factory):
    """100 patients at 128 px, JPEG-compressed like the real files."""
    return synth_pneumonia(tmp_path_factory.mktemp("pneu") / "rsna", patients=100, seed=0,
                           size=128)


@pytest.fixture(scope="module")
def labels(pneumonia):
    return pd.read_csv(pneumonia / "labels.csv")


@pytest.fixture(scope="module")
def cspine(tmp_path_factory):
    """120 slices at 256 px, read fully into memory."""
    path = synth_cspine(tmp_path_factory.mktemp("spine") / "cspine.h5", slices=120, seed=0)
    with h5py.File(path, "r") as f:
        data = {key: f[key][()] for key in f}
        data["keys"] = set(f.keys())
        data["chunks"] = f["images"].chunks
    for key in ("StudyInstanceUID", "SliceNumber"):
        data[key] = np.array([v.decode() for v in data[key]])
    return data


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = synth_pneumonia(tmp_path / "a" / "rsna", patients=12, seed=7, size=64)
    b = synth_pneumonia(tmp_path / "b" / "rsna", patients=12, seed=7, size=64)
    c = synth_pneumonia(tmp_path / "c" / "rsna", patients=12, seed=8, size=64)
    assert digests(a) == digests(b) and len(digests(a)) == 12 + 2
    assert (a / "labels.csv").read_bytes() != (c / "labels.csv").read_bytes()
    h5 = [synth_cspine(tmp_path / f"{k}.h5", slices=45, seed=s, size=64)
          for k, s in (("a", 7), ("b", 7), ("c", 8))]
    assert digests(h5[0]).popitem()[1] == digests(h5[1]).popitem()[1]
    with h5py.File(h5[0]) as f0, h5py.File(h5[2]) as f2:
        assert not np.array_equal(f0["images"][()], f2["images"][()])


def test_labels_csv_has_the_rsna_layout(labels):
    assert list(labels.columns) == ["patientId", "x", "y", "width", "height", "Target"]
    per_patient = labels.groupby("patientId")["Target"].agg(["max", "min", "size"])
    assert len(per_patient) == 100 and (per_patient["max"] == per_patient["min"]).all()
    assert (per_patient["max"] == 1).sum() == 22  # round(0.22 * 100), exactly
    negatives = labels[labels["Target"] == 0]
    assert negatives[["x", "y", "width", "height"]].isna().all().all()
    assert (per_patient.loc[per_patient["max"] == 0, "size"] == 1).all()  # one row each
    positives = labels[labels["Target"] == 1]
    assert positives[["x", "y", "width", "height"]].notna().all().all()
    assert (per_patient.loc[per_patient["max"] == 1, "size"] >= 2).any()
    assert (positives[["x", "y"]] >= 0).all().all()
    assert ((positives["x"] + positives["width"]) <= 128).all()
    assert ((positives["y"] + positives["height"]) <= 128).all()
    assert (positives[["x", "y", "width", "height"]] % 1 == 0).all().all()  # '264.0'
    assert (positives["width"] >= 4).all() and positives["height"].median() > 20


def test_boxes_of_one_patient_hardly_overlap(labels):
    for _, group in labels[labels["Target"] == 1].groupby("patientId"):
        b = group[["x", "y", "width", "height"]].to_numpy()
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                ix = max(0, min(b[i, 0] + b[i, 2], b[j, 0] + b[j, 2]) - max(b[i, 0], b[j, 0]))
                iy = max(0, min(b[i, 1] + b[i, 3], b[j, 1] + b[j, 3]) - max(b[i, 1], b[j, 1]))
                union = b[i, 2] * b[i, 3] + b[j, 2] * b[j, 3] - ix * iy
                assert ix * iy / union <= 0.1


def test_detailed_class_info_matches_labels(pneumonia, labels):
    info = pd.read_csv(pneumonia / "detailed_class_info.csv")
    assert list(info.columns) == ["patientId", "class"]
    assert info["patientId"].tolist() == labels["patientId"].tolist()
    positive = labels["Target"] == 1
    assert (info.loc[positive, "class"] == "Lung Opacity").all()
    assert set(info.loc[~positive, "class"]) == {"Normal", "No Lung Opacity / Not Normal"}


def test_every_patient_has_a_jpeg_dicom_with_the_rsna_tags(pneumonia, labels):
    ids = set(labels["patientId"])
    assert {p.stem for p in (pneumonia / "images").glob("*.dcm")} == ids
    sops = set()
    for pid in sorted(ids)[:30]:
        ds = pydicom.dcmread(pneumonia / "images" / f"{pid}.dcm")
        assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE
        assert (ds.Modality, ds.BodyPartExamined, ds.ConversionType) == ("CR", "CHEST", "WSD")
        assert ds.PatientID == str(ds.PatientName) == pid
        assert ds.PatientSex in ("M", "F") and ds.PatientAge.isdigit()
        assert ds.ViewPosition in ("PA", "AP")
        assert ds.SeriesDescription == f"view: {ds.ViewPosition}"
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (128, 128, 1)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.143 * 8] * 2)
        pixels = ds.pixel_array
        assert pixels.shape == (128, 128) and pixels.dtype == np.uint8
        sops.add(ds.SOPInstanceUID)
        assert ds.StudyInstanceUID != ds.SeriesInstanceUID != ds.SOPInstanceUID
    assert len(sops) == 30


def test_uncompressed_dicoms_hold_raw_pixels(tmp_path):
    root = synth_pneumonia(tmp_path / "raw", patients=5, seed=1, size=64, compress=False)
    for path in (root / "images").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert "LossyImageCompression" not in ds
        assert ds.pixel_array.shape == (64, 64) and ds.pixel_array.dtype == np.uint8
        assert len(ds.PixelData) == 64 * 64


def test_opacities_are_brighter_than_the_same_place_in_negatives(pneumonia, labels):
    images = {pid: pydicom.dcmread(pneumonia / "images" / f"{pid}.dcm").pixel_array
              for pid in labels["patientId"].unique()}
    negatives = labels.loc[labels["Target"] == 0, "patientId"]
    mean_negative = np.mean([images[pid] for pid in negatives], axis=0)
    lifts = []
    for row in labels[labels["Target"] == 1].itertuples():
        region = np.s_[int(row.y):int(row.y + row.height), int(row.x):int(row.x + row.width)]
        lifts.append(images[row.patientId][region].mean() - mean_negative[region].mean())
    assert np.mean(lifts) > 10  # grey levels out of 255
    assert np.mean(np.array(lifts) > 0) > 0.9


def test_cspine_keys_shapes_dtypes(cspine):
    n = len(cspine["labels"])
    assert cspine["keys"] == H5_KEYS and n == 120  # 30 positives, 90 negatives
    assert cspine["images"].shape == (n, 256, 256) and cspine["images"].dtype == np.float32
    assert cspine["chunks"] == (32, 256, 256)  # as the public notebook's file
    assert cspine["bboxes"].shape == (n, 10, 4) and cspine["bboxes"].dtype == np.float32
    for key in ("labels", "split"):
        assert cspine[key].shape == (n,) and cspine[key].dtype == np.int8
    assert all(uid.startswith("1.2.826.0.1.3680043.") for uid in cspine["StudyInstanceUID"])


def test_cspine_layout_is_the_packers(tmp_path):
    """Same chunks, fill value and string type as cspine_pack.create_cspine_file."""
    path = synth_cspine(tmp_path / "s.h5", slices=60, seed=3, size=64, study_fractured=True)
    with open_cspine(path) as f:  # the reader's schema and labels checks accept it
        assert f["bboxes"].chunks == (32, 10, 4) and f["bboxes"].fillvalue == -1.0
        assert f["labels"].chunks == f["split"].chunks == (60,)  # min(512, N)
        assert h5py.check_string_dtype(f["SliceNumber"].dtype).length is None  # vlen
        fractured, labels, studies = (f["study_fractured"][()], f["labels"][()],
                                      f["StudyInstanceUID"][()])
    assert fractured.dtype == np.int8 and set(fractured[labels == 1]) == {1}
    assert all(len(set(fractured[studies == u])) == 1 for u in set(studies))
    assert (fractured[labels == 0] == 1).any()  # clean slices of fractured studies


def test_cspine_images_are_min_max_scaled_per_slice(cspine):
    images = cspine["images"]
    lows, highs = images.min(axis=(1, 2)), images.max(axis=(1, 2))
    assert (lows == 0).all() and (highs == 1).all()  # as the packer writes them


def test_cspine_studies_splits_and_negatives(cspine):
    frame = pd.DataFrame({"study": cspine["StudyInstanceUID"], "split": cspine["split"],
                          "slice": cspine["SliceNumber"].astype(int),
                          "label": cspine["labels"]})
    assert (frame.groupby("study")["split"].nunique() == 1).all()
    assert set(frame["split"]) == {0, 1, 2}
    assert not frame.duplicated(["study", "slice"]).any()
    for code in (0, 1, 2):  # 3 negatives per positive within each split
        labels = frame.loc[frame["split"] == code, "label"]
        assert labels.sum() > 0 and (labels == 0).sum() == 3 * labels.sum()
    positives = frame[frame["label"] == 1].groupby("split")["label"].size()
    assert positives.tolist() == [22, 4, 4]  # 30 positives, 70/15/15 (4.5 rounds to 4)
    runs = frame.groupby("study")["study"].transform("size")
    assert not (frame.index.to_series().diff() == 1)[runs > 1].all()  # rows are shuffled
    assert frame.loc[frame["label"] == 1, "study"].nunique() >= 4  # many fractures


def test_every_cspine_split_holds_fractured_and_healthy_studies(cspine):
    """A study table per split needs both kinds: no box in a study is 'healthy' to it."""
    frame = pd.DataFrame({"study": cspine["StudyInstanceUID"], "split": cspine["split"],
                          "label": cspine["labels"]})
    per_study = frame.groupby("study").agg(split=("split", "first"), boxed=("label", "max"))
    for code in (0, 1, 2):
        boxed = per_study.loc[per_study["split"] == code, "boxed"]
        assert boxed.sum() >= 1 and (boxed == 0).sum() >= 1, (code, boxed.tolist())


def test_cspine_labels_match_xywh_boxes_with_minus_one_fill(cspine):
    boxes, labels = cspine["bboxes"], cspine["labels"]
    filled = (boxes != -1).any(axis=2)
    assert ((boxes == -1).all(axis=2) == ~filled).all()  # a row is a box or all -1
    np.testing.assert_array_equal(labels, filled.any(axis=1).astype(np.int8))
    assert (boxes[labels == 0] == -1).all()
    assert labels.mean() == 0.25
    rows = boxes[filled]  # [x, y, width, height]
    assert (rows[:, 2:] >= 7.9).all() and (rows[:, :2] >= 0).all()
    assert (rows[:, 0] + rows[:, 2] <= 256).all() and (rows[:, 1] + rows[:, 3] <= 256).all()
    assert (rows[:, 0] > rows[:, 2]).any()  # read as corners, many would look "swapped"


def test_fractures_darken_their_boxes(cspine):
    images, boxes, labels = cspine["images"], cspine["bboxes"], cspine["labels"]
    studies, numbers = cspine["StudyInstanceUID"], cspine["SliceNumber"].astype(int)
    drops = []
    for i in np.flatnonzero(labels):
        # The nearest kept slice of the same study without a fracture shows the same anatomy.
        clean = np.flatnonzero((studies == studies[i]) & (labels == 0))
        if not len(clean):
            continue
        j = clean[np.argmin(np.abs(numbers[clean] - numbers[i]))]
        for x, y, w, h in boxes[i][(boxes[i] != -1).any(axis=1)]:
            region = np.s_[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))]
            drops.append(images[j][region].mean() - images[i][region].mean())
    assert len(drops) >= 10
    assert np.mean(drops) > 0.008 and np.mean(np.array(drops) > 0) > 0.8


def test_cli_writes_both_sets(tmp_path, capsys):
    assert main(["synth", "pneumonia", str(tmp_path / "p"), "--patients", "6", "--seed", "2",
                 "--size", "64", "--uncompressed"]) == 0
    assert "6 patients, 1 positive" in capsys.readouterr().out
    assert len(list((tmp_path / "p" / "images").glob("*.dcm"))) == 6
    assert main(["synth", "cspine", str(tmp_path / "c.h5"), "--slices", "32", "--seed", "1",
                 "--size", "64"]) == 0  # 8 positive slices, 24 negative
    assert "32 slices" in capsys.readouterr().out
    with h5py.File(tmp_path / "c.h5") as f:
        assert set(f.keys()) == H5_KEYS and f["images"].shape == (32, 64, 64)
