"""`course publish`: the student bundle holds release + helpers only, installs offline,
and the leak guard stops a bundle that would leak."""

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from course.cli import main
from course.config import load
from course.publish import check_bundle
from tests.toy_course import write_toy_course


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = write_toy_course(tmp_path_factory.mktemp("course"))
    assert main(["release", "--root", str(root)]) == 0
    out = tmp_path_factory.mktemp("bundle") / "student"
    assert main(["publish", str(out), "--root", str(root)]) == 0
    return root, out


def test_bundle_holds_release_and_helpers_only(bundle):
    _, out = bundle
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "README.md", "helpers",
                                                     "pyproject.toml", "release"]
    assert (out / "release" / "toy" / "toy.ipynb").is_file()
    assert (out / "helpers" / "data" / "dicom.py").is_file()
    assert not list(out.rglob("__pycache__"))
    assert 'version = "9.9"' in (out / "pyproject.toml").read_text()
    assert "git+https://github.com/someone/toy-bundle@v9.9" in (out / "README.md").read_text()


def test_leak_guard_flags_hidden_tests_and_grading_code(bundle):
    root, out = bundle
    cfg = load(root)
    assert check_bundle(cfg, out) == []
    sneaky = out / "helpers" / "sneaky.py"
    sneaky.write_text("from autograder import checks\nassert mul(6, 7) == 42\n")
    (out / "autograder").mkdir()
    try:
        problems = check_bundle(cfg, out)
    finally:
        sneaky.unlink()
        (out / "autograder").rmdir()
    assert any("sneaky.py: imports autograder" in p for p in problems)
    assert any("sneaky.py: contains 'assert mul(6, 7) == 42'" in p for p in problems)
    assert any(p.endswith("autograder: must not be in the bundle") for p in problems)


@pytest.mark.slow
def test_bundle_installs_offline_and_imports_helpers(bundle, tmp_path):
    # Build the wheel from a copy (pip leaves build/ and *.egg-info in the folder it builds,
    # which the other tests of the shared bundle would see) and install it into a fresh venv
    # with --no-index: nothing may be downloaded. The heavy dependencies come from this
    # environment through a .pth file.
    out = Path(shutil.copytree(bundle[1], tmp_path / "student"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(out)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("medical_detection_helpers-9.9-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "course-deps.pth").write_text(
        sysconfig.get_paths()["purelib"])
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    str(wheel)], check=True, capture_output=True)
    probe = ("import helpers, helpers.data, helpers.env; print(helpers.__file__); "
             "print(helpers.env.profile()); print(helpers.env.helpers_version())")
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "CI": "true"})
    assert result.returncode == 0, result.stderr
    location, profile, version = result.stdout.splitlines()
    assert location.startswith(str(env_dir)) and profile == "smoke"
    assert version == "9.9 (medical-detection-helpers)"  # the bundle's own name and version


def test_common_idioms_are_not_secrets_but_a_real_solution_line_is():
    from course.leaks import distinctive, secret_lines

    cfg = load(None)
    secrets = secret_lines(cfg.source_notebook(cfg.assignment("pneumonia")))
    # from the Dataset exercise's solution: distinctive, so a bundle holding it leaks
    assert "corners = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)" in secrets
    # from the same solution, but any Python file may say it: not a secret
    assert "return img, target" not in secrets
    assert [distinctive(x) for x in ("return model", 'return float("nan")', "model.eval()",
                                     "return total_of_both", "else:")] == [
        False, False, False, True, False]


def test_the_real_course_publishes(tmp_path):
    """The bundle of this course, not only of the toy one, passes its own leak guard."""
    out = tmp_path / "bundle"
    assert main(["publish", str(out)]) == 0
    assert (out / "helpers" / "data" / "datasets.py").is_file()
    assert not (out / "autograder").exists() and not (out / "source").exists()


def test_publish_refuses_a_folder_that_is_not_a_bundle_and_keeps_a_clones_git(bundle,
                                                                               tmp_path, capsys):
    root, out = bundle
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert main(["publish", str(precious), "--root", str(root)]) == 1
    assert "not empty and not a student bundle" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert main(["publish", str(root), "--root", str(root)]) == 1  # `publish .` in the course
    assert (root / "source").is_dir()
    clone = tmp_path / "clone"
    assert main(["publish", str(clone), "--root", str(root)]) == 0
    (clone / ".git").mkdir()
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / "stale.txt").write_text("from an older bundle")
    assert main(["publish", str(clone), "--root", str(root)]) == 0
    assert (clone / ".git" / "HEAD").is_file() and not (clone / "stale.txt").exists()
    assert (clone / "release" / "toy" / "toy.ipynb").is_file()
