"""Submission intake: a folder, an LMS zip or a flat LMS export to one notebook per student.

SUBMISSIONS/<student_id>/ holds one notebook, whatever its name ("Copy of pneumonia.ipynb"
is the normal case from Colab). `--lms` names the export's shape (NOTES.md, "What real LMS
exports look like"), and the student key is always the LMS's stable id, never a name:

* ``folders`` (the default): one folder per student, or notebooks lying flat sorted into
  student folders by a regular expression with a ``student_id`` group (``[grading]
  file_pattern`` or ``--pattern``);
* ``canvas``: "Download submissions", one flat zip of
  ``<sortable name>[_LATE]_<user id>_<attachment id>_<display name>`` (anonymous grading:
  ``[LATE_]anon_<anonymous id>_<attachment id>_<display name>``); key: the user id, or
  ``anon_<id>``;
* ``moodle``: "Download all submissions", ``Full Name_<participant id>_assignsubmission_file_``
  as a folder per student or as a prefix of each file (blind marking: ``Participant_<id>``);
  key: the participant id (the worksheet's ``Participant <id>``);
* ``gradescope``: ``submission_<id>/`` folders and ``submission_metadata.yml``; key: each
  submitter's ``:sid:``, else the e-mail.

Each run unpacks into a fresh OUT/intake/. Several notebooks from one student: the newest
is taken (the LMS's own order) with a warning; an upload that is not a notebook gets a row
saying what was uploaded; a .zip upload holding one notebook is opened. A roster (the LMS's
gradebook export) gives every enrolled student a row. What intake learnt about each student
(name, the LMS file name, the LATE marker, warnings) is written to OUT/intake/students.json
for the gradebook's reasons and for `course export`.
Whatever cannot be graded becomes a Row with its reason, never an exception.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course.config import LMS_CHOICES
from course.results import Row

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
STUDENTS_JSON = "students.json"

# Canvas, lib/content_zipper.rb: "<sortable name, lowercased, \W removed>[_LATE]_<user id>_
# <attachment id>_<display name>"; the name part may itself hold "_" (\w keeps it), so the
# first "_<digits>_<digits>_" after it ends the name.
CANVAS = re.compile(r"^(?P<name>.*?)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<att>\d+)_(?P<display>.+)$",
                    re.S)
# Anonymous grading (content_zipper.rb, get_filename): no name, the id is "anon_<anonymous
# id>" (base58), so a late file starts "LATE_anon_<id>_<attachment id>_<display name>".
CANVAS_ANON = re.compile(r"^(?P<late>LATE_)?anon_(?P<anon>[A-Za-z0-9]+)_(?P<att>\d+)_"
                         r"(?P<display>.+)$", re.S)
# Canvas numbers a resubmitted file's display name: "Copy of toy-1.ipynb", "toy-2.ipynb".
RESUBMITTED = re.compile(r"-(\d+)$")
# Moodle, mod/assign/locallib.php download_submissions(): prefix = clean_filename(fullname
# with "_" made " ", "_", the blind-marking unique id), then "_<plugin>_" (file, onlinetext).
MOODLE = re.compile(r"^(?P<name>.*)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<rest>.*)$",
                    re.S)


@dataclass
class Upload:
    """One file of an export, attributed to a student."""

    key: str  # the LMS's stable id: the grades.csv student_id
    path: Path  # the extracted file
    original: str  # its name in the export (feedback files are named from it)
    name: str = ""  # display name, when the export has one
    order: tuple = ()  # larger is newer, by the LMS's own marker
    late: bool = False
    prefix: str = ""  # Moodle's "Full Name_<id>_assignsubmission_file_", Canvas's
    # "<name>[_LATE]_<user id>_<attachment id>_": what feedback files are named with
    note: str = ""
    submitted: str = ""  # ISO time, when the export says


@dataclass
class Student:
    """What intake learnt about one student, kept in OUT/intake/students.json."""

    key: str
    name: str = ""
    original: str = ""
    prefix: str = ""
    late: bool = False
    submitted: str = ""  # ISO time from the export, when it has one
    notes: list[str] = field(default_factory=list)


def unpack(submissions: Path, scratch: Path) -> Path:
    """A folder of submissions as given, or an LMS zip unpacked into SCRATCH/unzipped (which
    is emptied first: a previous export's files never mix with this one's)."""
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise FileNotFoundError(f"{submissions}: expected a folder of <student_id>/ folders "
                                "or a zip of them")
    out = scratch / "unzipped"
    if out.exists():
        shutil.rmtree(out)
    _extract(submissions, out)
    tops = [p for p in out.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    # A zip of one folder holding the student folders is unwrapped once.
    if len(tops) == 1 and tops[0].is_dir() and not list(tops[0].glob("*.ipynb")):
        return tops[0]
    return out


def _extract(archive: Path, out: Path) -> list[Path]:
    """Extract a zip, refusing paths that escape OUT; files keep the zip's times (Moodle's
    file time is how the newest of several uploads is told)."""
    files = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():  # refuse "zip slip" paths that escape the folder
            if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                raise ValueError(f"{archive}: unsafe path in zip: {info.filename!r}")
        out.mkdir(parents=True, exist_ok=True)
        for info in zf.infolist():
            info.filename = _utf8_name(info)
            path = Path(zf.extract(info, out))
            if not info.is_dir():
                stamp = time.mktime((*info.date_time, 0, 0, -1))
                os.utime(path, (stamp, stamp))
                files.append(path)
    return files


def _utf8_name(info: zipfile.ZipInfo) -> str:
    """A member's name: zips written without the UTF-8 flag hold UTF-8 bytes that Python
    reads as cp437 ("mÃ¼ller"); read those bytes as UTF-8 when they are."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def sort_flat(submissions: Path, scratch: Path, pattern: str) -> tuple[Path, list[Row]]:
    """Notebooks lying flat in SUBMISSIONS, moved (as copies) into per-student folders.

    Returns the folder to collect from and rows for file names the pattern does not match.
    Student folders already present are kept as they are.
    """
    flat = sorted(p for p in submissions.glob("*.ipynb") if p.is_file())
    if not flat:
        return submissions, []
    regex = re.compile(pattern)
    if "student_id" not in regex.groupindex:
        raise ValueError(f"file pattern {pattern!r} has no (?P<student_id>...) group")
    out, rows = scratch / "by_student", []
    if out.exists():
        shutil.rmtree(out)
    for folder in (p for p in submissions.iterdir() if p.is_dir()):
        shutil.copytree(folder, out / folder.name)
    for path in flat:
        match = regex.match(path.name)
        if not match:
            rows.append(Row(path.stem[:60], "failed", f"file name {path.name!r} does not match "
                                                      f"the submission pattern {pattern!r}"))
            continue
        (out / match["student_id"]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / match["student_id"] / path.name)
    return out, rows


