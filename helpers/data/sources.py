"""Find a data set: the real one when it is there, else a synthetic one in the same format.

Real data comes from an argument or an environment variable (``RSNA_PNEUMONIA_DIR``,
``CSPINE_H5``); the variable is ignored under grading, where runs must be small and
identical for every student. Without real data, a synthetic set is generated once into
a cache folder (``COURSE_DATA_DIR``, else the user cache) and a banner says so.
A path that exists but has the wrong layout is an error, never a silent fallback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from helpers.env import config
from helpers.provenance import DataSource, record

ENV_VARS = {"pneumonia": "RSNA_PNEUMONIA_DIR", "cspine": "CSPINE_H5"}
SYNTH_VERSION = 3  # bump when the generators change, so stale caches are not reused

__all__ = ["ENV_VARS", "SYNTH_VERSION", "DataSource", "cache_dir", "locate"]


def cache_dir() -> Path:
    """Folder for generated data: COURSE_DATA_DIR, else the user's cache."""
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medical-detection-course"


def _check_real(name: str, path: Path) -> None:
    from helpers.data.dicom import pneumonia_layout
    from helpers.data.hdf5 import open_cspine

    if name == "pneumonia":
        pneumonia_layout(path)
    else:
        open_cspine(path).close()


def _synthesize(name: str) -> Path:
    """Generate (once) the profile's synthetic set into the cache and return its path."""
    from helpers.data.synthetic import synth_cspine, synth_pneumonia

    cfg = config()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if name == "pneumonia":
        final = root / f"pneumonia-v{SYNTH_VERSION}-{cfg.pneumonia_patients}p-"\
                       f"{cfg.pneumonia_px}px-seed{cfg.seed}"
    else:
        final = root / f"cspine-v{SYNTH_VERSION}-{cfg.cspine_slices}s-seed{cfg.seed}.h5"
    if final.exists():
        return final
    # Build beside the target and rename: parallel grading workers may race to generate.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        if name == "pneumonia":
            synth_pneumonia(tmp / "data", patients=cfg.pneumonia_patients, seed=cfg.seed,
                            size=cfg.pneumonia_px)
            built = tmp / "data"
        else:
            built = synth_cspine(tmp / "data.h5", slices=cfg.cspine_slices, seed=cfg.seed)
        try:
            os.rename(built, final)
        except OSError:
            if not final.exists():  # a real failure, not a lost race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _banner(name: str, path: Path) -> None:
    var = ENV_VARS[name]
    rule = "=" * 78
    print(f"{rule}\n  SYNTHETIC DATA - {name}: {var} is not set (or the profile is 'grade'),\n"
          f"  so this run uses generated data in the real on-disk format:\n  {path}\n"
          f"  Scores on it say nothing about real patients.\n{rule}")


def locate(name: str, path: str | Path | None = None) -> DataSource:
    """Locate the 'pneumonia' or 'cspine' data set: argument, env variable, else synthetic.

    Under grading (profile 'grade') both the argument and the variable are ignored: every
    submission is graded on the same small synthetic set, and a path to the student's own
    Drive (which the grader cannot see) costs nothing.
    """
    if name not in ENV_VARS:
        raise ValueError(f"unknown data set {name!r}; expected one of {list(ENV_VARS)}")
    origin = "argument"
    if path is not None and config().profile == "grade":
        print(f"grading: the path {str(path)!r} is ignored; every submission is graded on "
              "the same synthetic data")
        path = None
    if path is None and config().profile != "grade" and os.environ.get(ENV_VARS[name]):
        path, origin = os.environ[ENV_VARS[name]], f"${ENV_VARS[name]}"
    if path is not None:
        path = Path(path).expanduser()
        _check_real(name, path)
        source = DataSource(name, path, synthetic=False, origin=origin)
    else:
        path = _synthesize(name)
        _banner(name, path)
        source = DataSource(name, path, synthetic=True, origin=f"profile {config().profile}")
    record(source)
    return source
