"""Feedback that explains lost points without showing the hidden tests.

nbgrader's feedback shows the autograded notebook, hidden tests included (by design,
nbgrader #917). Before rendering we remove the hidden-test regions from the test cells
and cut every error in a test cell down to its last line (``AssertionError: expected
..., got ...``): a traceback would print the hidden test's source line by line.
The checks therefore say what they checked, what they expected and what came back in
their messages; that message is what the student reads.
"""

from __future__ import annotations

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution


class ShortTestErrors(NbGraderPreprocessor):
    """Replace the tracebacks of test cells by their final ``Error: message`` line."""

    def preprocess_cell(self, cell, resources, index):
        """Trim one cell's error outputs when it is a test cell."""
        if cell.cell_type == "code" and is_grade(cell) and not is_solution(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    message = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
                    out["traceback"] = [message]
        return cell, resources


# The order matters: grades are read first, from the untouched notebook.
FEEDBACK_PREPROCESSORS = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests, ShortTestErrors]
