"""`course grade`: a folder (or LMS zip) of submissions to grades.csv and feedback, via nbgrader.

The orchestration only: `course.intake` finds one notebook per student, one worker process
per submission (`course.worker`) autogrades it in a scratch nbgrader course folder under the
notebook time limit and leaves WORKDIR/result.json (`course.results`), and
`course.gradebook` writes OUT/gradebook.db, grades.csv and feedback/ from those results.
One broken submission costs that student points and gets a row with a reason; it never
stops the others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from course.config import Assignment, CourseConfig
from course.gradebook import import_results
from course.intake import intake
from course.nbgrader_setup import nbgrader_api, nbgrader_config
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


# The workers running now (pid -> process): killed with their kernels when the run stops.
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def kill_workers() -> None:
    """Kill every worker this process started that still runs, kernels included."""
    _STOPPING.set()  # a worker killed now leaves no result: the next run grades it again
    with _LIVE_LOCK:
        pids = list(_LIVE)
    for pid in pids:
        _kill_tree(pid)


class Stopped(KeyboardInterrupt):
    """`course grade` got SIGTERM (a scheduler's cancel, `kill`): stop like on Ctrl-C."""


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT stop the run; either way the workers and their kernels are
    killed before it returns (they run in sessions of their own, so no signal reaches them)."""
    def on_term(signum, frame):
        raise Stopped(f"stopped by signal {signum}")

    _STOPPING.clear()
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, on_term) if main else None
    try:
        yield
    except BaseException:
        kill_workers()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, before)


# The instructor's own settings must not change how a submission is graded: the profile
# comes from NBGRADER_EXECUTION, the data from the synthetic cache.
NOT_INHERITED = ("COURSE_PROFILE", "RSNA_PNEUMONIA_DIR", "CSPINE_H5")


def usable_cpus() -> int:
    """The CPUs this process may run on (a Slurm or container allocation, not the node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_env(workers: int) -> dict[str, str]:
    """The workers' environment: the usable cores shared out among them, the instructor's
    profile and real-data variables left out."""
    # N workers running torch must not each start one thread per core (oversubscribed, 2
    # workers were no faster than 1 on 2 cores: bench/README.md).
    threads = str(max(1, usable_cpus() // max(1, workers)))
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    return {**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "NO_ALBUMENTATIONS_UPDATE": "1"}


def run_worker(cfg: CourseConfig, a: Assignment, template: Path, sid: str, notebook: Path,
               workdir: Path, env: dict[str, str] | None = None, sandbox: str = "none") -> dict:
    """Grade one submission in a child process under the notebook timeout; its result."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "course.worker", str(template), str(notebook), str(workdir),
           sid, a.id, "--root", str(cfg.root), "--memory-gb", str(cfg.memory_gb),
           "--sandbox", sandbox]
    with open(workdir / "worker.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        with _LIVE_LOCK:
            _LIVE[proc.pid] = proc
        try:
            code = proc.wait(timeout=cfg.notebook_timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            code = None
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
    if _STOPPING.is_set():
        raise Stopped(f"{sid}: stopped with the run")
    done = read_result(workdir)
    if done is not None:
        return done
    inputs = grading_inputs(cfg, a)
    fields = {"student_id": sid, "hash": digest(notebook, inputs), "inputs": inputs,
              "submission": str(notebook), "notebook": None, "status": "failed",
              "sandbox": sandbox}
    if code is None:
        return write_result(workdir, **fields, reason=f"stopped after {cfg.notebook_timeout} s "
                                                       "(the notebook time limit); scored 0; "
                                                       f"{row_note(sandbox)}")
    lines = (workdir / "worker.log").read_text(errors="replace").strip().splitlines()
    why = "out of memory" if any("MemoryError" in x for x in lines[-20:]) else (
        lines[-1][:200] if lines else "no output")
    return write_result(workdir, **fields, reason=f"grading process ended with code {code}: "
                                                   f"{why}; {row_note(sandbox)}")


def grade(cfg: CourseConfig, a: Assignment, submissions: Path, out: Path,
          progress: bool = True, pattern: str | None = None, workers: int | None = None,
          force: bool = False, shard: tuple[int, int] | None = None,
          students: set[str] | None = None, lms: str | None = None,
          roster: Path | None = None) -> pd.DataFrame:
    """Grade every submission (of the shard); write OUT/grades.csv, OUT/gradebook.db and
    OUT/feedback/; return the table.

    Each submission is executed by its own worker process in OUT/work/<student>/, at most
    ``workers`` at a time. A submission whose result there was made from the same bytes and
    the same grading inputs (source notebook, autograder/, helpers/, limits, nbgrader) is
    not graded again unless ``force``, or its student is in ``students``. Then one writer
    builds the gradebook from the executed notebooks (`import_results`).
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Intake hook (lms branch): the export's shape and an optional roster; see course.intake.
    found, rows = intake(submissions, out, pattern or cfg.file_pattern, lms=lms or cfg.lms,
                         roster=roster)
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
    return import_results(cfg, a, out, results)
