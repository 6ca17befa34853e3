"""`course export`: grades and feedback back to the LMS the submissions came from.

Reads a grading folder (OUT/grades.csv, OUT/gradebook.db, OUT/feedback/, and what intake
kept in OUT/intake/students.json) and writes OUT/export/<lms>/:

* Canvas: ``grades.csv`` in the gradebook import's columns (``Student, ID, SIS User ID,
  SIS Login ID, Section``, then ``<title> (<assignment id>)``), and ``feedback/`` +
  ``feedback.zip`` for "Re-upload submissions", each file named with the numbers of the
  student's original file (``<name>[_LATE]_<user id>_<attachment id>_feedback.html``);
* Moodle: ``grading_worksheet.csv`` (the offline grading worksheet: ``Identifier`` =
  ``Participant <id>``, ``Full name``, ``Email address``, ``Status``, ``Grade``, ``Maximum
  Grade``, ...), and ``feedback/`` + ``feedback.zip`` for "Upload multiple feedback files in
  a zip", each file prefixed ``<Full name>_<id>_assignsubmission_file_``.

Points are nbgrader's: the gradebook's submission score (autograded plus any manual
scores); without a gradebook, grades.csv's total; less grades.csv's ``late_penalty_pct``
when `[grading] late_policy` is set. A student whose
written answers are still unmarked gets no grade (blank), never a silent zero for them.
The roster (the LMS's own gradebook export or worksheet) supplies every enrolled student
and the LMS's columns; entries that match no graded student, and graded students the roster
lacks, are listed.
"""

from __future__ import annotations

import csv
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from course.config import Assignment
from course.intake import intake_students, read_roster

CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["Identifier", "Full name", "Email address", "Status", "Grade",
                  "Maximum Grade", "Grade can be changed", "Last modified (submission)",
                  "Last modified (grade)", "Feedback comments"]
CANVAS_COLUMN = re.compile(r"^(?P<title>.*) \((?P<id>\d+)\)$")


@dataclass
class Score:
    points: float | None  # None: not final (written answers unmarked), left blank
    maximum: float
    status: str
    note: str = ""


@dataclass
class Report:
    """What `course export` wrote and what it could not match."""

    grades: Path
    feedback_zip: Path | None
    unmatched_roster: list[str] = field(default_factory=list)  # "id (name)"
    not_on_roster: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)  # "id: why"
    notes: list[str] = field(default_factory=list)


def scores(out: Path, a: Assignment) -> dict[str, Score]:
    """student_id -> final points: the gradebook's (manual scores and late penalty
    included) where it has the submission, else grades.csv's autograded total."""
    table = _read_csv(out / "grades.csv")
    result = {}
    late = {}
    for r in table:
        total = float(r["total"] or 0)
        result[r["student_id"]] = Score(total, float(r["max_score"] or 0), r["status"])
        late[r["student_id"]] = float(r.get("late_penalty_pct") or 0)
    db = out / "gradebook.db"
    if db.is_file():
        _gradebook_scores(db, a, result)
    for sid, score in result.items():  # [grading] late_policy, as grades.csv states it
        if late[sid] and score.points is not None:
            score.points *= 1 - late[sid] / 100
            score.note = "; ".join(x for x in [score.note, f"late: -{late[sid]:g}%"] if x)
    return result


def _gradebook_scores(db: Path, a: Assignment, result: dict[str, Score]) -> None:
    """The gradebook's points (manual scores included) over grades.csv's totals, for the
    students whose notebook this grading folder imported (an older submission of a student
    whose latest upload failed does not count)."""
    from nbgrader.api import Gradebook, MissingEntry

    from course.manual import answer_cells, hand_grades

    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            maximum = float(gb.find_assignment(a.id).max_score)
            answers = answer_cells(gb.find_notebook(Path(a.notebook).stem, a.id))
        except MissingEntry:
            return
        for sid, score in result.items():
            score.maximum = maximum
            if score.status not in ("graded", "partial"):
                continue
            try:
                sub = gb.find_submission(a.id, sid)
            except MissingEntry:
                continue
            penalty = float(sub.late_submission_penalty or 0)
            if sub.needs_manual_grade:
                score.points = None
                todo = "; ".join(hand_grades(n, answers).note() for n in sub.notebooks)
                todo = todo or "written answers not marked yet (Formgrader)"
                score.note = f"{todo}, grade left blank"
            else:
                score.points = max(0.0, float(sub.score) - penalty)
                if penalty:
                    score.note = f"nbgrader late penalty {penalty:g} points"


