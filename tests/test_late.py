"""Late work: the policy, submission times from the exports, extensions, the LATE marker,
the grades.csv columns and the penalty `course export` applies."""

import csv

import nbformat
import pytest

from course.cli import main
from course.config import DEFAULT_FILE_PATTERN, CourseConfigError, load
from course.export import export
from course.gradebook import _table
from course.intake import intake, intake_students
from course.late import (
    Lateness,
    Policy,
    assess,
    parse_policy,
    read_extensions,
    read_timestamps,
)
from course.results import Row
from tests import lms_exports as lms
from tests.test_export import TOY, _graded, _rows
from tests.toy_course import TOML, write_toy_course

DUE = "2026-11-02T10:30:00+01:00"


def test_policies():
    assert parse_policy("none") == Policy("none") and parse_policy("Zero") == Policy("zero")
    assert parse_policy("10%/day cap 50%") == Policy("per_day", 10.0, 50.0)
    assert parse_policy("12.5 % / day") == Policy("per_day", 12.5, 100.0)
    p = parse_policy("10%/day cap 25%")
    assert [p.percent(d) for d in (0, 1, 2, 3, 9)] == [0, 10, 20, 25, 25]
    assert Policy("zero").percent(1) == 100 and Policy("none").percent(5) == 0
    for bad in ("10%", "ten%/day", "10%/week", "half"):
        with pytest.raises(ValueError, match="expected 'none', 'zero'"):
            parse_policy(bad)


def test_on_time_late_extended_and_marked():
    policy = parse_policy("10%/day cap 50%")
    students = {
        "ontime": {"submitted": "2026-11-02T10:00:00+01:00"},
        "late2": {"submitted": "2026-11-03T12:00:00+01:00"},       # 25.5 h: 2 started days
        "late9": {"submitted": "2026-11-11T10:00:00+01:00"},       # capped
        "extended": {"submitted": "2026-11-03T12:00:00+01:00"},
        "marked": {"late": True},                                  # Canvas: LATE, no time
        "marked_ext": {"late": True},
        "unknown": {},                                             # folders: no time
        "naive": {"submitted": "2026-11-02T11:00:00"},             # Moodle zip time
    }
    got = assess(policy, DUE, students, {"extended": "2026-11-05", "marked_ext": "2026-11-05"})
    assert got["ontime"] == Lateness(None, 0.0)
    assert (got["late2"].days, got["late2"].percent) == (2, 20.0)
    assert "late 2 day(s)" in got["late2"].note
    assert got["late9"].percent == 50.0
    assert got["extended"] == Lateness(None, 0.0)
    assert (got["marked"].days, got["marked"].percent) == (1, 10.0)
    assert "counted as 1 day" in got["marked"].note
    assert got["marked_ext"].percent == 0.0
    assert "unknown" not in got
    assert got["naive"].days == 1  # read in the due date's zone: 30 minutes late


def test_times_come_from_gradescope_and_moodle_exports(tmp_path):
    intake(lms.gradescope_zip(tmp_path / "g.zip"), tmp_path / "g", DEFAULT_FILE_PATTERN,
           lms="gradescope")
    _, students = intake_students(tmp_path / "g")
    # created_at 10:00, 11:00, 12:00 +01:00 against a 10:30 due date
    got = assess(parse_policy("zero"), DUE, students)
    assert got["501"].percent == 0 and got["hanako-cs101@uni.example"].percent == 100
    assert got["503"].percent == 100 and got["504"].percent == 100  # both group members
    intake(lms.moodle_zip(tmp_path / "m.zip"), tmp_path / "m", DEFAULT_FILE_PATTERN,
           lms="moodle")
    _, students = intake_students(tmp_path / "m")
    assert students["1001"]["submitted"] == "2026-11-02T10:00:00"  # the zip's file time
    intake(lms.canvas_zip(tmp_path / "c.zip"), tmp_path / "c", DEFAULT_FILE_PATTERN,
           lms="canvas")
    _, students = intake_students(tmp_path / "c")
    got = assess(parse_policy("5%/day"), DUE, students)
    assert set(got) == {"23456"} and got["23456"].percent == 5  # only the LATE-marked one


