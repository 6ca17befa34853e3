"""Submissions graded per minute by `course grade`: 1 and N workers, sandbox on and off.

A class of K copies of one assignment's solution notebook (the slowest honest submission:
every cell runs) is graded from scratch (``force``) four ways: 1 worker and N workers, each
with the sandbox (``[grading] sandbox = "unshare"``, docs/grading-security.md) and
without (``"none"``). The four run one after the other in every round, in an order that
rotates between rounds, so the noise of a shared machine hits them alike. The grade
profile applies, as under any `course grade` run. Reports seconds, submissions per minute,
the ratios (N workers vs 1; sandbox vs none at 1 and at N), the peak resident memory of the
largest process a run started (a worker or its kernel: what `[grading] memory_gb` must
leave room for), and a paper estimate for a larger class on a larger machine.

    .venv/bin/python bench/bench_grading.py [--assignment pneumonia] [--students 6]
        [--workers 2] [--rounds 2] [--sandboxes unshare none] [--estimate 300 16]

The unshare backend needs root (course/sandbox.py); ``--sandboxes bwrap none`` measures the
bwrap backend (root or not; not yet in bench/README.md), ``--sandboxes none`` runs anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from course.config import load
from course.grade import grade


def peak_child_rss_mb() -> float:
    """The largest peak RSS of any finished descendant so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="pneumonia")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sandboxes", nargs="+", default=["unshare", "none"])
    parser.add_argument("--estimate", type=int, nargs=2, default=(300, 16),
                        metavar=("STUDENTS", "CORES"))
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    base = load()
    a = base.assignment(args.assignment)
    runs = [(n, box) for n in (1, args.workers) for box in args.sandboxes]
    times: dict[tuple[int, str], list[float]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs = Path(tmp) / "subs"
        for k in range(args.students):
            (subs / f"s{k:03d}").mkdir(parents=True)
            (subs / f"s{k:03d}" / a.notebook).write_bytes(base.source_notebook(a).read_bytes())
        for r in range(args.rounds):
            for n, box in runs[r % len(runs):] + runs[:r % len(runs)]:
                cfg = dataclasses.replace(base, sandbox=box)
                start = time.perf_counter()
                table = grade(cfg, a, subs, Path(tmp) / f"out-{n}-{box}", progress=False,
                              workers=n, force=True)
                times[n, box].append(time.perf_counter() - start)
                assert (table["total"] == a.points).all(), table
                assert table["reason"].str.contains(
                    "not sandboxed" if box == "none" else f"sandbox={box}").all(), table
                print(f"round {r + 1}, {n} worker(s), sandbox {box}: "
                      f"{times[n, box][-1]:.0f} s", flush=True)
    print(f"\n{args.students} x {a.id} solution notebook, grade profile, {args.rounds} "
          f"round(s), {os.cpu_count()} cores")
    print(f"{'workers':<8} {'sandbox':<8} {'s (median)':>10} {'per minute':>11}")
    rate = {}
    for (n, box), ts in times.items():
        rate[n, box] = args.students / statistics.median(ts) * 60
        print(f"{n:<8} {box:<8} {statistics.median(ts):>10.0f} {rate[n, box]:>11.1f}")
    for box in args.sandboxes:
        print(f"{args.workers} workers vs 1, sandbox {box}: "
              f"{rate[args.workers, box] / rate[1, box]:.2f}x (target >= 1.7x)")
    others = [b for b in args.sandboxes if b != "none"]
    if "none" in args.sandboxes:
        for box in others:
            for n in (1, args.workers):
                print(f"sandbox {box} vs none, {n} worker(s): "
                      f"{rate[n, box] / rate[n, 'none']:.2f} of the throughput "
                      "(target >= 0.90)")
    print(f"largest process (worker or kernel), peak RSS: {peak_child_rss_mb():.0f} MB")
    # Core-seconds per submission at N workers on this machine's cores (the busier figure:
    # workers compete for cores and memory bandwidth as they would on a server).
    cpus = os.cpu_count() or 1
    core_s = statistics.median(times[args.workers, args.sandboxes[0]]) * cpus / args.students
    students, cores = args.estimate
    print(f"paper estimate ({args.sandboxes[0]}): {core_s:.0f} core-seconds per submission; "
          f"{students} students with {cores} workers on {cores} cores: "
          f"{students * core_s / cores / 60:.0f} min (target < 30 min)")


if __name__ == "__main__":
    main()
