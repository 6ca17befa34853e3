"""The whole course on the embedded default, offline: what `python -m course demo` runs.

1. the data demo (both synthetic data sets, one batch each, a figure);
2. every solution notebook executed in the smoke profile (executed copies saved), with
   OUT/cache as its data folder (``COURSE_DATA_DIR``) and no checkpoints left from an
   earlier demo, so the notebooks train afresh: ``fit(resume=True)`` would otherwise reload
   a finished run from the user's cache and a demo after a change to training would show
   the old model;
3. the committed student notebooks checked against a fresh `release` (and for leaks);
4. per assignment, three simulated students graded with `course grade`: the solution, the
   blank release notebook and a half-done one (the release with the first half of its
   exercises answered), then the grade table.

The terminal shows the demo's own lines and progress bars; what the libraries say on the way
(warnings, nbgrader's and the kernels' logs) goes to OUT/demo.log (`course.demo_log`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import IO

import nbformat
import pandas as pd
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbgrader.utils import is_solution
from tqdm.auto import tqdm

from course import release
from course.config import Assignment, CourseConfig
from course.demo_log import library_output_to
from course.grade import grade
from course.sandbox import SandboxError, resolve


def _solution_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.cell_type == "code" and is_solution(c)}


def half_done(source: Path, student: Path) -> nbformat.NotebookNode:
    """The student notebook with the first half of its exercises answered from the source."""
    return answered(source, student, share=0.5)


def answered(source: Path, student: Path, share: float = 1.0) -> nbformat.NotebookNode:
    """The student notebook with the first ``share`` of its exercises answered from the
    source's solution cells (1.0: all of them, a student who solved everything)."""
    answers = _solution_cells(nbformat.read(source, as_version=4))
    nb = nbformat.read(student, as_version=4)
    chosen = set(list(answers)[: int(len(answers) * share)])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in chosen:
            cell.source = answers[gid]
    return nb


class ProgressClient(NotebookClient):
    """A NotebookClient that advances a tqdm bar after each cell, run or skipped (markdown)."""

    def __init__(self, nb: nbformat.NotebookNode, bar: tqdm, **kwargs) -> None:
        super().__init__(nb, **kwargs)
        self.bar = bar

    async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                 store_history=True):
        """Execute one cell, then count it done."""
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        finally:
            self.bar.update(1)


def execute(notebook: Path, out: Path, timeout: int, log: IO | None = None,
            progress: bool = True, data_dir: Path | None = None) -> float:
    """Run a notebook in the smoke profile in a scratch folder; save it executed; seconds.

    The kernel's own stdout and stderr go to ``log`` (default: this process's); ``data_dir``
    becomes its ``COURSE_DATA_DIR`` (synthetic data and checkpoints).
    """
    nb = nbformat.read(notebook, as_version=4)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The kernel gets these; the inline backend keeps the figures in the saved copy.
    env = {**os.environ, "COURSE_PROFILE": "smoke",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if data_dir is not None:
        env["COURSE_DATA_DIR"] = str(data_dir)
    start = time.perf_counter()
    with tqdm(total=len(nb.cells), desc=f"executing {notebook.name}", unit="cell",
              disable=not progress) as bar:
        client = ProgressClient(nb, bar, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(out.parent)}})
        try:
            client.execute(env=env, stdout=log, stderr=log)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            raise SystemExit(_failed(notebook, bar.n, len(nb.cells), err, timeout, out)) from None
        finally:
            nbformat.write(nb, out)  # also when a cell failed: the error is in the saved copy
    return time.perf_counter() - start


def _failed(notebook: Path, cell: int, cells: int, err: Exception, timeout: int,
            saved: Path) -> str:
    """What to tell the user when a solution notebook stops: which cell, why, where to look
    (nbclient's own message quotes the whole cell and traceback: that stays in the log)."""
    if isinstance(err, CellTimeoutError):
        why = (f"ran longer than the cell limit of {timeout} s ([grading] cell_timeout in "
               f"course.toml); a loaded machine is the usual cause: stop other jobs and "
               f"run the demo again")
    elif isinstance(err, DeadKernelError):
        why = "killed its kernel (out of memory?)"
    else:
        why = f"raised {err.ename}: {err.evalue}".strip()
    return (f"{notebook}: cell {cell} of {cells} {why}. The executed copy, with the error "
            f"in it, is {saved}.")


def students(cfg: CourseConfig, a: Assignment, folder: Path) -> Path:
    """Write the three simulated submissions of one assignment; return the folder."""
    source, blank = cfg.source_notebook(a), cfg.release_notebook(a)
    for sid, nb in (("solution", nbformat.read(source, as_version=4)),
                    ("blank", nbformat.read(blank, as_version=4)),
                    ("half_done", half_done(source, blank))):
        (folder / sid).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / sid / a.notebook)
    return folder


def _sandbox_or_none(cfg: CourseConfig) -> CourseConfig:
    """The demo grades its own three notebooks (solution, blank, half-done), not student
    code: where no grading sandbox can run (not root, macOS), it grades them unsandboxed
    rather than stop, and every row says so. `course grade` itself never does this."""
    try:
        resolve(cfg.sandbox)
        return cfg
    except SandboxError as err:
        print(f"the demo grades its own notebooks unsandboxed (rows say 'not sandboxed'); "
              f"`course grade` would stop here: {err}")
        return dataclasses.replace(cfg, sandbox="none")


def run_course(cfg: CourseConfig, out: Path, data_demo: bool = True) -> pd.DataFrame:
    """Run the whole course; return one row per (assignment, student)."""
    out.mkdir(parents=True, exist_ok=True)
    with library_output_to(out / "demo.log") as log:
        return _run(cfg, out, data_demo, log)


def _run(cfg: CourseConfig, out: Path, data_demo: bool, log: IO) -> pd.DataFrame:
    t0 = time.perf_counter()
    if data_demo:
        from course.data_figure import run

        run(out)
    # The demo's own data folder: the synthetic sets are generated there once (seconds),
    # and its checkpoints, the demo's alone, are removed so every demo trains afresh.
    shutil.rmtree(out / "cache" / "checkpoints", ignore_errors=True)
    for a in cfg.assignments:
        seconds = execute(cfg.source_notebook(a), out / "executed" / a.notebook,
                          cfg.cell_timeout, log=log, data_dir=out / "cache")
        print(f"executed {a.id} solution notebook (smoke profile) in {seconds:.0f} s")
    problems = release.stale(cfg, cfg.assignments) + release.leaks(cfg, cfg.assignments)
    if problems:
        raise SystemExit("release/ is stale or leaks; run `python -m course release`:\n"
                         + "\n".join(problems))
    print("release/ matches source/ and leaks nothing")
    cfg = _sandbox_or_none(cfg)
    tables = []
    for a in cfg.assignments:
        subs = students(cfg, a, out / "submissions" / a.id)
        table = grade(cfg, a, subs, out / "graded" / a.id)
        tables.append(table[["student_id", "total", "max_score", "status"]]
                      .assign(assignment=a.id))
    result = pd.concat(tables, ignore_index=True)[
        ["assignment", "student_id", "total", "max_score", "status"]]
    print(result.to_string(index=False))
    print(f"course demo done in {time.perf_counter() - t0:.0f} s; grades in {out}/graded/; "
          f"library output in {out / 'demo.log'}")
    return result
