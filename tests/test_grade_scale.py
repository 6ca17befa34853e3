"""`course grade` at scale and under attack, on the toy course: parallel workers agree with
one worker, re-runs grade only what changed, a killed run loses nothing, shards merge into
one gradebook, and hostile submissions cost nobody else a point."""

import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbgrader.api import Gradebook

from course.cli import main
from course.config import load
from course.grade import grade, in_shard
from course.gradebook import merge
from course.pool import worker_env
from tests.toy_course import ADD_SOLUTION, MUL_SOLUTION, STUB, write_toy_course


def _put(folder, nb, name="toy.ipynb"):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def _with_cells(nb, sources, at=3):
    """A copy of a student notebook with cells inserted before cell ``at`` (the add test)."""
    nb = nbformat.from_dict(nb)
    for source in reversed(sources):
        nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The toy course with a 40 s notebook limit, a 3 GB memory cap and 128 MB of sandbox
    scratch; its notebooks
    (a release notebook: header cell, title, add, add test, mul, mul test)."""
    root = write_toy_course(tmp_path_factory.mktemp("course"))
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("notebook_timeout = 300", "notebook_timeout = 40")
                    .replace("workers = 1", "workers = 2\nmemory_gb = 3\nscratch_mb = 128"))
    assert main(["release", "--root", str(root)]) == 0
    cfg = load(root)
    source = nbformat.read(cfg.source_notebook(cfg.assignments[0]), as_version=4)
    blank = nbformat.read(cfg.release_notebook(cfg.assignments[0]), as_version=4)
    half = nbformat.from_dict(blank)
    half.cells[2].source = half.cells[2].source.replace(STUB, ADD_SOLUTION.strip())
    return cfg, source, blank, half


@pytest.fixture(scope="module")
def honest(course, tmp_path_factory):
    """Six honest students: two full, two half, two blank."""
    _, source, blank, half = course
    subs = tmp_path_factory.mktemp("honest")
    for sid, nb in (("s1", source), ("s2", half), ("s3", blank), ("s4", source), ("s5", half),
                    ("s6", blank)):
        _put(subs / sid, nb)
    return subs, {"s1": 5, "s2": 2, "s3": 0, "s4": 5, "s5": 2, "s6": 0}


def _totals(out):
    return pd.read_csv(out / "grades.csv").set_index("student_id")["total"].to_dict()


def _stamps(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "work").glob("*/result.json")}


@pytest.mark.slow
def test_two_workers_grade_exactly_like_one(course, honest, tmp_path):
    cfg, *_ = course
    subs, expected = honest
    a = cfg.assignments[0]
    one = grade(cfg, a, subs, tmp_path / "one", progress=False, workers=1)
    two = grade(cfg, a, subs, tmp_path / "two", progress=False, workers=2)
    assert one.equals(two)
    assert _totals(tmp_path / "two") == expected  # no row lost, none duplicated
    with Gradebook(f"sqlite:///{tmp_path / 'two' / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == sorted(expected)
        assert {s: gb.find_submission(a.id, s).score for s in expected} == expected


@pytest.mark.slow
def test_a_rerun_grades_only_new_or_changed_submissions(course, honest, tmp_path):
    cfg, source, *_ = course
    subs, expected = honest
    a = cfg.assignments[0]
    out = tmp_path / "out"
    grade(cfg, a, subs, out, progress=False)
    first = _stamps(out)
    grade(cfg, a, subs, out, progress=False)
    assert _stamps(out) == first  # nothing re-run
    changed = subs.parent / "changed"
    for sid in expected:
        _put(changed / sid, nbformat.read(subs / sid / "toy.ipynb", as_version=4))
    _put(changed / "s3", source)  # s3 finished the work
    grade(cfg, a, changed, out, progress=False)
    again = _stamps(out)
    assert [s for s in again if again[s] != first[s]] == ["s3"]
    assert _totals(out) == {**expected, "s3": 5}
    grade(cfg, a, changed, out, progress=False, force=True)
    assert all(_stamps(out)[s] != again[s] for s in again)


@pytest.mark.slow
def test_a_run_killed_halfway_loses_nothing(course, honest, tmp_path):
    """A worker killed before it wrote result.json leaves no result; the next run grades
    exactly those students and keeps the others'."""
    cfg, *_ = course
    subs, expected = honest
    a = cfg.assignments[0]
    out = tmp_path / "out"
    grade(cfg, a, subs, out, progress=False)
    for sid in ("s2", "s5"):  # as if the machine died while these two ran
        (out / "work" / sid / "result.json").unlink()
    before = _stamps(out)
    grade(cfg, a, subs, out, progress=False)
    after = _stamps(out)
    assert sorted(s for s in after if after[s] != before.get(s)) == ["s2", "s5"]
    assert _totals(out) == expected


