"""`course formgrade`: JupyterLab with nbgrader's Formgrader on a grading folder, where TAs
score the written answers.

`course grade ... --out OUT` keeps an nbgrader course folder in OUT/nbgrader (the imported
notebooks in ``autograded/``) and its gradebook in OUT/gradebook.db. Formgrader reads its
course from the ``nbgrader_config.py`` in the server's working directory, and the course
must lie inside the server's root, so JupyterLab is started in OUT/nbgrader with a
generated config naming that folder and gradebook (not the repository's).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from course.config import Assignment, CourseConfig
from course.nbgrader_setup import write_config_file

# nbgrader 0.9's JupyterLab extension: the "Nbgrader" menu's "Formgrader" command
# (nbgrader:open-formgrader); the URL query formgrader=true opens it on start.
WHERE = ("JupyterLab menu Nbgrader → Formgrader (or open /lab?formgrader=true), then "
         "Gradebook → {id} → {notebook} → a submission flagged 'needs manual grade'")


@dataclass
class Plan:
    """What `course formgrade` starts, and where."""

    folder: Path  # the server's working directory and root: the nbgrader course folder
    config: Path  # the generated nbgrader_config.py Formgrader reads
    argv: list[str]  # the command
    where: str  # how to reach the Formgrader in JupyterLab
    pending: int  # submissions with a written answer to (re)grade


def plan(cfg: CourseConfig, a: Assignment, out: Path) -> Plan:
    """Write OUT/nbgrader/nbgrader_config.py for Formgrader; return how to start it."""
    out = out.resolve()
    folder, db = out / "nbgrader", out / "gradebook.db"
    if not (folder / "autograded").is_dir() or not db.is_file():
        raise FileNotFoundError(f"{out}: no graded nbgrader course (expected {folder}/"
                                f"autograded/ and {db}); run `course grade {a.id} SUBMISSIONS "
                                f"--out {out}` first")
    config = write_config_file(cfg, folder / "nbgrader_config.py", db, root=folder)
    argv = [str(Path(sys.executable).with_name("jupyter")), "lab",
            f"--ServerApp.root_dir={folder}"]
    where = WHERE.format(id=a.id, notebook=Path(a.notebook).stem)
    return Plan(folder, config, argv, where, _pending(db, a))


def _pending(db: Path, a: Assignment) -> int:
    """How many submissions of A still need a person (nbgrader's needs_manual_grade)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            return sum(1 for sub in gb.find_assignment(a.id).submissions
                       if sub.needs_manual_grade)
        except MissingEntry:
            return 0
