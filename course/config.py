"""Read `course/course.toml`: the assignments, the student bundle, the grading settings."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from course.late import parse_policy, parse_time

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")  # nbgrader's rule for assignment ids
# Flat LMS exports (Canvas: "jdoe_12345_67890_pneumonia.ipynb") start a file name with the
# student's login or id; [grading] file_pattern overrides this.
# The shapes of submissions `course grade --lms` reads (course/intake.py).
LMS_CHOICES = ("folders", "canvas", "moodle", "gradescope")
DEFAULT_FILE_PATTERN = r"^(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*)_.*\.ipynb$"
# GitHub's owner/name, and a git tag that is a package version after its "v" (a subset of
# PEP 440: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev0): the bundle's version is derived from it.
REPO_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
REF_PATTERN = re.compile(r"^v?\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?$")


SANDBOXES = ("auto", "unshare", "bwrap", "none")  # [grading] sandbox; course/sandbox.py


class CourseConfigError(ValueError):
    """course.toml is missing a setting or has a wrong value."""


@dataclass(frozen=True)
class Assignment:
    """One assignment: source/<id>/<notebook> becomes release/<id>/<notebook>."""

    id: str
    title: str
    notebook: str
    due: str
    points: float  # expected autograded total, checked against the nbgrader metadata
    # student id -> that student's own due date (an extension), as ISO times
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CourseConfig:
    """Everything course.toml says, plus the course root it applies to."""

    root: Path
    id: str
    title: str
    bundle_repo: str
    bundle_ref: str
    cell_timeout: int
    notebook_timeout: int
    workers: int
    assignments: tuple[Assignment, ...]
    file_pattern: str  # flat LMS exports: regex with a student_id group
    memory_gb: float = 0.0  # address-space cap per grading worker and its kernel; 0: none
    lms: str = "folders"  # the submissions' shape: folders | canvas | moodle | gradescope
    late_policy: str = "none"  # none | zero | "<N>%/day[ cap <M>%]" (course/late.py)
    sandbox: str = "auto"  # auto | unshare | bwrap | none: see course/sandbox.py
    scratch_mb: int = 1024  # the sandboxed kernel's writable folder (a tmpfs), in MB

    def assignment(self, assignment_id: str) -> Assignment:
        """The assignment with this id, or an error listing the known ones."""
        for a in self.assignments:
            if a.id == assignment_id:
                return a
        known = ", ".join(a.id for a in self.assignments) or "none"
        raise CourseConfigError(f"no assignment {assignment_id!r} in course.toml (known: {known})")

    def source_notebook(self, a: Assignment) -> Path:
        """Path of the instructor notebook."""
        return self.root / "source" / a.id / a.notebook

    def release_notebook(self, a: Assignment) -> Path:
        """Path of the generated student notebook."""
        return self.root / "release" / a.id / a.notebook


def _get(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise CourseConfigError(f"{where}: missing setting '{key}'")
    value = table[key]
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise CourseConfigError(f"{where}: '{key}' = {value!r}; expected {kind.__name__}")
    return value


def load(root: str | Path | None = None) -> CourseConfig:
    """Load ROOT/course/course.toml (ROOT defaults to this repository)."""
    root = Path(root) if root is not None else REPO_ROOT
    path = root / "course" / "course.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise CourseConfigError(f"{path}: no course config") from err
    except tomllib.TOMLDecodeError as err:
        raise CourseConfigError(f"{path}: not valid TOML ({err})") from err
    course, grading = data.get("course", {}), data.get("grading", {})
    assignments = []
    for i, a in enumerate(data.get("assignments", [])):
        where = f"{path} [[assignments]] #{i + 1}"
        aid = _get(a, "id", str, where)
        if not ID_PATTERN.match(aid):
            raise CourseConfigError(f"{where}: id {aid!r} may only hold letters, digits, _ and -")
        extensions = a.get("extensions", {})
        if not isinstance(extensions, dict) or not all(
                parse_time(str(v)) for v in extensions.values()):
            raise CourseConfigError(f"{where}: extensions = {extensions!r}; expected a table "
                                    'of student id = "<ISO date or time>"')
        assignments.append(Assignment(aid, _get(a, "title", str, where),
                                      _get(a, "notebook", str, where), str(a.get("due", "")),
                                      _get(a, "points", float, where),
                                      tuple((str(k), str(v)) for k, v in extensions.items())))
    ids = [a.id for a in assignments]
    if len(set(ids)) != len(ids):
        raise CourseConfigError(f"{path}: assignment ids repeat: {ids}")
    bundle_repo = _get(course, "bundle_repo", str, f"{path} [course]")
    if not REPO_PATTERN.match(bundle_repo):
        raise CourseConfigError(f"{path} [course] bundle_repo = {bundle_repo!r}; expected a "
                                "GitHub repository as owner/name")
    bundle_ref = _get(course, "bundle_ref", str, f"{path} [course]")
    if not REF_PATTERN.match(bundle_ref):
        raise CourseConfigError(f"{path} [course] bundle_ref = {bundle_ref!r}; expected a tag "
                                "that is a package version, e.g. v1.2.0 or v1.2.0rc1")
    return CourseConfig(
        root=root,
        id=_get(course, "id", str, f"{path} [course]"),
        title=_get(course, "title", str, f"{path} [course]"),
        bundle_repo=bundle_repo,
        bundle_ref=bundle_ref,
        cell_timeout=_get(grading, "cell_timeout", int, f"{path} [grading]"),
        notebook_timeout=_get(grading, "notebook_timeout", int, f"{path} [grading]"),
        workers=_get(grading, "workers", int, f"{path} [grading]"),
        assignments=tuple(assignments),
        file_pattern=_pattern(grading.get("file_pattern", DEFAULT_FILE_PATTERN), path),
        memory_gb=float(grading.get("memory_gb", 0)),
        lms=_choice(grading.get("lms", "folders"), LMS_CHOICES, f"{path} [grading] lms"),
        late_policy=_late_policy(grading.get("late_policy", "none"), path),
        sandbox=_choice(grading.get("sandbox", "auto"), SANDBOXES, f"{path} [grading] sandbox"),
        scratch_mb=_get({"scratch_mb": 1024, **grading}, "scratch_mb", int, f"{path} [grading]"),
    )


def _late_policy(value, path: Path) -> str:
    try:
        parse_policy(value)
    except ValueError as err:
        raise CourseConfigError(f"{path} [grading] {err}") from None
    return str(value)


def _choice(value, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise CourseConfigError(f"{where} = {value!r}; expected one of "
                                + ", ".join(f'"{x}"' for x in allowed))
    return value


def _pattern(value, path: Path) -> str:
    """A submission file-name regex with a student_id group, or a clear error."""
    try:
        regex = re.compile(value)
    except (re.error, TypeError) as err:
        raise CourseConfigError(f"{path} [grading] file_pattern {value!r} is not a regular "
                                f"expression ({err})") from err
    if "student_id" not in regex.groupindex:
        raise CourseConfigError(f"{path} [grading] file_pattern {value!r} needs a "
                                "(?P<student_id>...) group")
    return value
