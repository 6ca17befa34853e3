"""`course grade` round trip on a throwaway course: full, zero and partial marks, tampering,
broken submissions, and feedback that does not show the hidden tests."""

import html
import re
import zipfile

import nbformat
import pandas as pd
import pytest

from course.cli import main
from tests.toy_course import ADD_SOLUTION, STUB, write_toy_course

pytestmark = pytest.mark.slow  # grading round trips: ~2 minutes


def _put(folder, name, nb):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = write_toy_course(tmp_path_factory.mktemp("course"))
    assert main(["release", "--root", str(root)]) == 0
    source = nbformat.read(root / "source" / "toy" / "toy.ipynb", as_version=4)
    blank = nbformat.read(root / "release" / "toy" / "toy.ipynb", as_version=4)
    subs = tmp_path_factory.mktemp("submissions")

    _put(subs / "sol", "Copy of toy.ipynb", source)  # Colab's name for a saved copy
    _put(subs / "blank", "toy.ipynb", blank)
    half = nbformat.from_dict(blank)
    half.cells[2].source = half.cells[2].source.replace(STUB, ADD_SOLUTION.strip())
    _put(subs / "half", "toy.ipynb", half)
    edited = nbformat.from_dict(source)
    edited.cells[2].source = "pass"  # the add test cell, "edited to pass"
    _put(subs / "edited", "toy.ipynb", edited)
    deleted = nbformat.from_dict(source)
    del deleted.cells[4]  # the mul test cell
    _put(subs / "deleted", "toy.ipynb", deleted)
    looping = nbformat.from_dict(half)
    looping.cells[4].source = looping.cells[4].source.replace(STUB, "while True:\n        pass")
    _put(subs / "looping", "toy.ipynb", looping)
    (subs / "corrupt").mkdir()
    (subs / "corrupt" / "toy.ipynb").write_text('{"cells": [ not json')
    (subs / "empty").mkdir()
    _put(subs / "twice", "toy.ipynb", source)
    _put(subs / "twice", "toy (1).ipynb", source)

    out = tmp_path_factory.mktemp("out")
    assert main(["grade", "toy", str(subs), "--out", str(out), "--root", str(root)]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("student_id")
    return out, table


def test_columns(graded):
    _, table = graded
    assert list(table.columns) == ["test_add", "test_mul", "total", "max_score", "status",
                                   "reason"]
    assert (table["max_score"] == 5).all()


@pytest.mark.parametrize(("student", "total", "status"), [
    ("sol", 5, "graded"), ("blank", 0, "graded"), ("half", 2, "graded"),
    ("edited", 5, "graded"), ("deleted", 5, "graded"), ("looping", 2, "partial"),
    ("corrupt", 0, "failed"), ("empty", 0, "missing"), ("twice", 0, "failed"),
])
def test_each_student(graded, student, total, status):
    _, table = graded
    row = table.loc[student]
    assert (row["total"], row["status"]) == (total, status), row.to_dict()
    if status != "graded":
        assert row["reason"], "every ungraded or partial row says why"


def test_half_done_gets_exactly_its_exercise(graded):
    _, table = graded
    assert table.loc["half", "test_add"] == 2 and table.loc["half", "test_mul"] == 0


def test_reasons_name_the_problem(graded):
    _, table = graded
    assert "not a valid notebook" in table.loc["corrupt", "reason"]
    assert "2 notebooks, expected one" in table.loc["twice", "reason"]
    assert "CellTimeoutError" in table.loc["looping", "reason"]


def test_feedback_explains_without_hidden_tests(graded):
    out, _ = graded
    page = (out / "feedback" / "blank.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # code is split into highlight spans
    assert "NotImplementedError" in text and "assert add(1, 2) == 3" in text
    assert "add(20, 22)" not in text and "mul(6, 7)" not in text and "HIDDEN" not in text
    assert "Score: 0.0 / 2.0" in text
    assert (out / "feedback" / "sol.html").is_file()
    assert (out / "gradebook.db").is_file()


def test_a_zip_of_the_same_folders_grades_the_same(graded, tmp_path):
    out, table = graded
    subs = out.parent
    zipped = tmp_path / "lms.zip"
    src = next(p for p in subs.iterdir() if (p / "half").is_dir())
    with zipfile.ZipFile(zipped, "w") as zf:
        for student in ("sol", "half"):
            for nb in (src / student).glob("*.ipynb"):
                zf.write(nb, f"export/{student}/{nb.name}")
    root = next(p for p in subs.iterdir() if (p / "course").is_dir())
    assert main(["grade", "toy", str(zipped), "--out", str(tmp_path / "o"),
                 "--root", str(root)]) == 0
    again = pd.read_csv(tmp_path / "o" / "grades.csv").set_index("student_id")
    assert again.loc["sol", "total"] == 5 and again.loc["half", "total"] == 2


def test_a_flat_lms_zip_is_sorted_by_the_file_pattern(graded, tmp_path):
    """Canvas-style flat export: the student id is the text before the first underscore; a
    file the pattern does not match gets a row with the reason, the others are graded."""
    out, _ = graded
    subs = out.parent
    src = next(p for p in subs.iterdir() if (p / "half").is_dir())
    zipped = tmp_path / "canvas.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(src / "sol" / "Copy of toy.ipynb", "sol_12345_67890_toy.ipynb")
        zf.write(src / "half" / "toy.ipynb", "half_LATE_23456_78901_toy.ipynb")
        zf.write(src / "half" / "toy.ipynb", "no-underscore.ipynb")
    root = next(p for p in subs.iterdir() if (p / "course").is_dir())
    assert main(["grade", "toy", str(zipped), "--out", str(tmp_path / "o"),
                 "--root", str(root)]) == 0
    table = pd.read_csv(tmp_path / "o" / "grades.csv", keep_default_na=False)
    table = table.set_index("student_id")
    assert table.loc["sol", "total"] == 5 and table.loc["half", "total"] == 2
    assert table.loc["no-underscore", "status"] == "failed"
    assert "does not match" in table.loc["no-underscore", "reason"]


def test_a_custom_pattern_names_the_students(graded, tmp_path):
    out, _ = graded
    subs = out.parent
    src = next(p for p in subs.iterdir() if (p / "half").is_dir())
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "toy-s001.ipynb").write_bytes((src / "half" / "toy.ipynb").read_bytes())
    root = next(p for p in subs.iterdir() if (p / "course").is_dir())
    assert main(["grade", "toy", str(flat), "--out", str(tmp_path / "o"), "--root", str(root),
                 "--pattern", r"^toy-(?P<student_id>s\d+)\.ipynb$"]) == 0
    table = pd.read_csv(tmp_path / "o" / "grades.csv").set_index("student_id")
    assert list(table.index) == ["s001"] and table.loc["s001", "total"] == 2
    with pytest.raises(ValueError, match="student_id"):
        main(["grade", "toy", str(flat), "--out", str(tmp_path / "o2"), "--root", str(root),
              "--pattern", r"^toy-(s\d+)\.ipynb$"])
