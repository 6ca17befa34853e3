"""Every assignment notebook, end to end: the solution runs in the smoke profile (nbval),
and grading gives the solution full marks and the blank student notebook zero."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbgrader.utils import is_grade, is_solution

from course.config import load
from course.grade import grade
from course.pool import worker_env

CFG = load()
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # executes and grades the real notebooks: minutes
ASSIGNMENTS = pytest.mark.parametrize("assignment", CFG.assignments, ids=lambda a: a.id)


@ASSIGNMENTS
def test_solution_notebook_runs_in_the_smoke_profile(assignment, tmp_path):
    # nbval reads a cell's output messages only after the cell has finished, and the
    # kernel's IOPub socket drops messages once ZeroMQ's queues are full (its high-water
    # marks): a 5-minute training cell whose progress bars refresh every 0.1 s can lose its
    # final "idle" message, and nbval then fails the cell waiting for it (measured: ~5,000
    # unread messages lost it, ~2,900 did not). One refresh every 5 s keeps the cell well
    # below that (tqdm reads TQDM_* variables).
    # As a grading worker's: no real-data variables, and the cores shared out among the
    # pytest workers (with two, a kernel with a torch thread per core spun against the
    # other worker: the C-spine notebook took 571 s, 346 s with one thread).
    env = {**worker_env(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))),
           "COURSE_PROFILE": "smoke", "COURSE_DATA_DIR": str(tmp_path / "data"),
           "MPLBACKEND": "Agg", "TQDM_MININTERVAL": "5",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    notebook = str(CFG.source_notebook(assignment))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env",
         "-p", "no:cacheprovider", "-p", "tests.nbval_patience", "--rootdir", str(tmp_path),
         notebook],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@ASSIGNMENTS
def test_grading_gives_the_solution_full_marks_and_the_blank_zero(assignment, tmp_path):
    subs = tmp_path / "submissions"
    for student, notebook in (("solution", CFG.source_notebook(assignment)),
                              ("blank", CFG.release_notebook(assignment))):
        (subs / student).mkdir(parents=True)
        (subs / student / notebook.name).write_bytes(notebook.read_bytes())
    table = grade(CFG, assignment, subs, tmp_path / "out", progress=False)
    table = table.set_index("student_id")
    # the autograded cells' columns (written answers, `written` and `overall` wait for a TA)
    source = nbformat.read(CFG.source_notebook(assignment), as_version=4)
    cells = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
             if is_grade(c) and not is_solution(c)]
    assert len(cells) >= 1 and set(cells) <= set(table.columns)
    solution, blank = table.loc["solution"], table.loc["blank"]
    assert solution["status"] == "graded" and blank["status"] == "graded"
    assert solution["total"] == solution["max_score"] == assignment.points, solution.to_dict()
    # Nothing passes by accident on the blank notebook: every autograded cell scores zero.
    assert (blank[cells] == 0).all(), blank[cells][blank[cells] != 0].to_dict()
    written = pd.read_csv(tmp_path / "out" / "grades.csv")
    assert sorted(written["student_id"]) == ["blank", "solution"]
