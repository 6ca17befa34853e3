"""The visible checks record what passed; the summary cell shows every exercise."""

import nbformat
import pytest

from course.config import load
from course.release import SUMMARY_TAG
from helpers import progress

CFG = load()


def test_summary_says_which_visible_checks_passed(capsys):
    progress.reset()
    progress.passed("test_iou")
    assert capsys.readouterr().out == "visible check passed\n"
    lines = progress.summary([("test_iou", "auto", 4), ("test_dataset", "auto", 3),
                              ("eda_answer", "hand", 2)])
    assert "visible check passed" in lines[1] and lines[1].startswith("test_iou")
    assert "NOT PASSED YET" in lines[2] and "graded by hand" in lines[3]
    assert lines[-1].startswith("1 of 2 visible checks passed in this session (4 autograded")
    progress.reset()
    assert "0 of 1 visible checks" in progress.summary([("test_iou", "auto", 4)])[-1]


@pytest.mark.parametrize("assignment", CFG.assignments, ids=lambda a: a.id)
def test_summary_cell_lists_every_graded_cell_and_its_points(assignment):
    nb = nbformat.read(CFG.release_notebook(assignment), as_version=4)
    (cell,) = [c for c in nb.cells if SUMMARY_TAG in c.metadata.get("tags", [])]
    namespace = {}
    exec(cell.source.replace("progress.summary(", "rows = ("), namespace)  # noqa: S102
    graded = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"]
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert {gid: pts for gid, _, pts in namespace["rows"]} == graded
    auto = sum(pts for _, kind, pts in namespace["rows"] if kind == "auto")
    assert auto == assignment.points
    for c in nb.cells:  # every visible check reports to the summary under its own grade id
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"):
            assert f'progress.passed("{c.metadata.nbgrader["grade_id"]}")' in c.source
