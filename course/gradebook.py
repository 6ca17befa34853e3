"""The single writer of a grading run: OUT's nbgrader course (OUT/nbgrader/, OUT/gradebook.db),
grades.csv and feedback/ from the workers' results, and `grade-merge`, which folds shards'
results into one gradebook.

The course folder and its gradebook persist between runs: a TA grades the written answers in
Formgrader there (`course formgrade`), and the next run keeps those scores (`course.manual`).
"""

from __future__ import annotations

import hashlib
import json
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
from course.manual import (
    HandGrades,
    answer_cells,
    answer_checksums,
    hand_grades,
    restore,
    snapshot,
    state,
)
from course.nbgrader_setup import nbgrader_api, nbgrader_config
from course.results import Row, read_result


def import_results(cfg: CourseConfig, a: Assignment, out: Path, results: list[dict],
                   regraded: set[str] | frozenset = frozenset()) -> pd.DataFrame:
    """The single writer: OUT's nbgrader course (OUT/nbgrader, OUT/gradebook.db), grades.csv
    and feedback from results.

    The course folder persists between runs, so that Formgrader's hand-entered scores and
    comments survive: a result that changed since its last import (or was ``regraded`` this
    run) goes through nbgrader's autograde again, with execution switched off: the test
    cells are restored from the gradebook and scored from their outputs, so nbgrader's own
    rules decide every score, and no student code runs here. `course.manual` keeps the
    written answers' grades across that re-import. Unchanged results are not imported
    again; feedback is rendered again when the import or a TA's grading changed it.
    """
    from nbgrader.api import Gradebook

    root, db = out / "nbgrader", out / "gradebook.db"
    (out / "feedback").mkdir(exist_ok=True)
    shutil.rmtree(root / "source" / a.id, ignore_errors=True)  # the current tests
    shutil.copytree(cfg.source_notebook(a).parent, root / "source" / a.id)
    seen, rows = _seen(root), _rows(out, results)
    executed = {r["student_id"]: out / "work" / r["student_id"] / r["notebook"]
                for r in results if r.get("notebook")}
    keys = {sid: _import_key(res, path) for res in results
            if (path := executed.get(sid := res["student_id"]))}
    hand, cells, answers = {}, {}, {}
    with nbgrader_api(_import_config(cfg, root, db)) as api:
        _register(api, cfg, a, db)
        with Gradebook(f"sqlite:///{db}") as gb:
            todo = {sid for sid, key in keys.items() if sid in regraded
                    or seen.get(sid, {}).get("import") != key or not _has(gb, a, sid)}
        failed = {sid for sid in sorted(todo)
                  if not _reimport(api, root, db, a, sid, executed[sid], seen)}
        seen.update({sid: {"import": keys[sid]} for sid in todo - failed})
        with Gradebook(f"sqlite:///{db}") as gb:
            cells, answers = _autograded_cells(gb, a), _written_cells(gb, a)
            states = {}
            for row in rows:
                sid = row.student_id
                if sid in failed:
                    row.status, row.reason = "failed", "could not import the executed notebook"
                elif sid in keys:
                    sub = _submission(gb, a, sid)
                    row.scores = {g.name: float(g.score) for g in sub.grades if g.name in cells}
                    hand[sid] = hand_grades(sub, set(answers))
                    row.reason = "; ".join(x for x in [row.reason, hand[sid].note()] if x)
                    states[sid] = state(sub)
        for sid, now in states.items():
            html = out / "feedback" / f"{sid}.html"
            if seen[sid].get("feedback") != now or not html.is_file():
                html.unlink(missing_ok=True)
                if _feedback(api, root, a, sid, html):
                    seen[sid]["feedback"] = now
    for row in rows:  # no notebook graded this run: no feedback from an older one
        if row.student_id not in states:
            (out / "feedback" / f"{row.student_id}.html").unlink(missing_ok=True)
    _write_seen(root, seen)
    table = _table(rows, cells, _lateness(cfg, a, out, rows), answers, hand)
    table.to_csv(out / "grades.csv", index=False)
    return table


def _rows(out: Path, results: list[dict]) -> list[Row]:
    """One row per result, sorted, with intake's warnings in the reason."""
    rows, notes = [], intake_notes(out)
    for res in sorted(results, key=lambda r: r["student_id"]):
        row = Row(res["student_id"], res["status"], res.get("reason") or "")
        extra = [n for n in notes.get(row.student_id, []) if n not in row.reason]
        row.reason = "; ".join(x for x in [row.reason, *extra] if x)
        rows.append(row)
    return rows


def _reimport(api, root: Path, db: Path, a: Assignment, sid: str, executed: Path,
              seen: dict) -> bool:
    """Import one executed notebook again, keeping what a TA graded (`course.manual`);
    whether nbgrader could import it."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        before = snapshot(_submission(gb, a, sid)) if _has(gb, a, sid) else {}
    old = answer_checksums(_autograded(root, a, sid))  # the answers a TA graded
    seen.pop(sid, None)
    if not _autograde(api, root, a, sid, executed):
        return False
    with Gradebook(f"sqlite:///{db}") as gb:
        restore(_submission(gb, a, sid), set(_written_cells(gb, a)), before, old,
                answer_checksums(_autograded(root, a, sid)))
        gb.db.commit()
    return True


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


SEEN = "imported.json"  # in OUT/nbgrader: what was imported, and when feedback was made


def _import_config(cfg: CourseConfig, root: Path, db: Path):
    """nbgrader's config for importing executed notebooks: autograde without execution."""
    config = nbgrader_config(cfg, root, db)
    config.GenerateFeedback.preprocessors = FEEDBACK_PREPROCESSORS
    config.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec,
                                               OverwriteCells, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [LimitOutput, SaveAutoGrades,
                                                AssignLatePenalties, CheckCellMetadata]
    return config


