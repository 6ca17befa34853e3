"""Shared by the hidden-check tests: run a notebook's solution cells into a namespace."""

from __future__ import annotations

import nbformat


def solution_namespace(notebook, names: dict) -> dict:
    """Execute the notebook's solution cells with the names the notebook imports."""
    ns = dict(names)
    for cell in nbformat.read(notebook, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            exec(cell.source, ns)  # noqa: S102 - our own notebook
    return ns
