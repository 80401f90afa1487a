"""Grade a folder of submissions in parallel, into a CSV gradebook and one feedback page per notebook.

``submitted/<student>/<assignment>/<notebook>.ipynb`` is nbgrader's layout.
Each submission is graded by its own worker process
(:mod:`course_lib.grading.worker`) in a fresh temporary folder, at most
``jobs`` at a time (one per core by default). A worker that runs past
``Limits.wall_s`` is killed with everything it started, and the submission gets
a row saying so.

Restartable: each finished submission's result is written at once (atomically)
to ``STATE/results/<assignment>/<student>.json`` together with the hash of the
submitted files and of the exercise's source. A run that is interrupted, by
Ctrl-C, a kill or a reboot, loses only the submissions in progress; run the
same command again and it grades only what has no result yet (or whose files or
exercise changed). ``regrade=True`` grades everything again.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import multiprocessing
import os
import shutil
import site
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Exercise, find_exercises, grade_cells, prepare_course
from .sandbox import Limits
from .worker import submission_digest

__all__ = ["Submission", "GradeRun", "discover", "grade", "write_gradebook", "read_gradebook"]

# What a worker inherits from the grader's environment; the rest (tokens, credentials) stays behind.
_WORKER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "SYSTEMROOT")


@dataclass(frozen=True)
class Submission:
    student: str  # folder name under submitted/
    assignment: str  # folder name under the student's folder
    folder: Path  # submitted/<student>/<assignment>


@dataclass
class GradeRun:
    """One grading run: where things are, and the limits each submission runs under."""

    submissions: Path  # the submitted/ folder, or a folder that contains one
    gradebook: Path  # the CSV to write
    feedback: Path  # feedback/<student>/<assignment>/<notebook>.html go here
    root: Path = Path(".")  # the course repository (its solutions/ are the exercises)
    course_dir: Path | None = None  # the nbgrader course folder (default: ROOT/build/grading)
    state: Path | None = None  # recorded results, for restarts (default: the gradebook's name + .state)
    limits: Limits = field(default_factory=Limits)
    jobs: int = 0  # parallel workers; 0 means one per available core
    fast: bool = False  # grade with COURSE_FAST=1 (smaller budgets in heavy cells)
    regrade: bool = False  # ignore recorded results
    allow_read: list[str] = field(default_factory=list)  # extra paths the kernel may read (data, weights)
    work_dir: Path | None = None  # where the temporary sandboxes go (default: the system's temp folder)
    keep_sandboxes: bool = False  # keep each sandbox (for debugging the grader)

    def resolved(self) -> "GradeRun":
        self.root = Path(self.root).resolve()
        self.course_dir = Path(self.course_dir or self.root / "build" / "grading").resolve()
        self.gradebook = Path(self.gradebook).resolve()
        self.feedback = Path(self.feedback).resolve()
        self.state = Path(self.state or self.gradebook.with_name(self.gradebook.name + ".state")).resolve()
        if self.jobs <= 0:
            self.jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return self


def discover(submissions: Path) -> list[Submission]:
    """Every ``<student>/<assignment>/`` folder under ``submissions`` (or under its ``submitted/``)."""
    submissions = Path(submissions)
    if (submissions / "submitted").is_dir():
        submissions = submissions / "submitted"
    if not submissions.is_dir():
        raise ValueError(f"submissions: {submissions} is not a folder of submitted/<student>/<assignment>/ folders")
    out = []
    for student in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for assignment in sorted(p for p in student.iterdir() if p.is_dir() and not p.name.startswith(".")):
            out.append(Submission(student.name, assignment.name, assignment.resolve()))
    return out


# ---------------------------------------------------------------- process handling
def _kill_tree(pid: int) -> None:
    """Kill a worker and everything it started (its kernel runs in a session of its own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


# Workers are forked from a server that has imported nbgrader, nbconvert and
# jsonschema once: importing them costs each fresh process seconds of CPU.
_PRELOAD = ["course_lib.grading.worker", "course_lib.grading.preprocessors", "nbgrader.apps", "nbgrader.api",
            "nbgrader.preprocessors", "nbconvert", "nbclient", "jupyter_client", "nbformat", "traitlets.config"]
_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CTX = multiprocessing.get_context("forkserver")
            _CTX.set_forkserver_preload(_PRELOAD)
        else:
            _CTX = multiprocessing.get_context("spawn")
    return _CTX


def _worker_entry(sandbox: str, env: dict[str, str]) -> None:
    """Body of a worker process: its own session, its own log, the grader's environment left behind."""
    from .worker import die_with_parent, main

    os.setsid()  # its own process group: Ctrl-C in the terminal reaches the grader only
    die_with_parent()
    fd = os.open(os.path.join(sandbox, "worker.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(sandbox)
    os.environ.clear()
    os.environ.update(env)
    sys.exit(main([os.path.join(sandbox, "job.json")]))


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _WORKER_ENV or k.startswith("LC_")}
    # A kernel runs with HOME in its sandbox; keep packages installed with `pip --user` importable.
    env["PYTHONUSERBASE"] = os.environ.get("PYTHONUSERBASE", site.getuserbase())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class _Runner:
    def __init__(self, run: GradeRun, exercises: dict[str, Exercise]):
        self.run = run
        self.exercises = exercises
        self.stop = threading.Event()
        self.in_flight: dict[int, multiprocessing.Process] = {}
        self.lock = threading.Lock()

    def result_path(self, sub: Submission) -> Path:
        return self.run.state / "results" / sub.assignment / f"{sub.student}.json"

    def recorded(self, sub: Submission, key: dict) -> dict | None:
        path = self.result_path(sub)
        if self.run.regrade or not path.exists():
            return None
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        same = all(result.get(k) == v for k, v in key.items())
        return result if same else None

    def grade_one(self, sub: Submission, key: dict) -> dict | None:
        """Grade in a worker process; None when the run was interrupted (nothing is recorded then)."""
        run = self.run
        if self.stop.is_set():
            return None
        work_dir = run.work_dir or Path(tempfile.gettempdir())
        work_dir.mkdir(parents=True, exist_ok=True)
        # The grader's pid in the name tells a later run whether this folder's owner is still alive.
        sandbox = Path(tempfile.mkdtemp(prefix=f"grade-{os.getpid()}-{sub.assignment}-", dir=work_dir))
        job = {
            "course_dir": str(run.course_dir), "assignment": sub.assignment, "student": sub.student,
            "submission": str(sub.folder), "sandbox": str(sandbox), "result": str(sandbox / "result.json"),
            "limits": run.limits.as_dict(), "fast": run.fast, "allow_read": run.allow_read,
        }
        (sandbox / "job.json").write_text(json.dumps(job, indent=1))
        proc = _context().Process(target=_worker_entry, args=(str(sandbox), _worker_env()), daemon=False)
        proc.start()
        with self.lock:
            self.in_flight[proc.pid] = proc
        if self.stop.is_set():  # interrupted while this worker was starting: interrupt() did not see it
            _kill_tree(proc.pid)
        try:
            proc.join(timeout=run.limits.wall_s)
            timed_out = proc.is_alive()
            if timed_out:
                _kill_tree(proc.pid)
                proc.join()
        finally:
            with self.lock:
                self.in_flight.pop(proc.pid, None)
        if self.stop.is_set():
            shutil.rmtree(sandbox, ignore_errors=True)
            return None
        result_file = sandbox / "result.json"
        if result_file.exists() and not timed_out:
            result = json.loads(result_file.read_text())
        else:
            why = (f"grading took longer than the {run.limits.wall_s} s wall-time limit and was stopped" if timed_out
                   else f"the grader's worker died (exit code {proc.exitcode})")
            result = {"student": sub.student, "assignment": sub.assignment, "cells": [], "feedback": {}, "status": why}
        result = self._complete(sub, result, sandbox)
        result.update(key)
        result["graded_at"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._record(sub, result)
        if run.keep_sandboxes:
            result["sandbox_dir"] = str(sandbox)
        else:
            shutil.rmtree(sandbox, ignore_errors=True)
        return result

    def _complete(self, sub: Submission, result: dict, sandbox: Path) -> dict:
        """Zero rows for a submission whose worker gave no cells; feedback pages copied out of the sandbox."""
        ex = self.exercises[sub.assignment]
        source = self.run.course_dir / "source" / sub.assignment
        if not result.get("cells"):
            cells = []
            for nb_path in sorted(source.glob("*.ipynb")):
                for gid, points in grade_cells(nbformat.read(nb_path, as_version=4)):
                    cells.append({"notebook": nb_path.stem, "grade_id": gid, "points": points, "score": 0.0,
                                  "error": result["status"]})
            result["cells"] = cells
        result["total"] = sum(c["score"] for c in result["cells"])
        result["max_total"] = sum(c["points"] for c in result["cells"])
        copied = {}
        for name, path in result.get("feedback", {}).items():
            dest = self.run.feedback / sub.student / sub.assignment / f"{name}.html"
            if Path(path).is_file() and Path(path).resolve().is_relative_to(sandbox.resolve()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest.with_suffix(".tmp"))
                os.replace(dest.with_suffix(".tmp"), dest)
                copied[name] = str(dest)
        if not copied:  # the worker never got that far
            dest = self.run.feedback / sub.student / sub.assignment / f"{sub.assignment}.html"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h1>{ex.assignment}: not graded</h1>"
                            f"<p>{_html(result['status'])}</p><p>0 / {result['max_total']:g} points.</p></body></html>")
            copied[sub.assignment] = str(dest)
        result["feedback"] = copied
        return result

    def _record(self, sub: Submission, result: dict) -> None:
        path = self.result_path(sub)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, path)

    def interrupt(self) -> None:
        self.stop.set()
        with self.lock:
            pids = list(self.in_flight)
        for pid in pids:
            _kill_tree(pid)


def _remove_stale_sandboxes(work_dir: Path) -> None:
    """Remove the sandboxes of a grader that was killed (their runner process is gone)."""
    import psutil

    for sandbox in work_dir.glob("grade-*-*"):
        pid = sandbox.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(sandbox, ignore_errors=True)


def _html(text: str) -> str:
    import html

    return html.escape(text)


def _unknown(sub: Submission, known: list[str]) -> dict:
    return {"student": sub.student, "assignment": sub.assignment, "cells": [], "total": 0.0, "max_total": 0.0,
            "feedback": {}, "status": f"unknown assignment '{sub.assignment}' (this course has: {', '.join(known)})"}


def grade(run: GradeRun, log=print) -> list[dict]:
    """Grade every submission under ``run.submissions``; returns one result per (student, assignment).

    Writes the CSV gradebook after every finished submission, so it is always
    current. Raises KeyboardInterrupt after cleaning up if interrupted.
    """
    run = run.resolved()
    subs = discover(run.submissions)
    exercises = {e.assignment: e for e in find_exercises(run.root)}
    if not exercises:
        raise ValueError(f"root: {run.root} has no solutions/exNN_*.py; run from the course repository or pass --root")
    wanted = sorted({s.assignment for s in subs if s.assignment in exercises})
    prepare_course(run.course_dir, [exercises[a] for a in wanted])
    order = {a: i for i, a in enumerate(exercises)}
    _remove_stale_sandboxes(Path(run.work_dir or tempfile.gettempdir()))
    runner = _Runner(run, exercises)
    results: dict[tuple[str, str], dict] = {}
    todo = []
    for sub in subs:
        if sub.assignment not in exercises:
            results[(sub.student, sub.assignment)] = _unknown(sub, list(exercises))
            continue
        key = {"submission_sha256": submission_digest(sub.folder), "source_sha256": exercises[sub.assignment].digest()}
        done = runner.recorded(sub, key)
        if done is not None:
            results[(sub.student, sub.assignment)] = done
        else:
            todo.append((sub, key))
    log(f"grading {len(todo)} submission(s) with {run.jobs} worker(s); {len(subs) - len(todo)} already graded or unknown")
    columns = _columns(run, wanted, order)
    write_gradebook(run.gradebook, results.values(), columns)
    pool = ThreadPoolExecutor(max_workers=run.jobs)
    try:
        futures = {pool.submit(runner.grade_one, sub, key): sub for sub, key in todo}
        for fut in as_completed(futures):
            sub = futures[fut]
            result = fut.result()
            if result is None:
                continue
            results[(sub.student, sub.assignment)] = result
            write_gradebook(run.gradebook, results.values(), columns)
            log(f"  {sub.student}/{sub.assignment}: {result['total']:g}/{result['max_total']:g}  {_short(result['status'])}")
    except BaseException:
        runner.interrupt()
        pool.shutdown(wait=True, cancel_futures=True)
        write_gradebook(run.gradebook, results.values(), columns)
        raise
    pool.shutdown(wait=True)
    return [results[k] for k in sorted(results)]


def _short(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _columns(run: GradeRun, assignments: list[str], order: dict[str, int]) -> list[str]:
    """Each graded cell of the assignments present, in course and notebook order, once."""
    cols = []
    for a in sorted(assignments, key=order.get):
        for nb_path in sorted((run.course_dir / "source" / a).glob("*.ipynb")):
            for gid, _ in grade_cells(nbformat.read(nb_path, as_version=4)):
                if gid not in cols:
                    cols.append(gid)
    return cols


def write_gradebook(path: Path, results, columns: list[str]) -> None:
    """The CSV: student, assignment, points per graded cell, total, max_total, status (atomically replaced).

    A graded cell of another assignment is left empty; a row's points are for its own assignment.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "assignment", *columns, "total", "max_total", "status"])
    for r in sorted(results, key=lambda r: (r["student"], r["assignment"])):
        scores = {c["grade_id"]: c["score"] for c in r.get("cells", [])}
        w.writerow([r["student"], r["assignment"], *[f"{scores[c]:g}" if c in scores else "" for c in columns],
                    f"{r.get('total', 0.0):g}", f"{r.get('max_total', 0.0):g}", r["status"]])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def read_gradebook(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """The CSV back as {(student, assignment): row}."""
    with open(path, newline="") as f:
        return {(row["student"], row["assignment"]): row for row in csv.DictReader(f)}
