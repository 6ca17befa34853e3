import numpy as np
import pandas as pd
import pytest

from helpers.data import patient_split, pneumonia_layout, read_labels
from helpers.data.hdf5 import read_column
from helpers.data.synthetic import synth_pneumonia


@pytest.fixture(scope="module")
def big_labels(tmp_path_factory):
    root = synth_pneumonia(tmp_path_factory.mktemp("split") / "rsna", patients=300, seed=3,
                           size=64)
    return read_labels(pneumonia_layout(root)[0])


def test_no_patient_in_two_splits(big_labels):
    parts = patient_split(big_labels)
    sets = {k: set(v) for k, v in parts.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert set().union(*sets.values()) == set(big_labels["patientId"])
    sizes = np.array([len(sets[k]) for k in ("train", "val", "test")]) / 300
    np.testing.assert_allclose(sizes, [0.70, 0.15, 0.15], atol=0.01)


def test_split_is_stratified_and_repeatable(big_labels):
    parts = patient_split(big_labels, seed=1)
    assert parts == patient_split(big_labels, seed=1)
    assert parts != patient_split(big_labels, seed=2)
    positive = set(big_labels.loc[big_labels["Target"] == 1, "patientId"])
    shares = [np.mean([p in positive for p in parts[k]]) for k in ("train", "val", "test")]
    overall = len(positive) / big_labels["patientId"].nunique()
    np.testing.assert_allclose(shares, overall, atol=0.03)


def test_bad_fractions():
    labels = pd.DataFrame({"patientId": list("abcdef"), "Target": [0, 1] * 3})
    with pytest.raises(ValueError, match="summing to 1"):
        patient_split(labels, fractions=(0.8, 0.15, 0.15))


def test_cspine_studies_sit_in_one_split(cspine_h5):
    studies = read_column(cspine_h5, "StudyInstanceUID")
    split = read_column(cspine_h5, "split")
    per_study = pd.DataFrame({"study": studies, "split": split}).groupby("study")["split"]
    assert (per_study.nunique() == 1).all()
    assert set(split) == {0, 1, 2}
