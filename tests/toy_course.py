"""A throwaway two-exercise course for testing the course CLI without the real notebooks,
and what the grading tests do with it: students' answers pasted into the release notebook,
grades.csv read back, written answers scored as Formgrader does."""

import nbformat
import pandas as pd

TOML = """
[course]
id = "toy-course"
title = "Toy course"
bundle_repo = "someone/toy-bundle"
bundle_ref = "v9.9"
[grading]
cell_timeout = 5
notebook_timeout = 300
workers = 1
[[assignments]]
id = "toy"
title = "Adding numbers"
notebook = "toy.ipynb"
due = "2027-01-01"
points = 5
"""

ADD_SOLUTION = "    total_of_both = a + b\n    return total_of_both"
MUL_SOLUTION = "    product_of_both = a * b\n    return product_of_both"
STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"  # nbgrader's, indented in a function


def _cell(source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, **nbgrader}
    return cell


def solution_cell(name, body):
    """A solution cell defining ``name(a, b)`` whose body is the solution region."""
    return _cell(f"def {name}(a, b):\n    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION",
                 grade=False, solution=True, locked=False, grade_id=name)


def hidden_test_cell(name, visible, hidden, points):
    """A locked test cell: the visible lines, then the hidden-test region."""
    return _cell(f"{visible}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS",
                 grade=True, solution=False, locked=True, grade_id=f"test_{name}", points=points)


WRITTEN_ANSWER = "Adding is commutative: add(a, b) == add(b, a)."


def _written(name, answer, points):
    """A written answer: nbgrader's "Manually graded answer" (a graded markdown solution
    cell, scored by a person in Formgrader; nbgrader docs, "Creating and grading
    assignments", cell types)."""
    cell = nbformat.v4.new_markdown_cell(answer)
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": True, "solution": True,
                                 "locked": False, "grade_id": name, "points": points}
    return cell


def write_toy_course(root, written=False):
    """Write ROOT/course/course.toml and ROOT/source/toy/toy.ipynb; return ROOT.

    ``written`` adds a 2-point written answer (``why_answer``) after the tests; the
    autograded total stays 5."""
    (root / "course").mkdir(parents=True)
    (root / "course" / "course.toml").write_text(TOML)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Adding numbers"),
        solution_cell("add", ADD_SOLUTION),
        hidden_test_cell("add", "assert add(1, 2) == 3", "assert add(20, 22) == 42", 2),
        solution_cell("mul", MUL_SOLUTION),
        hidden_test_cell("mul", "assert mul(2, 3) == 6", "assert mul(6, 7) == 42", 3),
        *([_written("why_answer", WRITTEN_ANSWER, 2)] if written else []),
        # Last, so the tests' cell indices stay put; `course release` writes its source.
        nbformat.v4.new_code_cell("# set-up", metadata={"tags": ["course-setup"]}),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    (root / "source" / "toy").mkdir(parents=True)
    nbformat.write(nb, root / "source" / "toy" / "toy.ipynb")
    return root


def answered(release, **answers):
    """A copy of the RELEASE notebook with a student's answers: ``add=`` / ``mul=`` replace
    that function's stub (indented as a function body), ``why_answer=`` the written answer."""
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.cell_type == "code":
            cell.source = cell.source.replace(STUB, answers[grade_id].strip())
        elif grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def read_grades(out):
    """OUT/grades.csv by student_id, blanks kept as "" (an unmarked answer is not a 0)."""
    return pd.read_csv(out / "grades.csv", keep_default_na=False,
                       dtype={"student_id": str}).set_index("student_id")


def formgrader_score(db, sid, points, comment, grade_id="why_answer"):
    """Score and comment a written answer as Formgrader's API does it (nbgrader 0.9.6,
    server_extensions/formgrader/apihandlers.py: GradeHandler.put, CommentHandler.put)."""
    from nbgrader.api import Gradebook

    from course.nbgrader_setup import put_bin_on_path

    put_bin_on_path()  # nbgrader runs `alembic` through PATH, as the CLI sets it up
    with Gradebook(f"sqlite:///{db}") as gb:
        grade = gb.find_grade(grade_id, "toy", "toy", sid)
        grade.manual_score, grade.extra_credit = points, None
        grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
        gb.find_comment(grade_id, "toy", "toy", sid).manual_comment = comment
        gb.db.commit()
