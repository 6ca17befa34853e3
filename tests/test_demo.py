import nbformat
import pandas as pd
import pytest
from PIL import Image

from course.cli import main
from tests.toy_course import write_toy_course


def test_demo_runs_offline_and_saves_the_figure(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert main(["demo", "--data-only", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC DATA - pneumonia" in out and "SYNTHETIC DATA - cspine" in out
    assert "pneumonia: SYNTHETIC data at" in out  # print_config names the source
    figure = tmp_path / "demo" / "batches.png"
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.width > 600


@pytest.mark.slow
def test_course_demo_runs_the_whole_course_on_the_toy_course(tmp_path, capsys):
    """The full demo on a two-exercise course: execute, check the release, grade three
    simulated students; the half-done one answered the first exercise (2 of 5 points)."""
    root = write_toy_course(tmp_path / "toy")
    assert main(["release", "--root", str(root)]) == 0
    out = tmp_path / "out"
    assert main(["demo", "--root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "release/ matches source/ and leaks nothing" in printed
    executed = nbformat.read(out / "executed" / "toy.ipynb", as_version=4)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    grades = pd.read_csv(out / "graded" / "toy" / "grades.csv").set_index("student_id")
    assert grades["total"].to_dict() == {"blank": 0.0, "half_done": 2.0, "solution": 5.0}
    assert (grades["status"] == "graded").all()


def test_course_demo_stops_on_a_stale_release(tmp_path):
    root = write_toy_course(tmp_path / "toy")
    assert main(["release", "--root", str(root)]) == 0
    source = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[0].source = "# Adding numbers, edited after the release"
    nbformat.write(nb, source)
    with pytest.raises(SystemExit, match="stale"):
        main(["demo", "--root", str(root), "--out", str(tmp_path / "out")])


def test_course_demo_notebooks_train_afresh_in_their_own_data_folder(tmp_path):
    """The notebooks' data folder is OUT/cache, and a checkpoint an earlier demo left there
    is gone before they run (fit(resume=True) would reload a finished run instead)."""
    root = write_toy_course(tmp_path / "toy")
    # The inserted cell imports helpers (torch): seconds, more on a loaded machine than the
    # toy's 5 s cell limit, which this test is not about.
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("cell_timeout = 5", "cell_timeout = 120"))
    out = tmp_path / "out"
    stale = out / "cache" / "checkpoints" / "toy" / "best.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier demo's model")
    source = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        "import pathlib\n"
        "from helpers.data.sources import cache_dir\n"
        f"assert cache_dir() == pathlib.Path({str(out / 'cache')!r}), cache_dir()\n"
        "assert not (cache_dir() / 'checkpoints' / 'toy' / 'best.pt').exists()"))
    nbformat.write(nb, source)
    # The edited source makes the release stale: the demo stops there, after the notebook
    # ran; a failed assert would have stopped it earlier, naming the cell.
    with pytest.raises(SystemExit, match="stale"):
        main(["demo", "--root", str(root), "--out", str(out)])
    assert not stale.exists()


@pytest.mark.parametrize(("cell", "says"), [
    ("raise ValueError('a broken solution cell')", "raised ValueError: a broken solution cell"),
    ("import time\ntime.sleep(60)", "ran longer than the cell limit of 5 s"),
])
def test_course_demo_names_the_notebook_and_cell_that_stopped_it(tmp_path, cell, says):
    """One paragraph naming notebook, cell and cause, not nbclient's traceback."""
    root = write_toy_course(tmp_path / "toy")  # its cell_timeout is 5 s
    source = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(cell))
    nbformat.write(nb, source)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--root", str(root), "--out", str(out)])
    saved = out / "executed" / "toy.ipynb"
    assert str(stop.value) == (f"{source}: cell 3 of {len(nb.cells)} {says}"
                               + ("" if "ValueError" in says else
                                  " ([grading] cell_timeout in course.toml); a loaded machine "
                                  "is the usual cause: stop other jobs and run the demo again")
                               + f". The executed copy, with the error in it, is {saved}.")
    assert nbformat.read(saved, as_version=4).cells[2].outputs  # the error is in the copy


def test_the_demo_grades_unsandboxed_only_where_no_sandbox_can_run(monkeypatch, capsys):
    """A laptop without bwrap or root still runs `make demo`; `course grade` would stop."""
    import course.sandbox
    from course.config import load
    from course.demo import _sandbox_or_none

    cfg = load()
    monkeypatch.setattr(course.sandbox, "_bwrap_works", lambda: "bwrap is not installed")
    monkeypatch.setattr(course.sandbox, "_unshare_works", lambda: None)
    assert _sandbox_or_none(cfg) is cfg
    monkeypatch.setattr(course.sandbox, "_unshare_works", lambda: "not root")
    assert _sandbox_or_none(cfg).sandbox == "none"
    assert "`course grade` would stop here" in capsys.readouterr().out
    with pytest.raises(course.sandbox.SandboxError, match='sandbox = "none"'):
        course.sandbox.resolve(cfg.sandbox)
