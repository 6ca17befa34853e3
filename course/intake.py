"""Submission intake: a folder, an LMS zip or a flat LMS export to one notebook per student.

SUBMISSIONS/<student_id>/ holds one notebook, whatever its name ("Copy of pneumonia.ipynb"
is the normal case from Colab). An LMS export that puts every notebook in one flat folder
(Canvas: ``jdoe_12345_67890_pneumonia.ipynb``) is sorted into student folders by a regular
expression with a ``student_id`` group (``[grading] file_pattern`` or ``--pattern``).
Whatever cannot be graded becomes a Row with its reason, never an exception.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import nbformat

from course.results import Row

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


def unpack(submissions: Path, scratch: Path) -> Path:
    """A folder of submissions as given, or an LMS zip unpacked into one."""
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise FileNotFoundError(f"{submissions}: expected a folder of <student_id>/ folders "
                                "or a zip of them")
    out = scratch / "unzipped"
    with zipfile.ZipFile(submissions) as zf:
        for name in zf.namelist():  # refuse "zip slip" paths that escape the folder
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{submissions}: unsafe path in zip: {name!r}")
        zf.extractall(out)
    tops = [p for p in out.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    # A zip of one folder holding the student folders is unwrapped once.
    if len(tops) == 1 and tops[0].is_dir() and not list(tops[0].glob("*.ipynb")):
        return tops[0]
    return out


def sort_flat(submissions: Path, scratch: Path, pattern: str) -> tuple[Path, list[Row]]:
    """Notebooks lying flat in SUBMISSIONS, moved (as copies) into per-student folders.

    Returns the folder to collect from and rows for file names the pattern does not match.
    Student folders already present are kept as they are.
    """
    flat = sorted(p for p in submissions.glob("*.ipynb") if p.is_file())
    if not flat:
        return submissions, []
    regex = re.compile(pattern)
    if "student_id" not in regex.groupindex:
        raise ValueError(f"file pattern {pattern!r} has no (?P<student_id>...) group")
    out, rows = scratch / "by_student", []
    if out.exists():
        shutil.rmtree(out)
    for folder in (p for p in submissions.iterdir() if p.is_dir()):
        shutil.copytree(folder, out / folder.name)
    for path in flat:
        match = regex.match(path.name)
        if not match:
            rows.append(Row(path.stem[:60], "failed", f"file name {path.name!r} does not match "
                                                      f"the submission pattern {pattern!r}"))
            continue
        (out / match["student_id"]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / match["student_id"] / path.name)
    return out, rows


def collect(submissions: Path) -> tuple[dict[str, Path], list[Row]]:
    """Each student's one notebook, and rows for the students that cannot be graded."""
    found, rows = {}, []
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        sid = folder.name
        if sid.startswith((".", "__")):
            continue
        if not STUDENT_ID.match(sid):
            rows.append(Row(sid, "failed", "folder name is not a valid student id"))
            continue
        notebooks = sorted(p for p in folder.rglob("*.ipynb")
                           if ".ipynb_checkpoints" not in p.parts)
        if not notebooks:
            rows.append(Row(sid, "missing", "no .ipynb notebook in the folder"))
        elif len(notebooks) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            rows.append(Row(sid, "failed", f"{len(notebooks)} notebooks, expected one: {names}"))
        else:
            try:
                nbformat.read(notebooks[0], as_version=4)
            except Exception as err:  # corrupt JSON, not a notebook, wrong encoding, ...
                rows.append(Row(sid, "failed", f"{notebooks[0].name} is not a valid notebook "
                                               f"({type(err).__name__}: {err})"[:300]))
                continue
            found[sid] = notebooks[0]
    return found, rows


def intake(submissions: Path, scratch: Path, pattern: str) -> tuple[dict[str, Path], list[Row]]:
    """Unpack, sort and collect: each student's notebook, and the rows of those without one."""
    folder, rows = sort_flat(unpack(submissions, scratch), scratch, pattern)
    found, bad = collect(folder)
    return found, rows + bad
