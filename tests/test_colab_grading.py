"""Grading forgives Colab habits (issue 12, item 5): a notebook as Colab saves it, and a
submission that mounts Drive, imports `google.colab`, sets the data variables and passes a
Drive path to `locate`, score exactly like the clean notebook, with and without the sandbox.

The grading kernel finds a harmless stand-in for `google.colab` (autograder/colab_standin),
importable but not imported in advance, so the set-up cell (which installs the bundle when
``"google.colab" in sys.modules``) stays off under grading.
"""

import nbformat
import pandas as pd
import pytest

from course.cli import main
from course.config import load
from course.sandbox import SandboxError, resolve
from tests.colab_saved import colab_saved
from tests.toy_course import write_toy_course

pytestmark = pytest.mark.slow  # grading round trips

PROBE = ("import importlib.util, sys\n"
         "print('preimported:', 'google.colab' in sys.modules)\n"
         "print('importable:', importlib.util.find_spec('google.colab') is not None)")
# Colab habits at the top of the solution cells, where an ImportError (no google.colab) or
# a FileNotFoundError (no Drive) would stop the cell before the student's function exists.
DRIVE = ("import os\n"
         "from google.colab import drive, files, userdata\n"
         "drive.mount('/content/drive')\n"
         "os.environ['RSNA_PNEUMONIA_DIR'] = '/content/drive/MyDrive/rsna'\n"
         "os.environ['CSPINE_H5'] = '/content/drive/MyDrive/cspine.h5'\n"
         "files.download('toy.ipynb')\n"
         "try:\n"
         "    userdata.get('KAGGLE_KEY')\n"
         "except userdata.SecretNotFoundError:\n"
         "    print('no Kaggle key')\n")
LOCATE = ("from helpers.data import locate\n"
          "source = locate('cspine', '/content/drive/MyDrive/cspine.h5')\n")


def _toy_course(root, backend):
    """The toy course, its set-up cell moved to the top as in the real notebooks, released."""
    root = write_toy_course(root)
    toml = root / "course" / "course.toml"
    # `locate` imports torch and writes the synthetic set: more than the toy's 5 s per cell.
    toml.write_text(toml.read_text().replace("cell_timeout = 5", "cell_timeout = 300")
                    .replace("workers = 1", f'workers = 1\nsandbox = "{backend}"'))
    path = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nb.cells.pop())  # after the title, before the first exercise
    nbformat.write(nb, path)
    assert main(["release", "--root", str(root)]) == 0
    return load(root)


def _with_habits(nb):
    nb = nbformat.from_dict(nb)
    nb.cells.insert(1, nbformat.v4.new_code_cell(PROBE))  # before the set-up cell
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("add", "mul"):
            cell.source = (DRIVE if gid == "add" else LOCATE) + cell.source
    return nb


@pytest.fixture(scope="module", params=["none", "auto"])
def graded(request, tmp_path_factory):
    """Grades and executed notebooks of three students with the same answers: clean, saved
    by Colab ("Copy of toy.ipynb"), and full of Colab habits; per sandbox backend."""
    backend = request.param
    if backend == "auto":
        try:
            resolve("auto")
        except SandboxError as err:
            pytest.skip(f"no grading sandbox on this machine: {err}")
    cfg = _toy_course(tmp_path_factory.mktemp(f"course-{backend}"), backend)
    source = nbformat.read(cfg.source_notebook(cfg.assignments[0]), as_version=4)
    subs = tmp_path_factory.mktemp("submissions")
    (subs / "clean").mkdir()
    nbformat.write(source, subs / "clean" / "toy.ipynb")
    colab_saved(source, subs / "copy" / "Copy of toy.ipynb")
    (subs / "habits").mkdir()
    nbformat.write(_with_habits(source), subs / "habits" / "toy.ipynb")
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:  # the synthetic data of `locate`, not ~/.cache
        mp.setenv("COURSE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        assert main(["grade", "toy", str(subs), "--out", str(out), "--root",
                     str(cfg.root)]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("student_id")
    return table, out


def _executed(out, sid):
    return nbformat.read(out / "work" / sid / "autograded.ipynb", as_version=4)


def test_colab_saved_and_colab_habits_score_like_the_clean_notebook(graded):
    table, _ = graded
    scores = table[["test_add", "test_mul", "total", "status"]]
    assert scores.loc["clean"].tolist() == [2, 3, 5, "graded"], table.loc["clean"].to_dict()
    assert scores.loc["copy"].tolist() == scores.loc["clean"].tolist(), table.to_dict()
    assert scores.loc["habits"].tolist() == scores.loc["clean"].tolist(), table.to_dict()


def test_the_stand_in_is_importable_but_never_preimported(graded):
    """So the set-up cell stays off under grading: it would run %pip in Colab only."""
    _, out = graded
    nb = _executed(out, "habits")
    text = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells]
    assert "preimported: False\nimportable: True" in text[1]
    (setup,) = [c for c in nb.cells if "course-setup" in c.metadata.get("tags", [])]
    assert setup.outputs == [], setup.outputs
    everything = "\n".join(text)
    assert "[grading stand-in for google.colab] drive.mount('/content/drive')" in everything
    assert "no Kaggle key" in everything
    assert "the path '/content/drive/MyDrive/cspine.h5' is ignored" in everything
