"""Written answers graded by hand survive re-runs of `course grade`: a TA's score and comment,
entered through nbgrader's gradebook exactly as Formgrader writes them, outlive a plain
re-run, `--force` and a changed hidden check; a resubmission with a changed answer is
flagged for regrading; grades.csv, the feedback and `course export` carry the points.
`course formgrade --dry-run` shows the Formgrader set-up without starting a server."""

import csv
import html
import re

import nbformat
import pytest

from course.cli import main
from tests.toy_course import (
    ADD_SOLUTION,
    STUB,
    formgrader_score,
    read_grades,
    write_toy_course,
)

SOL, HALF = "12345", "12346"  # Canvas-like numeric ids, so `course export --lms canvas` lists them


def _feedback_text(out, sid):
    page = (out / "feedback" / f"{sid}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _canvas_points(out, root):
    assert main(["export", "toy", "--out", str(out), "--root", str(root), "--lms",
                 "canvas"]) == 0
    with open(out / "export" / "canvas" / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["ID"]: r["Adding numbers (toy)"] for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """The toy course with a written answer, released; two students submit."""
    root = write_toy_course(tmp_path_factory.mktemp("course"), written=True)
    assert main(["release", "--root", str(root)]) == 0
    subs = tmp_path_factory.mktemp("submissions")
    solved = nbformat.read(root / "source" / "toy" / "toy.ipynb", as_version=4)
    half = nbformat.read(root / "release" / "toy" / "toy.ipynb", as_version=4)
    half.cells[2].source = half.cells[2].source.replace(STUB, ADD_SOLUTION.strip())
    answer = next(c for c in half.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                  == "why_answer")
    answer.source = "Because the order does not matter."
    for sid, nb in ((SOL, solved), (HALF, half)):
        (subs / sid).mkdir()
        nbformat.write(nb, subs / sid / "toy.ipynb")
    out = tmp_path_factory.mktemp("out")
    grade = ["grade", "toy", str(subs), "--out", str(out), "--root", str(root)]
    assert main(grade) == 0
    return root, subs, out, grade


@pytest.mark.slow  # the term fixture grades two notebooks: ~1 minute in all
def test_written_answers_await_a_ta_and_say_so(term):
    _, _, out, _ = term
    table = read_grades(out)
    assert list(table.columns) == ["test_add", "test_mul", "total", "max_score", "why_answer",
                                   "written", "overall", "overall_max", "status", "reason"]
    for sid, total in ((SOL, 5), (HALF, 2)):
        row = table.loc[sid]
        assert (row["total"], row["max_score"], row["overall_max"]) == (total, 5, 7)
        assert row["why_answer"] == row["written"] == row["overall"] == ""  # not a silent 0
        assert "1 written answer(s) not graded yet" in row["reason"]
    assert (out / "nbgrader" / "autograded" / SOL / "toy" / "toy.ipynb").is_file()


@pytest.mark.slow
def test_hand_grades_survive_reruns_force_and_a_changed_hidden_check(term, capsys):
    root, _, out, grade = term
    db = out / "gradebook.db"
    formgrader_score(db, SOL, 2.0, "Well argued.")
    formgrader_score(db, HALF, 1.0, "Say why the order does not matter.")

    assert main(grade) == 0  # plain re-run: nothing regraded
    assert "graded 0 submission(s)" in capsys.readouterr().out
    _hand_grades_are_there(out)
    assert "Say why the order does not matter." in _feedback_text(out, HALF)

    assert main([*grade, "--force"]) == 0  # both imported again
    _hand_grades_are_there(out)

    source = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("add(20, 22) == 42", "add(-1, 1) == 0")
    nbformat.write(nb, source)
    assert main(grade) == 0
    assert "regraded because the source notebook changed" in capsys.readouterr().out
    _hand_grades_are_there(out)
    assert _canvas_points(out, root) == {SOL: "7.00", HALF: "3.00"}


def _hand_grades_are_there(out):
    table = read_grades(out)
    assert table.loc[SOL, ["why_answer", "written", "overall"]].tolist() == [2, 2, 7]
    assert table.loc[HALF, ["why_answer", "written", "overall"]].tolist() == [1, 1, 3]
    assert "written answer" not in table.loc[SOL, "reason"]
    assert "Well argued." in _feedback_text(out, SOL)


@pytest.mark.slow
def test_a_changed_written_answer_is_flagged_until_regraded(term):
    root, subs, out, grade = term
    if (read_grades(out).loc[HALF, "written"]) == "":
        formgrader_score(out / "gradebook.db", HALF, 1.0, "Say why.")  # when run alone
        assert main(grade) == 0
    nb = nbformat.read(subs / HALF / "toy.ipynb", as_version=4)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                  == "why_answer")
    answer.source = "a + b and b + a are the same sum, whatever the order."
    nbformat.write(nb, subs / HALF / "toy.ipynb")  # the resubmission
    assert main(grade) == 0
    row = read_grades(out).loc[HALF]
    assert "written answer why_answer changed since it was hand-graded: regrade it" in (
        row["reason"])
    assert row["why_answer"] == row["overall"] == "" and row["total"] == 2
    assert _canvas_points(out, root)[HALF] == ""  # blank in the LMS, not the old score

    formgrader_score(out / "gradebook.db", HALF, 2.0, "Now it says why.")
    assert main(grade) == 0
    row = read_grades(out).loc[HALF]
    assert (row["why_answer"], row["overall"]) == (2, 4) and "regrade" not in row["reason"]


@pytest.mark.slow
def test_formgrade_dry_run_points_formgrader_at_the_grading_folder(term, capsys):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    root, _, out, _ = term
    assert main(["formgrade", "toy", "--out", str(out), "--root", str(root),
                 "--dry-run"]) == 0
    said = capsys.readouterr().out
    folder = out / "nbgrader"
    assert "Nbgrader → Formgrader" in said and str(folder) in said and "jupyter lab" in said
    assert f"--ServerApp.root_dir={folder}" in said  # the course inside the server's root
    # The Formgrader reads this file from its working directory (nbgrader's
    # FormgradeExtension.load_config, load_cwd_config): it must name this gradebook.
    config = PyFileConfigLoader("nbgrader_config.py", path=str(folder)).load_config()
    assert config.CourseDirectory.root == str(folder)
    assert config.CourseDirectory.db_url == f"sqlite:///{out / 'gradebook.db'}"
    api = NbGraderAPI(config=config)
    students = {s["student"] for s in api.get_notebook_submissions("toy", "toy")}
    assert students == {SOL, HALF}


def test_formgrade_without_a_graded_folder_says_what_to_run(tmp_path, capsys):
    root = write_toy_course(tmp_path / "course")
    out = tmp_path / "never-graded"
    assert main(["formgrade", "toy", "--out", str(out), "--root", str(root), "--dry-run"]) == 1
    said = capsys.readouterr().err
    assert str(out / "nbgrader") in said and "run `course grade toy SUBMISSIONS" in said
    assert not (out / "nbgrader" / "nbgrader_config.py").exists()
