"""Real-shaped LMS exports for the intake and export tests, written from each LMS's own
description of its download (NOTES.md, "What real LMS exports look like"):

* Canvas, lib/content_zipper.rb: one flat zip, "<sortable name, lowercased, non-word
  characters removed>[_LATE]_<user id>_<attachment id>_<display name>"; anonymous grading
  drops the name and writes "anon_<anonymous id>" for the user id, so a late anonymous file
  is "LATE_anon_<id>_<attachment id>_<display name>" (get_filename); a resubmitted file's
  display name may end in "-1", "-2". Gradebook export columns: Student, ID, SIS User ID,
  SIS Login ID, Section, then "<title> (<assignment id>)", with a "Points Possible" row
  under the header.
* Moodle, mod/assign/locallib.php download_submissions(): a folder per student
  "<Full name>_<participant id>_assignsubmission_file_/" (blind marking: "Participant_<id>_
  ..."), or the same prefix on each file in the flat variant; the grading worksheet's
  Identifier is "Participant <id>".
* Gradescope: submission_<id>/ folders and submission_metadata.yml mapping
  "submission_<id>:" to ":submitters:" (":name:", ":sid:", ":email:") and ":created_at:".

Each notebook holds one code cell naming its version ("# <label>"), so a test can tell
which of a student's files was taken.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import nbformat

OLD, NEW = (2026, 11, 1, 10, 0, 0), (2026, 11, 2, 10, 0, 0)


def notebook_text(label: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(f"# {label}"))
    return nbformat.writes(nb)


def label_of(path: Path) -> str:
    """Which fixture notebook PATH is ("# <label>" in its one cell)."""
    return nbformat.read(path, as_version=4).cells[0].source[2:]


def zipped(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_zip(path: Path, entries: list[tuple[str, str | bytes, tuple]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, when in entries:
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


# Canvas user id -> (Student column "Last, First", the file's name part as Canvas writes it)
CANVAS_STUDENTS = {
    "12345": ("Smith, John", "smithjohn"),
    "12346": ("Smith, John", "smithjohn"),       # a second John Smith
    "23456": ("Müller, Jürgen", "müllerjürgen"),  # accents; submitted late
    "34567": ("王, 小明", "王小明"),                 # CJK
    "45678": ("Doe_Smith, Jane", "doe_smithjane"),  # "_" survives \W removal
    "56789": ("Lee, Ann", "leeann"),              # resubmitted
    "67890": ("Park, Min", "parkmin"),            # uploaded a .zip holding the notebook
    "78901": ("Kim, Yu", "kimyu"),                # uploaded a .py
    "89012": ("Ng, Tom", "ngtom"),                # uploaded a .pdf
}
CANVAS_NO_SUBMISSION = ("90123", "Quiet, Quinn")  # on the roster, nothing in the zip


def canvas_zip(path: Path) -> Path:
    """Canvas "Download submissions" for assignment 'toy'."""
    nb = notebook_text
    return write_zip(path, [
        ("smithjohn_12345_67890_Copy of toy.ipynb", nb("smith 12345"), NEW),
        ("smithjohn_12346_67891_toy.ipynb", nb("smith 12346"), NEW),
        ("müllerjürgen_LATE_23456_67892_toy.ipynb", nb("müller"), NEW),
        ("王小明_34567_67893_toy.ipynb", nb("wang"), NEW),
        ("doe_smithjane_45678_67894_toy.ipynb", nb("doe_smith"), NEW),
        ("leeann_56789_67895_toy.ipynb", nb("lee first"), OLD),
        ("leeann_56789_67999_toy-1.ipynb", nb("lee second"), NEW),
        ("parkmin_67890_67896_homework.zip",
         zipped({"homework/toy.ipynb": nb("park"), "__MACOSX/homework/._toy.ipynb": b"x"}),
         NEW),
        ("kimyu_78901_67897_toy.py", "print('hello')\n", NEW),
        ("ngtom_89012_67898_report.pdf", b"%PDF-1.4\n", NEW),
    ])


def canvas_anonymous_zip(path: Path) -> Path:
    """The same download with anonymous grading on: no name, "anon_<anonymous id>" for the
    user id, "LATE_" before it when late."""
    return write_zip(path, [
        ("anon_Bx9cZ_68001_Copy of toy.ipynb", notebook_text("anon Bx9cZ"), NEW),
        ("LATE_anon_q7Lk2_68002_toy.ipynb", notebook_text("anon q7Lk2"), NEW),
        ("anon_77aaa_68003_toy.ipynb", notebook_text("anon 77aaa"), NEW),
    ])


def canvas_roster(path: Path, title: str = "Adding numbers", assignment: int = 4711,
                  points: str = "5.00", students: dict[str, str] | None = None) -> Path:
    """Canvas gradebook export: the header, Canvas's "Points Possible" row, one student per
    line. STUDENTS (user id -> "Last, First") defaults to CANVAS_STUDENTS without 34567 (the
    CJK name, a student who dropped the course) and with CANVAS_NO_SUBMISSION."""
    if students is None:
        students = {uid: name for uid, (name, _) in CANVAS_STUDENTS.items() if uid != "34567"}
        students[CANVAS_NO_SUBMISSION[0]] = CANVAS_NO_SUBMISSION[1]
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
             f"{title} ({assignment})"],
            ["    Points Possible", "", "", "", "", points]]
    rows += [[name, uid, f"S{uid}", f"login{uid}", "Section A", ""]
             for uid, name in students.items()]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


# Moodle participant id -> full name
MOODLE_STUDENTS = {
    "1001": "José Álvarez",
    "1002": "John Smith",
    "1003": "John Smith",      # a second John Smith
    "1004": "李华",             # CJK
    "1005": "Ann Lee",          # two notebooks: the newer file time wins
    "1006": "Zoë O'Brien",      # uploaded a .py
    "1007": "Amélie Dupont",   # an online-text submission only
}
MOODLE_NO_SUBMISSION = ("1008", "Quinn Quiet")


def moodle_prefix(pid: str) -> str:
    return f"{MOODLE_STUDENTS[pid]}_{pid}_assignsubmission_file_"


def moodle_zip(path: Path, flat: bool = False) -> Path:
    """Moodle "Download all submissions": a folder per student (default) or flat."""
    sep = "" if flat else "/"
    nb = notebook_text

    def f(pid, name):
        return moodle_prefix(pid) + sep + name

    return write_zip(path, [
        (f("1001", "Copy of toy.ipynb"), nb("álvarez"), NEW),
        (f("1002", "toy.ipynb"), nb("smith 1002"), NEW),
        (f("1003", "toy.ipynb"), nb("smith 1003"), NEW),
        (f("1004", "toy.ipynb"), nb("li"), NEW),
        (f("1005", "toy.ipynb"), nb("lee old"), OLD),
        (f("1005", "toy (1).ipynb"), nb("lee new"), NEW),
        (f("1006", "toy.py"), "print(1)\n", NEW),
        (f"Amélie Dupont_1007_assignsubmission_onlinetext_{sep}onlinetext.html",
         "<p>see attached</p>", NEW),
    ])


def moodle_blind_zip(path: Path) -> Path:
    return write_zip(path, [
        ("Participant_2001_assignsubmission_file_/toy.ipynb", notebook_text("p2001"), NEW),
        ("Participant_2002_assignsubmission_file_/Copy of toy.ipynb", notebook_text("p2002"),
         NEW),
    ])


def moodle_worksheet(path: Path) -> Path:
    """Moodle's offline grading worksheet as downloaded (grades empty)."""
    cols = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
            "Grade can be changed", "Last modified (submission)", "Last modified (grade)",
            "Feedback comments"]
    people = {**MOODLE_STUDENTS, MOODLE_NO_SUBMISSION[0]: MOODLE_NO_SUBMISSION[1]}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for pid, name in people.items():
            w.writerow([f"Participant {pid}", name, f"p{pid}@uni.example", "Submitted for "
                        "grading", "", "5.00", "Yes", "Monday, 2 November 2026, 10:00 AM", "-",
                        ""])
    return path


