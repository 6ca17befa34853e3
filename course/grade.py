"""`course grade`: a folder (or LMS zip) of submissions to grades.csv and feedback, via nbgrader.

SUBMISSIONS/<student_id>/ holds one notebook, whatever its name ("Copy of pneumonia.ipynb"
is the normal case from Colab). An LMS export that puts every notebook in one flat folder
(Canvas: ``jdoe_12345_67890_pneumonia.ipynb``) is sorted into student folders by a regular
expression with a ``student_id`` group (``[grading] file_pattern`` or ``--pattern``).
nbgrader autogrades each one in a scratch course directory
under OUT/nbgrader, restoring edited or deleted test cells; the gradebook is OUT/gradebook.db.
One broken submission costs that student points and gets a row with a reason; it never
stops the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
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
from tqdm.auto import tqdm

from course.config import Assignment, CourseConfig
from course.feedback import FEEDBACK_PREPROCESSORS
from course.nbgrader_setup import nbgrader_api, nbgrader_config
from course.worker import digest, read_result, write_result

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
RUN_FAILURES = ("CellTimeoutError", "DeadKernelError")


@dataclass
class Row:
    """One student's line of grades.csv."""

    student_id: str
    status: str  # graded | partial | failed | missing
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)


def unpack(submissions: Path, scratch: Path) -> Path:
    """A folder of submissions as given, or an LMS zip unpacked into one."""
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise FileNotFoundError(f"{submissions}: expected a folder of <student_id>/ folders "
                                "or a zip of them")
    out = scratch / "unzipped"
    with zipfile.ZipFile(submissions) as zf:
        for name in zf.namelist():  # refuse "zip slip" paths that escape the folder
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{submissions}: unsafe path in zip: {name!r}")
        zf.extractall(out)
    tops = [p for p in out.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    # A zip of one folder holding the student folders is unwrapped once.
    if len(tops) == 1 and tops[0].is_dir() and not list(tops[0].glob("*.ipynb")):
        return tops[0]
    return out


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
            rows.append(Row(sid, "missing", "no .ipynb notebook in the folder"))
        elif len(notebooks) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            rows.append(Row(sid, "failed", f"{len(notebooks)} notebooks, expected one: {names}"))
        else:
            try:
                nbformat.read(notebooks[0], as_version=4)
            except Exception as err:  # corrupt JSON, not a notebook, wrong encoding, ...
                rows.append(Row(sid, "failed", f"{notebooks[0].name} is not a valid notebook "
                                               f"({type(err).__name__}: {err})"[:300]))
                continue
            found[sid] = notebooks[0]
    return found, rows


def run_problem(notebook: Path) -> str:
    """Why a graded notebook did not run through (a timeout, a dead kernel), or ''."""
    nb = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") in RUN_FAILURES:
                return f"cell {i + 1}: {out['ename']}"
    return ""


def student_errors(notebook: Path, limit: int = 3) -> str:
    """The errors raised outside the test cells (the student's own cells), for the reason
    column: 'cell 5: SystemExit; cell 9: NotImplementedError', or ''."""
    nb = nbformat.read(notebook, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            continue  # a failing test cell is its score, not a reason
        found += [f"cell {i + 1}: {out.get('ename')}" for out in cell.get("outputs", [])
                  if out.get("output_type") == "error"
                  and out.get("ename") not in RUN_FAILURES]
    more = f" (+{len(found) - limit} more)" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def _autograded_cells(gradebook, a: Assignment) -> dict[str, float]:
    """grade_id -> max points of the autograded test cells, in notebook order."""
    nb = gradebook.find_notebook(Path(a.notebook).stem, a.id)
    solutions = {c.name for c in nb.solution_cells}
    return {c.name: c.max_score for c in nb.grade_cells
            if c.cell_type == "code" and c.name not in solutions}


def in_shard(student_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a student belongs to shard (i, n), 1 <= i <= n: a stable hash of the id, so a
    student's shard does not depend on who else submitted."""
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


def _kill_tree(pid: int) -> None:
    """Kill a worker and everything it started (the kernel runs in its own session)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(family, timeout=10)


def worker_env(workers: int) -> dict[str, str]:
    """The workers' environment: the machine's cores shared out, so N workers running torch
    do not each start one thread per core (oversubscribed, 2 workers were no faster than 1
    on 2 cores: bench/README.md)."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "NO_ALBUMENTATIONS_UPDATE": "1"}


def run_worker(cfg: CourseConfig, a: Assignment, template: Path, sid: str, notebook: Path,
               workdir: Path, env: dict[str, str] | None = None) -> dict:
    """Grade one submission in a child process under the notebook timeout; its result."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "course.worker", str(template), str(notebook), str(workdir),
           sid, a.id, "--root", str(cfg.root), "--memory-gb", str(cfg.memory_gb)]
    with open(workdir / "worker.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=cfg.notebook_timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            code = None
    done = read_result(workdir)
    if done is not None:
        return done
    fields = {"student_id": sid, "hash": digest(notebook, cfg.source_notebook(a)),
              "submission": str(notebook), "notebook": None, "status": "failed"}
    if code is None:
        return write_result(workdir, **fields, reason=f"stopped after {cfg.notebook_timeout} s "
                                                       "(the notebook time limit); scored 0")
    lines = (workdir / "worker.log").read_text(errors="replace").strip().splitlines()
    why = "out of memory" if any("MemoryError" in x for x in lines[-20:]) else (
        lines[-1][:200] if lines else "no output")
    return write_result(workdir, **fields, reason=f"grading process ended with code {code}: "
                                                   f"{why}")


def grade(cfg: CourseConfig, a: Assignment, submissions: Path, out: Path,
          progress: bool = True, pattern: str | None = None, workers: int | None = None,
          force: bool = False, shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Grade every submission (of the shard); write OUT/grades.csv, OUT/gradebook.db and
    OUT/feedback/; return the table.

    Each submission is executed by its own worker process in OUT/work/<student>/, at most
    ``workers`` at a time. A submission whose result there was made from the same bytes
    (and the same source notebook) is not graded again unless ``force``. Then one writer
    builds the gradebook from the executed notebooks (`import_results`).
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    folder, rows = sort_flat(unpack(submissions, out), out, pattern or cfg.file_pattern)
    found, bad = collect(folder)
    rows += bad
    found = {sid: nb for sid, nb in found.items() if in_shard(sid, shard)}
    work = out / "work"
    results = []
    for row in rows:  # nothing to run: the row is the result
        if in_shard(row.student_id, shard):
            results.append(write_result(work / row.student_id, student_id=row.student_id,
                                        hash=None, notebook=None, status=row.status,
                                        reason=row.reason))
    source = cfg.source_notebook(a)
    todo = {}
    for sid, nb in found.items():
        done = read_result(work / sid)
        if not force and done is not None and done.get("hash") == digest(nb, source):
            results.append(done)
        else:
            todo[sid] = nb
    if todo:
        template = prepare_template(cfg, a, out / "template")
        n = max(1, min(workers or cfg.workers, len(todo)))
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                env = worker_env(n)
                jobs = [pool.submit(run_worker, cfg, a, template, sid, nb, work / sid, env)
                        for sid, nb in todo.items()]
                for job in tqdm(as_completed(jobs), total=len(jobs), desc=f"grading {a.id}",
                                disable=not progress):
                    results.append(job.result())
        finally:
            shutil.rmtree(template, ignore_errors=True)
    if progress:
        print(f"graded {len(todo)} submission(s), reused {len(found) - len(todo)} unchanged "
              f"result(s), {len(rows)} without a gradable notebook")
    return import_results(cfg, a, out, results)


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
    rows = []
    with nbgrader_api(config) as api:
        result = api.generate_assignment(a.id, force=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not register {a.id}: {result.get('error')}")
        for res in sorted(results, key=lambda r: r["student_id"]):
            sid, row = res["student_id"], Row(res["student_id"], res["status"],
                                              res.get("reason") or "")
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
    table = _table(rows, cells)
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
    return import_results(cfg, a, out, results)


def _table(rows: list[Row], cells: dict[str, float]) -> pd.DataFrame:
    records = []
    for row in sorted(rows, key=lambda r: r.student_id):
        record = {"student_id": row.student_id}
        record.update({name: row.scores.get(name, 0.0) for name in cells})
        record.update(total=sum(row.scores.get(n, 0.0) for n in cells),
                      max_score=sum(cells.values()), status=row.status, reason=row.reason)
        records.append(record)
    columns = ["student_id", *cells, "total", "max_score", "status", "reason"]
    return pd.DataFrame(records, columns=columns)
