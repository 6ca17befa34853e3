"""The grading sandbox's settings and the feedback leak guard, without grading anything
(the sandbox under attack: tests/test_grade_scale.py::test_sandboxed_hostile_submissions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from traitlets.config import Config

import autograder
from course import sandbox
from course.config import CourseConfigError, load
from course.feedback import FEEDBACK_PREPROCESSORS, RedactLeaks
from course.leaks import REDACTED, autograder_lines
from tests.toy_course import ADD_SOLUTION, write_toy_course


@pytest.fixture
def toy(tmp_path):
    return write_toy_course(tmp_path / "course")


def _set(root, line):
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("workers = 1", f"workers = 1\n{line}"))


def test_the_sandbox_setting_defaults_to_auto_and_is_checked(toy, tmp_path):
    assert load(toy).sandbox == "auto"
    _set(toy, 'sandbox = "none"')
    assert load(toy).sandbox == "none"
    other = write_toy_course(tmp_path / "other")
    _set(other, 'sandbox = "docker"')
    with pytest.raises(CourseConfigError, match='sandbox.*"auto", "unshare", "bwrap", "none"'):
        load(other)


def test_auto_fails_loudly_where_no_sandbox_can_run(monkeypatch):
    monkeypatch.setattr(sandbox.sys, "platform", "darwin")
    with pytest.raises(sandbox.SandboxError, match=r'sandbox = "none"'):
        sandbox.resolve("auto")
    assert sandbox.resolve("none") == "none"
    assert sandbox.row_note("none") == "not sandboxed"
    assert sandbox.row_note("unshare") == "sandbox=unshare"


def test_the_kernel_environment_keeps_no_token():
    env = {"COURSE_TEST_TOKEN": "t0k3n", "KAGGLE_KEY": "k", "GITHUB_TOKEN": "g",
           "COURSE_PROFILE": "full", "OMP_NUM_THREADS": "2", "NBGRADER_EXECUTION": "autograde",
           "JPY_PARENT_PID": "1", "PATH": "/secret/bin", "HOME": "/root"}
    kept = sandbox.kernel_env(env, "/scratch")
    assert kept["HOME"] == kept["TMPDIR"] == "/scratch"
    assert kept["OMP_NUM_THREADS"] == "2" and kept["NBGRADER_EXECUTION"] == "autograde"
    assert not {"COURSE_TEST_TOKEN", "KAGGLE_KEY", "GITHUB_TOKEN", "COURSE_PROFILE",
                "JPY_PARENT_PID"} & set(kept)
    assert "/secret/bin" not in kept["PATH"]


def test_the_kernel_sees_no_home_no_tmp_and_no_repository():
    from course.config import REPO_ROOT

    hidden = sandbox._hidden(["/srv/out"])
    assert {"/root", "/tmp", "/srv/out"} <= set(hidden) or "/srv" in hidden
    assert str(REPO_ROOT) in hidden or any(str(REPO_ROOT).startswith(h + "/") for h in hidden)
    assert not {"/usr", "/etc", "/proc", "/"} & set(hidden)


def _leaky_notebook(source_text):
    """A graded notebook whose outputs print the source notebook, as text and as JSON."""
    raw = json.dumps({"source": ["def add(a, b):\n", f"{ADD_SOLUTION.splitlines()[0]}\n"]},
                     indent=1)
    return new_notebook(cells=[new_code_cell("print(open(path).read())", outputs=[
        new_output("stream", name="stdout", text=source_text + "\nmy own line\n"),
        new_output("stream", name="stdout", text=raw),
        new_output("error", ename="ValueError", evalue="x",
                   traceback=["\x1b[0;31m    assert add(20, 22) == 42\x1b[0m", "ValueError: x"]),
        new_output("execute_result", execution_count=1,
                   data={"text/plain": "4", "text/html": "<pre>a &amp; b</pre>"}),
    ])])


def test_feedback_redacts_solution_hidden_test_and_autograder_lines(toy):
    source = toy / "source" / "toy" / "toy.ipynb"
    checks = sorted(autograder_lines())[0]
    nb = _leaky_notebook(f"def add(a, b):\n{ADD_SOLUTION}\n{checks}")
    assert RedactLeaks in FEEDBACK_PREPROCESSORS
    nb, resources = RedactLeaks(config=Config({"RedactLeaks": {"source": str(source)}})
                                ).preprocess(nb, {})
    text, raw, error, result = nb.cells[0].outputs
    assert "total_of_both" not in text.text and checks not in text.text
    assert REDACTED in text.text and "my own line" in text.text and "def add(a, b):" in text.text
    assert "total_of_both" not in raw.text  # the .ipynb's JSON, printed raw
    assert error.traceback == [REDACTED, "ValueError: x"]  # a hidden test, coloured
    assert result.data["text/plain"] == "4"
    assert resources["redacted"] == 5


def test_redaction_finds_the_source_from_the_course_folder(toy):
    nb = _leaky_notebook(ADD_SOLUTION)
    config = Config({"CourseDirectory": {"root": str(toy)}})
    resources = {"nbgrader": {"assignment": "toy", "notebook": "toy"}}
    nb, resources = RedactLeaks(config=config).preprocess(nb, resources)
    assert "total_of_both" not in nbformat.writes(nb)


def test_the_colab_stand_in_is_on_every_grading_kernels_path_and_does_nothing(tmp_path):
    standin = sandbox.colab_standin()
    # Inside autograder/: bound into the sandbox with it, never copied into the bundle.
    assert Path(standin).parent == Path(autograder.__file__).parent
    assert standin in sandbox.kernel_env({}, "/scratch")["PYTHONPATH"].split(os.pathsep)
    probe = ("import sys\nprint('google.colab' in sys.modules)\n"
             "from google.colab import drive, files, userdata\n"
             "drive.mount('/content/drive')\nprint(files.upload())\n"
             "try:\n    userdata.get('KAGGLE_KEY')\n"
             "except userdata.SecretNotFoundError as err:\n    print('no secret', err)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": standin, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    say = "[grading stand-in for google.colab] "
    assert done.stdout.splitlines() == [
        "False",  # importable, not preimported: the set-up cell stays off under grading
        say + "drive.mount('/content/drive') does nothing while grading: there is no Drive here",
        say + "files.upload() returns no files while grading", "{}",
        say + "userdata.get('KAGGLE_KEY'): no secrets while grading", "no secret KAGGLE_KEY"]
    assert list(tmp_path.iterdir()) == []  # nothing written where Drive would be