@pytest.mark.slow
def test_shards_merge_into_one_gradebook(course, honest, tmp_path):
    cfg, *_ = course
    subs, expected = honest
    a = cfg.assignments[0]
    assert {sid for sid in expected if in_shard(sid, (1, 2))} not in (set(), set(expected))
    for i in (1, 2):
        assert main(["grade", "toy", str(subs), "--out", str(tmp_path / f"shard{i}"),
                     "--shard", f"{i}/2", "--root", str(cfg.root)]) == 0
    parts = [set(_totals(tmp_path / f"shard{i}")) for i in (1, 2)]
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(expected)
    assert main(["grade-merge", "toy", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                 "--out", str(tmp_path / "merged"), "--root", str(cfg.root)]) == 0
    assert _totals(tmp_path / "merged") == expected
    assert sorted(p.stem for p in (tmp_path / "merged" / "feedback").glob("*.html")) == sorted(
        expected)
    with pytest.raises(RuntimeError, match="must not overlap"):
        merge(cfg, a, [tmp_path / "shard1", tmp_path / "shard1"], tmp_path / "bad")
    with pytest.raises(ValueError, match="I/N"):
        main(["grade", "toy", str(subs), "--out", str(tmp_path / "x"), "--shard", "3",
              "--root", str(cfg.root)])


SNOOP = """import json, pathlib
for p in pathlib.Path("../../..").rglob("*.ipynb"):  # the grading folder, from the notebook
    for c in json.loads(p.read_text()).get("cells", []):
        text = "".join(c["source"])
        if "BEGIN SOLUTION" in text and "rglob" not in text:  # not this cell itself
            exec(text)  # a solution found on disk would answer both exercises
"""

HOSTILE = {
    # student id: (cells inserted before the add test, what the row's reason must say)
    "raises": (["raise ValueError('my bug')"], "cell 4: ValueError"),
    "loops": (["while True:\n    pass"], "CellTimeoutError"),
    "exits": (["import sys\nsys.exit('bye')"], "SystemExit"),
    "hard_exit": (["import os\nos._exit(3)"], "kernel died"),
    "memory_bomb": (["hog = bytearray(6 * 1024**3)"], "MemoryError"),
    "loud": (["print('x' * 100_000_000)"], "trimmed"),
    "sleeper": (["import time\ntime.sleep(4)"] * 12, "time limit"),  # 48 s > 40 s
    "snoop": ([SNOOP], None),
    "fake_pass": (["print('visible check passed\\nScore: 5.0 / 5.0')"], None),
    "patched_assert": (["import builtins\nbuiltins.AssertionError = type('Never', "
                        "(Exception,), {})"], None),
}


