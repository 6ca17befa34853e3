"""Late work: `[grading] late_policy` applied to the submission times an LMS export carries.

Policies: ``none`` (the default: nothing is computed), ``zero`` (a late submission scores
0), or ``"<N>%/day"`` with an optional ``" cap <M>%"``: N percent of the points per started
day after the due date, at most M percent. Times come from the export (Gradescope's
``:created_at:``, Moodle's file times in its zip); Canvas's download carries no time, only
its ``LATE`` marker, which counts as one started day; ``--timestamps CSV`` (columns
``student_id``, ``submitted_at``) gives the times where the export has none, and wins
where it has some. An assignment's ``extensions``
(student id -> a later due date, in course.toml, or ``--extensions CSV`` with the columns
``student_id``, ``due``, whose dates win) moves that student's due date.
With a policy, grades.csv gets two trailing columns: ``late_days`` (started days late,
blank when on time or unknown) and ``late_penalty_pct``; ``total`` stays the autograded
points, and `course export` applies the percentage to the final points.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import datetime, time, timezone
from pathlib import Path

TIMESTAMP_COLUMNS = ("student_id", "submitted_at")
EXTENSION_COLUMNS = ("student_id", "due")

POLICY = re.compile(r"^\s*(?P<rate>\d+(?:\.\d+)?)\s*%\s*/\s*day(?:\s+cap\s+(?P<cap>\d+(?:\.\d+)?)"
                    r"\s*%)?\s*$")


@dataclass(frozen=True)
class Policy:
    kind: str  # none | zero | per_day
    rate: float = 0.0  # percent per started day
    cap: float = 100.0  # percent at most

    def percent(self, days: int) -> float:
        """The penalty, in percent of the points, for DAYS started days late."""
        if days <= 0 or self.kind == "none":
            return 0.0
        if self.kind == "zero":
            return 100.0
        return min(self.cap, self.rate * days, 100.0)


def parse_policy(text: str) -> Policy:
    """'none' | 'zero' | '<N>%/day[ cap <M>%]' -> Policy, or ValueError naming the forms."""
    value = str(text).strip().lower()
    if value in ("none", "zero"):
        return Policy(value)
    match = POLICY.match(value)
    if not match:
        raise ValueError(f"late_policy {text!r}: expected 'none', 'zero' or "
                         "'<N>%/day', optionally with ' cap <M>%' (e.g. '10%/day cap 50%')")
    cap = float(match["cap"]) if match["cap"] else 100.0
    return Policy("per_day", float(match["rate"]), cap)


def parse_time(text: str, default_tz=timezone.utc) -> datetime | None:
    """An ISO time (date-only means the end of that day); naive times get DEFAULT_TZ."""
    text = str(text or "").strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(text) <= 10:  # a date: due at the end of it
        when = datetime.combine(when.date(), time(23, 59, 59))
    return when if when.tzinfo else when.replace(tzinfo=default_tz)


def read_timestamps(path: Path) -> dict[str, str]:
    """student_id -> submitted_at (ISO 8601, with a time) from a CSV, or an error naming the
    file, the line and what was expected."""
    return _read_csv(path, "timestamps", TIMESTAMP_COLUMNS,
                     lambda when: len(when) > 10 and parse_time(when) is not None,
                     "an ISO 8601 time (e.g. 2027-01-15T23:59:00+01:00)")


def read_extensions(path: Path) -> dict[str, str]:
    """student_id -> that student's due date (ISO 8601 date or time, as course.toml's
    extensions) from a CSV, or an error naming the file, the line and what was expected."""
    return _read_csv(path, "extensions", EXTENSION_COLUMNS,
                     lambda due: parse_time(due) is not None,
                     "an ISO 8601 date or time (e.g. 2027-01-18 or 2027-01-18T23:59:00+01:00)")


def _read_csv(path: Path, what: str, columns: tuple[str, str], valid, expected: str
              ) -> dict[str, str]:
    """student_id -> value from a CSV with COLUMNS (student id first); a line whose value is
    not VALID, an empty or repeated id, or missing columns stop with the file and line."""
    key, column = columns
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: expected the columns {', '.join(columns)}"
                                 f"; found {', '.join(reader.fieldnames or []) or 'none'}")
            values = {}
            for line, row in enumerate(reader, start=2):
                sid, value = ((row[c] or "").strip() for c in columns)
                if not sid:
                    raise ValueError(f"{path} line {line}: empty {key}")
                if sid in values:
                    raise ValueError(f"{path} line {line}: student {sid!r} twice")
                if not valid(value):
                    raise ValueError(f"{path} line {line}: {column} {value!r} is not "
                                     f"{expected}")
                values[sid] = value
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read the {what} CSV ({err.strerror})") \
            from None
    return values


@dataclass
class Lateness:
    days: int | None  # started days late; None: unknown or on time
    percent: float
    note: str = ""


def assess(policy: Policy, due: str, students: dict[str, dict],
           extensions: dict[str, str] | None = None) -> dict[str, Lateness]:
    """student_id -> lateness under POLICY, from what intake learnt (submitted, late)."""
    result = {}
    deadline = parse_time(due)
    for sid, info in students.items():
        own = parse_time((extensions or {}).get(sid, ""), deadline.tzinfo if deadline
                         else timezone.utc) or deadline
        when = parse_time(info.get("submitted", ""), own.tzinfo if own else timezone.utc)
        ext = " (extension)" if sid in (extensions or {}) else ""
        if when is not None and own is not None:
            seconds = (when - own).total_seconds()
            if seconds <= 0:
                result[sid] = Lateness(None, 0.0)
                continue
            days = math.ceil(seconds / 86400)
            pct = policy.percent(days)
            result[sid] = Lateness(days, pct, f"late {days} day(s) after {own.isoformat()}"
                                              f"{ext}: -{pct:g}%")
        elif info.get("late"):
            if sid in (extensions or {}):
                result[sid] = Lateness(None, 0.0, "marked LATE by the LMS, within the "
                                                  "extension (no time in the export)")
                continue
            pct = policy.percent(1)
            result[sid] = Lateness(1, pct, "marked LATE by the LMS, no time in the export: "
                                           f"counted as 1 day: -{pct:g}%")
    return result