def export(out: Path, a: Assignment, lms: str, roster: Path | None = None) -> Report:
    """Write OUT/export/<lms>/ for LMS (canvas or moodle); what was written and unmatched."""
    if lms not in ("canvas", "moodle"):
        raise ValueError(f"--lms {lms!r}: export writes canvas or moodle files")
    out = out.resolve()
    if not (out / "grades.csv").is_file():
        raise FileNotFoundError(f"{out}: no grades.csv (run `course grade` first)")
    target = out / "export" / lms
    if target.exists():
        shutil.rmtree(target)
    (target / "feedback").mkdir(parents=True)
    marks = scores(out, a)
    intake_lms, students = intake_students(out)
    kind, entries = read_roster(roster) if roster is not None else (None, [])
    if roster is not None and kind != lms:
        raise ValueError(f"{roster}: a {kind} roster; `--lms {lms}` needs that LMS's own "
                         "export (Canvas: the gradebook CSV; Moodle: the grading worksheet)")
    report = Report(target / ("grades.csv" if lms == "canvas" else "grading_worksheet.csv"),
                    None)
    if intake_lms not in (lms, "folders"):
        report.notes.append(f"the submissions were read as a {intake_lms} export: feedback "
                            f"files cannot be named for {lms}")
    enrolled = {e.key for e in entries}
    report.unmatched_roster = [f"{e.key} ({e.name})" for e in entries if e.key not in marks]
    if entries:
        report.not_on_roster = sorted(k for k in marks if k not in enrolled)
    for sid, m in sorted(marks.items()):
        if m.points is None and (sid in enrolled or not entries):
            report.blank.append(f"{sid}: {m.note}")
    if lms == "canvas":
        _canvas_grades(report, a, marks, students, entries, roster)
    else:
        _moodle_grades(report, marks, students, entries)
    names = _feedback(out, target / "feedback", lms, marks, students, entries)
    if names:
        report.feedback_zip = target / "feedback.zip"
        with zipfile.ZipFile(report.feedback_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((target / "feedback").iterdir()):
                zf.write(path, path.name)
    missing_names = sorted(k for k in marks if k not in names
                           and (out / "feedback" / f"{k}.html").is_file())
    if missing_names:
        report.notes.append("no LMS file name known for the feedback of "
                            f"{', '.join(missing_names)} (not in the export or the roster)")
    return report


def _points(m: Score | None, scale: float | None) -> str:
    if m is None or m.points is None:
        return ""
    value = m.points * scale if scale else m.points
    return f"{value:.2f}"


def _scale(report: Report, ours: float, theirs: str | None) -> float | None:
    """A factor when the LMS's maximum differs from the gradebook's (points are rescaled)."""
    try:
        lms_max = float(theirs) if theirs not in (None, "") else None
    except ValueError:
        return None
    if lms_max and ours and abs(lms_max - ours) > 1e-9:
        report.notes.append(f"the LMS's maximum is {lms_max:g}, the gradebook's {ours:g}: "
                            "points rescaled")
        return lms_max / ours
    return None


def _canvas_grades(report: Report, a: Assignment, marks: dict[str, Score],
                   students: dict[str, dict], entries, roster: Path | None) -> None:
    column, points_possible = None, None
    if roster is not None:
        rows = _read_csv(roster)
        for col in rows[0] if rows else {}:
            match = CANVAS_COLUMN.match(col.strip())
            if match and match["title"].strip().lower() in (a.title.lower(), a.id.lower()):
                column = col.strip()
                pp = next((r for r in rows if (r.get("Student") or "").strip()
                           == "Points Possible"), None)
                points_possible = pp.get(col) if pp else None
    if column is None:
        column = f"{a.title} ({a.id})"
        report.notes.append(f"no column '{a.title} (<assignment id>)' in the roster: wrote "
                            f"'{column}'; rename it to the Canvas assignment's column before "
                            "importing, or Canvas creates a new assignment")
    maximum = max((m.maximum for m in marks.values()), default=0.0)
    scale = _scale(report, maximum, points_possible)
    lines = []
    if entries:
        for e in entries:
            base = {c: e.row.get(c, "") for c in CANVAS_FIXED}
            lines.append({**base, column: _points(marks.get(e.key), scale)})
    else:
        for sid, m in sorted(marks.items()):
            if not sid.isdigit():  # anonymous ("anon_<id>") or not a Canvas user id
                report.not_on_roster.append(sid)
                continue
            name = students.get(sid, {}).get("name", "")
            lines.append({"Student": name, "ID": sid, "SIS User ID": "", "SIS Login ID": "",
                          "Section": "", column: _points(m, scale)})
    _write_csv(report.grades, [*CANVAS_FIXED, column], lines)


def _moodle_grades(report: Report, marks: dict[str, Score], students: dict[str, dict],
                   entries) -> None:
    maximum = max((m.maximum for m in marks.values()), default=0.0)
    lines, columns = [], list(MOODLE_COLUMNS)
    if entries:
        columns = list(entries[0].row) or columns
        scale = _scale(report, maximum, entries[0].row.get("Maximum Grade"))
        for e in entries:
            line = dict(e.row)
            grade = _points(marks.get(e.key), scale)
            line["Grade"] = grade if grade else line.get("Grade", "")
            lines.append(line)
    else:
        for sid, m in sorted(marks.items()):
            if not sid.isdigit():
                report.not_on_roster.append(sid)
                continue
            lines.append({"Identifier": f"Participant {sid}",
                          "Full name": students.get(sid, {}).get("name", ""),
                          "Grade": _points(m, None), "Maximum Grade": f"{maximum:.2f}",
                          "Grade can be changed": "Yes"})
    _write_csv(report.grades, columns, lines)


def _feedback(out: Path, folder: Path, lms: str, marks: dict[str, Score],
              students: dict[str, dict], entries) -> list[str]:
    """Copy OUT/feedback/<id>.html under the names the LMS's bulk upload matches; the ids
    written."""
    names = {e.key: e.name for e in entries}
    written = []
    for sid in sorted(marks):
        html = out / "feedback" / f"{sid}.html"
        if not html.is_file():
            continue
        prefix = students.get(sid, {}).get("prefix", "")
        if lms == "canvas":
            # Canvas's re-upload takes the first two all-digit parts of the name as user id
            # and attachment id (Assignment#infer_comment_context_from_filename in
            # canvas-lms app/models/assignment.rb): keep the original "<name>[_LATE]_<ids>_"
            # prefix. An anonymous file ("anon_<id>_<attachment>_") is written too, but the
            # Canvas code read has no anonymous branch: it ignores such a file (see the guide).
            if not re.search(r"_\d+_$", prefix):
                continue
            name = f"{prefix}feedback.html"
        else:
            if not prefix.endswith("_assignsubmission_file_"):
                full = names.get(sid) or students.get(sid, {}).get("name", "")
                if not full or not sid.isdigit():
                    continue
                prefix = f"{full.replace('_', ' ')}_{sid}_assignsubmission_file_"
            name = f"{prefix}feedback.html"
        shutil.copy(html, folder / name)
        written.append(sid)
    return written


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, columns: list[str], lines: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(lines)
