"""Grade one submission in its own process and folder: what `course grade` starts per student.

    python -m course.worker TEMPLATE SUBMISSION WORKDIR STUDENT ASSIGNMENT [--root ROOT]

TEMPLATE is an nbgrader course folder prepared once per run (a gradebook that knows the
assignment; no source notebook). The worker copies it into a private temporary folder,
puts the submission in as ``submitted/STUDENT/ASSIGNMENT/<notebook>``, and runs nbgrader's
autograde there: test cells restored, the notebook executed with the per-cell timeout.
Then every hidden check call the kernel recorded is run again outside the notebook
(`course.recheck`): a test cell whose re-check fails, or whose check left no record, scores
0. It copies the executed notebook to WORKDIR/autograded.ipynb and writes WORKDIR/result.json
last, atomically: a folder without result.json was never finished. Its own gradebook is
thrown away; the parent imports the executed notebooks into the one gradebook of the run
(`course.gradebook.import_results`).

Before anything runs, the worker caps its address space (``[grading] memory_gb``); the
notebook's kernel, a child process, inherits the cap. The parent enforces the wall-clock
limit per notebook by killing the worker and its kernel.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from course.config import load
from course.leaks import grader_secrets, redact_notebook
from course.nbgrader_setup import nbgrader_api, nbgrader_config, put_bin_on_path
from course.recheck import local_env, recheck, runner
from course.results import digest, grading_inputs, run_problem, student_errors, write_result
from course.sandbox import colab_standin, kernel_env, row_note, sandbox_command, sandboxed
from course.trim import count_trimmed, with_trimming

GENERIC = ("Please see the", "NbGraderException")


# nbclient's CellTimeoutError quotes the cell's first and last lines between two dashed
# rules (nbclient.exceptions.timeout_err_msg); a student's `except OSError:` there is code,
# not the error.
CELL_PREVIEW = re.compile(r"Here is a preview of the cell contents:\s*\n-+\n.*?\n-+",
                          re.DOTALL)


def failure_reason(log: str) -> str:
    """The most specific line of a failed autograde's log, for the grades.csv row."""
    if "CellTimeoutError" in log:
        return ("CellTimeoutError: a cell ran past the cell time limit and the kernel could "
                "not be brought back; nothing could be scored")
    if "DeadKernelError" in log:
        return ("the kernel died while the notebook ran (os._exit, a crash or the memory "
                "cap); nothing could be scored")
    lines = [x.strip() for x in CELL_PREVIEW.sub("", log).splitlines() if x.strip()]
    errors = [x for x in lines if re.search(r"(Error|Exception)\b", x)
              and not any(g in x for g in GENERIC)]
    best = errors[-1] if errors else (lines[-1] if lines else "no message")
    return "autograde failed: " + best[:240]


def cap_memory(gigabytes: float) -> None:
    """Limit this process's (and its children's) address space; 0 means no cap."""
    if gigabytes > 0:
        limit = int(gigabytes * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def grade_one(root: Path | None, template: Path, submission: Path, workdir: Path, sid: str,
              assignment_id: str, sandbox: str = "none") -> dict:
    """Autograde one submission in WORKDIR; return (and write) its result."""
    cfg = load(root)
    a = cfg.assignment(assignment_id)
    start = time.perf_counter()
    # A private scratch folder outside OUT: relative paths from the notebook lead to its own
    # copy of the course (no solutions), not to other students' work.
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        return _autograde(cfg, a, template, submission, workdir, sid, scratch, start, sandbox)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _autograde(cfg, a, template: Path, submission: Path, workdir: Path, sid: str,
               scratch: Path, start: float, sandbox: str) -> dict:
    course_dir = scratch / "nbgrader"
    shutil.copytree(template, course_dir)
    target = course_dir / "submitted" / sid / a.id / a.notebook
    target.parent.mkdir(parents=True)
    shutil.copy(submission, target)
    config = with_trimming(nbgrader_config(cfg, course_dir, course_dir / "gradebook.db"))
    # The kernel and the re-check see none of these (nor homes, /tmp, the repository).
    hide = [str(p.resolve()) for p in (cfg.root, workdir.parent.parent, submission.parent.parent,
                                       template.parent)]
    if sandbox != "none":
        config = sandboxed(config, scratch, hide, cfg.scratch_mb, backend=sandbox)
    with nbgrader_api(config) as api:
        result = api.autograde(a.id, sid, force=True, create=True)
    inputs = grading_inputs(cfg, a)
    fields = {"student_id": sid, "hash": digest(submission, inputs), "inputs": inputs,
              "submission": str(submission), "sandbox": sandbox}
    note = row_note(sandbox)
    if not result["success"]:
        text = "\n".join(filter(None, [result.get("log"), result.get("error")]))
        (workdir / "nbgrader.log").write_text(text)
        return write_result(workdir, **fields, status="failed", notebook=None,
                            reason=f"{failure_reason(text)}; {note}",
                            seconds=round(time.perf_counter() - start, 1))
    executed = course_dir / "autograded" / sid / a.id / a.notebook
    nb = nbformat.read(executed, as_version=4)
    rechecked = recheck(nb, cfg.source_notebook(a), recheck_runner(sandbox, scratch, hide,
                                                                   cfg.scratch_mb),
                        cfg.cell_timeout)
    trimmed = count_trimmed(nb)
    # What the student's code printed goes back to them as feedback: no solution, hidden
    # test or autograder line may be in it (the sandbox should make this find nothing).
    redacted = redact_notebook(nb, grader_secrets(cfg.source_notebook(a)))
    nbformat.write(nb, workdir / "autograded.ipynb")
    problem = run_problem(nb)
    if trimmed:
        problem = "; ".join(filter(None, [problem, f"{trimmed} oversized output(s) trimmed"]))
    if rechecked:
        problem = "; ".join(filter(None, [problem, *rechecked]))
    if redacted:
        problem = "; ".join(filter(None, [problem, f"{redacted} output line(s) redacted: they "
                                          "held solution, hidden-test or autograder text"]))
    errors = student_errors(nb)
    return write_result(workdir, **fields, status="partial" if problem else "graded",
                        reason="; ".join(filter(None, [problem, errors and f"errors: {errors}",
                                                       note])),
                        notebook="autograded.ipynb",
                        seconds=round(time.perf_counter() - start, 1))


def recheck_runner(sandbox: str, scratch: Path, hide: list[str], scratch_mb: int):
    """How the hidden checks are re-run: in the kernel's sandbox (a fresh tmpfs home), or,
    with ``sandbox = "none"``, unsandboxed as the kernel was."""
    if sandbox == "none":
        return runner(local_env())
    home = scratch / "recheck"
    home.mkdir(exist_ok=True)
    return runner(kernel_env(local_env(), str(home)),
                  lambda cmd: sandbox_command(cmd, str(home), hide, scratch_mb,
                                              backend=sandbox))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("submission", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("student")
    parser.add_argument("assignment")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--memory-gb", type=float, default=0.0)
    parser.add_argument("--sandbox", default="none", choices=("bwrap", "unshare", "none"))
    args = parser.parse_args(argv)
    cap_memory(args.memory_gb)
    # The process environment is set up here, before nbgrader (and its threads) start.
    put_bin_on_path()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    # The unsandboxed kernel inherits this environment (the sandboxed one gets the same
    # folder from sandbox.kernel_env): `import google.colab` finds the grading stand-in.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [colab_standin(), os.environ.get("PYTHONPATH")]))
    grade_one(args.root, args.template, args.submission, args.workdir, args.student,
              args.assignment, args.sandbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
