"""The whole course on the embedded default, offline: what `python -m course demo` runs.

1. the data demo (both synthetic data sets, one batch each, a figure);
2. every solution notebook executed in the smoke profile (executed copies saved);
3. the committed student notebooks checked against a fresh `release` (and for leaks);
4. per assignment, three simulated students graded with `course grade`: the solution, the
   blank release notebook and a half-done one (the release with the first half of its
   exercises answered), then the grade table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient
from nbgrader.utils import is_solution

from course import release
from course.config import Assignment, CourseConfig
from course.grade import grade


def _solution_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.cell_type == "code" and is_solution(c)}


def half_done(source: Path, student: Path) -> nbformat.NotebookNode:
    """The student notebook with the first half of its exercises answered from the source."""
    answers = _solution_cells(nbformat.read(source, as_version=4))
    nb = nbformat.read(student, as_version=4)
    chosen = set(list(answers)[: len(answers) // 2])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in chosen:
            cell.source = answers[gid]
    return nb


def execute(notebook: Path, out: Path, timeout: int) -> float:
    """Run a notebook in the smoke profile in a scratch folder; save it executed; seconds."""
    nb = nbformat.read(notebook, as_version=4)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("COURSE_PROFILE", "MPLBACKEND")}
    # The kernel inherits these; the inline backend keeps the figures in the saved copy.
    os.environ.update(COURSE_PROFILE="smoke",
                      MPLBACKEND="module://matplotlib_inline.backend_inline")
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(out.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        nbformat.write(nb, out)  # also when a cell failed: the error is in the saved copy
    return time.perf_counter() - start


def students(cfg: CourseConfig, a: Assignment, folder: Path) -> Path:
    """Write the three simulated submissions of one assignment; return the folder."""
    source, blank = cfg.source_notebook(a), cfg.release_notebook(a)
    for sid, nb in (("solution", nbformat.read(source, as_version=4)),
                    ("blank", nbformat.read(blank, as_version=4)),
                    ("half_done", half_done(source, blank))):
        (folder / sid).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / sid / a.notebook)
    return folder


def run_course(cfg: CourseConfig, out: Path, data_demo: bool = True) -> pd.DataFrame:
    """Run the whole course; return one row per (assignment, student)."""
    t0 = time.perf_counter()
    if data_demo:
        from course.data_figure import run

        run(out)
    for a in cfg.assignments:
        seconds = execute(cfg.source_notebook(a), out / "executed" / a.notebook,
                          cfg.cell_timeout)
        print(f"executed {a.id} solution notebook (smoke profile) in {seconds:.0f} s")
    problems = release.stale(cfg, cfg.assignments) + release.leaks(cfg, cfg.assignments)
    if problems:
        raise SystemExit("release/ is stale or leaks; run `python -m course release`:\n"
                         + "\n".join(problems))
    print("release/ matches source/ and leaks nothing")
    tables = []
    for a in cfg.assignments:
        subs = students(cfg, a, out / "submissions" / a.id)
        table = grade(cfg, a, subs, out / "graded" / a.id, progress=False)
        tables.append(table[["student_id", "total", "max_score", "status"]]
                      .assign(assignment=a.id))
    result = pd.concat(tables, ignore_index=True)[
        ["assignment", "student_id", "total", "max_score", "status"]]
    print(result.to_string(index=False))
    print(f"course demo done in {time.perf_counter() - t0:.0f} s; grades in {out}/graded/")
    return result
