"""nbgrader, configured from course.toml: one place that turns our settings into its config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from traitlets.config import Config

from course.config import CourseConfig

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def nbgrader_config(cfg: CourseConfig, root: Path, db_path: Path) -> Config:
    """nbgrader's config for a course directory at ``root`` with its gradebook at ``db_path``."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = cfg.id
    c.CourseDirectory.db_url = f"sqlite:///{db_path}"
    c.Exchange.root = str(root / "exchange")  # unused, but the default is a system folder
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.Execute.timeout = cfg.cell_timeout  # per cell; ExecutePreprocessor.timeout is ignored
    # Students delete locked cells (Colab ignores "deletable": false): put them back.
    c.OverwriteCells.add_missing_cells = True
    return c


@contextmanager
def nbgrader_api(config: Config) -> Iterator:
    """An NbGraderAPI whose subprocesses (alembic) are found on PATH."""
    from nbgrader.apps import NbGraderAPI

    # nbgrader runs the `alembic` executable; without the interpreter's bin/ on PATH
    # (a venv python called by full path) it fails with FileNotFoundError: 'alembic'.
    bindir = str(Path(sys.executable).parent)
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = bindir + os.pathsep + old_path
    try:
        yield NbGraderAPI(config=config)
    finally:
        os.environ["PATH"] = old_path