@pytest.mark.slow
def test_hostile_submissions_cost_nobody_else_a_point(course, honest, tmp_path):
    """Graded together with honest students: every honest score is exact, every hostile one
    is >= 0 with its reason, and the gradebook opens cleanly afterwards."""
    cfg, source, blank, half = course
    subs, expected = honest
    mixed = tmp_path / "mixed"
    for sid in expected:
        _put(mixed / sid, nbformat.read(subs / sid / "toy.ipynb", as_version=4))
    for sid, (cells, _) in HOSTILE.items():
        _put(mixed / sid, _with_cells(half, cells))
    edited = nbformat.from_dict(half)
    edited.cells[3].source = "pass"
    _put(mixed / "edited_test", edited)
    deleted = nbformat.from_dict(half)
    del deleted.cells[5]  # the mul test: put back, and failed (mul is not written)
    _put(mixed / "deleted_test", deleted)
    (mixed / "bad_json").mkdir()
    (mixed / "bad_json" / "toy.ipynb").write_text("{ not json")
    _put(mixed / "renamed", half, name="my homework (final).ipynb")
    other = nbformat.from_dict(half)
    other.cells = [nbformat.v4.new_code_cell("print('another assignment')")]
    _put(mixed / "other_assignment", other)
    wrong_answer = nbformat.from_dict(blank)
    wrong_answer.cells[2].source = wrong_answer.cells[2].source.replace(
        STUB, ADD_SOLUTION.strip().replace("a + b", "a + b + 1"))
    wrong_answer.cells[4].source = wrong_answer.cells[4].source.replace(STUB, MUL_SOLUTION.strip())
    _put(mixed / "wrong_add", wrong_answer)

    out = tmp_path / "out"
    assert main(["grade", "toy", str(mixed), "--out", str(out), "--root", str(cfg.root)]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("student_id")
    for sid, points in expected.items():
        assert table.loc[sid, "total"] == points, sid
    assert (table["total"] >= 0).all() and table.index.is_unique
    for sid, (_, says) in HOSTILE.items():
        assert table.loc[sid, "total"] <= 2, (sid, table.loc[sid].to_dict())
        if says:
            assert says in table.loc[sid, "reason"], (sid, table.loc[sid, "reason"])
    assert table.loc["sleeper", "status"] == "failed"
    assert table.loc["memory_bomb", "total"] == 2  # the bomb cell fails, the rest is graded
    assert table.loc["edited_test", "total"] == 2 and table.loc["renamed", "total"] == 2
    assert table.loc["deleted_test", "total"] == 2 and table.loc["raises", "total"] == 2
    assert table.loc["loops", "status"] == "partial" and table.loc["loops", "total"] == 2
    # what ran cleanly despite the attempt scores exactly what an honest half-done gets
    for sid in ("fake_pass", "patched_assert", "snoop"):
        assert table.loc[sid, "total"] == 2 and table.loc[sid, "status"] == "graded", sid
    assert table.loc["wrong_add", "total"] == 3 and table.loc["other_assignment", "total"] == 0
    assert table.loc["bad_json", "status"] == "failed" and "not a valid notebook" in table.loc[
        "bad_json", "reason"]
    assert os.path.getsize(out / "work" / "loud" / "autograded.ipynb") < 2_000_000
    result = json.loads((out / "work" / "sleeper" / "result.json").read_text())
    assert result["notebook"] is None
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        graded = {s.id for s in gb.students}
        assert set(expected) <= graded and "bad_json" not in graded


def test_workers_share_the_cores_out(monkeypatch):
    """N workers each running torch with one thread per core would oversubscribe the
    machine (bench/README.md: 0.95x with 2 workers on 2 cores before this)."""
    cores = len(os.sched_getaffinity(0))
    assert worker_env(cores)["OMP_NUM_THREADS"] == "1"
    assert worker_env(1)["OMP_NUM_THREADS"] == str(cores)
    # A Slurm job or a container gets some of the node's CPUs: count those, not the node's.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert worker_env(1)["OMP_NUM_THREADS"] == "3"


def test_the_instructors_profile_and_data_do_not_reach_grading(monkeypatch):
    for var, value in (("COURSE_PROFILE", "full"), ("CSPINE_H5", "/data/cspine.h5"),
                       ("RSNA_PNEUMONIA_DIR", "/data/rsna")):
        monkeypatch.setenv(var, value)
    env = worker_env(2)
    assert not {"COURSE_PROFILE", "CSPINE_H5", "RSNA_PNEUMONIA_DIR"} & set(env)
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.slow
def test_a_changed_grading_input_regrades_everyone_and_says_why(course, honest, tmp_path,
                                                                capsys):
    cfg, *_ = course
    subs, expected = honest
    a = cfg.assignments[0]
    out = tmp_path / "out"
    grade(cfg, a, subs, out, progress=False)
    first = _stamps(out)
    grade(cfg, a, subs, out, progress=False, students={"s2"})  # one student, on request
    again = _stamps(out)
    assert [s for s in again if again[s] != first[s]] == ["s2"]
    root = shutil.copytree(cfg.root, tmp_path / "course")  # the limits change
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("cell_timeout = 5", "cell_timeout = 6"))
    capsys.readouterr()
    grade(load(root), a, subs, out)
    assert all(_stamps(out)[s] != again[s] for s in again)
    assert "regraded because the limits changed since the last run" in capsys.readouterr().out
    assert _totals(out) == expected


def _bomb():
    # Every process forks for ever, sleeping when the kernel refuses; each child starts a
    # session of its own, out of reach of the interrupt jupyter_client sends the kernel's
    # process group at the cell time limit: the sandbox's PID 1 must end them.
    return ("import os, time\nfirst = os.getpid()\ntry:\n    while True:\n        try:\n"
            "            if os.fork() == 0:\n                os.setsid()\n"
            "        except OSError:\n            time.sleep(0.05)\n"
            "finally:\n    if os.getpid() != first:\n        os._exit(0)")


# Run after the bomb: what is still alive in the sandbox's PID namespace (its PID 1 and
# the kernel, once the interrupt has ended everything the timed-out cell started).
LIVE_PROCESSES = ("import psutil\nprint('live processes:', sum(p.info['status'] != 'zombie' "
                  "for p in psutil.process_iter(['status'])))")