def _valid(sid: str, notebook: Path) -> Row | None:
    """A row saying why NOTEBOOK cannot be graded, or None when it is a notebook."""
    try:
        nbformat.read(notebook, as_version=4)
    except Exception as err:  # corrupt JSON, not a notebook, wrong encoding, ...
        return Row(sid, "failed", f"{notebook.name} is not a valid notebook "
                                  f"({type(err).__name__}: {err})"[:300])
    return None


def collect(submissions: Path) -> tuple[dict[str, Path], list[Row]]:
    """Each student's one notebook, and rows for the students that cannot be graded."""
    found, rows = {}, []
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        sid = folder.name
        if sid.startswith((".", "__")):
            continue
        if not STUDENT_ID.match(sid):
            rows.append(Row(sid, "failed", "folder name is not a valid student id"))
            continue
        notebooks = sorted(p for p in folder.rglob("*.ipynb")
                           if ".ipynb_checkpoints" not in p.parts)
        if not notebooks:
            others = sorted(p.name for p in folder.rglob("*") if p.is_file())
            what = f" (uploaded {', '.join(others[:3])})" if others else ""
            rows.append(Row(sid, "missing", f"no .ipynb notebook in the folder{what}"))
        elif len(notebooks) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            rows.append(Row(sid, "failed", f"{len(notebooks)} notebooks, expected one: {names}"))
        elif (bad := _valid(sid, notebooks[0])) is not None:
            rows.append(bad)
        else:
            found[sid] = notebooks[0]
    return found, rows


# --- LMS exports: each reader turns the unpacked export into Uploads ----------------------

def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in path.relative_to(root).parts)


