"""Hidden checks the student cannot reach (issue 14 item 2): each check call recorded in the
kernel is run again outside it, and three evasions that pass in the kernel lose exactly
their exercise's points, with the sandbox off and on."""

import json
import re

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course.cli import main
from course.recheck import ENAME, MIME, hidden_calls, local_env, recheck, runner
from tests.toy_course import hidden_test_cell, solution_cell, write_toy_course

HIDDEN = ('hidden_checks = __import__("autograder.pneumonia_checks").pneumonia_checks\n'
          "hidden_checks.check_iou(box_iou_matrix)")
OWN_IOU = ("    import torch\n"
           "    lt = torch.max(a[:, None, :2], b[:, :2])\n"
           "    rb = torch.min(a[:, None, 2:], b[:, 2:])\n"
           "    inter = (rb - lt).clamp(min=0).prod(-1)\n"
           "    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])\n"
           "    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])\n"
           "    return inter / (area_a[:, None] + area_b - inter)")
# (a) the profiler switched off, (b) the reference called from another thread
PROFILER_OFF = ("    import sys\n    import torchvision\n    sys.setprofile(None)\n"
                "    return torchvision.ops.box_iou(a, b)")
THREAD = ("    import threading\n    import torchvision\n    found = []\n"
          "    call = lambda: found.append(torchvision.ops.box_iou(a, b))\n"
          "    worker = threading.Thread(target=call)\n"
          "    worker.start()\n    worker.join()\n    return found[0]")
# (c) an earlier cell replaces the check and the tripwire with no-ops
REPLACES_CHECKS = ("import autograder.pneumonia_checks\nimport autograder.tripwire\n"
                   "autograder.pneumonia_checks.check_iou = lambda fn: None\n"
                   "autograder.tripwire.run_without = lambda fn, refs, *a, **k: fn(*a, **k)")
CALLS_REFERENCE = "    import torchvision\n    return torchvision.ops.box_iou(a, b)"


def _iou_body(body):
    return f"def box_iou_matrix(a, b):\n    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION"


def _source_with_iou(root):
    """The toy course plus an IoU exercise (4 points) whose hidden test calls the real
    pneumonia check, before the set-up cell."""
    path = root / "source" / "toy" / "toy.ipynb"
    nb = nbformat.read(path, as_version=4)
    solution = solution_cell("box_iou_matrix", OWN_IOU)
    solution.source = _iou_body(OWN_IOU)
    test = hidden_test_cell("iou", "assert box_iou_matrix", HIDDEN, 4)
    nb.cells[5:5] = [solution, test]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    nbformat.write(nb, path)
    return nb


# ------------------------------------------------------------------ the worker's side


def _executed(outputs_of_iou_test):
    """An executed notebook: a passed add test, and the IoU test with the given outputs."""
    nb = new_notebook(cells=[new_code_cell("x"), new_code_cell("y"), new_code_cell("z")])
    nb.cells[1].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "test_add",
                                        "points": 2}
    nb.cells[2].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "test_iou",
                                        "points": 4}
    nb.cells[2].outputs = outputs_of_iou_test
    return nb


def _record(check="check_iou", call="Y2FsbA=="):
    return new_output("display_data", data={MIME: {"check": check, "call": call}})


@pytest.fixture
def source(tmp_path):
    root = write_toy_course(tmp_path / "c")
    _source_with_iou(root)
    return root / "source" / "toy" / "toy.ipynb"


def test_the_hidden_tests_name_their_modules_and_checks(source):
    assert hidden_calls(source) == {"test_iou": (["autograder.pneumonia_checks"], ["check_iou"])}


@pytest.mark.parametrize("outputs, verdict, says", [
    ([_record()], {"ok": True, "reason": ""}, None),
    ([_record()], {"ok": False, "reason": "AssertionError: calls box_iou"}, "calls box_iou"),
    ([], None, "check_iou left no record of its call"),
    ([_record("check_head")], None, "check_iou left no record"),
    ([_record(), _record("check_head")], None, "a record of check_head, which this cell"),
    ([new_output("display_data", data={MIME: {"check": "check_iou", "error": "lock"}})], None,
     "could not be recorded: lock"),
])
def test_a_passed_cell_keeps_its_points_only_if_the_recheck_agrees(source, outputs, verdict,
                                                                    says):
    nb = _executed(outputs)
    sent = []

    def run(jobs, timeout):
        sent.extend(jobs)
        return {j["id"]: verdict for j in jobs}

    reasons = recheck(nb, source, run, timeout=7)
    cell = nb.cells[2]
    assert not any(MIME in o.get("data", {}) for o in cell.outputs)  # records taken out
    errors = [o for o in cell.outputs if o.output_type == "error"]
    if says is None:
        assert reasons == [] and errors == [] and len(sent) == 1
        assert sent[0]["modules"] == ["autograder.pneumonia_checks"]
    else:
        assert len(reasons) == 1 and says in reasons[0] and "cell 3 (test_iou)" in reasons[0]
        assert [e.ename for e in errors] == [ENAME] and cell.outputs[0] is errors[0]
        assert says in errors[0].evalue
    assert nb.cells[1].outputs == []  # the other cell is untouched


def test_a_cell_that_failed_in_the_kernel_is_left_alone(source):
    failed = new_output("error", ename="AssertionError", evalue="wrong", traceback=[])
    nb = _executed([failed])
    assert recheck(nb, source, lambda jobs, t: pytest.fail("nothing to re-run"), 7) == []
    assert nb.cells[2].outputs == [failed]


# ------------------------------------------------------------------ the re-check process


NOTEBOOK_FUNCTIONS = {"honest": OWN_IOU, "profiler_off": PROFILER_OFF, "thread": THREAD}