def _sandbox_attacks(cfg, out, port):
    """Student id -> (cells inserted before the add test, what the row's reason must say)."""
    from course.config import REPO_ROOT

    # Each path is tried on its own; what happened is printed and checked after the run.
    probe = ("import pathlib\nfor p in [{paths}]:\n    try:\n        {action}\n"
             "        print('REACHED', p)\n    except OSError as err:\n"
             "        print('BLOCKED', type(err).__name__, p)")
    theirs = [out / "work" / "s1" / "autograded.ipynb", out / "work" / "s1" / "result.json"]
    targets = [cfg.source_notebook(cfg.assignments[0]), REPO_ROOT / "README.md",
               out / "gradebook.db", *theirs]

    def paths(ps):
        return ", ".join(repr(str(p)) for p in ps)

    return {
        "reads_source": ([probe.format(paths=paths(targets),
                                       action="print(pathlib.Path(p).read_text())")], None),
        "overwrites_others": ([probe.format(paths=paths(theirs),
                                            action="pathlib.Path(p).write_text('{}')")], None),
        "kills_the_grader": (["import os, signal\nimport psutil\n"
                              "print('saw', len(psutil.pids()), 'processes')\n"
                              "for proc in psutil.process_iter():\n    if proc.pid != os.getpid():"
                              "\n        try:\n            proc.kill()\n"
                              "        except psutil.Error as err:\n"
                              "            print('BLOCKED', type(err).__name__, proc.pid)"], None),
        "reads_home": (["import os\nprint(os.listdir(os.path.expanduser('~root')))\n"
                        "print(open('/root/.bashrc').read())"], "FileNotFoundError"),
        # Refused (bwrap brings up the namespace's own loopback) or unreachable (unshare)
        "calls_home": ([f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', "
                        f"{port}), timeout=3)\nexcept OSError as err:\n"
                        "    raise OSError(f'no connection: {err}')"], "OSError"),
        "leaves_a_process": (["import subprocess\nsubprocess.Popen(['sleep', '31337'], "
                              "start_new_session=True)"], None),
        "prints_the_token": (["import os\nprint('token:', os.environ.get('COURSE_TEST_TOKEN'))\n"
                              "print(open('/proc/1/environ').read())"], None),
        "fork_bomb": ([_bomb(), LIVE_PROCESSES], "CellTimeoutError"),
        "fills_the_disk": (["with open('big', 'wb') as f:\n    for _ in range(40):\n"
                            "        f.write(b'x' * 64 * 1024**2)"], "OSError"),
    }


def sandboxed_course(course, backend, base, setting=None):
    """A copy of the course of ``course`` in ``base``, set to ``sandbox = setting`` (default
    ``backend``); skipped where ``backend`` cannot run (a missing bwrap fails instead when CI
    is set: CI must test it)."""
    from course.sandbox import SandboxError, resolve

    cfg = course[0]
    root = shutil.copytree(cfg.root, base / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace(
        "workers = 2", f'workers = 2\nsandbox = "{setting or backend}"'))
    try:
        resolve(backend)
    except SandboxError as err:
        if backend == "bwrap" and os.environ.get("CI"):
            raise
        pytest.skip(str(err))
    return load(root)


