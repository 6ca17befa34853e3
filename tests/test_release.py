"""`course release` on a throwaway course: nbgrader strips answers, --check catches staleness,
the leak guard catches a leak."""

import json
import shutil

import nbformat
import pytest

from course.cli import main
from course.config import CourseConfigError, load
from course.leaks import find_leaks, secret_lines
from tests.toy_course import TOML, write_toy_course


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = write_toy_course(tmp_path_factory.mktemp("course"))
    assert main(["release", "--root", str(root)]) == 0
    return root


def test_release_strips_answers_and_hidden_tests(released):
    text = (released / "release" / "toy" / "toy.ipynb").read_text()
    assert "raise NotImplementedError()" in text and "assert add(1, 2) == 3" in text
    assert "total_of_both" not in text and "add(20, 22)" not in text
    assert "BEGIN HIDDEN TESTS" not in text
    assert not (released / "gradebook.db").exists()  # the scratch gradebook stays out


def test_release_header_has_a_pinned_colab_badge(released):
    nb = json.loads((released / "release" / "toy" / "toy.ipynb").read_text())
    first = "".join(nb["cells"][0]["source"])
    assert ("https://colab.research.google.com/github/someone/toy-bundle/blob/v9.9/release/"
            "toy/toy.ipynb") in first
    assert "Adding numbers" in first and "due 2027-01-01" in first


def test_check_passes_when_current_and_fails_when_stale(released, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(released, root)
    assert main(["release", "--check", "--root", str(root)]) == 0
    nb = nbformat.read(root / "source" / "toy" / "toy.ipynb", as_version=4)
    nb.cells[0].source = "# Adding numbers, revised"
    nbformat.write(nb, root / "source" / "toy" / "toy.ipynb")
    capsys.readouterr()
    assert main(["release", "--check", "--root", str(root)]) == 1
    assert "release/toy/toy.ipynb: differs from a fresh release" in capsys.readouterr().err


def test_leak_guard_catches_a_solution_line_and_an_autograder_import(released, tmp_path):
    source = released / "source" / "toy" / "toy.ipynb"
    assert secret_lines(source) == {"total_of_both = a + b", "return total_of_both",
                                    "assert add(20, 22) == 42", "product_of_both = a * b",
                                    "return product_of_both", "assert mul(6, 7) == 42"}
    clean = released / "release" / "toy" / "toy.ipynb"
    assert find_leaks(source, clean) == []
    nb = nbformat.read(clean, as_version=4)
    nb.cells[2].source += "\n    return total_of_both\nfrom autograder import checks"
    leaky = tmp_path / "leaky.ipynb"
    nbformat.write(nb, leaky)
    leaks = find_leaks(source, leaky)
    assert len(leaks) == 2
    assert "'return total_of_both'" in leaks[0] and "imports autograder" in leaks[1]


def test_bad_course_config_is_named(tmp_path):
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "course.toml").write_text(TOML.replace('workers = 1', 'workers = "2"'))
    with pytest.raises(CourseConfigError, match=r"\[grading\]: 'workers' = '2'; expected int"):
        load(tmp_path)
    with pytest.raises(CourseConfigError, match="no course config"):
        load(tmp_path / "elsewhere")
    for bad, says in (("(unclosed", "not a regular expression"),
                      (r"^(\\w+)_.*$", "student_id")):
        (tmp_path / "course" / "course.toml").write_text(
            TOML.replace("workers = 1", f'workers = 1\nfile_pattern = "{bad}"'))
        with pytest.raises(CourseConfigError, match=says):
            load(tmp_path)


def test_unknown_assignment_lists_the_known_ones(released):
    with pytest.raises(CourseConfigError, match="no assignment 'nope'.*known: toy"):
        load(released).assignment("nope")


def test_lab_config_file_is_derived_from_course_toml(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    from course.nbgrader_setup import write_config_file

    root = write_toy_course(tmp_path / "c")
    path = write_config_file(load(root), root / "nbgrader_config.py", root / "gb.db")
    config = PyFileConfigLoader(path.name, path=str(root)).load_config()
    assert config.CourseDirectory.root == str(root)
    assert config.CourseDirectory.db_url == f"sqlite:///{root / 'gb.db'}"
    assert config.Execute.timeout == 5  # cell_timeout from course.toml
    assert config.OverwriteCells.add_missing_cells is True


def test_setup_cell_is_generated_from_course_toml(released):
    nb = nbformat.read(released / "release" / "toy" / "toy.ipynb", as_version=4)
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    (setup,) = [c for c in nb.cells if "course-setup" in c.metadata.get("tags", [])]
    assert ('%pip install -q "medical-detection-helpers @ '
            'git+https://github.com/someone/toy-bundle@v9.9"') in setup.source
    assert ('if "google.colab" in sys.modules and "NBGRADER_EXECUTION" not in os.environ:'
            in setup.source)
    assert "torch" not in setup.source.split("%pip")[1]  # the install line names no torch


def test_check_names_the_cell_when_the_pin_is_edited_by_hand(released, tmp_path, capsys):
    root = shutil.copytree(released, tmp_path / "copy")
    path = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(path, as_version=4)
    (setup,) = [c for c in nb.cells if "course-setup" in c.metadata.get("tags", [])]
    setup.source = setup.source.replace("@v9.9", "@v9.8")
    nbformat.write(nb, path)
    capsys.readouterr()
    assert main(["release", "--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: cell 6 ('course-setup', id cell-5) does not install" in err
    assert main(["release", "--root", str(root)]) == 0  # regenerates the cell from the toml
    assert "@v9.9" in nbformat.read(path, as_version=4).cells[5].source
    assert main(["release", "--check", "--root", str(root)]) == 0


@pytest.mark.parametrize(("key", "value", "says"), [
    ("bundle_ref", "latest", "expected a tag that is a package version"),
    ("bundle_ref", "v1.2.x", "expected a tag that is a package version"),
    ("bundle_repo", "just-a-name", "expected a GitHub repository as owner/name"),
    ("bundle_repo", "owner/name with spaces", "expected a GitHub repository as owner/name"),
])
def test_bundle_repo_and_ref_are_validated(tmp_path, key, value, says):
    import re

    (tmp_path / "course").mkdir()
    toml = re.sub(rf'^{key} = ".*"$', f'{key} = "{value}"', TOML, flags=re.M)
    assert toml != TOML
    (tmp_path / "course" / "course.toml").write_text(toml)
    with pytest.raises(CourseConfigError, match=says):
        load(tmp_path)