def test_grades_csv_gets_lateness_columns_only_with_a_policy():
    rows = [Row("a", "graded", "", {"t": 2.0}), Row("b", "graded", "", {"t": 1.0})]
    plain = _table(rows, {"t": 2.0})
    assert list(plain.columns) == ["student_id", "t", "total", "max_score", "status", "reason"]
    late = _table(rows, {"t": 2.0}, {"b": Lateness(2, 20.0, "late")})
    assert list(late.columns)[-2:] == ["late_days", "late_penalty_pct"]
    assert late.set_index("student_id").loc["b", "late_penalty_pct"] == 20.0
    assert late.set_index("student_id").loc["a", "late_days"] == ""


def test_export_applies_the_late_penalty(tmp_path):
    out = tmp_path / "out"
    _graded(out, lms.canvas_zip(tmp_path / "c.zip"), "canvas")
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    for r in table:
        r["late_days"], r["late_penalty_pct"] = ("1", "10.0") if r["student_id"] == "23456" \
            else ("", "0.0")
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    report = export(out, TOY, "canvas", lms.canvas_roster(tmp_path / "r.csv"))
    by_id = {r["ID"]: r for r in _rows(report.grades)}
    assert by_id["23456"]["Adding numbers (4711)"] == "4.50"
    assert by_id["12345"]["Adding numbers (4711)"] == "5.00"


def test_course_toml_late_settings(tmp_path):
    (tmp_path / "course").mkdir()
    toml = tmp_path / "course" / "course.toml"
    toml.write_text(TOML.replace("workers = 1", 'workers = 1\nlate_policy = "10%/day cap 30%"')
                    + '[assignments.extensions]\n"12345" = "2027-01-05T23:59:00+01:00"\n')
    cfg = load(tmp_path)
    assert cfg.late_policy == "10%/day cap 30%"
    assert dict(cfg.assignment("toy").extensions) == {"12345": "2027-01-05T23:59:00+01:00"}
    toml.write_text(TOML.replace("workers = 1", 'workers = 1\nlate_policy = "sometimes"'))
    with pytest.raises(CourseConfigError, match="late_policy 'sometimes'"):
        load(tmp_path)
    toml.write_text(TOML + '[assignments.extensions]\n"12345" = "next week"\n')
    with pytest.raises(CourseConfigError, match="extensions"):
        load(tmp_path)


def _timestamps(path, *lines):
    path.write_text("student_id,submitted_at\n" + "".join(f"{x}\n" for x in lines))
    return path


def test_a_timestamps_csv_gives_folders_their_times(tmp_path):
    """`--timestamps`: folders carry no times; the CSV's feed the late policy, and win over
    an export's own (here Moodle's zip file time)."""
    subs = tmp_path / "subs"
    for sid in ("s1", "s2", "s3"):
        (subs / sid).mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(), subs / sid / "toy.ipynb")
    times = read_timestamps(_timestamps(
        tmp_path / "t.csv", f"s1,{DUE}", "s2,2026-11-04T09:00:00Z",  # 46.5 h: 2 started days
        "ghost,2026-11-09T09:00:00Z"))                              # submitted nothing
    intake(subs, tmp_path / "f", DEFAULT_FILE_PATTERN, timestamps=times)
    _, students = intake_students(tmp_path / "f")
    assert set(students) == {"s1", "s2"}
    got = assess(parse_policy("10%/day"), DUE, students)
    assert got["s1"] == Lateness(None, 0.0) and (got["s2"].days, got["s2"].percent) == (2, 20)
    intake(lms.moodle_zip(tmp_path / "m.zip"), tmp_path / "m", DEFAULT_FILE_PATTERN,
           lms="moodle", timestamps={"1001": "2026-11-05T10:00:00+01:00"})
    _, students = intake_students(tmp_path / "m")
    assert students["1001"]["submitted"] == "2026-11-05T10:00:00+01:00"


@pytest.mark.parametrize(("option", "columns"), [("--timestamps", "student_id, submitted_at"),
                                                ("--extensions", "student_id, due")])
