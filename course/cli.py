"""The `course` command: `python -m course demo` (release, publish and grade come later)."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m course` and of the `course` script."""
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate the synthetic data, load a batch of each, "
                          "save a figure (the main job on the embedded default)")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"),
                      help="folder for the figure (default: outputs/demo)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from course.demo import run

        run(args.out)
    return 0