def _printed(out, sid):
    """Everything a graded notebook's cells printed."""
    nb = nbformat.read(out / "work" / sid / "autograded.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("backend, user", [("unshare", "root"), ("bwrap", "nobody")])
def test_sandboxed_hostile_submissions_reach_nothing(course, honest, tmp_path, monkeypatch,
                                                     backend, user):
    """With the sandbox on: a kernel reads no solution, no other student and no home,
    reaches no listener on this machine's loopback, sees no token of the instructor, leaves
    no process behind, and a fork bomb or a full disk costs only its own submission. Every
    honest score is exact and nothing secret reaches any feedback. unshare needs root; bwrap
    is graded by an ordinary user (nobody, `sandbox = "auto"`), as on a cluster or a laptop
    (bwrap as root is tested in test_sandbox.py and by every other sandboxed grading test)."""
    import subprocess
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("unshare needs root; becoming nobody needs root too")
    _, source, blank, half = course
    subs, expected = honest
    base = tmp_path if user == "root" else Path(tempfile.mkdtemp(prefix="course-nobody-"))
    try:  # pytest's own folders are 0700: nobody's run lives in a folder it may enter
        os.chmod(base, 0o755)
        cfg = sandboxed_course(course, backend, base, setting="auto" if user == "nobody"
                               else backend)
        _hostile_run(cfg, backend, user, base, subs, expected, half, monkeypatch)
    finally:
        if base != tmp_path:
            subprocess.run(["rm", "-rf", str(base)], check=False)


def _hostile_run(cfg, backend, user, base, subs, expected, half, monkeypatch):
    import select
    import socket
    import sys

    import psutil

    from course.config import REPO_ROOT
    from tests.unprivileged import NOBODY, as_nobody, give_to_nobody

    # one full, one half-done and one blank honest student (the other three repeat them)
    expected = {sid: expected[sid] for sid in ("s1", "s2", "s3")}
    token = "course-test-token-5f1c9a"
    monkeypatch.setenv("COURSE_TEST_TOKEN", token)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    out = base / "out"
    mixed = base / "mixed"
    for sid in expected:
        _put(mixed / sid, nbformat.read(subs / sid / "toy.ipynb", as_version=4))
    attacks = _sandbox_attacks(cfg, out, listener.getsockname()[1])
    out.mkdir()  # the gradebook exists while the kernels run (empty: a valid SQLite file)
    (out / "gradebook.db").touch()
    for sid, (cells, _) in attacks.items():
        _put(mixed / sid, _with_cells(half, cells))
    args = ["grade", "toy", str(mixed), "--out", str(out), "--root", str(cfg.root)]
    try:
        if user == "root":
            assert main(args) == 0
        else:
            give_to_nobody(base)
            env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(base),
                   "PYTHONPATH": str(REPO_ROOT), "COURSE_TEST_TOKEN": token, "LANG": "C.UTF-8"}
            done = as_nobody([sys.executable, "-m", "course", *args], base, [REPO_ROOT], env,
                             capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
            assert os.stat(out / "grades.csv").st_uid == NOBODY
        assert select.select([listener], [], [], 0)[0] == [], "a kernel reached the listener"
    finally:
        listener.close()
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("student_id")
    for sid, points in expected.items():
        assert table.loc[sid, "total"] == points, (sid, table.loc[sid].to_dict())
    assert (table["reason"].str.contains(f"sandbox={backend}")).all()
    for sid, (_, says) in attacks.items():
        assert table.loc[sid, "total"] <= 2, (sid, table.loc[sid].to_dict())
        if says:
            assert says in table.loc[sid, "reason"], (sid, table.loc[sid, "reason"])
    assert table.loc["leaves_a_process", "total"] == 2
    assert "live processes: 2\n" in _printed(out, "fork_bomb")
    for sid, tried in (("reads_source", 5), ("overwrites_others", 2)):
        printed = _printed(out, sid)
        assert printed.count("BLOCKED") == tried and "REACHED" not in printed, printed
    # It sees two processes, its sandbox's PID 1 and itself: the grader is out of sight.
    # Under unshare PID 1 is root's (the kill is refused); under bwrap it is the kernel's
    # own user's, and a SIGKILL from inside the namespace never reaches a namespace's init.
    assert "saw 2 processes" in _printed(out, "kills_the_grader")
    if backend == "unshare":
        assert "BLOCKED" in _printed(out, "kills_the_grader")
    assert table.loc["kills_the_grader", "total"] == 2
    assert table.loc["prints_the_token", "total"] == 2
    stray = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
             if p.info["cmdline"] and "31337" in p.info["cmdline"]]
    assert not stray, "a background process outlived grading"
    for path in out.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    # nothing the release does not show: no mul solution (s1's), no hidden test
    # (the executed notebooks hold the restored hidden tests: only their outputs count)
    for sid in attacks:
        executed = nbformat.read(out / "work" / sid / "autograded.ipynb", as_version=4)
        outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
        for text in (outputs, (out / "feedback" / f"{sid}.html").read_text()):
            assert "product_of_both" not in text and "mul(6, 7)" not in text, sid
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == set(expected) | set(attacks)


@pytest.mark.slow
def test_sigterm_to_course_grade_kills_its_workers_and_kernels(course, honest, tmp_path):
    """A scheduler's cancel (SIGTERM) must not leave workers or kernels running: they live
    in sessions of their own, so `course grade` kills them itself."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    cfg, source, blank, half = course
    subs = tmp_path / "subs"
    for sid in ("spin1", "spin2"):
        _put(subs / sid, _with_cells(half, ["import time\nwhile True:\n    time.sleep(0.01)"]
                                     * 6))
    proc = subprocess.Popen([sys.executable, "-m", "course", "grade", "toy", str(subs),
                             "--out", str(tmp_path / "out"), "--root", str(cfg.root)])
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    family = []
    while time.monotonic() < deadline:
        family = me.children(recursive=True)
        if sum("ipykernel_launcher" in " ".join(p.cmdline()) for p in family
               if p.is_running()) >= 2:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("no kernels started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
    assert not list((tmp_path / "out" / "work").glob("*/result.json"))  # graded again next time