GRADESCOPE_METADATA = """\
submission_3001:
  :submitters:
  - :name: Ana Pérez
    :sid: '501'
    :email: ana@uni.example
  :created_at: 2026-11-02 10:00:00.000000000 +01:00
  :score: 0.0
  :status: processed
submission_3002:
  :submitters:
  - :name: 佐藤 花子
    :sid: ''
    :email: hanako+cs101@uni.example
  :created_at: 2026-11-02 11:00:00.000000000 +01:00
submission_3003:
  :submitters:
  - :name: Bo Chen
    :sid: '503'
    :email: bo@uni.example
  - :name: Cy Diaz
    :sid: '504'
    :email: cy@uni.example
  :created_at: 2026-11-02 12:00:00.000000000 +01:00
submission_3004:
  :submitters:
  - :name: Di Evans
    :sid: '505'
    :email: di@uni.example
  :created_at: 2026-11-02 13:00:00.000000000 +01:00
"""


def gradescope_zip(path: Path) -> Path:
    """A Gradescope export: assignment_<id>_export/ with submission folders + metadata."""
    top = "assignment_99_export/"
    return write_zip(path, [
        (top + "submission_metadata.yml", GRADESCOPE_METADATA, NEW),
        (top + "submission_3001/toy.ipynb", notebook_text("perez"), NEW),
        (top + "submission_3002/Copy of toy.ipynb", notebook_text("sato"), NEW),
        (top + "submission_3003/toy.ipynb", notebook_text("group"), NEW),
        (top + "submission_3004/report.pdf", b"%PDF-1.4\n", NEW),
    ])
