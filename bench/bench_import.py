"""The import step of `course grade` (gradebook, grades.csv, feedback) over N synthetic
results: the first import, a re-run with nothing changed, and a re-run that adds one student.

One toy-course solution (tests/toy_course.py, with its written answer) is graded for real
once; its result is cloned into N students' OUT/work/<id>/ folders, as N workers would have
left them, and `course.gradebook.import_results` is timed on them. No kernel runs in the
timed part: this measures the single writer only.

    .venv/bin/python bench/bench_import.py [--students 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.toy_course

import nbformat  # noqa: E402

from course.config import load  # noqa: E402
from course.grade import grade  # noqa: E402
from course.gradebook import import_results  # noqa: E402
from course.results import read_result  # noqa: E402
from tests.toy_course import write_toy_course  # noqa: E402


def _clone(out: Path, seed: Path, sid: str) -> dict:
    """Student SID's work folder: the seed's executed notebook and result, renamed."""
    shutil.copytree(seed, out / "work" / sid)
    result = {**read_result(seed), "student_id": sid}
    (out / "work" / sid / "result.json").write_text(json.dumps(result))
    return result


def _timed(label: str, cfg, a, out: Path, results: list[dict]) -> float:
    start = time.perf_counter()
    table = import_results(cfg, a, out, results)
    seconds = time.perf_counter() - start
    assert len(table) == len(results) and (table["total"] == 5).all(), table
    print(f"{label:<34} {len(results):>4} results {seconds:>8.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = write_toy_course(Path(tmp) / "course", written=True)
        cfg = load(root)
        a = cfg.assignment("toy")
        subs = Path(tmp) / "subs" / "seed"
        subs.mkdir(parents=True)
        nbformat.write(nbformat.read(cfg.source_notebook(a), 4), subs / a.notebook)
        graded = Path(tmp) / "graded"
        grade(cfg, a, subs.parent, graded, progress=False)
        out = Path(tmp) / "out"
        results = [_clone(out, graded / "work" / "seed", f"s{k:04d}")
                   for k in range(args.students)]
        _timed("first import", cfg, a, out, results)
        _timed("re-run, nothing changed", cfg, a, out, results)
        _timed("re-run, one student added", cfg, a, out,
               [*results, _clone(out, graded / "work" / "seed", "s_late")])


if __name__ == "__main__":
    main()
