"""One submission's grading result: the result.json protocol shared by the worker and the
parent, the grade row, and what an executed notebook says went wrong.

A worker writes WORKDIR/result.json last and atomically, so a folder without it was never
finished; the parent reads it back to skip unchanged submissions and to build the gradebook.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import is_grade, is_solution

RESULT = "result.json"
RUN_FAILURES = ("CellTimeoutError", "DeadKernelError")


@dataclass
class Row:
    """One student's line of grades.csv."""

    student_id: str
    status: str  # graded | partial | failed | missing
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)


def grading_inputs(cfg, a) -> dict[str, str]:
    """Digests of everything a grade depends on besides the submission itself: the source
    notebook (its tests), the hidden checks and helpers they run, the limits, nbgrader."""
    import nbgrader

    import autograder
    import helpers

    limits = {"cell_timeout": cfg.cell_timeout, "notebook_timeout": cfg.notebook_timeout,
              "memory_gb": cfg.memory_gb, "sandbox": cfg.sandbox,
              "scratch_mb": cfg.scratch_mb}
    return {"the source notebook": _sha(cfg.source_notebook(a).read_bytes()),
            "autograder/": _tree(Path(autograder.__file__).parent),
            "helpers/": _tree(Path(helpers.__file__).parent),
            "the limits": _sha(json.dumps(limits, sort_keys=True).encode()),
            "nbgrader": nbgrader.__version__}


def digest(submission: Path, inputs: dict[str, str]) -> str:
    """The cache key of one graded submission: its bytes and the grading inputs."""
    return _sha(Path(submission).read_bytes() + b"\0" + json.dumps(inputs, sort_keys=True)
                .encode())


def changed_inputs(done: dict, inputs: dict[str, str]) -> list[str]:
    """Which grading inputs differ from those a previous result was made with."""
    before = done.get("inputs")
    if not isinstance(before, dict):
        return ["the course's grading version"]
    return [name for name, value in inputs.items() if before.get(name) != value]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(folder: Path) -> str:
    """One digest over a package's Python files, by relative path and bytes."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def write_result(workdir: Path, **fields) -> dict:
    """Write WORKDIR/result.json atomically (a reader never sees half a file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / (RESULT + ".tmp")
    tmp.write_text(json.dumps(fields, indent=1, sort_keys=True))
    tmp.replace(workdir / RESULT)
    return fields


def read_result(workdir: Path) -> dict | None:
    """The finished result in WORKDIR, or None (never started, killed, or unreadable)."""
    try:
        return json.loads((workdir / RESULT).read_text())
    except (OSError, ValueError):
        return None


def run_problem(nb: nbformat.NotebookNode) -> str:
    """Why an executed notebook did not run through (a timeout, a dead kernel), or ''."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") in RUN_FAILURES:
                return f"cell {i + 1}: {out['ename']}"
    return ""


def student_errors(nb: nbformat.NotebookNode, limit: int = 3) -> str:
    """The errors raised in the student's own cells: 'cell 5: SystemExit; cell 9: ...', or ''."""
    found = []
    for i, cell in enumerate(nb.cells):
        if is_grade(cell) and not is_solution(cell):
            continue  # a failing test cell is its score, not a reason
        found += [f"cell {i + 1}: {out.get('ename')}" for out in cell.get("outputs", [])
                  if out.get("output_type") == "error"
                  and out.get("ename") not in RUN_FAILURES]
    more = f" (+{len(found) - limit} more)" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more
