"""The worker's second opinion on the hidden checks: each recorded check call is run again
outside the notebook, and a test cell the kernel passed keeps its points only if the
re-check agrees.

A hidden check in the kernel shares the process with the student's code, which ran first
(`autograder.isolation`). So after nbgrader's autograde, for every hidden test cell of the
source notebook that calls an ``autograder`` check, the worker takes the records of that
cell's check calls out of the executed notebook and runs them in `autograder.recheck`, a
fresh process (in the same sandbox as the kernel, with the cell time limit). A cell the
kernel passed fails, with an error output that nbgrader scores as 0 and a reason in the
row, when a check it calls left no record (replaced by an earlier cell), a record names a
check the cell does not call, or a re-run fails. The worker never unpickles a record: only
the sandboxed re-check does. Cells that failed in the kernel are left as they are.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
from nbgrader.utils import is_grade, is_solution

from course.leaks import hidden_test_lines

# Not imported from autograder.isolation: that would load torch into every worker.
MIME = "application/vnd.medical-detection-course.check-call+json"
ENAME = "RecheckFailed"
MODULE = re.compile(r"\bautograder\.(\w+)")
CALL = re.compile(r"\b(check_\w+)\s*\(")
STARTUP_S = 300  # the re-check's imports (torch, the checks) on a loaded machine
Runner = Callable[[list[dict], float], dict[str, dict]]


def hidden_calls(source: Path) -> dict[str, tuple[list[str], list[str]]]:
    """grade_id -> (autograder modules, check functions) of each hidden test that calls one."""
    calls = {}
    for cell in nbformat.read(source, as_version=4).cells:
        text = "\n".join(hidden_test_lines(cell))
        modules = sorted({f"autograder.{m}" for m in MODULE.findall(text)})
        checks = sorted(set(CALL.findall(text)))
        if modules and checks and is_grade(cell):
            calls[cell.metadata["nbgrader"]["grade_id"]] = (modules, checks)
    return calls


def take_records(cell) -> list[dict]:
    """Remove the check-call records from a cell's outputs and return them."""
    outputs = cell.get("outputs", [])
    records = [o["data"][MIME] for o in outputs if MIME in o.get("data", {})]
    cell["outputs"] = [o for o in outputs if MIME not in o.get("data", {})]
    return [r if isinstance(r, dict) else {} for r in records]


def _problem(records: list[dict], checks: list[str]) -> str:
    """Why these records cannot vouch for a cell calling ``checks``, or ''."""
    names = [r.get("check") for r in records]
    missing = [c for c in checks if c not in names]
    if missing:
        return (f"{', '.join(missing)} left no record of its call (was the check replaced "
                "before this cell ran?)")
    strange = sorted({str(n) for n in names if n not in checks})
    if strange:
        return f"a record of {', '.join(strange)}, which this cell does not call"
    broken = [r for r in records if not isinstance(r.get("call"), str)]
    if broken:
        return f"the call could not be recorded: {broken[0].get('error', 'no data')}"
    return ""


def fail_cell(cell, message: str) -> None:
    """Make a test cell score 0 (nbgrader scores a cell with an error output as 0); first,
    so no earlier execute_result is read as partial credit."""
    text = f"the hidden check failed when re-run outside the notebook: {message}"
    cell["outputs"].insert(0, new_output("error", ename=ENAME, evalue=text,
                                         traceback=[f"{ENAME}: {text}"]))


def recheck(nb, source: Path, run: Runner, timeout: float) -> list[str]:
    """Re-run the recorded checks of ``nb`` (executed) with ``run``; fail the cells whose
    records are missing or fail; the reasons, one per failed cell ("cell 9 (test_iou): ...")."""
    calls = hidden_calls(source)
    jobs, pending, reasons = [], {}, []
    for i, cell in enumerate(nb.cells):
        records = take_records(cell) if cell.cell_type == "code" else []
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id not in calls or not is_grade(cell) or is_solution(cell):
            continue
        if any(o.get("output_type") == "error" for o in cell.outputs):
            continue  # failed in the kernel already
        where = f"cell {i + 1} ({grade_id})"
        modules, checks = calls[grade_id]
        problem = _problem(records, checks)
        if problem:
            fail_cell(cell, problem)
            reasons.append(f"{where}: {problem}")
            continue
        for k, r in enumerate(records):
            job_id = f"{grade_id}#{k}"
            jobs.append({"id": job_id, "modules": modules, "check": r["check"],
                         "call": r["call"]})
            pending[job_id] = (where, cell)
    verdicts = run(jobs, timeout) if jobs else {}
    failed = set()
    for job_id, (where, cell) in pending.items():
        verdict = verdicts.get(job_id) or {"ok": False, "reason": "no verdict came back"}
        if not verdict["ok"] and id(cell) not in failed:
            failed.add(id(cell))
            fail_cell(cell, verdict["reason"])
            reasons.append(f"{where}: the hidden check failed when re-run outside the "
                           f"notebook: {verdict['reason'][:200]}")
    return reasons


def recheck_command() -> list[str]:
    """The re-check process: this interpreter, isolated, running autograder/recheck.py."""
    import importlib.util

    spec = importlib.util.find_spec("autograder")
    script = Path(spec.origin).with_name("recheck.py")
    return [sys.executable, "-I", str(script)]


def runner(env: dict[str, str], wrap: Callable[[list[str]], list[str]] | None = None
           ) -> Runner:
    """A `Runner`: the re-check process, wrapped by ``wrap`` (the sandbox) when given, with
    ``env``; every job fails when the process gives no verdicts (fail closed)."""
    from course.pool import kill_tree

    def run(jobs: list[dict], timeout: float) -> dict[str, dict]:
        cmd = recheck_command()
        cmd = wrap(cmd) if wrap else cmd
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        request = json.dumps({"timeout": timeout, "jobs": jobs})
        try:
            out, err = proc.communicate(request.encode(), timeout=STARTUP_S + timeout * len(jobs))
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            out, err = proc.communicate()
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            return json.loads(lines[-1])["verdicts"]
        except (IndexError, ValueError, KeyError, TypeError):
            why = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            return {j["id"]: {"ok": False, "reason": f"the re-check could not run: {why[:200]}"}
                    for j in jobs}

    return run


def local_env() -> dict[str, str]:
    """The unsandboxed re-check's environment: the worker's, as the kernel had it."""
    return {**os.environ, "NBGRADER_EXECUTION": "autograde"}
