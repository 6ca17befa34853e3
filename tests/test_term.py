"""Issue 13's acceptance test: one term of the toy course, each step through the `course` CLI.

Release and publish; a Canvas "Download submissions" zip with 12 students (two John Smiths,
accents and CJK, an anonymous id, LATE markers, a .zip upload, a corrupt notebook, one
student the roster lacks) and the roster Canvas exports (with a student who never
submitted); `course grade`; written answers scored through nbgrader's gradebook as
Formgrader writes them; a second export with one resubmission; a changed hidden check;
`course export --lms canvas`. Every student's final points are literals worked out here from
which answers are right, never by calling the code under test.
"""

import csv
import zipfile

import nbformat
import pytest

from course.cli import main
from tests import lms_exports as lms
from tests.toy_course import (
    ADD_SOLUTION,
    MUL_SOLUTION,
    answered,
    formgrader_score,
    read_grades,
    write_toy_course,
)

pytestmark = pytest.mark.slow  # 23 notebooks graded (11 + 1 + 11), two workers: minutes

COLUMN = "Adding numbers (4711)"  # the roster's assignment column
GOOD = "Adding is commutative: the order of a and b does not change a + b."
VAGUE = "It just works."
ABS_ADD = "    return abs(a) + abs(b)"  # right for the first hidden check, wrong for the second
BAD_MUL = "    return a *"  # a SyntaxError: mul is never defined

# Canvas user id -> the roster's "Last, First"; the file names below are Canvas's for them
# (sortable name lowercased, non-word characters removed; tests/lms_exports.py).
ROSTER = {
    "12345": "Smith, John",
    "12346": "Smith, John",  # the same name, another student
    "23456": "Müller, Jürgen",  # LATE, no extension: 10 % off
    "56789": "Lee, Ann",  # resubmits in the second export
    "67890": "Park, Min",  # uploads a .zip holding the notebook
    "78901": "Kim, Yu",  # submits the blank release notebook
    "89012": "Ng, Tom",  # uploads a notebook that is not valid JSON
    "45678": "Doe_Smith, Jane",  # an add the changed hidden check catches
    "24680": "Ortíz, Lucía",  # LATE, but an extension (CSV)
    "13579": "Østergaard, Søren",  # mul does not even parse
    "90123": "Quiet, Quinn",  # never submits
}  # not listed: 34567 (王小明) and the anonymous anon_Bx9cZ, both graded

# `total` (autograded points) after the first export, as the answers in _first_export earn
# them: add 2, mul 3; 89012's upload is not a notebook, 90123 submitted nothing.
AUTOGRADED = {"12345": 5, "12346": 2, "23456": 5, "34567": 3, "anon_Bx9cZ": 5, "56789": 2,
              "67890": 5, "78901": 0, "89012": 0, "45678": 5, "24680": 5, "13579": 2,
              "90123": 0}


def _first_export(blank):
    """The first export's 12 files, Canvas name -> content, answered from BLANK (the
    release notebook)."""
    w = nbformat.writes
    solved = w(answered(blank, add=ADD_SOLUTION, mul=MUL_SOLUTION, why_answer=GOOD))
    return {
        "smithjohn_12345_70001_Copy of toy.ipynb": solved,
        "smithjohn_12346_70002_toy.ipynb": w(answered(blank, add=ADD_SOLUTION,
                                                      why_answer=VAGUE)),
        "müllerjürgen_LATE_23456_70003_toy.ipynb": solved,
        "王小明_34567_70004_toy.ipynb": w(answered(blank, mul=MUL_SOLUTION, why_answer=VAGUE)),
        "anon_Bx9cZ_70005_Copy of toy.ipynb": solved,
        "leeann_56789_70006_toy.ipynb": w(answered(blank, add=ADD_SOLUTION, why_answer=VAGUE)),
        "parkmin_67890_70007_homework.zip": lms.zipped({"homework/toy.ipynb": solved}),
        "kimyu_78901_70008_toy.ipynb": w(blank),
        "ngtom_89012_70009_toy.ipynb": solved[:200],
        "doe_smithjane_45678_70010_toy.ipynb": w(answered(blank, add=ABS_ADD, mul=MUL_SOLUTION,
                                                          why_answer=VAGUE)),
        "ortízlucía_LATE_24680_70011_toy.ipynb": solved,
        "østergaardsøren_13579_70012_toy.ipynb": w(answered(blank, add=ADD_SOLUTION,
                                                            mul=BAD_MUL, why_answer=VAGUE)),
    }


