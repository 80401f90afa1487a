"""Grading benchmark: 30 submissions of exercise 1, graded in parallel across the cores.

Run from the repository root::

    python benchmarks/bench_grading.py                  # 30 submissions, one worker per core
    python benchmarks/bench_grading.py --students 30 --jobs 1 --jobs 2

The class is a realistic mix, made by tests/submissions_factory.py from the
released notebook: two thirds answer every exercise correctly, one sixth hand
in the untouched release, one sixth a mutant (wrong sign, wrong axis, ...).
Every submission goes through the real pipeline: a worker process, nbgrader's
autograde in a confined kernel, nbgrader's feedback page.

For each ``--jobs`` setting the whole class is graded from scratch (a fresh
gradebook, so nothing is reused) and the wall time is reported, with the
per-submission median of the workers' own timings, and the CPU seconds the
workers and their kernels used (a figure that does not depend on how busy the
machine is: divided by the cores it bounds the wall time on an idle machine). The grades are checked too:
full marks for the correct answers, zero for the stubs, points lost for the
mutants, so a fast run can never be a broken one.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from course_lib.grading import GradeRun, Limits, find_exercises, grade, prepare_course

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "ex01_mdp_bellman"


def _factory():
    """tests/submissions_factory.py, loaded from its path (the tests folder is not a package)."""
    spec = importlib.util.spec_from_file_location("submissions_factory", ROOT / "tests" / "submissions_factory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_class(course: Path, submitted: Path, students: int) -> dict[str, str]:
    """Write ``students`` submissions; returns {student: kind} with kind in good/stub/mutant."""
    factory = _factory()
    rounds = factory.mutant_rounds(ASSIGNMENT)
    kinds = {}
    for k in range(students):
        student = f"student{k:03d}"
        if k % 6 == 4:
            kinds[student] = "stub"
            nb = factory.released(course, ASSIGNMENT)
        elif k % 6 == 5:
            kinds[student] = "mutant"
            mutants = rounds[(k // 6) % len(rounds)]
            nb = factory.solved(course, ASSIGNMENT, {cell: m.code for cell, m in mutants.items()})
        else:
            kinds[student] = "good"
            nb = factory.solved(course, ASSIGNMENT)
        factory.put(submitted, student, ASSIGNMENT, nb)
    return kinds


def check_grades(results: list[dict], kinds: dict[str, str]) -> None:
    for r in results:
        kind = kinds[r["student"]]
        ok = {"good": r["total"] == r["max_total"] > 0, "stub": r["total"] == 0,
              "mutant": r["total"] < r["max_total"]}[kind]
        if not ok:
            raise AssertionError(f"{r['student']} ({kind}) got {r['total']}/{r['max_total']}: {r['status']}")


def bench(students: int, jobs: int, work: Path, course: Path, submitted: Path, kinds: dict[str, str]) -> dict:
    out = work / f"jobs{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    run = GradeRun(submissions=submitted, gradebook=out / "grades.csv", feedback=out / "feedback", root=ROOT,
                   course_dir=course, jobs=jobs, work_dir=out / "sandboxes", limits=Limits())
    start = time.perf_counter()
    results = grade(run, log=lambda line: None)
    wall = time.perf_counter() - start
    check_grades(results, kinds)
    per = [r["seconds"] for r in results if "seconds" in r]
    return {"jobs": jobs, "students": students, "wall_s": wall, "per_submission_median_s": statistics.median(per),
            "per_submission_max_s": max(per), "cpu_s": sum(r.get("cpu_s", 0.0) for r in results),
            "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=30, help="submissions to grade (default 30)")
    parser.add_argument("--jobs", type=int, action="append", default=None,
                        help="parallel workers; repeat to compare (default: one per core)")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs_list = args.jobs or [cores]
    exercises = [e for e in find_exercises(ROOT) if e.assignment == ASSIGNMENT]
    print(f"# grading {args.students} submissions of {ASSIGNMENT} on {platform.machine()}, "
          f"{cores} core(s), Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        work = Path(tmp)
        course = work / "course"
        prepare_course(course, exercises)
        kinds = make_class(course, work / "submitted", args.students)
        for jobs in jobs_list:
            row = bench(args.students, jobs, work, course, work / "submitted", kinds)
            rows.append(row)
            print(f"jobs={row['jobs']}: {row['wall_s']:.1f} s for {row['students']} submissions "
                  f"({row['wall_s'] / row['students']:.2f} s each on the clock); one submission takes "
                  f"{row['per_submission_median_s']:.1f} s (median), {row['per_submission_max_s']:.1f} s (max); "
                  f"{row['cpu_s']:.0f} CPU-s in workers and kernels; load average after {row['load_after']:.1f}")
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
