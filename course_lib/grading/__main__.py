"""Command line: ``python -m course_lib.grading release ...`` and ``python -m course_lib.grading grade ...``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .sandbox import Limits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.grading", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", help="lay out the nbgrader course and release the student notebooks")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--chapter", type=int, action="append", metavar="N", help="a chapter's exercise (repeatable)")
    which.add_argument("--all", action="store_true", help="every chapter's exercise")
    r.add_argument("--root", type=Path, default=Path.cwd(), help="course repository (default: current folder)")
    r.add_argument("--course", type=Path, default=None, help="nbgrader course folder (default: ROOT/build/grading)")
    r.add_argument("--to", type=Path, default=None, help="also copy the released notebooks into this folder")

    d = Limits()
    g = sub.add_parser("grade", help="grade submitted/<student>/<assignment>/<notebook>.ipynb into a gradebook")
    g.add_argument("submissions", type=Path, help="the submitted/ folder (or a folder containing it)")
    g.add_argument("--gradebook", type=Path, required=True, help="CSV file to write")
    g.add_argument("--feedback", type=Path, required=True, help="folder for feedback/<student>/<assignment>/<notebook>.html")
    g.add_argument("--root", type=Path, default=Path.cwd(), help="course repository (default: current folder)")
    g.add_argument("--course", type=Path, default=None, help="nbgrader course folder (default: ROOT/build/grading)")
    g.add_argument("--state", type=Path, default=None, help="recorded results for restarts (default: GRADEBOOK.state)")
    g.add_argument("--jobs", type=int, default=0, help="submissions graded at once (default: one per core)")
    g.add_argument("--cell-timeout", type=int, default=d.cell_timeout_s, help=f"seconds per cell (default {d.cell_timeout_s})")
    g.add_argument("--cpu", type=int, default=d.cpu_s, help=f"CPU seconds per kernel (default {d.cpu_s})")
    g.add_argument("--wall", type=int, default=d.wall_s, help=f"seconds per submission, all included (default {d.wall_s})")
    g.add_argument("--memory-mb", type=int, default=d.memory_mb, help=f"kernel address space in MB (default {d.memory_mb})")
    g.add_argument("--max-notebook-mb", type=int, default=d.submission_mb, help=f"largest notebook graded (default {d.submission_mb})")
    g.add_argument("--allow-read", type=Path, action="append", default=[], help="a path the kernel may also read (repeatable)")
    g.add_argument("--fast", action="store_true", help="grade with COURSE_FAST=1")
    g.add_argument("--regrade", action="store_true", help="grade everything again, ignoring recorded results")
    g.add_argument("--work-dir", type=Path, default=None, help="where the temporary sandboxes go (default: system temp)")
    g.add_argument("--keep-sandboxes", action="store_true", help="keep each submission's temporary folder")
    return p


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from . import GradeRun, grade, release  # inside the try: Ctrl-C during the imports is a clean stop too

        if args.command == "release":
            course = args.course or args.root / "build" / "grading"
            out = release(args.root, course, None if args.all else args.chapter, args.to)
            for a, path in out.items():
                print(f"released {a}: {path}")
            return 0
        signal.signal(signal.SIGTERM, _terminate)
        limits = Limits(cell_timeout_s=args.cell_timeout, cpu_s=args.cpu, wall_s=args.wall,
                        memory_mb=args.memory_mb, submission_mb=args.max_notebook_mb)
        run = GradeRun(submissions=args.submissions, gradebook=args.gradebook, feedback=args.feedback, root=args.root,
                       course_dir=args.course, state=args.state, limits=limits, jobs=args.jobs, fast=args.fast,
                       regrade=args.regrade, allow_read=[str(p) for p in args.allow_read],
                       work_dir=args.work_dir, keep_sandboxes=args.keep_sandboxes)
        results = grade(run)
        print(f"gradebook: {run.gradebook} ({len(results)} rows); feedback: {run.feedback}")
        return 0
    except KeyboardInterrupt:
        print("interrupted: results recorded so far are kept; run the same command again to finish", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
