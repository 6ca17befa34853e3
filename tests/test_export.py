"""`course export`: Canvas's gradebook CSV and Moodle's grading worksheet with every roster
student, feedback named for each LMS's bulk upload, manual scores from the gradebook."""

import csv
import zipfile

from course.cli import main
from course.config import DEFAULT_FILE_PATTERN, Assignment
from course.export import export
from course.intake import intake
from tests import lms_exports as lms
from tests.toy_course import write_toy_course

TOY = Assignment("toy", "Adding numbers", "toy.ipynb", "2027-01-01", 5.0)


def _graded(out, source, kind, roster=None, points=None):
    """A grading folder as `course grade` leaves it, without running kernels: intake's
    students.json, grades.csv (5 points each, or POINTS[id]) and feedback/<id>.html."""
    found, rows = intake(source, out, DEFAULT_FILE_PATTERN, lms=kind, roster=roster)
    (out / "feedback").mkdir()
    lines = [["student_id", "test_add", "test_mul", "total", "max_score", "status", "reason"]]
    for sid in found:
        total = (points or {}).get(sid, 5.0)
        lines.append([sid, min(total, 2), max(0, total - 2), total, 5.0, "graded", ""])
        (out / "feedback" / f"{sid}.html").write_text(f"<p>{sid}</p>", encoding="utf-8")
    lines += [[r.student_id, 0, 0, 0, 5.0, r.status, r.reason] for r in rows]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines)
    return found, rows


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_canvas_gradebook_csv_and_reupload_zip(tmp_path):
    roster = lms.canvas_roster(tmp_path / "roster.csv")
    out = tmp_path / "out"
    _graded(out, lms.canvas_zip(tmp_path / "c.zip"), "canvas", roster, {"12346": 3.5})
    report = export(out, TOY, "canvas", roster)
    rows = _rows(report.grades)
    assert list(rows[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                             "Adding numbers (4711)"]
    by_id = {r["ID"]: r for r in rows}
    # every roster student, by Canvas user id: the two John Smiths apart
    assert set(by_id) == {e for e in lms.CANVAS_STUDENTS if e != "34567"} | {"90123"}
    assert by_id["12345"]["Adding numbers (4711)"] == "5.00"
    assert by_id["12346"]["Adding numbers (4711)"] == "3.50"
    assert by_id["12346"]["SIS User ID"] == "S12346"
    assert by_id["90123"]["Adding numbers (4711)"] == "0.00"  # no submission: grades.csv's 0
    assert by_id["78901"]["Adding numbers (4711)"] == "0.00"  # uploaded a .py
    assert report.not_on_roster == ["34567"]  # graded, but the roster lacks them
    # feedback named with the numbers of each student's file, as Canvas's re-upload reads
    with zipfile.ZipFile(report.feedback_zip) as zf:
        names = set(zf.namelist())
    assert "smithjohn_12345_67890_feedback.html" in names
    assert "müllerjürgen_LATE_23456_67892_feedback.html" in names
    assert "leeann_56789_67999_feedback.html" in names  # the resubmission taken
    assert "parkmin_67890_67896_feedback.html" in names


def test_canvas_without_roster_names_the_column_and_skips_anonymous(tmp_path):
    out = tmp_path / "out"
    _graded(out, lms.canvas_anonymous_zip(tmp_path / "a.zip"), "canvas")
    report = export(out, TOY, "canvas")
    assert _rows(report.grades) == []
    assert sorted(report.not_on_roster) == ["anon_77aaa", "anon_Bx9cZ", "anon_q7Lk2"]
    assert any("Adding numbers (toy)" in n for n in report.notes)
    with zipfile.ZipFile(report.feedback_zip) as zf:
        assert "LATE_anon_q7Lk2_68002_feedback.html" in zf.namelist()


def test_moodle_worksheet_and_feedback_zip(tmp_path):
    sheet = lms.moodle_worksheet(tmp_path / "ws.csv")
    out = tmp_path / "out"
    _graded(out, lms.moodle_zip(tmp_path / "m.zip"), "moodle", sheet, {"1002": 1.0})
    report = export(out, TOY, "moodle", sheet)
    rows = _rows(report.grades)
    assert list(rows[0])[:6] == ["Identifier", "Full name", "Email address", "Status",
                                 "Grade", "Maximum Grade"]
    by_id = {r["Identifier"]: r for r in rows}
    assert by_id["Participant 1001"]["Grade"] == "5.00"
    assert by_id["Participant 1002"]["Grade"] == "1.00"
    assert by_id["Participant 1003"]["Grade"] == "5.00"  # the other John Smith
    assert by_id["Participant 1008"]["Grade"] == "0.00"  # on the worksheet, no submission
    assert by_id["Participant 1001"]["Full name"] == "José Álvarez"
    assert not report.unmatched_roster and not report.not_on_roster
    with zipfile.ZipFile(report.feedback_zip) as zf:
        names = set(zf.namelist())
    assert "José Álvarez_1001_assignsubmission_file_feedback.html" in names
    assert "李华_1004_assignsubmission_file_feedback.html" in names


def test_moodle_rescales_to_the_worksheets_maximum(tmp_path):
    sheet = lms.moodle_worksheet(tmp_path / "ws.csv")
    sheet.write_text(sheet.read_text(encoding="utf-8").replace(",5.00,", ",100.00,"),
                     encoding="utf-8")
    out = tmp_path / "out"
    _graded(out, lms.moodle_zip(tmp_path / "m.zip"), "moodle", sheet, {"1002": 1.0})
    report = export(out, TOY, "moodle", sheet)
    by_id = {r["Identifier"]: r for r in _rows(report.grades)}
    assert by_id["Participant 1002"]["Grade"] == "20.00"
    assert any("rescaled" in n for n in report.notes)


def test_roster_entries_without_a_grade_are_listed(tmp_path):
    """A roster student that grades.csv does not know (graded without --roster)."""
    out = tmp_path / "out"
    _graded(out, lms.canvas_zip(tmp_path / "c.zip"), "canvas")
    report = export(out, TOY, "canvas", lms.canvas_roster(tmp_path / "r.csv"))
    assert report.unmatched_roster == ["90123 (Quiet, Quinn)"]
    by_id = {r["ID"]: r for r in _rows(report.grades)}
    assert by_id["90123"]["Adding numbers (4711)"] == ""


def test_manual_scores_from_the_gradebook_count_and_unmarked_ones_stay_blank(tmp_path):
    from nbgrader.api import Gradebook

    from course.nbgrader_setup import put_bin_on_path

    put_bin_on_path()  # nbgrader runs `alembic` through PATH, as the CLI sets it up
    out = tmp_path / "out"
    _graded(out, lms.canvas_zip(tmp_path / "c.zip"), "canvas")
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        gb.add_assignment("toy")
        gb.add_notebook("toy", "toy")
        gb.update_or_create_grade_cell("test_add", "toy", "toy", max_score=5,
                                       cell_type="code")
        gb.update_or_create_grade_cell("written", "toy", "toy", max_score=4,
                                       cell_type="markdown")
        for sid, manual in (("12345", 3.0), ("12346", None)):
            gb.add_student(sid)
            gb.add_submission("toy", sid)
            auto = gb.find_grade("test_add", "toy", "toy", sid)
            auto.auto_score, auto.needs_manual_grade = 5.0, False  # as autograde leaves it
            written = gb.find_grade("written", "toy", "toy", sid)
            written.manual_score = manual
            written.needs_manual_grade = manual is None
            gb.db.commit()
    roster = lms.canvas_roster(tmp_path / "r.csv", points="9.00")  # 5 autograded + 4 by hand
    report = export(out, TOY, "canvas", roster)
    by_id = {r["ID"]: r for r in _rows(report.grades)}
    assert by_id["12345"]["Adding numbers (4711)"] == "8.00"  # 5 autograded + 3 by hand
    assert by_id["12346"]["Adding numbers (4711)"] == ""  # written answer unmarked
    assert any(b.startswith("12346: written answers") for b in report.blank)


def test_export_command(tmp_path, capsys):
    root = write_toy_course(tmp_path / "course")
    out = tmp_path / "out"
    _graded(out, lms.canvas_zip(tmp_path / "c.zip"), "canvas")
    roster = lms.canvas_roster(tmp_path / "r.csv")
    assert main(["export", "toy", "--out", str(out), "--lms", "canvas", "--roster",
                 str(roster), "--root", str(root)]) == 0
    said = capsys.readouterr().out
    assert "roster entries with no grade (1)" in said and "90123 (Quiet, Quinn)" in said
    assert (out / "export" / "canvas" / "feedback.zip").is_file()
    # a Canvas roster for a Moodle export is refused with a reason, exit 1
    assert main(["export", "toy", "--out", str(out), "--lms", "moodle", "--roster",
                 str(roster), "--root", str(root)]) == 1
