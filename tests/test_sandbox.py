"""The grading sandbox's settings and the feedback leak guard, without grading anything
(the sandbox under attack: tests/test_grade_scale.py::test_sandboxed_hostile_submissions)."""

import json
import os
import subprocess
import sys
import time
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
    assert sandbox.row_note("bwrap") == "sandbox=bwrap"


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


# Runs inside the sandbox (standard library only); prints what it could do, as JSON.
PROBE = r"""
import json, os, socket, subprocess, sys, time
argv = json.loads(sys.argv[1])
seen = {"uid": os.getuid(), "env": sorted(os.environ), "read": {}, "root_home": None}
for path in argv["secrets"]:
    try:
        open(path).read()
        seen["read"][path] = "REACHED"
    except OSError as err:
        seen["read"][path] = type(err).__name__
seen["root_home"] = sorted(os.listdir("/root")) if os.path.isdir("/root") else None
seen["home"] = sorted(os.listdir("/home")) if os.path.isdir("/home") else None
try:
    socket.create_connection(("127.0.0.1", argv["port"]), timeout=3)
    seen["net"] = "REACHED"
except OSError as err:
    seen["net"] = type(err).__name__
try:
    with open("big", "wb") as f:
        for _ in range(argv["scratch_mb"] + 1):
            f.write(b"x" * 1024**2)
            f.flush()
    seen["disk"] = "unbounded"
except OSError as err:
    seen["disk"] = type(err).__name__
subprocess.Popen(["sleep", "31337"], start_new_session=True)  # left behind
kids = 0
while kids < 2000:  # a fork bomb's first wave: where does the kernel refuse?
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        kids += 1
    except OSError:
        break
seen["forks"] = kids
print(json.dumps(seen))
"""


def _sandboxed_probe(backend, user, tmp_path):
    """Run PROBE in ``backend``'s sandbox, started by ``user``; what it saw."""
    import socket
    import tempfile

    from course.config import REPO_ROOT
    from tests.unprivileged import as_nobody, give_to_nobody

    try:
        sandbox.resolve(backend)
    except sandbox.SandboxError as err:
        if backend == "bwrap" and os.environ.get("CI"):
            raise  # CI installs bubblewrap (course/bootstrap.py): it must be tested there
        pytest.skip(str(err))
    if user == "nobody" and os.geteuid() != 0:
        pytest.skip("becoming nobody needs root")
    base = Path(tempfile.mkdtemp(prefix="course-probe-"))  # pytest's folders are 0700
    listener = socket.socket()
    try:
        os.chmod(base, 0o755)
        home, out = base / "home", base / "out"
        (out / "s1").mkdir(parents=True)
        (out / "s1" / "result.json").write_text("{}")
        home.mkdir()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        secrets = [str(REPO_ROOT / "README.md"), str(out / "s1" / "result.json"),
                   "/root/.bashrc", "/etc/shadow", "/etc/passwd"]
        probe = [sys.executable, "-c", PROBE, json.dumps(
            {"secrets": secrets, "port": listener.getsockname()[1], "scratch_mb": 8})]
        drive = ("import json, os, sys\nfrom course import sandbox\n"
                 "home, out, probe, backend = json.loads(sys.argv[1])\n"
                 "cmd = sandbox.sandbox_command(probe, home, [out], 8, backend=backend)\n"
                 "env = sandbox.kernel_env(dict(os.environ), home)\n"
                 "os.execvpe(cmd[0], cmd, env)\n")
        cmd = [sys.executable, "-c", drive, json.dumps([str(home), str(out), probe, backend])]
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT),
               "COURSE_TEST_TOKEN": "t0k3n", "HOME": str(base)}
        if user == "nobody":
            give_to_nobody(base)
            done = as_nobody(cmd, base, [REPO_ROOT], env, capture_output=True, text=True,
                             timeout=120)
        else:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1]), secrets
    finally:
        listener.close()
        subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.mark.parametrize("backend, user", [("bwrap", "root"), ("bwrap", "nobody"),
                                           ("unshare", "root")])
def test_the_sandbox_holds_for_each_backend_and_user(backend, user, tmp_path):
    """No network, nothing of the repository, OUT, another student or a home to read, a
    scrubbed environment, a size-capped folder, a process limit and nothing left running
    afterwards: for each backend that can run here, started by root and by nobody."""
    import psutil

    if user == "root" and os.geteuid() != 0:
        pytest.skip("this process is not root")
    seen, secrets = _sandboxed_probe(backend, user, tmp_path)
    assert seen["uid"] not in (0, os.getuid())
    assert seen["net"] != "REACHED"
    reached = {p: r for p, r in seen["read"].items() if r == "REACHED" and p != "/etc/passwd"}
    assert not reached, reached
    assert seen["root_home"] in (None, [], [".pyenv"]) and seen["home"] in (None, [])
    assert set(seen["env"]) <= {*sandbox.KEEP_ENV, *sandbox.SET_ENV, "PWD"}, seen["env"]
    assert seen["disk"] == "OSError"  # ENOSPC: 8 MB of scratch
    assert 100 < seen["forks"] < sandbox.NPROC
    deadline = time.monotonic() + 10
    while any("31337" in " ".join(p.info["cmdline"] or [])
              for p in psutil.process_iter(["cmdline"])):
        assert time.monotonic() < deadline, "a process outlived its sandbox"
        time.sleep(0.2)


def test_unshare_needs_root_and_bwrap_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    assert "needs root" in sandbox._unshare_works()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    why = sandbox._bwrap_works()
    assert "not installed" in why and "apt-get install bubblewrap" in why
    with pytest.raises(sandbox.SandboxError, match='sandbox = "bwrap" cannot run.*"none"'):
        sandbox.resolve("bwrap")
