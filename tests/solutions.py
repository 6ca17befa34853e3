"""Shared by the hidden-check tests: run a notebook's solution cells into a namespace."""

from __future__ import annotations

import nbformat
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: the machine's 2 cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def solution_namespace(notebook, names: dict) -> dict:
    """Execute the notebook's solution cells with the names the notebook imports."""
    ns = dict(names)
    for cell in nbformat.read(notebook, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            exec(cell.source, ns)  # noqa: S102 - our own notebook
    return ns
