"""`course grade`: a folder (or LMS zip) of submissions to grades.csv and feedback, via nbgrader.

SUBMISSIONS/<student_id>/ holds one notebook, whatever its name ("Copy of pneumonia.ipynb"
is the normal case from Colab). An LMS export that puts every notebook in one flat folder
(Canvas: ``jdoe_12345_67890_pneumonia.ipynb``) is sorted into student folders by a regular
expression with a ``student_id`` group (``[grading] file_pattern`` or ``--pattern``).
nbgrader autogrades each one in a scratch course directory
under OUT/nbgrader, restoring edited or deleted test cells; the gradebook is OUT/gradebook.db.
One broken submission costs that student points and gets a row with a reason; it never
stops the others.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd
from tqdm.auto import tqdm

from course.config import Assignment, CourseConfig
from course.feedback import FEEDBACK_PREPROCESSORS
from course.nbgrader_setup import nbgrader_api, nbgrader_config

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
RUN_FAILURES = ("CellTimeoutError", "DeadKernelError")


@dataclass
class Row:
    """One student's line of grades.csv."""

    student_id: str
    status: str  # graded | partial | failed | missing
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)


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


def _run_problem(notebook: Path) -> str:
    """Why a graded notebook did not run through (a timeout, a dead kernel), or ''."""
    nb = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") in RUN_FAILURES:
                return f"cell {i + 1}: {out['ename']}"
    return ""


def _autograded_cells(gradebook, a: Assignment) -> dict[str, float]:
    """grade_id -> max points of the autograded test cells, in notebook order."""
    nb = gradebook.find_notebook(Path(a.notebook).stem, a.id)
    solutions = {c.name for c in nb.solution_cells}
    return {c.name: c.max_score for c in nb.grade_cells
            if c.cell_type == "code" and c.name not in solutions}


def grade(cfg: CourseConfig, a: Assignment, submissions: Path, out: Path,
          progress: bool = True, pattern: str | None = None) -> pd.DataFrame:
    """Grade every submission; write OUT/grades.csv and OUT/feedback/; return the table."""
    from nbgrader.api import Gradebook

    out.mkdir(parents=True, exist_ok=True)
    root = out / "nbgrader"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(cfg.source_notebook(a).parent, root / "source" / a.id)
    folder, rows = sort_flat(unpack(submissions, out), out, pattern or cfg.file_pattern)
    found, bad = collect(folder)
    rows += bad
    db = out / "gradebook.db"
    config = nbgrader_config(cfg, root, db)
    config.GenerateFeedback.preprocessors = FEEDBACK_PREPROCESSORS
    (out / "feedback").mkdir(exist_ok=True)
    with nbgrader_api(config) as api:
        result = api.generate_assignment(a.id, force=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not register {a.id}: {result.get('error')}")
        for sid, notebook in tqdm(found.items(), desc=f"grading {a.id}", disable=not progress):
            target = root / "submitted" / sid / a.id / a.notebook
            target.parent.mkdir(parents=True)
            shutil.copy(notebook, target)
            result = api.autograde(a.id, sid, force=True, create=True)
            if not result["success"]:
                error = (result.get("error") or result.get("log") or "").strip().splitlines()
                rows.append(Row(sid, "failed", "autograde failed: " + (error[-1] if error
                                                                       else "no message")))
                continue
            problem = _run_problem(root / "autograded" / sid / a.id / a.notebook)
            rows.append(Row(sid, "partial" if problem else "graded", problem))
            feedback = api.generate_feedback(a.id, sid, force=True)
            html = root / "feedback" / sid / a.id / f"{Path(a.notebook).stem}.html"
            if feedback["success"] and html.is_file():
                shutil.copy(html, out / "feedback" / f"{sid}.html")
    with Gradebook(f"sqlite:///{db}") as gb:
        cells = _autograded_cells(gb, a)
        for row in rows:
            if row.status in ("graded", "partial"):
                sub = gb.find_submission_notebook(Path(a.notebook).stem, a.id, row.student_id)
                row.scores = {g.name: float(g.score) for g in sub.grades if g.name in cells}
    table = _table(rows, cells)
    table.to_csv(out / "grades.csv", index=False)
    return table


def _table(rows: list[Row], cells: dict[str, float]) -> pd.DataFrame:
    records = []
    for row in sorted(rows, key=lambda r: r.student_id):
        record = {"student_id": row.student_id}
        record.update({name: row.scores.get(name, 0.0) for name in cells})
        record.update(total=sum(row.scores.get(n, 0.0) for n in cells),
                      max_score=sum(cells.values()), status=row.status, reason=row.reason)
        records.append(record)
    columns = ["student_id", *cells, "total", "max_score", "status", "reason"]
    return pd.DataFrame(records, columns=columns)
