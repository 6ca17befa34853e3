"""The student path, proven in a Colab-shaped environment (issue 12, item 2).

What a student in Colab does, offline: the bundle is built with `course publish` and
committed to a throwaway git repository tagged ``bundle_ref`` (standing in for the public
bundle repository); a fresh virtual environment holds only what Colab preinstalls; the
release notebook's own set-up line installs the bundle into it; then the release notebook,
with the source's solutions pasted in, runs top to bottom in a kernel of that environment,
from a folder outside the repository.

The notebooks run in the ``grade`` profile (tiny data, one epoch): this module proves the
environment (what is installed, what is importable, every cell and visible check running
there), while tests/test_notebooks.py runs the same solutions in the ``smoke`` profile for
the numbers. Running smoke here too cost about four minutes of CI for no new check.

The environment is built once for both assignments. Unpacking torch and its CUDA libraries
(4.4 GB) again took three minutes, more than the rest of the module: the course
environment's installed copies of the same distributions are hard-linked in first (the same
files, as pip would unpack them), then pip installs the pins from the package registries
into it as CI would, and finds what is already there.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
import time
import venv
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbgrader.utils import is_grade, is_solution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from course.bootstrap import pins
from course.cli import main
from course.config import load, tomllib
from course.demo import answered
from course.publish import BUNDLE_DIST
from course.release import SETUP_TAG

pytestmark = pytest.mark.slow  # builds a torch environment and runs both notebooks: minutes
CFG = load()
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = pytest.mark.parametrize("assignment", CFG.assignments, ids=lambda a: a.id)
# What Colab preinstalls that the course uses (its published pip freeze: shared NOTES.md,
# "Google Colab runtime"); torch and torchvision come pinned from course/bootstrap.py.
COLAB_PREINSTALLED = ["numpy", "pandas", "matplotlib", "scikit-learn", "h5py",
                      "albumentations==2.0.8", "tqdm", "ipykernel"]
UNTOUCHABLE = {"torch", "torchvision", "numpy"}  # a reinstall in Colab costs minutes, or CUDA
GRADING_ONLY = ("autograder", "nbgrader", "course")  # never in a student's environment
TIMES: dict[str, float] = {}  # seconds per step, printed with -s: the CI budget is 5 minutes


def _timed(step: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    TIMES[step] = round(time.perf_counter() - start, 1)
    print(f"{step}: {TIMES[step]} s")
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _pip_env() -> dict[str, str]:
    """pip's own configuration (index, find-links, cache) without the repository on the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _installed(python: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution in the environment of ``python``."""
    done = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"],
                          capture_output=True, text=True, check=True, env=_pip_env())
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(done.stdout)}