def _register(api, cfg: CourseConfig, a: Assignment, db: Path) -> None:
    """The assignment in the gradebook, its cells and tests as the source notebook has them."""
    result = api.generate_assignment(a.id, force=True)
    if result["success"]:
        return
    said = f"{result.get('error') or ''}\n{result.get('log') or ''}"
    if "because there are submissions" in said:
        raise RuntimeError(
            f"{db}: the graded cells of {cfg.source_notebook(a)} were added, removed or "
            "renamed since submissions were imported, and nbgrader cannot change the cells of "
            "a gradebook that has submissions. Grade into a new --out folder (the scores "
            "entered by hand stay in this one's gradebook).")
    raise RuntimeError(f"nbgrader could not register {a.id}: {result.get('error')}")


def _autograde(api, root: Path, a: Assignment, sid: str, executed: Path) -> bool:
    """Import one executed notebook (nbgrader autograde, no execution); whether it worked."""
    target = root / "submitted" / sid / a.id / a.notebook
    shutil.rmtree(target.parent.parent, ignore_errors=True)
    target.parent.mkdir(parents=True)
    shutil.copy(executed, target)
    try:
        return bool(api.autograde(a.id, sid, force=True, create=True)["success"])
    finally:
        # Nothing left that Formgrader's "autograde" button could execute outside the sandbox.
        shutil.rmtree(target.parent.parent, ignore_errors=True)


def _feedback(api, root: Path, a: Assignment, sid: str, html: Path) -> bool:
    """Render one student's feedback (hand-entered scores and comments included) to HTML."""
    result = api.generate_feedback(a.id, sid, force=True)
    page = root / "feedback" / sid / a.id / f"{Path(a.notebook).stem}.html"
    if result["success"] and page.is_file():
        shutil.copy(page, html)
        return True
    return False


def _autograded(root: Path, a: Assignment, sid: str) -> Path:
    """The imported notebook: what Formgrader shows a TA."""
    return root / "autograded" / sid / a.id / a.notebook


def _submission(gradebook, a: Assignment, sid: str):
    return gradebook.find_submission_notebook(Path(a.notebook).stem, a.id, sid)


def _has(gradebook, a: Assignment, sid: str) -> bool:
    from nbgrader.api import MissingEntry

    try:
        _submission(gradebook, a, sid)
    except MissingEntry:
        return False
    return True


def _import_key(result: dict, executed: Path) -> str:
    """What an import depends on: the result and the executed notebook's bytes."""
    data = json.dumps(result, sort_keys=True).encode() + b"\0" + executed.read_bytes()
    return hashlib.sha256(data).hexdigest()


def _seen(root: Path) -> dict[str, dict]:
    """student_id -> {"import": key, "feedback": state} of earlier runs ({} when none)."""
    try:
        return json.loads((root / SEEN).read_text())
    except (OSError, ValueError):
        return {}


def _write_seen(root: Path, seen: dict[str, dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (SEEN + ".tmp")
    tmp.write_text(json.dumps(seen, indent=1, sort_keys=True))
    tmp.replace(root / SEEN)


def _autograded_cells(gradebook, a: Assignment) -> dict[str, float]:
    """grade_id -> max points of the autograded test cells, in notebook order."""
    nb = gradebook.find_notebook(Path(a.notebook).stem, a.id)
    solutions = {c.name for c in nb.solution_cells}
    return {c.name: c.max_score for c in nb.grade_cells
            if c.cell_type == "code" and c.name not in solutions}


def _written_cells(gradebook, a: Assignment) -> dict[str, float]:
    """grade_id -> max points of the hand-graded answer cells (written answers)."""
    nb = gradebook.find_notebook(Path(a.notebook).stem, a.id)
    answers = answer_cells(nb)
    return {c.name: c.max_score for c in nb.grade_cells if c.name in answers}


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


def _table(rows: list[Row], cells: dict[str, float], late: dict | None = None,
           answers: dict[str, float] | None = None,
           hand: dict[str, HandGrades] | None = None) -> pd.DataFrame:
    """grades.csv: one row per student, a column per autograded test cell, then the totals;
    with written answers, a column per answer, `written` and `overall` (autograded plus
    written: blank, never a silent 0, while an answer awaits a TA) and `overall_max`; with
    a late policy, `late_days` and `late_penalty_pct` last."""
    answers, hand = answers or {}, hand or {}
    records = []
    for row in sorted(rows, key=lambda r: r.student_id):
        record = {"student_id": row.student_id}
        record.update({name: row.scores.get(name, 0.0) for name in cells})
        total = sum(row.scores.get(n, 0.0) for n in cells)
        record.update(total=total, max_score=sum(cells.values()), status=row.status,
                      reason=row.reason)
        if answers:
            mine = hand.get(row.student_id, HandGrades())  # none: no notebook to grade
            points = {n: mine.points.get(n, 0.0) for n in answers}
            record.update({n: "" if p is None else p for n, p in points.items()})
            written = None if mine.pending else sum(points.values())
            record.update(written="" if written is None else written,
                          overall="" if written is None else total + written,
                          overall_max=sum(cells.values()) + sum(answers.values()))
        if late is not None:
            found = late.get(row.student_id)
            record.update(late_days=found.days if found and found.days else "",
                          late_penalty_pct=found.percent if found else 0.0)
        records.append(record)
    columns = ["student_id", *cells, "total", "max_score"]
    if answers:
        columns += [*answers, "written", "overall", "overall_max"]
    columns += ["status", "reason"]
    if late is not None:
        columns += ["late_days", "late_penalty_pct"]
    return pd.DataFrame(records, columns=columns)