def _export(path, files):
    """A Canvas "Download submissions" zip of FILES (name -> content)."""
    return lms.write_zip(path, [(name, data, lms.NEW) for name, data in files.items()])


def _released_and_published(tmp_path):
    """The toy course with a written answer, [grading] late_policy = "10%/day" and two
    workers, released and published; its root and the bundle's student notebook."""
    root = write_toy_course(tmp_path / "course", written=True)
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("workers = 1",
                                             'workers = 2\nlate_policy = "10%/day"'))
    assert main(["release", "--root", str(root)]) == 0
    bundle = tmp_path / "bundle"
    assert main(["publish", str(bundle), "--root", str(root)]) == 0
    blank = nbformat.read(bundle / "release" / "toy" / "toy.ipynb", as_version=4)
    assert "add(20, 22)" not in nbformat.writes(blank)  # the hidden test stayed home
    return root, blank


def test_a_term(tmp_path, capsys):
    # 1. release and publish: students start from the bundle's notebook
    root, blank = _released_and_published(tmp_path)

    # 2. the first Canvas export and the roster Canvas exports (7 points: 5 + 2 written)
    files = _first_export(blank)
    first = _export(tmp_path / "first.zip", files)
    roster = lms.canvas_roster(tmp_path / "roster.csv", points="7.00", students=ROSTER)
    extensions = tmp_path / "extensions.csv"
    extensions.write_text("student_id,due\n24680,2027-01-08\n")
    out = tmp_path / "grading"
    options = ["--out", str(out), "--root", str(root), "--lms", "canvas", "--roster",
               str(roster), "--extensions", str(extensions)]

    # 3. grade
    assert main(["grade", "toy", str(first), *options]) == 0
    assert "graded 11 submission(s)" in capsys.readouterr().out
    _first_grades_are_right(read_grades(out))

    # 4. a TA scores the written answers in Formgrader
    written = {"12345": 2.0, "12346": 1.0, "23456": 2.0, "34567": 1.0, "anon_Bx9cZ": 2.0,
               "56789": 1.0, "67890": 2.0, "45678": 1.0, "24680": 2.0, "13579": 0.0}
    for sid, points in written.items():
        formgrader_score(out / "gradebook.db", sid, points, f"{points:g} for the answer")
    assert main(["grade", "toy", str(first), *options]) == 0
    assert "graded 0 submission(s)" in capsys.readouterr().out
    overall = {**{s: AUTOGRADED[s] + p for s, p in written.items()}, "78901": 0, "89012": 0,
               "90123": 0}
    _overall_is(out, overall)

    # 5. Ann Lee resubmits: the next export holds only her newer file, same written answer
    del files["leeann_56789_70006_toy.ipynb"]
    files["leeann_56789_70106_toy-1.ipynb"] = nbformat.writes(
        answered(blank, add=ADD_SOLUTION, mul=MUL_SOLUTION, why_answer=VAGUE))
    second = _export(tmp_path / "second.zip", files)
    assert main(["grade", "toy", str(second), *options]) == 0
    assert "graded 1 submission(s)" in capsys.readouterr().out
    overall["56789"] = 5 + 1.0
    _overall_is(out, overall)
    assert read_grades(out).loc["56789", "total"] == 5

    # 6. a hidden check changes: everyone is graded again, hand scores stay
    source = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(source, as_version=4)
    test_add = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                    == "test_add")
    test_add.source = test_add.source.replace("add(20, 22) == 42", "add(-1, 1) == 0")
    nbformat.write(nb, source)
    assert main(["grade", "toy", str(second), *options]) == 0
    said = capsys.readouterr().out
    assert "graded 11 submission(s)" in said
    assert "regraded because the source notebook changed since the last run" in said
    overall["45678"] = 3 + 1.0  # abs(-1) + abs(1) != 0: test_add lost
    _overall_is(out, overall)

    # 7. export to Canvas: the gradebook CSV and the feedback zip
    assert main(["export", "toy", "--out", str(out), "--root", str(root), "--lms", "canvas",
                 "--roster", str(roster)]) == 0
    _canvas_export_is_right(out, capsys.readouterr().out)


