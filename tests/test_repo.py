"""The repository keeps its promises: two commands, one dependency list, clean git."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli, a dev dependency there (as in course/config.py)
    import tomli as tomllib


def _normalise(specs):
    return {(Requirement(s).name.lower(), str(Requirement(s).specifier)) for s in specs}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip_items = [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]
    conda_pip = [item for item in pip_items if not item.startswith("-e ")]
    assert _normalise(conda_pip) == _normalise(declared)
    assert "-e .[dev]" in pip_items
    assert "- python=3.11" in (line.strip() for line in lines)


def test_albumentations_stays_on_the_mit_release():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [Requirement(d).specifier for d in deps if d.startswith("albumentations")]
    assert "2.0.8" in spec and "2.1.0" not in spec and "2.0.7" not in spec


def test_torch_is_a_range_not_a_pin():
    # Colab brings its own torch; a pin here would reinstall it there.
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        req = Requirement(dep)
        if req.name in ("torch", "torchvision"):
            assert all(s.operator == ">=" for s in req.specifier), dep
            assert req.specifier.contains("2.11" if req.name == "torch" else "0.26")


def test_readme_quickstart_has_exactly_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", quick, flags=re.S)
    commands = [c.strip() for b in blocks for c in b.splitlines()
                if c.strip() and not c.strip().startswith("#")]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_git_holds_no_data_outputs_or_checkpoints():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    bad = [f for f in tracked if re.search(r"(\.dcm|\.h5|\.hdf5|\.pt|\.pth|\.ckpt|gradebook\.db)$",
                                           f)]
    assert bad == []


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
