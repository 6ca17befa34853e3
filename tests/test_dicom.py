import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from helpers.data import (
    DicomReadError,
    LabelsError,
    patient_table,
    pneumonia_layout,
    read_dicom_image,
    read_labels,
)


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None):
    """A minimal uncompressed grayscale DICOM file."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.set_pixel_data(pixels, photometric, 8 * pixels.dtype.itemsize)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.save_as(path, enforce_file_format=True)
    return path


def test_reads_the_synthetic_jpeg_dicoms(pneumonia_dir):
    path = next((pneumonia_dir / "images").glob("*.dcm"))
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    img = read_dicom_image(path)
    assert img.dtype == np.float32 and img.shape == (256, 256)
    assert 0 <= img.min() < img.max() <= 1


@pytest.mark.parametrize("example", ["ct", "mr"])
def test_reads_pydicoms_own_examples(example):
    from pydicom import examples

    ds = getattr(examples, example)
    img = read_dicom_image(ds.filename)
    assert img.shape == ds.pixel_array.shape and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == 1.0  # 16-bit: stretched to its own range
    # stretching keeps the order of the stored values
    raw = ds.pixel_array.astype(np.float64).ravel()
    assert np.corrcoef(raw, img.ravel())[0, 1] > 0.999


def test_8bit_keeps_its_absolute_scale(tmp_path):
    pixels = np.full((8, 8), 51, np.uint8)
    pixels[0, 0] = 102
    img = read_dicom_image(write_dicom(tmp_path / "a.dcm", pixels))
    assert img[1, 1] == pytest.approx(0.2) and img[0, 0] == pytest.approx(0.4)


def test_monochrome1_is_inverted(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    m2 = read_dicom_image(write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2"))
    m1 = read_dicom_image(write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1"))
    np.testing.assert_allclose(m1, 1 - m2, atol=1e-6)


def test_rescale_slope_is_applied(tmp_path):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 100
    plain = read_dicom_image(write_dicom(tmp_path / "p.dcm", pixels))
    # A negative slope flips the order of the values: only visible if the LUT is applied.
    flipped = read_dicom_image(write_dicom(tmp_path / "f.dcm", pixels, slope=-1, intercept=0))
    np.testing.assert_allclose(flipped, 1 - plain, atol=1e-6)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.dcm: no such DICOM file"):
        read_dicom_image(tmp_path / "nope.dcm")


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_truncated_dicom_names_the_file(tmp_path, pneumonia_dir):
    src = next((pneumonia_dir / "images").glob("*.dcm")).read_bytes()
    bad = tmp_path / "truncated.dcm"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(DicomReadError, match="truncated.dcm"):
        read_dicom_image(bad)


def test_not_a_dicom_names_the_file(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is a text file" * 20)
    with pytest.raises(DicomReadError, match="notes.dcm: not a readable DICOM file"):
        read_dicom_image(bad)


def test_missing_codec_names_the_package(tmp_path):
    ds = pydicom.dcmread(write_dicom(tmp_path / "src.dcm", np.zeros((8, 8), np.uint8)))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jls.dcm", enforce_file_format=True)
    with pytest.raises(DicomReadError, match=r"jls.dcm.*JPEG-LS.*pip install pylibjpeg "
                                             r"pylibjpeg-libjpeg"):
        read_dicom_image(tmp_path / "jls.dcm")


def test_labels_are_converted_to_corners(pneumonia_dir):
    raw = pd.read_csv(pneumonia_dir / "labels.csv")
    labels = read_labels(pneumonia_dir / "labels.csv")
    np.testing.assert_allclose(labels["x2"], raw["x"] + raw["width"])
    np.testing.assert_allclose(labels["y2"], raw["y"] + raw["height"])
    negatives = labels[labels["Target"] == 0]
    assert negatives[["x1", "y1", "x2", "y2"]].isna().all().all()
    table = patient_table(labels)
    assert table["patientId"].is_unique
    assert (table.loc[table["Target"] == 0, "n_boxes"] == 0).all()
    assert (table.loc[table["Target"] == 1, "n_boxes"] >= 1).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty; expected the header patientId,x,y,width,height,Target"),
        ("patientId,x,y,width,height,Target\n", "has a header but no rows"),
        ("patientId,x,y,w,h,Target\na,1,2,3,4,1\n", r"missing column\(s\) \['width', 'height'\]"),
        ("patientId,x,y,width,height,Target\na,,,,,1\n", "patient a has empty box fields"),
        ("patientId,x,y,width,height,Target\na,,,,,2\n", "Target must be 0 or 1"),
    ],
)
def test_bad_labels_files_are_explained(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(LabelsError, match=message):
        read_labels(path)


def test_both_layouts_are_found(tmp_path):
    for csv_name, folder in (("labels.csv", "images"),
                             ("stage_2_train_labels.csv", "stage_2_train_images")):
        root = tmp_path / csv_name
        (root / folder).mkdir(parents=True)
        (root / csv_name).write_text("patientId,x,y,width,height,Target\n")
        assert pneumonia_layout(root) == (root / csv_name, root / folder)


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "train.csv").write_text("x")
    with pytest.raises(FileNotFoundError, match="labels.csv \\+ images/ or stage_2_train"):
        pneumonia_layout(tmp_path)
