"""Run recorded hidden-check calls again, in a process where no student code ran first.

    python -I .../autograder/recheck.py < JOBS      (started by `course.recheck`, sandboxed)

JOBS is one JSON object: ``{"timeout": seconds, "jobs": [{"id": ..., "modules":
["autograder.pneumonia_checks"], "check": "check_iou", "call": base64}]}``, where "modules"
and "check" come from the source notebook's hidden test and "call" is what the check
recorded in the kernel (`autograder.isolation`). The last line of standard output is
``{"verdicts": {id: {"ok": bool, "reason": str}}}``.

1. This package's folder comes first on ``sys.path`` (``-I`` ignores PYTHONPATH and the
   working folder) and every module the jobs name is imported before any student code
   runs here, so each check is the one on disk, whatever the notebook did to its copy.
2. The process makes itself non-dumpable: in the sandbox, where its user has no
   capabilities, its children can neither trace it nor read its memory or file descriptors.
3. Each job runs in a forked child, one at a time: standard streams to /dev/null, the
   tripwire's guards on in every thread (`tripwire.guard_every_thread`), recording off,
   then the arguments are unpickled and the check is called. The child sends its verdict
   through a pipe of its own; a child that outlives the timeout, dies or sends nothing
   fails. Only this parent, which never runs student code, writes the standard output.
"""

import base64
import ctypes
import json
import os
import pickle
import select
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_DUMPABLE = 4
MAX_VERDICT = 65536


def load_checks(jobs: list[dict]) -> dict[str, object]:
    """Each job's check function, looked up in the modules its hidden test imports."""
    import importlib

    found = {}
    for job in jobs:
        for name in job["modules"]:
            if not name.startswith("autograder.") or not name.replace(".", "").isidentifier():
                raise ValueError(f"job {job['id']}: {name!r} is not a module of autograder")
            module = importlib.import_module(name)
            if not Path(module.__file__).resolve().is_relative_to(ROOT / "autograder"):
                raise ValueError(f"{name} was imported from {module.__file__}, not {ROOT}")
            check = getattr(module, job["check"], None)
            if getattr(check, "recorded_check", False):
                found[job["id"]] = check
                break
        else:
            raise ValueError(f"job {job['id']}: no recorded check {job['check']!r} in "
                             f"{job['modules']}")
    return found


def run_child(check, call: str, write_fd: int) -> None:
    """In the forked child: the check on the recorded arguments; never returns."""
    from autograder import isolation, tripwire

    try:
        os.setpgid(0, 0)  # the parent kills what this child leaves behind, by group
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        tripwire.guard_every_thread()
        isolation.record_calls(False)
        args, kwargs = pickle.loads(base64.b64decode(call))  # noqa: S301 - sandboxed
        check(*args, **kwargs)
        verdict = {"ok": True, "reason": ""}
    except BaseException as err:  # noqa: BLE001 - whatever it was, the check did not pass
        verdict = {"ok": False, "reason": f"{type(err).__name__}: {err}"[:1000]}
    try:
        os.write(write_fd, json.dumps(verdict).encode())
    finally:
        os._exit(0)


def verdict_of(pid: int, read_fd: int, timeout: float) -> dict:
    """What the child sent before its pipe closed, or why there is no verdict."""
    chunks, size = [], 0
    deadline = time.monotonic() + timeout
    try:
        while size < MAX_VERDICT:
            if not select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return {"ok": False, "reason": f"the check ran past the {timeout:g} s limit"}
            chunk = os.read(read_fd, MAX_VERDICT)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(read_fd)
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(pid, 0)
    try:
        verdict = json.loads(b"".join(chunks))
        return {"ok": verdict["ok"] is True, "reason": str(verdict["reason"])[:1000]}
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "reason": "the re-check process of this check ended without a "
                                       "verdict (did the function exit or kill it?)"}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    request = json.loads(sys.stdin.read())
    checks = load_checks(request["jobs"])
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    verdicts = {}
    for job in request["jobs"]:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            run_child(checks[job["id"]], job["call"], write_fd)
        os.close(write_fd)
        verdicts[job["id"]] = verdict_of(pid, read_fd, float(request["timeout"]))
    print(json.dumps({"verdicts": verdicts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
