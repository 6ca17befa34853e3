"""The `course` command: the instructor's one command per job.

    python -m course demo                  the main job on the embedded default
    python -m course release [ID ...]      student notebooks into release/ (nbgrader)
    python -m course release --check       fail if the committed release/ is stale or leaks
    python -m course publish OUT           the public student bundle (release + helpers)
    python -m course lab                   JupyterLab + nbgrader, configured from course.toml
    python -m course grade ID SUBMISSIONS --out OUT    grades.csv + feedback/ (nbgrader)
    python -m course grade-merge ID SHARD_OUT ... --out OUT    fold `grade --shard` outputs
    python -m course formgrade ID --out OUT    Formgrader on OUT: TAs score written answers
    python -m course export ID --out OUT --lms canvas|moodle   grades + feedback for the LMS
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course.config import LMS_CHOICES


def _release(args) -> int:
    from course.config import load
    from course.release import generate, leaks, stale, sync_generated

    cfg = load(args.root)
    chosen = [cfg.assignment(i) for i in args.ids] if args.ids else list(cfg.assignments)
    if not chosen:
        print("no assignments in course.toml: nothing to release")
        return 0
    if args.check:
        problems = stale(cfg, chosen)
    else:
        for a in chosen:
            if sync_generated(cfg, a):
                print(f"regenerated the set-up / summary cells of {cfg.source_notebook(a)}")
        for path in generate(cfg, chosen, cfg.root):
            print(f"released {path}")
        problems = []
    problems += leaks(cfg, chosen)
    for p in problems:
        print(p, file=sys.stderr)
    if args.check and not problems:
        print(f"release/ is current and leak-free for {', '.join(a.id for a in chosen)}")
    return 1 if problems else 0


def _grade(args) -> int:
    from dataclasses import replace

    from course.config import load
    from course.grade import grade, parse_shard
    from course.late import read_extensions, read_timestamps

    cfg = load(args.root)
    shard = parse_shard(args.shard) if args.shard else None
    try:
        times = read_timestamps(args.timestamps) if args.timestamps else None
        extra = read_extensions(args.extensions) if args.extensions else {}
    except (FileNotFoundError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    a = cfg.assignment(args.assignment)
    if extra:  # the CSV's due dates win over course.toml's for the same student
        a = replace(a, extensions=tuple({**dict(a.extensions), **extra}.items()))
    table = grade(cfg, a, args.submissions, args.out,
                  pattern=args.pattern, workers=args.workers, force=args.force, shard=shard,
                  students=set(args.student or ()), lms=args.lms, roster=args.roster,
                  timestamps=times)
    return _summary(table, args.out)


def _grade_merge(args) -> int:
    from course.config import load
    from course.gradebook import merge

    cfg = load(args.root)
    table = merge(cfg, cfg.assignment(args.assignment), args.shards, args.out)
    return _summary(table, args.out)


def _export(args) -> int:
    from course.config import load
    from course.export import export

    cfg = load(args.root)
    try:
        report = export(args.out, cfg.assignment(args.assignment), args.lms, args.roster)
    except (FileNotFoundError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"grades for {args.lms}: {report.grades}")
    if report.feedback_zip:
        print(f"feedback to upload: {report.feedback_zip}")
    for title, items in (("roster entries with no grade", report.unmatched_roster),
                         ("graded but not on the roster (not exported)", report.not_on_roster),
                         ("left blank", report.blank), ("notes", report.notes)):
        if items:
            print(f"{title} ({len(items)}):")
            for item in items:
                print(f"  {item}")
    return 0


def _summary(table, out: Path) -> int:
    with_reason = table.assign(reason=table["reason"].str.slice(0, 60))
    print(with_reason.to_string(index=False))
    print(f"\n{len(table)} students: " + ", ".join(
        f"{n} {s}" for s, n in table["status"].value_counts().items()))
    print(f"grades: {out / 'grades.csv'}  feedback: {out / 'feedback'}/")
    return 0  # the run completed, whatever the students scored


def _publish(args) -> int:
    from course.config import load
    from course.publish import publish

    try:
        out = publish(load(args.root), args.out)
    except FileExistsError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"student bundle written to {out} (leak guard passed)")
    return 0


def _demo(args) -> int:
    if args.data_only:
        from course.data_figure import run

        run(args.out)
        return 0
    from course.config import load
    from course.demo import run_course

    cfg = load(args.root)
    run_course(cfg, args.out.resolve(), data_demo=args.root is None)
    return 0


def _lab(args) -> int:
    import os

    from course.config import load
    from course.nbgrader_setup import write_config_file

    cfg = load(args.root)
    (cfg.root / ".course").mkdir(exist_ok=True)
    path = write_config_file(cfg, cfg.root / "nbgrader_config.py",
                             cfg.root / ".course" / "gradebook.db")
    print(f"wrote {path} from course.toml; starting JupyterLab with nbgrader in {cfg.root}")
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    os.chdir(cfg.root)
    os.execvpe(os.path.join(bindir, "jupyter"), ["jupyter", "lab", *args.lab_args], env)


def _formgrade(args) -> int:
    import os

    from course.config import load
    from course.formgrade import plan

    cfg = load(args.root)
    try:
        p = plan(cfg, cfg.assignment(args.assignment), args.out)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"wrote {p.config} (course folder {p.folder}, gradebook {args.out.resolve()}"
          f"/gradebook.db)\n{p.pending} submission(s) with written answers to grade\n"
          f"Formgrader: {p.where}\nin {p.folder}: {' '.join(p.argv)}")
    if args.dry_run:
        return 0
    os.chdir(p.folder)  # Formgrader reads nbgrader_config.py from its working directory
    os.execv(p.argv[0], p.argv)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job, shared options from parent parsers."""
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", type=Path, default=None,
                      help="course root holding course/course.toml (default: this repository)")
    graded = argparse.ArgumentParser(add_help=False)
    graded.add_argument("assignment", help="assignment id from course.toml")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out", type=Path, required=True,
                     help="output folder: grades.csv, feedback/, gradebook.db")

    parser = argparse.ArgumentParser(prog="course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", parents=[root], help="the whole course offline on synthetic "
                          "data: data figure, solution notebooks (smoke), release check, three "
                          "simulated students graded per assignment")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"),
                      help="folder for the figure, executed notebooks, grades and demo.log "
                           "(default: outputs/demo)")
    demo.add_argument("--data-only", action="store_true",
                      help="only the data demo: one batch of each data set, as a figure")
    rel = sub.add_parser("release", parents=[root],
                         help="generate student notebooks into release/")
    rel.add_argument("ids", nargs="*", help="assignment ids (default: all in course.toml)")
    rel.add_argument("--check", action="store_true",
                     help="regenerate into a scratch folder and fail if release/ differs "
                          "or leaks (default: off, i.e. write release/)")
    grd = sub.add_parser("grade", parents=[graded, root, out],
                         help="autograde submissions into grades.csv + feedback")
    grd.add_argument("submissions", type=Path,
                     help="folder of <student_id>/<notebook>.ipynb, or an LMS zip of them")
    grd.add_argument("--workers", type=int, default=None,
                     help="submissions graded at once, each in its own process "
                          "(default: [grading] workers)")
    grd.add_argument("--force", action="store_true",
                     help="grade again even the submissions whose result is current "
                          "(default: off; a change to the source notebook, autograder/, "
                          "helpers/, the limits or nbgrader regrades everyone anyway)")
    grd.add_argument("--student", action="append", default=None, metavar="ID",
                     help="grade this student again even if the result is current; repeat "
                          "for several (default: none)")
    grd.add_argument("--shard", default=None, metavar="I/N",
                     help="grade only shard I of N (a stable hash of the student id); fold "
                          "the shards' outputs with `course grade-merge`")
    grd.add_argument("--pattern", default=None,
                     help="regex with a (?P<student_id>...) group for notebooks lying flat in "
                          "SUBMISSIONS (default: [grading] file_pattern, else the text "
                          "before the first underscore)")
    grd.add_argument("--lms", choices=LMS_CHOICES, default=None,
                     help="shape of SUBMISSIONS: an LMS's own export (students keyed by the "
                          "LMS's id) or folders of <student_id>/ (default: [grading] lms, "
                          "else folders)")
    grd.add_argument("--roster", type=Path, default=None, metavar="CSV",
                     help="the LMS's gradebook export (Canvas) or grading worksheet (Moodle): "
                          "every enrolled student gets a row, 'no submission' included "
                          "(default: none, only the students in SUBMISSIONS)")
    grd.add_argument("--timestamps", type=Path, default=None, metavar="CSV",
                     help="submission times for [grading] late_policy: a CSV with the columns "
                          "student_id, submitted_at (ISO 8601, e.g. 2027-01-15T23:59:00+01:00); "
                          "wins over the export's times (default: the export's, if any)")
    grd.add_argument("--extensions", type=Path, default=None, metavar="CSV",
                     help="per-student due dates for [grading] late_policy: a CSV with the "
                          "columns student_id, due (ISO 8601 date or time, e.g. 2027-01-18 or "
                          "2027-01-18T23:59:00+01:00); wins over the assignment's extensions in "
                          "course.toml (default: course.toml's only)")
    mrg = sub.add_parser("grade-merge", parents=[graded, root, out],
                         help="fold `grade --shard` outputs into one gradebook")
    mrg.add_argument("shards", type=Path, nargs="+", help="the shards' --out folders")
    exp = sub.add_parser("export", parents=[graded, root, out],
                         help="grades and feedback of a grading folder as the LMS imports them")
    exp.add_argument("--lms", choices=("canvas", "moodle"), required=True,
                     help="Canvas: gradebook CSV + re-upload zip; Moodle: grading worksheet + "
                          "feedback zip")
    exp.add_argument("--roster", type=Path, default=None, metavar="CSV",
                     help="the LMS's gradebook export (Canvas) or grading worksheet (Moodle): "
                          "every enrolled student and the LMS's own columns (default: the "
                          "students graded)")
    frm = sub.add_parser("formgrade", parents=[graded, root, out],
                         help="JupyterLab's Formgrader on a grading folder: TAs score the "
                              "written answers there; `course grade` again keeps the scores")
    frm.add_argument("--dry-run", action="store_true",
                     help="write the config and print the command, start nothing "
                          "(default: start JupyterLab)")
    pub = sub.add_parser("publish", parents=[root],
                         help="write the public student bundle (release + helpers)")
    pub.add_argument("out", type=Path,
                     help="bundle folder: new, empty, or an earlier bundle (its .git is kept)")
    lab = sub.add_parser("lab", parents=[root],
                         help="JupyterLab with the nbgrader extension on this course")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="passed to jupyter lab")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m course` and of the `course` script."""
    from course.nbgrader_setup import put_bin_on_path

    args = build_parser().parse_args(argv)
    # Before anything can start a thread: nbgrader finds `alembic` through PATH.
    put_bin_on_path()
    commands = {"lab": _lab, "publish": _publish, "release": _release, "grade": _grade,
                "grade-merge": _grade_merge, "demo": _demo, "export": _export,
                "formgrade": _formgrade}
    return commands[args.command](args)