@pytest.mark.slow  # one process importing torch and the checks (~25 s on a loaded 2-core box)
def test_the_recheck_process_fails_what_the_kernel_passed(monkeypatch):
    """Functions defined as in a notebook (``__main__``, so pickled by value), recorded by
    the real check in this process, where (a) and (b) pass, then re-run in a fresh one."""
    import IPython.display

    import autograder.pneumonia_checks as checks

    published = []
    monkeypatch.setattr(IPython.display, "publish_display_data", published.append)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    jobs = []
    for name, body in NOTEBOOK_FUNCTIONS.items():
        namespace = {"__name__": "__main__"}
        exec(_iou_body(body).replace("### ", "# "), namespace)  # noqa: S102
        checks.check_iou(namespace["box_iou_matrix"])  # passes in this process
        record = published.pop()[MIME]
        jobs.append({"id": name, "modules": ["autograder.pneumonia_checks"],
                     "check": record["check"], "call": record["call"]})
    verdicts = runner(local_env())(jobs, 120)
    assert verdicts["honest"] == {"ok": True, "reason": ""}
    for name in ("profiler_off", "thread"):
        assert not verdicts[name]["ok"], verdicts[name]
        assert re.search(r"calls torchvision\.ops\.(boxes\.)?box_iou", verdicts[name]["reason"])


# ------------------------------------------------------------------ graded end to end


def _submissions(folder, source_nb):
    """honest: every exercise; the three evasions: add and mul honest, IoU evading."""
    iou = next(i for i, c in enumerate(source_nb.cells) if "box_iou_matrix(a, b)" in c.source)
    subs = {"honest": (OWN_IOU, []), "profiler_off": (PROFILER_OFF, []),
            "thread": (THREAD, []), "replaces_checks": (CALLS_REFERENCE, [REPLACES_CHECKS])}
    for sid, (body, earlier) in subs.items():
        nb = nbformat.from_dict(source_nb)
        nb.cells[iou].source = _iou_body(body)
        for text in earlier:
            nb.cells.insert(iou + 1, new_code_cell(text))
        (folder / sid).mkdir(parents=True)
        nbformat.write(nb, folder / sid / "toy.ipynb")
    return list(subs)


@pytest.mark.slow  # two grading runs of four notebooks that import torch: minutes
@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_each_evasion_loses_exactly_its_exercise(tmp_path, sandbox):
    from course.sandbox import SandboxError, resolve

    try:
        backend = resolve(sandbox)  # auto: bwrap where it runs, else unshare as root
    except SandboxError as err:
        pytest.skip(str(err))
    root = write_toy_course(tmp_path / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("points = 5", "points = 9")
                    .replace("cell_timeout = 5", "cell_timeout = 180")
                    .replace("notebook_timeout = 300", "notebook_timeout = 900")
                    .replace("workers = 1", f'workers = 2\nsandbox = "{sandbox}"'))
    source_nb = _source_with_iou(root)
    assert main(["release", "--root", str(root)]) == 0
    hostile = _submissions(tmp_path / "subs", source_nb)
    out = tmp_path / "out"
    assert main(["grade", "toy", str(tmp_path / "subs"), "--out", str(out), "--root",
                 str(root)]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("student_id")
    assert table.loc["honest", ["test_add", "test_mul", "test_iou", "total"]].tolist() == [
        2, 3, 4, 9], table.loc["honest"].to_dict()
    note = "not sandboxed" if backend == "none" else f"sandbox={backend}"
    for sid in hostile[1:]:
        row = table.loc[sid]
        assert row[["test_add", "test_mul", "test_iou", "total"]].tolist() == [2, 3, 0, 5], (
            sid, row.to_dict())
        assert "test_iou" in row["reason"] and note in row["reason"], row["reason"]
        executed = nbformat.read(out / "work" / sid / "autograded.ipynb", as_version=4)
        cell = next(c for c in executed.cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") == "test_iou")
        # the kernel passed it: the only error is the re-check's
        assert [o.ename for o in cell.outputs if o.output_type == "error"] == [ENAME], sid
        assert MIME not in json.dumps(executed)  # no record reaches the gradebook or feedback
    for sid in ("profiler_off", "thread"):
        assert "re-run outside the notebook" in table.loc[sid, "reason"]
        assert re.search(r"calls torchvision\.ops\.(boxes\.)?box_iou", table.loc[sid, "reason"])
    assert "check_iou left no record" in table.loc["replaces_checks", "reason"]


def test_every_check_the_notebooks_hidden_tests_call_is_a_recorded_one():
    """What `hidden_calls` reads from the source notebooks is what the re-check will find."""
    import importlib

    from course.config import load

    cfg = load()
    for a in cfg.assignments:
        calls = hidden_calls(cfg.source_notebook(a))
        assert calls, a.id
        for grade_id, (modules, checks) in calls.items():
            for check in checks:
                found = [getattr(importlib.import_module(m), check, None) for m in modules]
                assert any(getattr(f, "recorded_check", False) for f in found), (a.id, grade_id,
                                                                                  check)


def test_every_public_check_records_its_calls():
    """A check without `recorded` would leave no record: its cell could never pass."""
    import importlib
    from pathlib import Path

    import autograder

    folder = Path(autograder.__file__).parent
    names = ["common", *sorted(p.stem for p in folder.glob("*_checks.py"))]
    checks = {f"{n}.{c}": getattr(importlib.import_module(f"autograder.{n}"), c) for n in names
              for c in importlib.import_module(f"autograder.{n}").__all__
              if c.startswith("check_")}
    assert len(checks) >= 15  # common 2, pneumonia 7, cspine 6
    assert [name for name, f in checks.items() if not getattr(f, "recorded_check", False)] == []
