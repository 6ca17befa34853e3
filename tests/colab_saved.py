"""A notebook as Google Colab saves it (*File → Download .ipynb*), for the grading tests.

Written from real Colab-saved notebooks in public repositories (read for this fixture, e.g.
a torchvision DeepLabV3 notebook saved from a Python 3.12 Colab runtime, and the cell
metadata jupytext kept of deforum-art/deforum-stable-diffusion's Colab notebook,
Deforum_Stable_Diffusion.py). What Colab writes, and a clean notebook does not:

* the top level in Colab's order with a two-space indent: ``"nbformat": 4``,
  ``"nbformat_minor": 0`` (so no cell ``id`` fields), ``"metadata"``, ``"cells"``;
* notebook metadata ``{"colab": {"provenance": [], "gpuType": "T4"}, "kernelspec": {"name":
  "python3", "display_name": "Python 3"}, "language_info": {"name": "python"},
  "accelerator": "GPU", "widgets": {"application/vnd.jupyter.widget-state+json": {<model
  id>: {"model_module", "model_module_version", "model_name", "state"}}}}`` (tqdm's bars
  are ipywidgets in Colab: their state is saved);
* Colab's own cell id in ``metadata.id`` (12 characters); on code cells that ran,
  ``metadata.colab`` (``base_uri``, ``height``, ``referenced_widgets``), ``outputId`` (a
  UUID) and ``executionInfo`` (elapsed ms, status, timestamp, user, user_tz);
* the outputs of the last run: stream text, results, and widget views.

Colab keeps metadata it does not know, such as nbgrader's, so the cells stay gradable.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BAR = "4f2c0a8e9b1d4c6f8a3e5b7d9c1e2f30"  # a tqdm bar's model id, as ipywidgets makes them


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _progress_bar() -> dict:
    """The saved state of one ipywidgets progress bar (what tqdm.auto draws in Colab)."""
    return {BAR: {"model_module": "@jupyter-widgets/controls", "model_module_version": "1.5.0",
                  "model_name": "FloatProgressModel",
                  "state": {"_dom_classes": [], "bar_style": "success", "description": "",
                            "layout": "IPY_MODEL_0b9c1d2e3f4a4b5c8d6e7f8091a2b3c4",
                            "max": 10, "min": 0, "orientation": "horizontal", "value": 10}}}


def _code(cell: dict, n: int) -> dict:
    """A code cell as Colab saves it after running: its metadata, an output, a widget."""
    outputs = [{"output_type": "stream", "name": "stdout", "text": [f"ran cell {n}\n"]}]
    colab = {"base_uri": "https://localhost:8080/"}
    if n == 1:
        outputs.append({"output_type": "display_data", "metadata": {}, "data": {
            WIDGET_VIEW: {"model_id": BAR, "version_major": 2, "version_minor": 0},
            "text/plain": ["  0%|          | 0/10 [00:00<?, ?it/s]"]}})
        colab.update(height=49, referenced_widgets=[BAR])
    return {"cell_type": "code", "execution_count": n,
            "metadata": {**cell["metadata"], "colab": colab, "id": f"Xq{n:02d}cWUUaBcD",
                         "outputId": str(uuid.UUID(int=n)),
                         "executionInfo": {"elapsed": 812 * n, "status": "ok",
                                           "timestamp": 1767225600000 + 1000 * n,
                                           "user": {"displayName": "A Student",
                                                    "userId": "12136019235932552125"},
                                           "user_tz": -60}},
            "outputs": outputs, "source": cell["source"]}


def colab_saved(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write ``nb`` to ``path`` as Colab would save it after a run; return ``path``."""
    cells, n = [], 0
    for i, cell in enumerate(nb.cells):
        plain = {"cell_type": cell.cell_type, "metadata": dict(cell.metadata),
                 "source": _lines(cell.source)}
        if cell.cell_type == "code":
            n += 1
            cells.append(_code(plain, n))
        else:
            plain["metadata"]["id"] = f"md{i:02d}WM_tUA8e"
            cells.append(plain)
    saved = {"nbformat": 4, "nbformat_minor": 0,
             "metadata": {"colab": {"provenance": [], "gpuType": "T4"},
                          "kernelspec": {"name": "python3", "display_name": "Python 3"},
                          "language_info": {"name": "python"}, "accelerator": "GPU",
                          "widgets": {WIDGET_STATE: _progress_bar()}},
             "cells": cells}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n")
    return path
