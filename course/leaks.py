"""The leak guard: no solution line and no hidden test may reach what students get.

A *secret* line is one inside a solution region (``### BEGIN/END SOLUTION``, or a whole
solution cell without markers, which nbgrader replaces entirely) or a hidden-test region
(``### BEGIN/END HIDDEN TESTS``) of a source notebook, unless the same line also stands
outside those regions (then it is public anyway, e.g. ``import torch``). Very short lines
(``return x``) are skipped: they are no answer on their own and would match by chance.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbgrader.utils import is_solution

MARKERS = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
}
MIN_CHARS = 10
AUTOGRADER_IMPORT = re.compile(r"^\s*(from|import)\s+autograder\b", re.M)


def _split(cell) -> tuple[list[str], list[str]]:
    """(secret lines, public lines) of one source cell."""
    lines = cell.source.splitlines()
    marked = any(m in cell.source for pair in MARKERS.values() for m in pair)
    if is_solution(cell) and not marked:
        return lines, []
    secret, public, inside = [], [], False
    for line in lines:
        stripped = line.strip()
        if stripped in (MARKERS["solution"][0], MARKERS["hidden"][0]):
            inside = True
        elif stripped in (MARKERS["solution"][1], MARKERS["hidden"][1]):
            inside = False
        else:
            (secret if inside else public).append(line)
    return secret, public


def secret_lines(source: Path) -> set[str]:
    """The distinctive solution and hidden-test lines of a source notebook."""
    nb = nbformat.read(source, as_version=4)
    secret, public = set(), set()
    for cell in nb.cells:
        s, p = _split(cell)
        secret.update(line.strip() for line in s)
        public.update(line.strip() for line in p)
    return {line for line in secret - public if len(line) >= MIN_CHARS}


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