def _closure(requirements: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """The distributions of this environment that ``requirements`` need, with their
    dependencies (markers and extras followed): canonical name -> distribution."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo, seen = [Requirement(r) for r in requirements], set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        dist = found.setdefault(name, importlib.metadata.distribution(name))
        for dep in map(Requirement, dist.requires or []):
            if dep.marker is None or any(dep.marker.evaluate({"extra": e})
                                         for e in ("", *req.extras)):
                todo.append(dep)
    return found


def _link_installed(requirements: list[str], site: Path) -> None:
    """Hard-link the installed files (RECORD) of ``requirements`` and their dependencies
    from this environment into ``site``; a copy where a link cannot be made. Scripts
    outside site-packages are left out. Hard links, not symlinks: a later pip uninstall in
    the new environment removes its own links, never this environment's files."""
    for dist in _closure(requirements).values():
        for rel in dist.files or []:
            if rel.parts[0] == "..":
                continue
            src, dst = Path(dist.locate_file(rel)), site / rel
            if dst.exists() or not src.is_file():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system
                shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def colab(tmp_path_factory):
    """A fresh venv holding only Colab's preinstalled packages: (python, {name: version})."""
    env_dir = tmp_path_factory.mktemp("colab") / "venv"
    start = time.perf_counter()
    venv.EnvBuilder(with_pip=True).create(env_dir)
    TIMES["venv"] = round(time.perf_counter() - start, 1)
    python = env_dir / "bin" / "python"
    torch_pins = pins() or ["torch", "torchvision"]
    site = sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    start = time.perf_counter()
    _link_installed([*torch_pins, *COLAB_PREINSTALLED], Path(site))
    TIMES["links"] = round(time.perf_counter() - start, 1)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    _timed("torch + torchvision", [*pip, *torch_pins], env=_pip_env())
    _timed("the rest of Colab's packages", [*pip, *torch_pins, *COLAB_PREINSTALLED],
           env=_pip_env())
    before = _installed(python)
    assert not {"pydicom", "grad-cam", "nbgrader", BUNDLE_DIST} & set(before), before
    return python, before


@pytest.fixture(scope="session")
def bundle_repo(tmp_path_factory):
    """`course publish` committed to a local git repository tagged ``bundle_ref``."""
    repo = tmp_path_factory.mktemp("bundle") / "student-bundle"
    assert main(["publish", str(repo)]) == 0
    git = ["git", "-C", str(repo), "-c", "user.name=CI", "-c", "user.email=ci@localhost"]
    for args in (["init", "--quiet"], ["add", "--all"],
                 ["commit", "--quiet", "-m", "student bundle"], ["tag", CFG.bundle_ref]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def setup_line(notebook: Path) -> str:
    """The `%pip install ...` line of the notebook's generated set-up cell."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    lines = [x.strip() for c in cells for x in c.source.splitlines()
             if x.strip().startswith("%pip install")]
    if len(lines) != 1:
        raise AssertionError(f"{notebook}: expected one `%pip install` line in the cell tagged "
                             f"{SETUP_TAG!r}, found {lines}")
    return lines[0]


def pointed_at(line: str, repo: Path) -> list[str]:
    """pip's arguments of a set-up line, the bundle's GitHub URL replaced by the local repo.

    PEP 508 wants a host in a direct URL, so the local repository is file://localhost/...
    """
    github = f"git+https://github.com/{CFG.bundle_repo}@"
    assert github in line, f"the set-up line does not install {github}...: {line}"
    args = shlex.split(line.removeprefix("%pip"))
    return [a.replace(github, f"git+file://localhost{repo}@") for a in args]


@pytest.fixture(scope="session")
def setup_reports(colab, bundle_repo, tmp_path_factory):
    """Each release notebook's own set-up line run with the Colab venv's pip (as the `%pip`
    magic does: ``python -m pip``), in teaching order; assignment id -> pip's report."""
    python, _ = colab
    reports = {}
    for a in CFG.assignments:
        report = tmp_path_factory.mktemp("pip") / "report.json"
        args = pointed_at(setup_line(CFG.release_notebook(a)), bundle_repo)
        _timed(f"set-up line of {a.id}", [str(python), "-m", "pip", *args, "--report",
                                          str(report)], env=_pip_env())
        reports[a.id] = json.loads(report.read_text())
    return reports


def _names(report: dict) -> set[str]:
    return {canonicalize_name(item["metadata"]["name"]) for item in report["install"]}


def test_setup_line_installs_the_bundle_and_leaves_torch_alone(colab, setup_reports,
                                                               bundle_repo):
    python, before = colab
    for a_id, report in setup_reports.items():
        touched = _names(report) & UNTOUCHABLE
        assert not touched, f"{a_id}'s set-up line installed or replaced {touched}"
    first = setup_reports[CFG.assignments[0].id]
    (bundle,) = [i for i in first["install"] if i["metadata"]["name"] == BUNDLE_DIST]
    assert bundle["download_info"]["url"] == f"file://localhost{bundle_repo}"
    assert bundle["download_info"]["vcs_info"]["requested_revision"] == CFG.bundle_ref
    # Every dependency the bundle declares that Colab lacks is installed by the set-up line.
    project = tomllib.loads((bundle_repo / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    lacking = declared - set(before)
    assert {"pydicom", "grad-cam"} <= lacking
    assert lacking <= set().union(*map(_names, setup_reports.values()))
    after = _installed(python)
    assert {n: after[n] for n in UNTOUCHABLE} == {n: before[n] for n in UNTOUCHABLE}
    assert lacking | {BUNDLE_DIST} <= set(after)


def _kernel_env(colab_python: Path, home: Path) -> dict[str, str]:
    """The kernel's environment: the Colab venv first on PATH, no PYTHONPATH (nothing of the
    repository), the grade profile (see the module's docstring), fresh caches."""
    for sub in ("data", "torch", "mpl"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {"PATH": f"{colab_python.parent}:/usr/bin:/bin", "HOME": str(home),
            "LANG": "C.UTF-8", "COURSE_PROFILE": "grade", "COURSE_DATA_DIR": str(home / "data"),
            "TORCH_HOME": str(home / "torch"), "MPLCONFIGDIR": str(home / "mpl"),
            "MPLBACKEND": "Agg", "NO_ALBUMENTATIONS_UPDATE": "1"}


def test_helpers_come_from_the_bundle_and_grading_code_is_absent(colab, setup_reports,
                                                                 tmp_path):
    python, _ = colab
    probe = ("import importlib.util, helpers, helpers.env\n"
             "print(helpers.__file__)\nprint(helpers.env.helpers_version())\n"
             f"print([n for n in {GRADING_ONLY!r} if importlib.util.find_spec(n)])")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, env=_kernel_env(python, tmp_path))
    assert done.returncode == 0, done.stderr
    location, version, importable = done.stdout.splitlines()
    assert location.startswith(str(python.parents[1])) and "site-packages" in location
    assert not location.startswith(str(ROOT))
    assert version == f"{CFG.bundle_ref.removeprefix('v')} ({BUNDLE_DIST})"
    assert importable == "[]", f"importable in the student's environment: {importable}"


def _kernel_manager(colab_python: Path, folder: Path) -> AsyncKernelManager:
    """A kernel manager whose only kernelspec runs ipykernel with the Colab venv's python."""
    spec = folder / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(colab_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab-shaped)", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(folder)])
    return AsyncKernelManager(kernel_name="colab", kernel_spec_manager=specs)


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.output_type == "stream")


@ASSIGNMENTS
def test_release_notebook_with_solutions_runs_in_colab_shape(assignment, colab, setup_reports,
                                                             tmp_path):
    python, _ = colab
    nb = answered(CFG.source_notebook(assignment), CFG.release_notebook(assignment))
    work = tmp_path / "content"  # Colab's working folder; outside the repository
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT)
    # A cell may take minutes on a loaded 2-core machine (nbval's default limit, 2000 s, as
    # tests/test_notebooks.py); a training cell's progress bars may lag its reply (60 s).
    client = NotebookClient(nb, km=_kernel_manager(python, tmp_path / "kernels"),
                            timeout=2000, iopub_timeout=60,
                            resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute(env=_kernel_env(python, tmp_path / "home"))
    finally:
        if client.km.has_kernel:  # nbclient shuts down only kernels of managers it made
            run_sync(client.km.shutdown_kernel)(now=True)
        TIMES[f"{assignment.id} notebook"] = round(time.perf_counter() - start, 1)
        print(f"{assignment.id} notebook: {TIMES[f'{assignment.id} notebook']} s; {TIMES}")
        nbformat.write(nb, tmp_path / "executed.ipynb")
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors == [], f"cells {errors} failed; see {tmp_path / 'executed.ipynb'}"
    # No google.colab here: the set-up cell skips its %pip (the line already ran above).
    (setup,) = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    assert setup.outputs == []
    visible = [c for c in nb.cells if c.cell_type == "code" and is_grade(c)
               and not is_solution(c)]
    assert all("visible check passed" in _text(c) for c in visible), [
        c.metadata["nbgrader"]["grade_id"] for c in visible
        if "visible check passed" not in _text(c)]
    summary = "".join(_text(c) for c in nb.cells)
    assert f"{len(visible)} of {len(visible)} visible checks passed" in summary
    config = next(_text(c) for c in nb.cells if "print_config()" in c.source)
    # The bundle's helpers (this repository's venv has the course's, editable) outside Colab.
    assert f"({BUNDLE_DIST})" in config and re.search(r"^colab\s+False$", config, re.M)
