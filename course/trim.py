"""Output trimming for autograde: every text output of the executed notebook cut to a length.

nbgrader's LimitOutput caps the number of lines, not their length: one print of 100 MB
would otherwise travel into the gradebook, the feedback and every later step. The worker
puts TrimLongOutputs after nbgrader's LimitOutput in its autograde preprocessors; each cut
output ends with a marker that `count_trimmed` counts afterwards for the grade row.
"""

from __future__ import annotations

import re

from nbformat import NotebookNode
from nbgrader.converters import Autograde
from nbgrader.preprocessors import LimitOutput, NbGraderPreprocessor
from traitlets import Integer
from traitlets.config import Config

MAX_OUTPUT_CHARS = 100_000  # per output; the scores depend on errors, not on printed text
MARKER = re.compile(r"\n\.\.\. \[[\d,]+ characters of output removed by the grader\]\n\Z")


def _marker(removed: int) -> str:
    return f"\n... [{removed:,} characters of output removed by the grader]\n"


def _texts(output: NotebookNode) -> list[tuple[dict, str]]:
    """(holder, key) of every text an output carries: a stream's text, text/* data."""
    texts = [(output, "text")] if "text" in output else []
    return texts + [(output["data"], k) for k in output.get("data", {}) if k.startswith("text/")]


def _joined(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


class TrimLongOutputs(NbGraderPreprocessor):
    """Cut every text output longer than ``max_chars`` and mark where it was cut."""

    max_chars = Integer(
        MAX_OUTPUT_CHARS,
        help="maximum number of characters kept of each text output",
    ).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        """Trim one cell's text outputs."""
        for out in cell.get("outputs", []):
            for holder, key in _texts(out):
                value = _joined(holder[key])
                if len(value) > self.max_chars:
                    holder[key] = value[:self.max_chars] + _marker(len(value) - self.max_chars)
        return cell, resources


def count_trimmed(nb: NotebookNode, max_chars: int = MAX_OUTPUT_CHARS) -> int:
    """How many outputs of a notebook TrimLongOutputs cut (its marker after max_chars chars)."""
    cut = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for holder, key in _texts(out):
                value = _joined(holder[key])
                found = MARKER.search(value)
                cut += bool(found) and found.start() == max_chars
    return cut


def with_trimming(config: Config, max_chars: int = MAX_OUTPUT_CHARS) -> Config:
    """``config`` with TrimLongOutputs in autograde, right after nbgrader's LimitOutput."""
    steps = list(Autograde.autograde_preprocessors.default())
    steps.insert(steps.index(LimitOutput) + 1, TrimLongOutputs)
    config.Autograde.autograde_preprocessors = steps
    config.TrimLongOutputs.max_chars = max_chars
    return config
