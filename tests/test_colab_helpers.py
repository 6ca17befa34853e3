"""helpers.colab with a stand-in for Colab's own modules.

The stand-in follows the API of googlecolab/colabtools: ``google/colab/drive.py``
(``mount(mountpoint, force_remount=False, ...)``) and ``google/colab/userdata.py``
(``get(key)`` raising ``SecretNotFoundError`` or ``NotebookAccessError``).
"""

import os
import sys
import types

import pytest

from helpers import colab

SET_BY_HELPERS = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "COURSE_DATA_DIR",
               "KAGGLEHUB_CACHE")


@pytest.fixture
def fake_colab(monkeypatch):
    """google.colab in sys.modules (as in Colab), with a secrets store and a mount log."""

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    state = types.SimpleNamespace(secrets={}, mounts=[])

    def get(key):
        if key not in state.secrets:
            raise SecretNotFoundError(f"Secret {key} does not exist.")
        if state.secrets[key] is NotebookAccessError:
            raise NotebookAccessError(f"Notebook does not have access to secret {key}")
        return state.secrets[key]

    userdata = types.ModuleType("google.colab.userdata")
    userdata.get, userdata.SecretNotFoundError = get, SecretNotFoundError
    userdata.NotebookAccessError = NotebookAccessError
    drive = types.ModuleType("google.colab.drive")
    drive.mount = lambda mountpoint, force_remount=False: state.mounts.append(mountpoint)
    package = types.ModuleType("google.colab")
    package.userdata, package.drive = userdata, drive
    google = types.ModuleType("google")
    google.colab = package
    for name, module in (("google", google), ("google.colab", package),
                         ("google.colab.userdata", userdata), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, module)
    # What the helpers put in the environment stays in this test's copy of it.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if k not in SET_BY_HELPERS})
    monkeypatch.setenv("COURSE_PROFILE", "full")
    return state


def test_use_drive_mounts_and_points_data_and_downloads_there(fake_colab, monkeypatch,
                                                             tmp_path):
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path))
    target = colab.use_drive("course-x")
    assert fake_colab.mounts == [str(tmp_path)]
    assert target == tmp_path / "MyDrive" / "course-x" and target.is_dir()
    assert os.environ["COURSE_DATA_DIR"] == str(target)
    assert os.environ["KAGGLEHUB_CACHE"] == str(target / "kagglehub")


def test_use_drive_under_grading_or_outside_colab_changes_nothing(fake_colab, monkeypatch,
                                                                 capsys):
    monkeypatch.setenv("COURSE_PROFILE", "grade")
    assert colab.use_drive() is None and fake_colab.mounts == []
    assert "grading" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.delitem(sys.modules, "google.colab")
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert colab.use_drive() is None and fake_colab.mounts == []
    assert "COURSE_DATA_DIR" not in os.environ


def test_kaggle_token_first_then_legacy_pair_then_a_clear_error(fake_colab, capsys):
    fake_colab.secrets = {"KAGGLE_API_TOKEN": "KGAT_x", "KAGGLE_USERNAME": "u",
                          "KAGGLE_KEY": "k"}
    assert "API token" in colab.kaggle_credentials("rsna-pneumonia-detection-challenge")
    assert os.environ["KAGGLE_API_TOKEN"] == "KGAT_x" and "KAGGLE_KEY" not in os.environ
    rules = "https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge/rules"
    assert rules in capsys.readouterr().out
    del os.environ["KAGGLE_API_TOKEN"]
    denied = sys.modules["google.colab.userdata"].NotebookAccessError
    fake_colab.secrets = {"KAGGLE_API_TOKEN": denied, "KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert "legacy" in colab.kaggle_credentials("c")  # a token the notebook may not read
    assert (os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]) == ("u", "k")
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        del os.environ[var]
    fake_colab.secrets = {"KAGGLE_USERNAME": "u"}
    with pytest.raises(RuntimeError, match="KAGGLE_API_TOKEN.*competitions/c/rules"):
        colab.kaggle_credentials("c")