def _overall_is(out, expected):
    """grades.csv's `overall` (autograded + written) is EXPECTED for every student."""
    assert read_grades(out)["overall"].astype(float).to_dict() == expected


def _first_grades_are_right(table):
    """grades.csv after the first export: every roster student and submitter, each with
    its reason, the late penalty only where no extension covers the LATE marker, and the
    written answers waiting for a TA (blank, never a silent 0)."""
    assert table["total"].to_dict() == AUTOGRADED
    status = table["status"].to_dict()
    assert status.pop("89012") == "failed" and status.pop("90123") == "missing"
    assert set(status.values()) == {"graded"}
    reason = table["reason"].to_dict()
    assert "ngtom_89012_70009_toy.ipynb is not a valid notebook" in reason["89012"]
    assert "SyntaxError" in reason["13579"]
    assert reason["90123"].startswith("no submission")
    assert "took parkmin_67890_70007_homework.zip: toy.ipynb" in reason["67890"]
    assert "not on the roster" in reason["34567"] and "not on the roster" in reason["anon_Bx9cZ"]
    assert "marked LATE by the LMS, no time in the export: counted as 1 day: -10%" in (
        reason["23456"])
    assert "within the extension" in reason["24680"]
    assert table.loc["23456", "late_penalty_pct"] == 10
    assert table.loc["24680", "late_penalty_pct"] == 0
    # a written answer left as released scores 0 by itself (nbgrader: unchanged checksum)
    waiting = {s for s, r in reason.items() if "1 written answer(s) not graded yet" in r}
    assert waiting == set(AUTOGRADED) - {"78901", "89012", "90123"}
    assert float(table.loc["78901", "overall"]) == 0
    assert set(table["overall"].loc[sorted(waiting)]) == {""}


def _canvas_export_is_right(out, said):
    """`course export --lms canvas`: the gradebook CSV's points for every roster student
    (autograded + written, less the late penalty), the two graded students the roster lacks
    listed, one feedback file per graded student named as Canvas's re-upload reads it."""
    assert "graded but not on the roster (not exported) (2):\n  34567\n  anon_Bx9cZ\n" in said
    assert "roster entries with no grade" not in said
    with open(out / "export" / "canvas" / "grades.csv", newline="", encoding="utf-8") as f:
        exported = {r["ID"]: r for r in csv.DictReader(f)}
    assert {sid: r[COLUMN] for sid, r in exported.items()} == {
        "12345": "7.00",  # 5 + 2
        "12346": "3.00",  # add only: 2 + 1
        "23456": "6.30",  # (5 + 2) less 10 % for the LATE marker
        "56789": "6.00",  # her resubmission: 5 + 1
        "67890": "7.00",  # the notebook inside his .zip: 5 + 2
        "78901": "0.00",  # blank
        "89012": "0.00",  # not a notebook: failed
        "45678": "4.00",  # mul only after the changed check: 3 + 1
        "24680": "7.00",  # LATE within the extension: no penalty
        "13579": "2.00",  # add only, and 0 for the answer
        "90123": "0.00",  # no submission
    }
    assert exported["12346"]["Student"] == "Smith, John"
    assert exported["24680"]["SIS User ID"] == "S24680"
    with zipfile.ZipFile(out / "export" / "canvas" / "feedback.zip") as zf:
        names = set(zf.namelist())
        lee = zf.read("leeann_56789_70106_feedback.html").decode()
    assert names == {  # one per graded student, with the numbers of the file graded
        "smithjohn_12345_70001_feedback.html", "smithjohn_12346_70002_feedback.html",
        "müllerjürgen_LATE_23456_70003_feedback.html", "王小明_34567_70004_feedback.html",
        "anon_Bx9cZ_70005_feedback.html", "leeann_56789_70106_feedback.html",
        "parkmin_67890_70007_feedback.html", "kimyu_78901_70008_feedback.html",
        "doe_smithjane_45678_70010_feedback.html", "ortízlucía_LATE_24680_70011_feedback.html",
        "østergaardsøren_13579_70012_feedback.html"}
    assert "1 for the answer" in lee  # the TA's comment reaches the student
