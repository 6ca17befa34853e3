"""The single writer of a grading run: OUT/gradebook.db, grades.csv and feedback/ from the
workers' results, and `grade-merge`, which folds shards' results into one gradebook."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    DeduplicateIds,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from course.config import Assignment, CourseConfig
from course.feedback import FEEDBACK_PREPROCESSORS
from course.intake import intake_notes, intake_students
from course.late import assess, parse_policy
from course.nbgrader_setup import nbgrader_api, nbgrader_config
from course.results import Row, read_result


def import_results(cfg: CourseConfig, a: Assignment, out: Path,
                   results: list[dict]) -> pd.DataFrame:
    """The single writer: a fresh OUT/gradebook.db, grades.csv and feedback from results.

    The executed notebooks go through nbgrader's autograde again with execution switched
    off: the test cells are restored from the gradebook and scored from their outputs, so
    nbgrader's own rules decide every score, and no student code runs here.
    """
    from nbgrader.api import Gradebook

    root, db = out / "nbgrader", out / "gradebook.db"
    for stale in (root, out / "feedback"):
        if stale.exists():
            shutil.rmtree(stale)
    db.unlink(missing_ok=True)
    (out / "feedback").mkdir()
    shutil.copytree(cfg.source_notebook(a).parent, root / "source" / a.id)
    config = nbgrader_config(cfg, root, db)
    config.GenerateFeedback.preprocessors = FEEDBACK_PREPROCESSORS
    config.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec,
                                               OverwriteCells, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [LimitOutput, SaveAutoGrades,
                                                AssignLatePenalties, CheckCellMetadata]
    rows, notes = [], intake_notes(out)
    with nbgrader_api(config) as api:
        result = api.generate_assignment(a.id, force=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not register {a.id}: {result.get('error')}")
        for res in sorted(results, key=lambda r: r["student_id"]):
            sid, row = res["student_id"], Row(res["student_id"], res["status"],
                                              res.get("reason") or "")
            extra = [n for n in notes.get(sid, []) if n not in row.reason]
            row.reason = "; ".join(x for x in [row.reason, *extra] if x)  # intake's warnings
            rows.append(row)
            if not res.get("notebook"):
                continue
            executed = out / "work" / sid / res["notebook"]
            target = root / "submitted" / sid / a.id / a.notebook
            target.parent.mkdir(parents=True)
            shutil.copy(executed, target)
            imported = api.autograde(a.id, sid, force=True, create=True)
            if not imported["success"]:
                row.status, row.reason = "failed", "could not import the executed notebook"
                continue
            feedback = api.generate_feedback(a.id, sid, force=True)
            html = root / "feedback" / sid / a.id / f"{Path(a.notebook).stem}.html"
            if feedback["success"] and html.is_file():
                shutil.copy(html, out / "feedback" / f"{sid}.html")
    with Gradebook(f"sqlite:///{db}") as gb:
        cells = _autograded_cells(gb, a)
        for row in rows:
            if row.status in ("graded", "partial"):
                sub = gb.find_submission_notebook(Path(a.notebook).stem, a.id, row.student_id)
                row.scores = {g.name: float(g.score) for g in sub.grades if g.name in cells}
    shutil.rmtree(root)  # copies of the source and of every notebook: not needed any more
    table = _table(rows, cells, _lateness(cfg, a, out, rows))
    table.to_csv(out / "grades.csv", index=False)
    return table


def merge(cfg: CourseConfig, a: Assignment, shard_outs: list[Path], out: Path) -> pd.DataFrame:
    """Fold the outputs of `course grade --shard` runs into one gradebook and grades.csv."""
    out = out.resolve()
    work = out / "work"
    results, seen = [], {}
    for shard_out in shard_outs:
        for workdir in sorted(p for p in (shard_out / "work").glob("*") if p.is_dir()):
            res = read_result(workdir)
            if res is None:
                raise RuntimeError(f"{workdir}: no result.json; that shard did not finish "
                                   "(run its `course grade --shard` again)")
            sid = res["student_id"]
            if sid in seen:
                raise RuntimeError(f"student {sid!r} is in {seen[sid]} and in {shard_out}: "
                                   "shards must not overlap")
            seen[sid] = shard_out
            if workdir.resolve() != (work / sid).resolve():
                if (work / sid).exists():
                    shutil.rmtree(work / sid)
                shutil.copytree(workdir, work / sid, ignore=shutil.ignore_patterns("nbgrader"))
            results.append(res)
    # Every shard read the same export: the first one's intake record (names, LMS file
    # names, LATE markers, warnings) serves the merged gradebook and `course export`.
    kept = out / "intake" / "students.json"
    for shard_out in shard_outs:
        record = shard_out / "intake" / "students.json"
        if record.is_file() and record.resolve() != kept.resolve():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(record, kept)
            break
    return import_results(cfg, a, out, results)


def _autograded_cells(gradebook, a: Assignment) -> dict[str, float]:
    """grade_id -> max points of the autograded test cells, in notebook order."""
    nb = gradebook.find_notebook(Path(a.notebook).stem, a.id)
    solutions = {c.name for c in nb.solution_cells}
    return {c.name: c.max_score for c in nb.grade_cells
            if c.cell_type == "code" and c.name not in solutions}


def _lateness(cfg: CourseConfig, a: Assignment, out: Path, rows: list[Row]) -> dict | None:
    """student_id -> Lateness under [grading] late_policy (None: no policy), with the
    penalty said in each late student's reason."""
    policy = parse_policy(cfg.late_policy)
    if policy.kind == "none":
        return None
    _, students = intake_students(out)
    late = assess(policy, a.due, students, dict(a.extensions))
    for row in rows:
        if row.student_id in late and late[row.student_id].note:
            reason = row.reason.replace("; marked LATE by the LMS", "").replace(
                "marked LATE by the LMS", "").strip("; ")
            row.reason = "; ".join(x for x in [reason, late[row.student_id].note] if x)
    return late


def _table(rows: list[Row], cells: dict[str, float], late: dict | None = None) -> pd.DataFrame:
    """grades.csv: one row per student, a column per autograded test cell, then the totals;
    with a late policy, `late_days` and `late_penalty_pct` after them."""
    records = []
    for row in sorted(rows, key=lambda r: r.student_id):
        record = {"student_id": row.student_id}
        record.update({name: row.scores.get(name, 0.0) for name in cells})
        record.update(total=sum(row.scores.get(n, 0.0) for n in cells),
                      max_score=sum(cells.values()), status=row.status, reason=row.reason)
        if late is not None:
            found = late.get(row.student_id)
            record.update(late_days=found.days if found and found.days else "",
                          late_penalty_pct=found.percent if found else 0.0)
        records.append(record)
    columns = ["student_id", *cells, "total", "max_score", "status", "reason"]
    if late is not None:
        columns += ["late_days", "late_penalty_pct"]
    return pd.DataFrame(records, columns=columns)