def read_canvas(root: Path) -> tuple[list[Upload], list[Row]]:
    """Canvas "Download submissions": flat files named by content_zipper.rb."""
    uploads, rows = [], []
    for path in _files(root):
        name = path.name
        match = CANVAS_ANON.match(name)
        if match:
            key, display_name = f"anon_{match['anon']}", ""
        else:
            match = CANVAS.match(name)
            if not match:
                rows.append(Row(_fallback_key(name), "failed", f"file name {name!r} is not "
                                "Canvas's <name>[_LATE]_<user id>_<attachment id>_<file>"))
                continue
            key, display_name = match["uid"], match["name"]
        resub = RESUBMITTED.search(Path(match["display"]).stem)
        # Canvas's re-upload finds the student from the numbers before the display name.
        uploads.append(Upload(key, path, name, display_name,
                              order=(int(match["att"]), int(resub[1]) if resub else 0),
                              late=bool(match["late"]), prefix=name[:match.start("display")]))
    return uploads, rows


def read_moodle(root: Path) -> tuple[list[Upload], list[Row]]:
    """Moodle "Download all submissions": a prefixed folder per student, or prefixed files."""
    uploads, rows = [], []
    for path in _files(root):
        top = path.relative_to(root).parts[0]
        match = MOODLE.match(top)
        if not match:
            rows.append(Row(_fallback_key(top), "failed", f"{top!r} is not Moodle's "
                            "<Full name>_<participant id>_assignsubmission_<plugin>_ name"))
            continue
        prefix = top[:len(top) - len(match["rest"])]
        name = "" if match["name"] == "Participant" else match["name"]
        mtime = path.stat().st_mtime  # the zip's file time: Moodle's upload time
        uploads.append(Upload(match["id"], path, path.name, name, order=(mtime,),
                              prefix=prefix, submitted=_local_iso(mtime)))
    return uploads, rows


def _local_iso(stamp: float) -> str:
    """A file time as the zip wrote it (local, no zone): late.py gives it the due date's."""
    from datetime import datetime

    return datetime.fromtimestamp(stamp).isoformat(timespec="seconds")


def read_gradescope(root: Path) -> tuple[list[Upload], list[Row]]:
    """Gradescope export: submission_<id>/ folders, submitters in submission_metadata.yml."""
    import yaml

    metas = sorted(root.rglob("submission_metadata.yml"))
    if not metas:
        raise FileNotFoundError(f"{root}: no submission_metadata.yml (a Gradescope export "
                                "has one beside its submission_<id>/ folders)")
    meta = yaml.safe_load(metas[0].read_text(encoding="utf-8")) or {}
    base, uploads, rows = metas[0].parent, [], []
    for sub_id, info in sorted(meta.items()):
        folder = base / sub_id
        submitters = _get(info, "submitters") or []
        if not submitters:
            rows.append(Row(_fallback_key(sub_id), "failed", f"{sub_id} has no submitter in "
                            "submission_metadata.yml"))
            continue
        created = str(_get(info, "created_at") or "")
        files = _files(folder) if folder.is_dir() else []
        names = [str(_get(s, "name") or "") for s in submitters]
        for person, name in zip(submitters, names, strict=True):
            raw = str(_get(person, "sid") or _get(person, "email") or "").strip()
            key = re.sub(r"[^A-Za-z0-9_.@-]", "-", raw)  # "a+b@x.edu" -> "a-b@x.edu"
            if not key:
                rows.append(Row(_fallback_key(name or sub_id), "failed",
                                f"a submitter of {sub_id} has neither :sid: nor :email:"))
                continue
            note = (f"group submission {sub_id} with {', '.join(n for n in names if n != name)}"
                    if len(submitters) > 1 else "")
            if key != raw:
                note = "; ".join(x for x in [note, f"id {raw!r} written as {key!r}"] if x)
            if not files:
                rows.append(Row(key, "missing", f"{sub_id} holds no files"))
            for path in files:
                uploads.append(Upload(key, path, path.name, name, order=(created, path.name),
                                      note=note, submitted=created))
    return uploads, rows


