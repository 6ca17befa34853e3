"""Intake of real-shaped LMS exports (tests/lms_exports.py): the student key is the LMS's
stable id, every upload gets a row, the newest notebook is taken, each run starts fresh."""

import json
import zipfile

import pytest

from course.config import DEFAULT_FILE_PATTERN
from course.intake import intake, read_roster
from tests import lms_exports as lms


def _run(source, out, kind, roster=None):
    found, rows = intake(source, out, DEFAULT_FILE_PATTERN, lms=kind, roster=roster)
    return ({k: lms.label_of(p) for k, p in found.items()},
            {r.student_id: r for r in rows})


def _students(out):
    return json.loads((out / "intake" / "students.json").read_text(encoding="utf-8"))


def test_canvas_keys_by_user_id_whatever_the_name(tmp_path):
    found, rows = _run(lms.canvas_zip(tmp_path / "c.zip"), tmp_path / "out", "canvas")
    # two John Smiths, accents, CJK, "_" in the name: each is one student by user id
    assert found["12345"] == "smith 12345" and found["12346"] == "smith 12346"
    assert found["23456"] == "müller" and found["34567"] == "wang"
    assert found["45678"] == "doe_smith"
    # resubmission: the higher attachment id (and "-1") wins, with a warning
    assert found["56789"] == "lee second"
    meta = _students(tmp_path / "out")["students"]
    assert "took the newest" in " ".join(meta["56789"]["notes"])
    assert meta["56789"]["original"] == "leeann_56789_67999_toy-1.ipynb"
    # a .zip upload is opened and its one notebook taken, saying so
    assert found["67890"] == "park"
    assert "parkmin_67890_67896_homework.zip: toy.ipynb" in " ".join(meta["67890"]["notes"])
    # non-notebook uploads: a row with what was uploaded
    assert rows["78901"].status == "missing" and "toy.py" in rows["78901"].reason
    assert "not a .ipynb" in rows["78901"].reason
    assert "report.pdf" in rows["89012"].reason
    # the LATE marker is kept; Unicode names are kept as names, never as keys
    assert meta["23456"]["late"] is True and meta["12345"]["late"] is False
    assert "marked LATE" in " ".join(meta["23456"]["notes"])
    assert meta["34567"]["name"] == "王小明"
    assert set(found) | set(rows) == set(lms.CANVAS_STUDENTS)


def test_canvas_anonymous_grading_keeps_students_apart(tmp_path):
    found, rows = _run(lms.canvas_anonymous_zip(tmp_path / "a.zip"), tmp_path / "o", "canvas")
    assert found == {"anon_Bx9cZ": "anon Bx9cZ", "anon_q7Lk2": "anon q7Lk2",
                     "anon_77aaa": "anon 77aaa"}
    assert not rows
    assert _students(tmp_path / "o")["students"]["anon_q7Lk2"]["late"] is True


def test_canvas_roster_gives_every_enrolled_student_a_row(tmp_path):
    roster = lms.canvas_roster(tmp_path / "roster.csv")
    found, rows = _run(lms.canvas_zip(tmp_path / "c.zip"), tmp_path / "out", "canvas", roster)
    quinn = lms.CANVAS_NO_SUBMISSION[0]
    assert rows[quinn].status == "missing" and "no submission" in rows[quinn].reason
    assert "Points Possible" not in " ".join(rows)  # Canvas's second header row is skipped
    meta = _students(tmp_path / "out")["students"]
    assert "not on the roster" in meta["34567"]["notes"]  # graded, but flagged
    assert meta["12345"]["name"] == "Smith, John"
    kind, entries = read_roster(roster)
    assert kind == "canvas" and {e.key for e in entries} == {*lms.CANVAS_STUDENTS, quinn} - {
        "34567"}


@pytest.mark.parametrize("flat", [False, True])
def test_moodle_keys_by_participant_id(tmp_path, flat):
    found, rows = _run(lms.moodle_zip(tmp_path / "m.zip", flat=flat), tmp_path / "out",
                       "moodle", lms.moodle_worksheet(tmp_path / "ws.csv"))
    assert found["1001"] == "álvarez" and found["1004"] == "li"
    assert found["1002"] == "smith 1002" and found["1003"] == "smith 1003"
    assert found["1005"] == "lee new"  # the newer file time wins
    assert "toy.py" in rows["1006"].reason and rows["1006"].status == "missing"
    assert "onlinetext.html" in rows["1007"].reason
    assert rows["1008"].reason.startswith("no submission")
    meta = _students(tmp_path / "out")["students"]
    assert meta["1001"]["prefix"] == "José Álvarez_1001_assignsubmission_file_"
    assert meta["1001"]["name"] == "José Álvarez"
    assert "took the newest" in " ".join(meta["1005"]["notes"])