def test_a_csv_option_without_its_columns_or_missing_stops_grade(tmp_path, capsys, option,
                                                                 columns):
    root = write_toy_course(tmp_path / "course")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,time\ns1,2026-11-02T10:00:00Z\n")
    what = option.removeprefix("--")
    for path, said in ((wrong, f"expected the columns {columns}; found id, time"),
                       (tmp_path / "absent.csv", f"cannot read the {what} CSV")):
        assert main(["grade", "toy", str(tmp_path), "--out", str(tmp_path / "out"), "--root",
                     str(root), option, str(path)]) == 1
        err = capsys.readouterr().err
        assert str(path) in err and said in err
    assert not (tmp_path / "out").exists()  # stopped before anything was read or graded


def _extensions(path, *lines):
    path.write_text("student_id,due\n" + "".join(f"{x}\n" for x in lines))
    return path


def test_an_extensions_csv_moves_each_students_due_date(tmp_path):
    ext = read_extensions(_extensions(tmp_path / "e.csv", "s1,2026-11-05",  # end of that day
                                      "s2,2026-11-03T12:00:00+01:00"))
    assert ext == {"s1": "2026-11-05", "s2": "2026-11-03T12:00:00+01:00"}
    students = {sid: {"submitted": "2026-11-03T13:00:00+01:00"} for sid in ("s1", "s2", "s3")}
    got = assess(parse_policy("10%/day"), DUE, students, ext)
    assert got["s1"] == Lateness(None, 0.0)
    assert (got["s2"].days, got["s2"].percent) == (1, 10) and "(extension)" in got["s2"].note
    assert (got["s3"].days, got["s3"].percent) == (2, 20)  # 26.5 h after DUE


@pytest.mark.parametrize(("read", "write", "lines", "said"), [
    (read_timestamps, _timestamps, ["s1,2026-11-02"],
     "line 2: submitted_at '2026-11-02' is not an ISO 8601 time"),
    (read_timestamps, _timestamps, ["s1,2026-11-02T10:00:00Z", "s2,yesterday"],
     "line 3: submitted_at 'yesterday'"),
    (read_timestamps, _timestamps, ["s1,2026-11-02T10:00:00Z", "s1,2026-11-03T10:00:00Z"],
     "line 3: student 's1' twice"),
    (read_timestamps, _timestamps, [",2026-11-02T10:00:00Z"], "line 2: empty student_id"),
    (read_extensions, _extensions, ["s1,next week"],
     "line 2: due 'next week' is not an ISO 8601 date or time"),
    (read_extensions, _extensions, ["s1,2026-11-05", "s2,"],
     "line 3: due '' is not an ISO 8601 date or time"),
    (read_extensions, _extensions, ["s1,2026-11-05", "s1,2026-11-06"],
     "line 3: student 's1' twice"),
    (read_extensions, _extensions, [" ,2026-11-05"], "line 2: empty student_id"),
])
def test_a_bad_csv_names_the_line(tmp_path, read, write, lines, said):
    path = write(tmp_path / "x.csv", *lines)
    with pytest.raises(ValueError, match=f"x.csv {said}"):
        read(path)


def test_grade_takes_extensions_from_a_csv_over_course_toml(tmp_path):
    """`course grade --extensions`: the CSV's date wins over course.toml's for s1 and
    extends s2; s3 keeps the assignment's due date. (The uploads are not notebooks, so no
    kernel runs; their rows still carry the lateness.)"""
    root = write_toy_course(tmp_path / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("workers = 1",
                                             'workers = 1\nlate_policy = "10%/day"')
                    + '[assignments.extensions]\n"s1" = "2027-01-02"\n')
    subs = tmp_path / "subs"
    for sid in ("s1", "s2", "s3"):
        (subs / sid).mkdir(parents=True)
        (subs / sid / "toy.py").write_text("print(1)\n")
    late = "2027-01-04T12:00:00+00:00"  # 2.5 days after the toy's due date, 2027-01-01
    times = _timestamps(tmp_path / "t.csv", f"s1,{late}", f"s2,{late}", f"s3,{late}")
    ext = _extensions(tmp_path / "e.csv", "s1,2027-01-03", "s2,2027-01-05")
    out = tmp_path / "out"
    assert main(["grade", "toy", str(subs), "--out", str(out), "--root", str(root),
                 "--timestamps", str(times), "--extensions", str(ext)]) == 0
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert [rows[s]["late_penalty_pct"] for s in ("s1", "s2", "s3")] == ["10.0", "0.0", "30.0"]
    assert "(extension)" in rows["s1"]["reason"]
