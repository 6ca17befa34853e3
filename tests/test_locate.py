import h5py
import pytest

from helpers.data import locate
from helpers.provenance import located


def test_synthetic_fallback_has_a_banner_and_is_cached(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COURSE_PROFILE", "grade")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    src = locate("cspine")
    assert src.synthetic and src.path.parent == tmp_path and src.path.suffix == ".h5"
    assert "SYNTHETIC DATA - cspine: CSPINE_H5 is not set" in capsys.readouterr().out
    with h5py.File(src.path) as f:
        assert f["images"].shape[0] == 60  # the grade profile's size
    stamp = src.path.stat().st_mtime_ns
    assert locate("cspine").path == src.path
    assert src.path.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [src.path.name]  # no temp debris
    assert src in located()

    pneu = locate("pneumonia")
    assert pneu.synthetic and (pneu.path / "labels.csv").is_file()
    assert len(list((pneu.path / "images").glob("*.dcm"))) == 24


def test_environment_variable_wins_outside_grading(monkeypatch, cspine_h5, pneumonia_dir):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("CSPINE_H5", str(cspine_h5))
    monkeypatch.setenv("RSNA_PNEUMONIA_DIR", str(pneumonia_dir))
    spine, pneu = locate("cspine"), locate("pneumonia")
    assert (spine.path, spine.synthetic, spine.origin) == (cspine_h5, False, "$CSPINE_H5")
    assert (pneu.path, pneu.synthetic) == (pneumonia_dir, False)


def test_grading_ignores_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv("CSPINE_H5", str(tmp_path / "students_own.h5"))
    assert locate("cspine").synthetic


def test_grading_ignores_a_path_argument_too(monkeypatch, capsys):
    """A student's Drive path, passed in Colab, is not there when the notebook is graded."""
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    drive = "/content/drive/MyDrive/cspine.h5"
    src = locate("cspine", drive)
    assert src.synthetic and str(src.path) != drive
    assert f"the path '{drive}' is ignored" in capsys.readouterr().out


def test_wrong_layout_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("RSNA_PNEUMONIA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not an RSNA pneumonia folder"):
        locate("pneumonia")
    bad = tmp_path / "wrong.h5"
    with h5py.File(bad, "w") as f:
        f["pixels"] = [1, 2, 3]
    with pytest.raises(ValueError, match=r"wrong.h5: missing key\(s\)"):
        locate("cspine", bad)
    with pytest.raises(ValueError, match="unknown data set 'mri'"):
        locate("mri")