def test_moodle_blind_marking(tmp_path):
    found, rows = _run(lms.moodle_blind_zip(tmp_path / "b.zip"), tmp_path / "o", "moodle")
    assert found == {"2001": "p2001", "2002": "p2002"} and not rows
    meta = _students(tmp_path / "o")["students"]
    assert meta["2001"]["prefix"] == "Participant_2001_assignsubmission_file_"


def test_moodle_worksheet_is_a_roster(tmp_path):
    kind, entries = read_roster(lms.moodle_worksheet(tmp_path / "ws.csv"))
    assert kind == "moodle"
    assert {e.key: e.name for e in entries}["1001"] == "José Álvarez"


def test_gradescope_keys_by_sid_else_email(tmp_path):
    found, rows = _run(lms.gradescope_zip(tmp_path / "g.zip"), tmp_path / "o", "gradescope")
    assert found == {"501": "perez", "hanako-cs101@uni.example": "sato", "503": "group",
                     "504": "group"}
    assert rows["505"].status == "missing" and "report.pdf" in rows["505"].reason
    meta = _students(tmp_path / "o")["students"]
    assert "Cy Diaz" in " ".join(meta["503"]["notes"])
    assert "'hanako+cs101@uni.example' written as" in " ".join(
        meta["hanako-cs101@uni.example"]["notes"])
    assert meta["501"]["submitted"].startswith("2026-11-02")


def test_a_newer_export_is_unpacked_into_a_fresh_folder(tmp_path):
    """A resubmitter's old file from the previous export must not sit beside the new one."""
    out = tmp_path / "out"
    first = lms.write_zip(tmp_path / "1.zip", [
        ("leeann_56789_67895_toy.ipynb", lms.notebook_text("lee first"), lms.OLD)])
    second = lms.write_zip(tmp_path / "2.zip", [
        ("leeann_56789_67999_toy-1.ipynb", lms.notebook_text("lee second"), lms.NEW)])
    for kind in ("canvas", "folders"):
        _run(first, out, kind)
        found, rows = _run(second, out, kind)
        assert list(found.values()) == ["lee second"] and not rows
        assert not list(out.rglob("leeann_56789_67895_toy.ipynb"))


def test_folders_say_what_was_uploaded_instead_of_a_notebook(tmp_path):
    (tmp_path / "subs" / "s1").mkdir(parents=True)
    (tmp_path / "subs" / "s1" / "report.pdf").write_bytes(b"%PDF")
    _, rows = _run(tmp_path / "subs", tmp_path / "o", "folders")
    assert rows["s1"].status == "missing" and "report.pdf" in rows["s1"].reason


def test_unsafe_zip_paths_are_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape_1_2_toy.ipynb", "{}")
    with pytest.raises(ValueError, match="unsafe"):
        _run(bad, tmp_path / "o", "canvas")


def test_the_default_lms_comes_from_course_toml(tmp_path):
    from course.config import CourseConfigError, load
    from tests.toy_course import TOML

    (tmp_path / "course").mkdir()
    toml = tmp_path / "course" / "course.toml"
    toml.write_text(TOML)
    assert load(tmp_path).lms == "folders"
    toml.write_text(TOML.replace("workers = 1", 'workers = 1\nlms = "canvas"'))
    assert load(tmp_path).lms == "canvas"
    toml.write_text(TOML.replace("workers = 1", 'workers = 1\nlms = "blackboard"'))
    with pytest.raises(CourseConfigError, match="lms = 'blackboard'; expected one of"):
        load(tmp_path)


def test_zip_names_without_the_utf8_flag_are_read_as_utf8(tmp_path):
    """Some zip writers store UTF-8 names without saying so; Python would read them as
    cp437 ("mÃ¼llerjÃ¼rgen")."""
    name = "müllerjürgen_LATE_23456_67892_toy.ipynb".encode()
    tail = b"_LATE_23456_67892_toy.ipynb"
    placeholder = b"x" * (len(name) - len(tail)) + tail
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as zf:  # an ASCII name of the same length, then the bytes
        zf.writestr(placeholder.decode(), lms.notebook_text("müller"))
    path.write_bytes(path.read_bytes().replace(placeholder, name))
    with zipfile.ZipFile(path) as zf:
        assert not zf.infolist()[0].flag_bits & 0x800  # written as cp437 bytes, no flag
    found, rows = _run(path, tmp_path / "o", "canvas")
    assert found == {"23456": "müller"} and not rows
    meta = _students(tmp_path / "o")["students"]["23456"]
    assert meta["original"] == "müllerjürgen_LATE_23456_67892_toy.ipynb"