def _get(mapping, key: str):
    """Gradescope's YAML keys are Ruby symbols (":sid:"); accept plain keys too."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(f":{key}", mapping.get(key))


def _fallback_key(text: str) -> str:
    """A row key for a file that names no student: its name made a safe id."""
    safe = re.sub(r"[^A-Za-z0-9_.@-]+", "-", Path(text).stem).strip("-.")
    return (safe or "unnamed")[:60]


READERS = {"canvas": read_canvas, "moodle": read_moodle, "gradescope": read_gradescope}


def choose(uploads: list[Upload], scratch: Path) -> tuple[dict[str, Path], list[Row],
                                                          dict[str, Student]]:
    """Each student's newest notebook (a .zip upload holding notebooks is opened), rows for
    students without one, and what is known about every student."""
    by_key: dict[str, list[Upload]] = {}
    for up in uploads:
        by_key.setdefault(up.key, []).append(up)
    found, rows, students = {}, [], {}
    for key, ups in sorted(by_key.items()):
        first = ups[0]
        student = Student(key, name=first.name, prefix=first.prefix, late=any(u.late for u in ups),
                          notes=sorted({u.note for u in ups if u.note}))
        students[key] = student
        candidates, others = [], []
        for up in ups:
            suffix = up.path.suffix.lower()
            if suffix == ".ipynb":
                candidates.append((up, up.path, up.original))
            elif suffix == ".zip" and zipfile.is_zipfile(up.path):
                inner = _notebooks_in_zip(up, scratch / "zips" / key)
                candidates += [(up, nb, f"{up.original}: {nb.name}") for nb in inner]
                if not inner:
                    others.append(f"{up.original} (a .zip without a notebook)")
            else:
                others.append(up.original)
        if not STUDENT_ID.match(key):
            rows.append(Row(_fallback_key(key), "failed", f"student key {key!r} is not a "
                                                           "valid id"))
            continue
        if not candidates:
            what = ", ".join(others) or "nothing"
            rows.append(Row(key, "missing", f"uploaded {what}, not a .ipynb"))
            continue
        candidates.sort(key=lambda c: (c[0].order, c[2]))
        up, notebook, label = candidates[-1]
        if len(candidates) > 1:
            student.notes.append(f"{len(candidates)} notebooks: took the newest, {label}")
        elif label != up.original:
            student.notes.append(f"took {label}")
        if others:
            student.notes.append(f"also uploaded {', '.join(others)} (not graded)")
        student.original, student.submitted = up.original, up.submitted
        student.prefix = up.prefix or student.prefix  # the taken file's (Canvas: its ids)
        if student.late:
            student.notes.append("marked LATE by the LMS")
        if (bad := _valid(key, notebook)) is not None:
            bad.reason = "; ".join([bad.reason, *student.notes])
            rows.append(bad)
            continue
        found[key] = notebook
    return found, rows, students


def _notebooks_in_zip(up: Upload, out: Path) -> list[Path]:
    """The notebooks inside a student's .zip upload (checkpoints and macOS litter skipped)."""
    try:
        files = _extract(up.path, out / up.path.stem)
    except (ValueError, zipfile.BadZipFile):
        return []
    return sorted(p for p in files if p.suffix.lower() == ".ipynb"
                  and ".ipynb_checkpoints" not in p.parts and "__MACOSX" not in p.parts)


# --- Rosters: the LMS's gradebook export ------------------------------------------------

@dataclass
class RosterEntry:
    key: str
    name: str
    row: dict  # the roster's own columns, for writing the LMS's import file back


