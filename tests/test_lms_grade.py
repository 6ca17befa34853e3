"""One round trip of a Canvas export through `course grade --lms canvas --roster` and
`course export` on the toy course: ids not names, every roster student, the resubmission
in a second export graded instead of failed, the LATE marker under a late policy, feedback
named for Canvas's re-upload."""

import zipfile

import nbformat
import pandas as pd
import pytest

from course.cli import main
from tests import lms_exports as lms
from tests.toy_course import ADD_SOLUTION, STUB, read_grades, write_toy_course

pytestmark = pytest.mark.slow  # grades four notebooks (kernels): about a minute


def test_canvas_export_round_trip(tmp_path):
    root = write_toy_course(tmp_path / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("workers = 1",
                                             'workers = 1\nlate_policy = "10%/day"'))
    assert main(["release", "--root", str(root)]) == 0
    solved = nbformat.writes(nbformat.read(root / "source" / "toy" / "toy.ipynb", 4))
    blank = nbformat.read(root / "release" / "toy" / "toy.ipynb", as_version=4)
    half = nbformat.from_dict(blank)
    half.cells[2].source = half.cells[2].source.replace(STUB, ADD_SOLUTION.strip())
    half = nbformat.writes(half)
    roster = lms.canvas_roster(tmp_path / "roster.csv")
    first = lms.write_zip(tmp_path / "first.zip", [
        ("smithjohn_12345_67890_Copy of toy.ipynb", solved, lms.NEW),
        ("smithjohn_12346_67891_toy.ipynb", half, lms.NEW),          # same name, other id
        ("müllerjürgen_LATE_23456_67892_toy.ipynb", solved, lms.NEW),
        ("leeann_56789_67895_toy.ipynb", half, lms.OLD),
        ("kimyu_78901_67897_toy.py", "print(1)\n", lms.NEW),
    ])
    out = tmp_path / "out"
    args = ["--out", str(out), "--root", str(root), "--lms", "canvas", "--roster", str(roster)]
    assert main(["grade", "toy", str(first), *args]) == 0
    table = read_grades(out)
    assert list(table.columns) == ["test_add", "test_mul", "total", "max_score", "status",
                                   "reason", "late_days", "late_penalty_pct"]
    assert table.loc["12345", "total"] == 5 and table.loc["12346", "total"] == 2
    assert "marked LATE" in table.loc["23456", "reason"]
    assert table.loc["23456", "total"] == 5  # total stays the autograded points
    assert table.loc["23456", "late_penalty_pct"] == 10 and table.loc["12345", "late_days"] == ""
    assert table.loc["78901", "status"] == "missing" and "toy.py" in table.loc["78901", "reason"]
    assert table.loc["90123", "reason"].startswith("no submission")
    assert table.loc["56789", "total"] == 2

    # Ann Lee resubmits: the next export holds only her newer file ("-1", a higher
    # attachment id). The old one must not linger beside it.
    second = lms.write_zip(tmp_path / "second.zip", [
        ("smithjohn_12345_67890_Copy of toy.ipynb", solved, lms.NEW),
        ("smithjohn_12346_67891_toy.ipynb", half, lms.NEW),
        ("müllerjürgen_LATE_23456_67892_toy.ipynb", solved, lms.NEW),
        ("leeann_56789_67999_toy-1.ipynb", solved, lms.NEW),
        ("kimyu_78901_67897_toy.py", "print(1)\n", lms.NEW),
    ])
    assert main(["grade", "toy", str(second), *args]) == 0
    table = read_grades(out)
    assert table.loc["56789", "total"] == 5 and table.loc["56789", "status"] == "graded"

    assert main(["export", "toy", "--out", str(out), "--root", str(root), "--lms", "canvas",
                 "--roster", str(roster)]) == 0
    exported = pd.read_csv(out / "export" / "canvas" / "grades.csv", dtype=str,
                           keep_default_na=False).set_index("ID")
    column = "Adding numbers (4711)"
    assert exported.loc["12345", column] == "5.00" and exported.loc["12346", column] == "2.00"
    assert exported.loc["56789", column] == "5.00" and exported.loc["90123", column] == "0.00"
    assert exported.loc["23456", column] == "4.50"  # LATE (Canvas): one day, 10 %
    with zipfile.ZipFile(out / "export" / "canvas" / "feedback.zip") as zf:
        names = set(zf.namelist())
    assert {"smithjohn_12345_67890_feedback.html", "smithjohn_12346_67891_feedback.html",
            "leeann_56789_67999_feedback.html"} <= names
