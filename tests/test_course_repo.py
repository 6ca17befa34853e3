"""The repository's own course: every configured assignment is released, current,
leak-free, and worth the points course.toml says."""

import nbformat
import pytest

from course.config import load
from course.leaks import find_leaks
from course.release import stale

CFG = load()


@pytest.mark.parametrize("assignment", CFG.assignments, ids=lambda a: a.id)
def test_release_is_current_and_leak_free(assignment):
    assert stale(CFG, [assignment]) == []
    assert find_leaks(CFG.source_notebook(assignment), CFG.release_notebook(assignment)) == []


@pytest.mark.parametrize("assignment", CFG.assignments, ids=lambda a: a.id)
def test_points_in_course_toml_match_the_notebook(assignment):
    nb = nbformat.read(CFG.source_notebook(assignment), as_version=4)
    points = sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    assert points == assignment.points


def test_every_source_notebook_is_configured():
    configured = {CFG.source_notebook(a) for a in CFG.assignments}
    found = set((CFG.root / "source").glob("*/*.ipynb"))
    assert found == configured
