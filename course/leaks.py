"""The leak guard: no solution line and no hidden test may reach what students get.

A *secret* line is one inside a solution region (``### BEGIN/END SOLUTION``, or a whole
solution cell without markers, which nbgrader replaces entirely) or a hidden-test region
(``### BEGIN/END HIDDEN TESTS``) of a source notebook, unless the same line also stands
outside those regions (then it is public anyway, e.g. ``import torch``).

Lines too common to mean anything are skipped: they are no answer on their own and turn up
in any Python file. A line is too common when its names and literals, leaving out Python's
keywords and builtins, add up to fewer than ``MIN_CHARS`` characters: ``return model``,
``return float("nan")``, ``model.eval()``, ``else:``. A line such as ``return
total_of_both`` or ``lo, hi = float(image.min()), float(image.max())`` still counts.
"""

from __future__ import annotations

import builtins
import functools
import io
import keyword
import re
import tokenize
from pathlib import Path

import nbformat
from nbgrader.utils import is_solution

MARKERS = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
}
MIN_CHARS = 10  # of a line's own names and literals; see distinctive()
COMMON_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins))
AUTOGRADER_IMPORT = re.compile(r"^\s*(from|import)\s+autograder\b", re.M)


def _split(cell) -> dict[str, list[str]]:
    """The lines of one source cell by region: "solution", "hidden" and "public"."""
    lines = cell.source.splitlines()
    marked = any(m in cell.source for pair in MARKERS.values() for m in pair)
    if is_solution(cell) and not marked:
        return {"solution": lines, "hidden": [], "public": []}
    regions, inside = {"solution": [], "hidden": [], "public": []}, "public"
    starts = {pair[0]: name for name, pair in MARKERS.items()}
    ends = {pair[1]: name for name, pair in MARKERS.items()}
    for line in lines:
        stripped = line.strip()
        if stripped in starts:
            inside = starts[stripped]
        elif stripped in ends:
            inside = "public"
        else:
            regions[inside].append(line)
    return regions


def hidden_test_lines(cell) -> list[str]:
    """The lines of a source cell's hidden-test regions."""
    return _split(cell)["hidden"]


def distinctive(line: str) -> bool:
    """Whether a line says enough to be an answer: its names and literals other than
    keywords and builtins hold at least MIN_CHARS characters."""
    words = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip()).readline):
            if tok.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING):
                words.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a line cut from a longer statement: the tokens read so far count
    return sum(len(w) for w in words if w not in COMMON_NAMES) >= MIN_CHARS


def secret_lines(source: Path) -> set[str]:
    """The solution and hidden-test lines of a source notebook that no student file may hold:
    distinctive solution lines, and hidden-test lines of at least MIN_CHARS characters (a
    hidden test is never an idiom that helpers would share)."""
    nb = nbformat.read(source, as_version=4)
    secret, public = set(), set()
    for cell in nb.cells:
        regions = _split(cell)
        secret.update(x.strip() for x in regions["solution"] if distinctive(x))
        secret.update(x.strip() for x in regions["hidden"] if len(x.strip()) >= MIN_CHARS)
        public.update(x.strip() for x in regions["public"])
    return secret - public


def _notebook_lines(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    lines = []
    for cell in nb.cells:
        lines += cell.source.splitlines()
        for out in cell.get("outputs", []):
            lines += str(out.get("text", "")).splitlines()
            lines += str(out.get("data", {}).get("text/plain", "")).splitlines()
    return lines


def find_leaks(source: Path, student_notebook: Path) -> list[str]:
    """Each secret line of ``source`` found in ``student_notebook``, plus autograder imports."""
    secrets = secret_lines(source)
    lines = _notebook_lines(student_notebook)
    leaks = [f"{student_notebook}: leaks {line.strip()!r}" for line in lines
             if line.strip() in secrets]
    leaks += [f"{student_notebook}: imports autograder: {line.strip()!r}" for line in lines
              if AUTOGRADER_IMPORT.match(line)]
    return leaks


# -- The feedback side: redact secret lines from the outputs a student gets back. ----------

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
JSON_LINE = re.compile(r'^\s*"(.*?)(?:\\n)?",?\s*$')  # a line of an .ipynb file's source
REDACTED = "[line removed by the grader: it holds solution, hidden-test or autograder text]"


@functools.cache
def autograder_lines() -> frozenset[str]:
    """The distinctive lines of the hidden checks' sources (``autograder/*.py``), read once
    per process (the feedback step asks for them once per student)."""
    import autograder

    lines = set()
    for path in sorted(Path(autograder.__file__).parent.glob("*.py")):
        lines.update(x.strip() for x in path.read_text().splitlines() if distinctive(x))
    return frozenset(lines)


def grader_secrets(source: Path | None) -> set[str]:
    """Every line no output may carry back to a student: the secret lines of the source
    notebook (when given) and the distinctive lines of autograder/."""
    return (secret_lines(source) if source is not None else set()) | autograder_lines()


def _forms(line: str) -> set[str]:
    """The ways a printed line may hold a source line: as is, coloured, HTML-escaped, or as
    a string of an .ipynb file's JSON."""
    import html
    import json

    plain = ANSI.sub("", line).strip()
    forms = {plain, html.unescape(plain).strip()}
    found = JSON_LINE.match(plain)
    if found:
        try:
            forms.add(json.loads(f'"{found.group(1)}"').strip())
        except ValueError:
            pass
    return forms


def _redact_text(text: str, secrets: set[str]) -> tuple[str, int]:
    lines = text.split("\n")
    hits = 0
    for i, line in enumerate(lines):
        if line.strip() and _forms(line) & secrets:
            lines[i], hits = REDACTED, hits + 1
    return "\n".join(lines), hits


def redact_outputs(cell, secrets: set[str]) -> int:
    """Replace every output line of ``cell`` that holds a secret line; how many were."""
    hits = 0
    for out in cell.get("outputs", []):
        holders = [(out, "text")] if "text" in out else []
        holders += [(out["data"], k) for k in out.get("data", {}) if k.startswith("text/")]
        holders += [(out, "evalue")] if "evalue" in out else []
        for holder, key in holders:
            value = holder[key]
            text = "".join(value) if isinstance(value, list) else str(value)
            holder[key], n = _redact_text(text, secrets)
            hits += n
        if "traceback" in out:
            kept = []
            for frame in out["traceback"]:
                frame, n = _redact_text(frame, secrets)
                kept.append(frame)
                hits += n
            out["traceback"] = kept
    return hits


def redact_notebook(nb, secrets: set[str]) -> int:
    """`redact_outputs` over every cell of a notebook; the number of lines removed."""
    return sum(redact_outputs(cell, secrets) for cell in nb.cells)
