"""Feedback that explains lost points without showing the hidden tests.

nbgrader's feedback shows the autograded notebook, hidden tests included (by design,
nbgrader #917). Before rendering we remove the hidden-test regions from the test cells
and cut every error in a test cell down to its last line (``AssertionError: expected
..., got ...``): a traceback would print the hidden test's source line by line.
The checks therefore say what they checked, what they expected and what came back in
their messages; that message is what the student reads.

Student code can print what it read (a solution notebook, a hidden check): `RedactLeaks`
removes every output line that holds a secret line (`course.leaks.grader_secrets`) before
the feedback is rendered.
"""

from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Unicode

from course.leaks import grader_secrets, redact_notebook


class RedactLeaks(NbGraderPreprocessor):
    """Remove output lines holding solution, hidden-test or autograder lines.

    The source notebook is ``source`` when set, else the course folder's
    ``source/<assignment>/<notebook>.ipynb`` (what nbgrader's feedback step has); the
    number of lines removed is left in ``resources["redacted"]``.
    """

    source = Unicode("", help="the instructor's notebook whose secret lines to remove").tag(
        config=True)

    def _source(self, resources) -> Path | None:
        if self.source:
            return Path(self.source)
        info = resources.get("nbgrader", {})
        root = self.config.get("CourseDirectory", {}).get("root")
        if not (root and info.get("assignment") and info.get("notebook")):
            return None
        path = Path(root) / "source" / info["assignment"] / f"{info['notebook']}.ipynb"
        return path if path.is_file() else None

    def preprocess(self, nb, resources):
        """Redact the whole notebook against the secrets of its source."""
        resources["redacted"] = redact_notebook(nb, grader_secrets(self._source(resources)))
        return nb, resources


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
FEEDBACK_PREPROCESSORS = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests, ShortTestErrors,
                          RedactLeaks]
