"""Submissions graded per minute by `course grade`, with 1 and with N workers, side by side.

A class of K copies of one assignment's solution notebook (the slowest honest submission:
every cell runs) is graded from scratch (``force``) with 1 worker, then with N, alternating
over rounds so the noise of a shared machine hits both alike. The grade profile applies, as
under any `course grade` run. Reports seconds, submissions per minute and their ratio, and
a paper estimate for a larger class on a larger machine from the measured per-submission
cost.

    .venv/bin/python bench/bench_grading.py [--assignment pneumonia] [--students 6]
        [--workers 2] [--rounds 1] [--estimate 300 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from course.config import load
from course.grade import grade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="pneumonia")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--estimate", type=int, nargs=2, default=(300, 16),
                        metavar=("STUDENTS", "CORES"))
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    cfg = load()
    a = cfg.assignment(args.assignment)
    times: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs = Path(tmp) / "subs"
        for k in range(args.students):
            (subs / f"s{k:03d}").mkdir(parents=True)
            (subs / f"s{k:03d}" / a.notebook).write_bytes(cfg.source_notebook(a).read_bytes())
        for r in range(args.rounds):
            for n in times:
                start = time.perf_counter()
                table = grade(cfg, a, subs, Path(tmp) / f"out{n}", progress=False, workers=n,
                              force=True)
                times[n].append(time.perf_counter() - start)
                assert (table["total"] == a.points).all(), table
                print(f"round {r + 1}, {n} worker(s): {times[n][-1]:.0f} s")
    print(f"\n{args.students} x {a.id} solution notebook, grade profile, "
          f"{os.cpu_count()} cores")
    print(f"{'workers':<8} {'s (median)':>10} {'per minute':>11}")
    rate = {}
    for n, ts in times.items():
        rate[n] = args.students / statistics.median(ts) * 60
        print(f"{n:<8} {statistics.median(ts):>10.0f} {rate[n]:>11.1f}")
    print(f"{args.workers} workers vs 1: {rate[args.workers] / rate[1]:.2f}x "
          f"(target >= 1.7x)")
    # Core-seconds per submission at N workers on this machine's cores (the busier figure:
    # workers compete for cores and memory bandwidth as they would on a server).
    cpus = os.cpu_count() or 1
    core_s = statistics.median(times[args.workers]) * cpus / args.students
    students, cores = args.estimate
    print(f"paper estimate: {core_s:.0f} core-seconds per submission; {students} students "
          f"with {cores} workers on {cores} cores: {students * core_s / cores / 60:.0f} min "
          "(target < 30 min)")


if __name__ == "__main__":
    main()
