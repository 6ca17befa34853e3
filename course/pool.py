"""The grading workers as processes: started with their environment, held to the notebook
time limit, and killed with their kernels when the run stops (Ctrl-C, SIGTERM).

One worker process per submission (`python -m course.worker`) runs in a session of its
own, so no signal sent to `course grade` reaches it: this module keeps track of the live
ones and kills each process tree itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from course.config import Assignment, CourseConfig
from course.results import digest, grading_inputs, read_result, write_result
from course.sandbox import row_note

__all__ = ["NOT_INHERITED", "Stopped", "kill_tree", "kill_workers", "run_worker",
           "stop_on_signals", "usable_cpus", "worker_env"]


def kill_tree(pid: int) -> None:
    """Kill a process and everything it started (a worker's kernel, a re-check's children,
    each in a session or process group of its own)."""
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
        kill_tree(pid)


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
            kill_tree(proc.pid)
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
