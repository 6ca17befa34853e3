"""`course release`: student notebooks from the instructor's, through nbgrader.

nbgrader's ``generate_assignment`` strips solutions and hidden tests, locks the test
cells and records checksums. Around it we add a header cell (Colab badge and set-up
instructions) and run it in a scratch course directory, so its gradebook never lands in
the repository. ``check`` regenerates into a scratch folder and compares byte for byte.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

import nbformat

from course.config import Assignment, CourseConfig
from course.leaks import find_leaks
from course.nbgrader_setup import nbgrader_api, nbgrader_config


class ReleaseError(RuntimeError):
    """nbgrader could not generate a student notebook."""


def colab_url(cfg: CourseConfig, a: Assignment) -> str:
    """Where the student notebook opens in Colab, pinned to the bundle's ref."""
    return (f"https://colab.research.google.com/github/{cfg.bundle_repo}/blob/"
            f"{cfg.bundle_ref}/release/{a.id}/{a.notebook}")


def header_notebook(cfg: CourseConfig, a: Assignment) -> nbformat.NotebookNode:
    """The header nbgrader puts on top of the student notebook."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    text = (
        f"[![Open In Colab]({badge})]({colab_url(cfg, a)})\n\n"
        f"**{cfg.title} — {a.title}**" + (f" (due {a.due})" if a.due else "") + "\n\n"
        "In Colab, choose *Runtime → Change runtime type → GPU* first, then run the set-up "
        "cell below. Fill in every cell marked `YOUR CODE HERE` and answer the questions in "
        "the cells marked *YOUR ANSWER HERE*; run the checks under each exercise as you go. "
        "Do not delete, copy or rename the locked cells: they are restored before grading."
    )
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = f"course-header-{a.id}"  # fixed id: the release must be reproducible
    nb.cells = [cell]
    return nb


def generate(cfg: CourseConfig, assignments: list[Assignment], dest_root: Path) -> list[Path]:
    """Generate ``dest_root/release/<id>/`` for each assignment; return the notebooks written."""
    written = []
    for a in assignments:
        src = cfg.source_notebook(a)
        if not src.is_file():
            raise ReleaseError(f"{src}: source notebook of assignment '{a.id}' not found")
        with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
            scratch = Path(tmp)
            shutil.copytree(src.parent, scratch / "source" / a.id)
            header = scratch / "header.ipynb"
            nbformat.write(header_notebook(cfg, a), header)
            config = nbgrader_config(cfg, scratch, scratch / "gradebook.db")
            config.IncludeHeaderFooter.header = str(header)
            with nbgrader_api(config) as api:
                result = api.generate_assignment(a.id, force=True)
            if not result["success"]:
                raise ReleaseError(f"{src}: nbgrader generate_assignment failed:\n"
                                   f"{result.get('error') or ''}\n{result.get('log', '')}")
            out = dest_root / "release" / a.id
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(scratch / "release" / a.id, out)
        written.append(out / a.notebook)
    return written


def stale(cfg: CourseConfig, assignments: list[Assignment]) -> list[str]:
    """Files of the committed release/ that differ from a fresh generation (empty: current)."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        generate(cfg, assignments, Path(tmp))
        for a in assignments:
            fresh, committed = Path(tmp) / "release" / a.id, cfg.root / "release" / a.id
            if not committed.is_dir():
                problems.append(f"{committed}: missing; run `python -m course release {a.id}`")
                continue
            problems += _differences(fresh, committed)
    return problems


def leaks(cfg: CourseConfig, assignments: list[Assignment]) -> list[str]:
    """Solution or hidden-test lines found in the committed student notebooks (empty: none)."""
    return [problem for a in assignments if cfg.release_notebook(a).is_file()
            for problem in find_leaks(cfg.source_notebook(a), cfg.release_notebook(a))]


def _differences(fresh: Path, committed: Path) -> list[str]:
    cmp = filecmp.dircmp(fresh, committed)
    out = [f"{committed / n}: differs from a fresh release" for n in cmp.diff_files]
    out += [f"{committed / n}: missing from the committed release" for n in cmp.left_only]
    out += [f"{committed / n}: not produced by the release (remove it)" for n in cmp.right_only]
    for sub in cmp.common_dirs:
        out += _differences(fresh / sub, committed / sub)
    return out
