"""`course publish OUT`: the public student bundle — release notebooks, `helpers`, a README.

The bundle is what students (and Colab) see: pushed to the repository named by
``bundle_repo`` in course.toml and tagged ``bundle_ref``, it installs with
``pip install "git+https://github.com/<bundle_repo>@<bundle_ref>"``. Nothing from
``source/`` or ``autograder/`` goes in, and the leak guard runs over the result.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from course.config import REPO_ROOT, CourseConfig, tomllib
from course.leaks import AUTOGRADER_IMPORT, find_leaks, secret_lines

BUNDLE_DIST = "medical-detection-helpers"


class LeakError(RuntimeError):
    """The bundle would hand students a solution, a hidden test or grading code."""


def bundle_version(cfg: CourseConfig) -> str:
    """The bundle's package version, derived from its git ref (v0.1.0 -> 0.1.0)."""
    return cfg.bundle_ref.removeprefix("v")


def install_requirement(cfg: CourseConfig) -> str:
    """The pinned requirement of the student bundle: ``name @ git+https://...@ref``."""
    return f"{BUNDLE_DIST} @ git+https://github.com/{cfg.bundle_repo}@{cfg.bundle_ref}"


def install_command(cfg: CourseConfig) -> str:
    """What the notebooks' setup cell runs in Colab (never reinstalls torch)."""
    return f'pip install -q "{install_requirement(cfg)}"'


def _pyproject(cfg: CourseConfig) -> str:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    deps = "\n".join(f'    "{d}",' for d in project["dependencies"])
    return (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{BUNDLE_DIST}"\nversion = "{bundle_version(cfg)}"\n'
        f'description = "Student bundle of {cfg.title}: notebooks and the helpers library."\n'
        f'requires-python = "{project["requires-python"]}"\nlicense = {{ text = "MIT" }}\n'
        f"dependencies = [\n{deps}\n]\n\n"
        '[tool.setuptools.packages.find]\ninclude = ["helpers*"]\n'
    )


def _readme(cfg: CourseConfig) -> str:
    lines = [f"# {cfg.title} — student bundle ({cfg.bundle_ref})", "",
             "Open a notebook in Google Colab with its badge, choose a GPU runtime, and run the",
             "set-up cell first. Locally: `pip install .` in this folder, then open the notebook.",
             "", "| assignment | notebook |", "| --- | --- |"]
    for a in cfg.assignments:
        lines.append(f"| {a.title} | [release/{a.id}/{a.notebook}](release/{a.id}/{a.notebook}) |")
    lines += ["", "Install command used by the notebooks:", "", "```", install_command(cfg), "```",
              "", "Code and notebooks: MIT licence."]
    return "\n".join(lines) + "\n"


def check_bundle(cfg: CourseConfig, bundle: Path) -> list[str]:
    """Every leak in a bundle folder: secrets in notebooks, hidden tests or grading code."""
    problems = [f"{bundle / name}: must not be in the bundle" for name in ("source", "autograder")
                if (bundle / name).exists()]
    hidden = set()
    for a in cfg.assignments:
        student = bundle / "release" / a.id / a.notebook
        if student.is_file():
            problems += find_leaks(cfg.source_notebook(a), student)
        hidden |= secret_lines(cfg.source_notebook(a))
    for path in sorted(bundle.rglob("*")):
        if path.suffix not in (".py", ".md", ".toml", ".txt", ".cfg"):
            continue
        text = path.read_text(errors="replace")
        if AUTOGRADER_IMPORT.search(text):
            problems.append(f"{path}: imports autograder")
        lines = {line.strip() for line in text.splitlines()}
        problems += [f"{path}: contains {s!r} from a solution or hidden test"
                     for s in sorted(hidden & lines)]
    return problems


def _is_bundle(folder: Path) -> bool:
    """Whether a folder holds a student bundle written by an earlier `course publish`."""
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return False
    return project.get("name") == BUNDLE_DIST


def _clear(out: Path) -> None:
    """Empty ``out`` for a new bundle, keeping a clone's ``.git``; refuse anything else."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: a file, not a folder for the student bundle")
    children = list(out.iterdir())
    if children and not _is_bundle(out):
        raise FileExistsError(f"{out}: not empty and not a student bundle (no pyproject.toml "
                              f"naming {BUNDLE_DIST}); refusing to delete it: publish into "
                              "an empty folder, a new one, or a clone of the bundle repository")
    for child in children:
        if child.name == ".git":
            continue  # a clone of the bundle repository: its history stays
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def publish(cfg: CourseConfig, out: Path) -> Path:
    """Write the student bundle into ``out`` and check it for leaks.

    ``out`` must be empty, new, or an earlier bundle (a clone of the bundle repository):
    then everything but its ``.git`` is replaced.
    """
    _clear(out)
    for a in cfg.assignments:
        src = cfg.release_notebook(a).parent
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: not released yet; run `python -m course release`")
        shutil.copytree(src, out / "release" / a.id)
    shutil.copytree(REPO_ROOT / "helpers", out / "helpers",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO_ROOT / "LICENSE", out / "LICENSE")
    (out / "pyproject.toml").write_text(_pyproject(cfg))
    (out / "README.md").write_text(_readme(cfg))
    problems = check_bundle(cfg, out)
    if problems:
        raise LeakError("the student bundle leaks:\n" + "\n".join(problems))
    return out
