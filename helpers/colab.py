"""Colab conveniences: Google Drive for data and checkpoints, Kaggle credentials from secrets.

A Colab runtime forgets its disk when it disconnects (idle for about 90 minutes, or after 12
hours at most). ``use_drive()`` mounts the student's Google Drive and points the course's
data folder (``COURSE_DATA_DIR``: synthetic sets, downloads, checkpoints) and kagglehub's
download cache (``KAGGLEHUB_CACHE``) at a folder there, so a reconnect finds them again.
``kaggle_credentials()`` hands kagglehub the student's Kaggle token from Colab's secrets.

Outside Colab, and under grading, both do nothing but say so: a notebook that calls them
is graded exactly like one that does not (the grader cannot see anyone's Drive).
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.env import in_colab, profile

__all__ = ["DRIVE_MOUNT", "kaggle_credentials", "rules_url", "use_drive"]

DRIVE_MOUNT = "/content/drive"  # where Colab's drive.mount puts Google Drive


def use_drive(folder: str = "medical-detection-course") -> Path | None:
    """Mount Google Drive (Colab) and keep data and checkpoints in ``MyDrive/<folder>``.

    Returns that folder, or None where nothing was mounted (not Colab, or grading). Run it
    before the data and training cells: they read ``COURSE_DATA_DIR`` when they run.
    """
    if profile() == "grade":
        print("grading: Drive is not mounted; data and checkpoints stay in the grader's "
              "own scratch folder")
        return None
    if not in_colab():
        print("not in Colab: nothing to mount; data and checkpoints stay where they are")
        return None
    from google.colab import drive

    drive.mount(DRIVE_MOUNT)
    target = Path(DRIVE_MOUNT) / "MyDrive" / folder
    target.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_DATA_DIR"] = str(target)
    os.environ["KAGGLEHUB_CACHE"] = str(target / "kagglehub")
    print(f"data, downloads and checkpoints go to {target}: they survive a disconnect")
    return target


def rules_url(competition: str) -> str:
    """The competition's rules page: a download needs them accepted on Kaggle first."""
    return f"https://www.kaggle.com/competitions/{competition}/rules"


def _secret(name: str) -> str | None:
    """``name`` from the environment, else from Colab's secrets (the key icon), else None."""
    if os.environ.get(name):
        return os.environ[name]
    if not in_colab():
        return None
    from google.colab import userdata

    try:
        return userdata.get(name)
    except (userdata.SecretNotFoundError, userdata.NotebookAccessError):
        return None


def kaggle_credentials(competition: str) -> str:
    """Put the student's Kaggle credentials where kagglehub looks; return which kind.

    Kaggle's current API token is one string (``KAGGLE_API_TOKEN``); older accounts have a
    username and key (``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, the two fields of kaggle.json).
    Either may be a Colab secret or an environment variable.
    """
    token = _secret("KAGGLE_API_TOKEN")
    if token:
        os.environ["KAGGLE_API_TOKEN"] = token
        kind = "API token (KAGGLE_API_TOKEN)"
    else:
        user, key = _secret("KAGGLE_USERNAME"), _secret("KAGGLE_KEY")
        if not (user and key):
            raise RuntimeError(
                "no Kaggle credentials: create an API token at https://www.kaggle.com/settings "
                "(API, 'Create New Token') and add it as the Colab secret KAGGLE_API_TOKEN "
                "(or, with a legacy kaggle.json, the secrets KAGGLE_USERNAME and KAGGLE_KEY); "
                f"then accept the competition's rules at {rules_url(competition)}")
        os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = user, key
        kind = "legacy username + key (KAGGLE_USERNAME, KAGGLE_KEY)"
    print(f"Kaggle: {kind}. The download fails with 403 until you accept the rules at "
          f"{rules_url(competition)}")
    return kind