def read_roster(path: Path) -> tuple[str, list[RosterEntry]]:
    """(kind, entries) of a roster CSV: Canvas's gradebook export (Student, ID, ...),
    Moodle's grading worksheet (Identifier "Participant <id>", Full name, ...), a Gradescope
    roster (SID / Email) or any CSV with a student_id column."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        records = list(csv.DictReader(f))
        columns = list(records[0]) if records else []
    cols = {c.strip().lower(): c for c in columns}
    entries = []
    if "identifier" in cols:
        kind = "moodle"
        for r in records:
            ident = (r[cols["identifier"]] or "").strip()
            m = re.search(r"(\d+)$", ident)
            if m:
                entries.append(RosterEntry(m[1], (r.get(cols.get("full name", ""), "") or ""), r))
    elif "id" in cols and "student" in cols:
        kind = "canvas"
        for r in records:
            uid, name = (r[cols["id"]] or "").strip(), (r[cols["student"]] or "").strip()
            if uid.isdigit():  # skips Canvas's "Points Possible" and blank lines
                entries.append(RosterEntry(uid, name, r))
    elif "sid" in cols or "email" in cols:
        kind = "gradescope"
        for r in records:
            key = (r.get(cols.get("sid", ""), "") or "").strip() or \
                  (r.get(cols.get("email", ""), "") or "").strip()
            name = (r.get(cols.get("name", ""), "") or "").strip() or " ".join(
                (r.get(cols.get(c, ""), "") or "").strip() for c in ("first name", "last name"))
            if key:
                entries.append(RosterEntry(key, name.strip(), r))
    elif "student_id" in cols:
        kind = "folders"
        entries = [RosterEntry(r[cols["student_id"]].strip(), "", r) for r in records
                   if (r[cols["student_id"]] or "").strip()]
    else:
        raise ValueError(f"{path}: not a roster I know (columns {columns}); expected Canvas's "
                         "gradebook export, Moodle's grading worksheet, a Gradescope roster "
                         "or a student_id column")
    return kind, entries


def roster_rows(entries: list[RosterEntry], have: set[str],
                students: dict[str, Student]) -> list[Row]:
    """'missing' rows for enrolled students with nothing in the export; notes for
    submitters the roster does not list."""
    rows = []
    enrolled = {e.key for e in entries}
    if have and all(k.startswith("anon_") for k in have):
        return rows  # anonymous grading: no roster id can be matched until names are revealed
    for e in entries:
        if e.key not in have:
            rows.append(Row(e.key, "missing", "no submission (on the roster)"))
            students.setdefault(e.key, Student(e.key, name=e.name))
    for key in sorted(have - enrolled):
        students.setdefault(key, Student(key)).notes.append("not on the roster")
    return rows


def intake(submissions: Path, scratch: Path, pattern: str, lms: str = "folders",
           roster: Path | None = None,
           timestamps: dict[str, str] | None = None) -> tuple[dict[str, Path], list[Row]]:
    """Unpack, sort and collect into a fresh SCRATCH/intake/: each student's notebook, and
    the rows of those without one. SCRATCH/intake/students.json keeps names, LMS file
    names, LATE markers, submission times (TIMESTAMPS, student_id -> ISO time, over the
    export's) and warnings (`notes`) for the gradebook and `course export`."""
    if lms not in LMS_CHOICES:
        raise ValueError(f"--lms {lms!r}: expected one of {', '.join(LMS_CHOICES)}")
    base = scratch / "intake"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    root = unpack(submissions, base)
    if lms == "folders":
        folder, rows = sort_flat(root, base, pattern)
        found, bad = collect(folder)
        students = {}
    else:
        uploads, rows = READERS[lms](root)
        found, bad, students = choose(uploads, base / "students")
    rows = rows + bad
    if roster is not None:
        _, entries = read_roster(roster)
        for e in entries:  # the roster's name is the one the LMS shows ("Smith, John")
            if e.key in students and e.name:
                students[e.key].name = e.name
        have = set(found) | {r.student_id for r in rows}
        rows += roster_rows(entries, have, students)
    for sid in sorted((set(found) | {r.student_id for r in rows}) & set(timestamps or {})):
        students.setdefault(sid, Student(sid)).submitted = timestamps[sid]
    for row in rows:  # a row's reason carries that student's warnings too
        notes = [n for n in students.get(row.student_id, Student("")).notes
                 if n not in row.reason]
        if notes:
            row.reason = "; ".join([row.reason, *notes])
    (base / STUDENTS_JSON).write_text(json.dumps(
        {"lms": lms, "students": {k: asdict(s) for k, s in sorted(students.items())}},
        indent=1, ensure_ascii=False), encoding="utf-8")
    return found, rows


def intake_notes(out: Path) -> dict[str, list[str]]:
    """student_id -> intake warnings of the last run in OUT (empty when there are none)."""
    try:
        data = json.loads((out / "intake" / STUDENTS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: s.get("notes", []) for k, s in data.get("students", {}).items()}


def intake_students(out: Path) -> tuple[str, dict[str, dict]]:
    """(lms, student_id -> what intake learnt) of the last run in OUT."""
    try:
        data = json.loads((out / "intake" / STUDENTS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "folders", {}
    return data.get("lms", "folders"), data.get("students", {})
