"""`course grade`: a folder (or LMS zip) of submissions to grades.csv and feedback, via nbgrader.

The orchestration only: `course.intake` finds one notebook per student; one worker process
per submission (`course.worker`, started, timed and stopped by `course.pool`) autogrades it
in a scratch nbgrader course folder and leaves WORKDIR/result.json (`course.results`); and
`course.gradebook` writes OUT/gradebook.db, grades.csv and feedback/ from those results.
One broken submission costs that student points and gets a row with a reason; it never
stops the others.
"""

from __future__ import annotations

import shutil
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from course.config import Assignment, CourseConfig
from course.gradebook import import_results
from course.intake import intake
from course.nbgrader_setup import nbgrader_api, nbgrader_config
from course.pool import kill_workers, run_worker, stop_on_signals, worker_env
from course.results import changed_inputs, digest, grading_inputs, read_result, write_result
from course.sandbox import NOT_SANDBOXED, resolve, row_note


def in_shard(student_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a student belongs to shard (i, n), 1 <= i <= n, by a stable hash of the id."""
    # A hash of the id alone: a student's shard does not depend on who else submitted.
    if shard is None:
        return True
    i, n = shard
    return zlib.crc32(student_id.encode()) % n == i - 1


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8), with a clear error otherwise."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: expected 1 <= I <= N")
    return i, n


def prepare_template(cfg: CourseConfig, a: Assignment, folder: Path) -> Path:
    """An nbgrader course folder with the assignment registered: what each worker copies."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(cfg.source_notebook(a).parent, folder / "source" / a.id)
    with nbgrader_api(nbgrader_config(cfg, folder, folder / "gradebook.db")) as api:
        result = api.generate_assignment(a.id, force=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader could not register {a.id}: {result.get('error')}")
    shutil.rmtree(folder / "release", ignore_errors=True)
    # Autograde restores the test cells from the gradebook, not from the source notebook:
    # the workers' copies hold no solutions for student code to find.
    for notebook in (folder / "source").rglob("*.ipynb"):
        notebook.unlink()
    return folder


def grade(cfg: CourseConfig, a: Assignment, submissions: Path, out: Path,
          progress: bool = True, pattern: str | None = None, workers: int | None = None,
          force: bool = False, shard: tuple[int, int] | None = None,
          students: set[str] | None = None, lms: str | None = None,
          roster: Path | None = None,
          timestamps: dict[str, str] | None = None) -> pd.DataFrame:
    """Grade every submission (of the shard); write OUT/grades.csv, OUT/gradebook.db and
    OUT/feedback/; return the table.

    Each submission is executed by its own worker process in OUT/work/<student>/, at most
    ``workers`` at a time. A submission whose result there was made from the same bytes and
    the same grading inputs (source notebook, autograder/, helpers/, limits, nbgrader) is
    not graded again unless ``force``, or its student is in ``students``. Then one writer
    updates OUT's persistent nbgrader course and gradebook from the executed notebooks
    (`import_results`): scores entered by hand in Formgrader survive.
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Intake hook (lms branch): the export's shape and an optional roster; see course.intake.
    found, rows = intake(submissions, out, pattern or cfg.file_pattern, lms=lms or cfg.lms,
                         roster=roster, timestamps=timestamps)
    found = {sid: nb for sid, nb in found.items() if in_shard(sid, shard)}
    work = out / "work"
    results = []
    for row in rows:  # nothing to run: the row is the result
        if in_shard(row.student_id, shard):
            results.append(write_result(work / row.student_id, student_id=row.student_id,
                                        hash=None, notebook=None, status=row.status,
                                        reason=row.reason))
    inputs, todo, why = grading_inputs(cfg, a), {}, set()
    for sid, nb in found.items():
        done = read_result(work / sid)
        if force or sid in (students or ()) or done is None:
            todo[sid] = nb
        elif done.get("hash") != digest(nb, inputs):
            todo[sid] = nb
            why.update(changed_inputs(done, inputs))
        else:
            results.append(done)
    backend = "none"
    if todo:
        backend = resolve(cfg.sandbox)  # before anything runs: loud when no sandbox can
        if backend == "none":
            print(f"WARNING: [grading] sandbox = \"none\": student code runs {NOT_SANDBOXED}, "
                  "as this user, with the network", file=sys.stderr)
        template = prepare_template(cfg, a, out / "template")
        n = max(1, min(workers or cfg.workers, len(todo)))
        try:
            with stop_on_signals(), ThreadPoolExecutor(max_workers=n) as pool:
                env = worker_env(n)
                jobs = [pool.submit(run_worker, cfg, a, template, sid, nb, work / sid, env,
                                    backend) for sid, nb in todo.items()]
                try:
                    for job in tqdm(as_completed(jobs), total=len(jobs),
                                    desc=f"grading {a.id}", disable=not progress):
                        results.append(job.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    kill_workers()  # before the pool waits for its threads
                    raise
        finally:
            shutil.rmtree(template, ignore_errors=True)
    if progress:
        print(f"graded {len(todo)} submission(s) ({row_note(backend)}), reused "
              f"{len(found) - len(todo)} unchanged result(s), {len(rows)} without a gradable "
              "notebook")
        if why:
            print(f"regraded because {', '.join(sorted(why))} changed since the last run")
    return import_results(cfg, a, out, results, regraded=set(todo))
