"""Instructor grading end to end: release, then grade one batch of good, wrong and bad submissions.

One batch (built by tests/submissions_factory.py) goes through the real
pipeline, nbgrader's autograde in sandboxed worker processes, two at a time:

* every exercise's solution (answered in the released notebook) and its
  untouched release (the stub), for every ``solutions/exNN_*.py``;
* exercise 1's mutants, which must lose the points of the check they break;
* the issue's bad submissions, each of which must get a row with 0 on what it
  broke and the reason, while the rest of the batch is graded normally.

Then a rerun must grade nothing twice, and a run killed half-way must lose no
recorded grade when restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.build import make_exercise, read_source
from course_lib.grading import GradeRun, Limits, find_exercises, grade, prepare_course, read_gradebook, release
from course_lib.grading.course import grade_cells
from course_lib.grading.sandbox import landlock_abi

import submissions_factory as factory

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = find_exercises(ROOT)
EX01 = factory.EX01
# Small limits keep the batch quick; the timeout still leaves the slowest check
# (exercise 1's policy evaluation, about 2 s on a loaded 2-core machine) room.
LIMITS = Limits(cell_timeout_s=20, cpu_s=120, wall_s=300, memory_mb=2048, submission_mb=2, output_chars=100_000)
CANARY = "COURSE_GRADING_TEST_CANARY"


def _scores(row: dict, assignment_cells: list[tuple[str, float]]) -> dict[str, float]:
    return {gid: float(row[gid]) for gid, _ in assignment_cells}


def _cells(course: Path, assignment: str) -> list[tuple[str, float]]:
    return grade_cells(nbformat.read(course / "source" / assignment / f"{assignment}.ipynb", as_version=4))


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("grading") / "course"
    prepare_course(course, EXERCISES)
    return course


@pytest.fixture(scope="module")
def batch(course, tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    submitted = base / "submitted"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    outside = base / "ESCAPED.txt"
    secrets = [ROOT / "solutions" / f"{EX01}.py", course / "gradebook.db"]
    bads = factory.bad_submissions(course, outside, secrets, listener.getsockname()[1])
    factory.write_all(submitted, bads)
    for ex in EXERCISES:
        factory.put(submitted, "good", ex.assignment, factory.solved(course, ex.assignment))
        factory.put(submitted, "stub", ex.assignment, factory.released(course, ex.assignment))
    for assignment in factory.MUTANTS:
        for k, mutants in enumerate(factory.mutant_rounds(assignment), start=1):
            answers = {cell_id: m.code for cell_id, m in mutants.items()}
            factory.put(submitted, f"mutant_{k}", assignment, factory.solved(course, assignment, answers))
    factory.put(submitted, "lost", "ex99_no_such_exercise", factory.solved(course, EX01))
    run = GradeRun(submissions=submitted, gradebook=base / "grades.csv", feedback=base / "feedback", root=ROOT,
                   course_dir=course, limits=LIMITS, jobs=2, work_dir=base / "work")
    os.environ[CANARY] = "the kernel must not see this"
    lines = []
    start = time.monotonic()
    try:
        results = grade(run, log=lines.append)
    finally:
        os.environ.pop(CANARY, None)
    seconds = time.monotonic() - start
    try:
        listener.accept()
        connected = True
    except BlockingIOError:
        connected = False
    listener.close()
    cpu = sum(r.get("cpu_s", 0.0) for r in results)
    print(f"graded {len(results)} submissions in {seconds:.0f} s; {cpu:.0f} CPU-s in the workers and kernels")
    return {"base": base, "run": run, "rows": read_gradebook(base / "grades.csv"), "bads": {b.name: b for b in bads},
            "results": {(r["student"], r["assignment"]): r for r in results}, "connected": connected,
            "outside": outside, "log": lines, "course": course}


# ---------------------------------------------------------------- release
def test_there_are_exercises():
    assert EXERCISES and EXERCISES[0].assignment == EX01


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.assignment)
def test_release_is_the_student_version(course, ex):
    release = factory.released(course, ex.assignment)
    ours = make_exercise(read_source(ex.source))
    assert [c.source for c in release.cells] == [c.source for c in ours.cells]
    text = "\n".join(c.source for c in release.cells)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text and "hidden=True" not in text
    assert not list((course / "release").rglob("*.py")), "nothing but notebooks is released"


def test_release_copies_the_handout(course, tmp_path):
    out = release(ROOT, course, chapters=[1], to=tmp_path / "handout")
    handout = tmp_path / "handout" / EX01 / f"{EX01}.ipynb"
    assert out == {EX01: handout} and handout.read_bytes() == (course / "release" / EX01 / f"{EX01}.ipynb").read_bytes()


# ---------------------------------------------------------------- honest grading
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.assignment)
def test_solution_scores_full_marks(batch, ex):
    row = batch["rows"][("good", ex.assignment)]
    cells = _cells(batch["course"], ex.assignment)
    assert cells, f"{ex.assignment} has no graded cell"
    assert _scores(row, cells) == {gid: pts for gid, pts in cells}, row["status"]
    assert row["status"] == "ok"


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.assignment)
def test_released_stub_scores_zero_on_every_graded_cell(batch, ex):
    row = batch["rows"][("stub", ex.assignment)]
    cells = _cells(batch["course"], ex.assignment)
    assert all(v == 0 for v in _scores(row, cells).values()), row
    assert float(row["total"]) == 0 and float(row["max_total"]) == sum(p for _, p in cells)
    for gid, _ in cells:
        assert f"{gid}: NotImplementedError" in row["status"]


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.assignment)
def test_exercise_has_mutants_that_lose_points(batch, ex):
    if ex.assignment not in factory.MUTANTS:
        pytest.skip(f"no grading mutants for {ex.assignment} yet: add them to MUTANTS in tests/submissions_factory.py")
    rounds = factory.mutant_rounds(ex.assignment)
    checks = factory.CHECK_OF[ex.assignment]
    points = dict(_cells(batch["course"], ex.assignment))
    for k, mutants in enumerate(rounds, start=1):
        row = batch["rows"][(f"mutant_{k}", ex.assignment)]
        for cell_id, mutant in mutants.items():
            check = checks[cell_id]
            assert float(row[check]) < points[check], f"mutant '{mutant.what}' kept the points of {check}: {row}"
            assert f"{check}: AssertionError" in row["status"]


def test_mutants_cover_every_graded_cell_of_exercise_1(course):
    graded = {gid for gid, _ in _cells(course, EX01)}
    assert set(factory.CHECK_OF[EX01].values()) == graded
    assert all(len(ms) >= 2 for ms in factory.MUTANTS[EX01].values())


# ---------------------------------------------------------------- bad submissions
BAD_NAMES = ["syntax_error", "infinite_loops", "kernel_exit_and_memory_hog", "deleted_cells", "retyped_grade_cells",
             "invented_points_and_warnings", "renamed_and_wrong_types", "empty_file", "not_json", "other_assignment",
             "other_assignment_unmarked", "wrong_file_name", "huge_output", "huge_file", "writes_outside"]


def test_bad_submission_list_is_complete(batch):
    assert sorted(batch["bads"]) == sorted(BAD_NAMES)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_submission_gets_its_row(batch, name):
    bad = batch["bads"][name]
    row = batch["rows"][(name, EX01)]
    points = dict(_cells(batch["course"], EX01))
    for check in bad.full:
        assert float(row[check]) == points[check], f"{name}: {check} should keep its points; status: {row['status']}"
    for check in bad.zero:
        assert float(row[check]) == 0, f"{name}: {check} should score 0; status: {row['status']}"
    assert factory.status_matches(row["status"], bad.reason), f"{name}: status {row['status']!r} !~ {bad.reason!r}"
    assert float(row["max_total"]) == sum(points.values())
    feedback = batch["base"] / "feedback" / name / EX01
    pages = list(feedback.glob("*.html"))
    assert pages, f"{name}: no feedback page"
    assert "Grading summary" in pages[0].read_text() or "not graded" in pages[0].read_text()


def test_unknown_assignment_gets_a_row(batch):
    row = batch["rows"][("lost", "ex99_no_such_exercise")]
    assert row["total"] == "0" and "unknown assignment 'ex99_no_such_exercise'" in row["status"]


def test_gradebook_columns(batch):
    header = next(iter(batch["rows"].values())).keys()
    cols = list(header)
    assert cols[:2] == ["student", "assignment"] and cols[-3:] == ["total", "max_total", "status"]
    for ex in EXERCISES:
        for gid, _ in _cells(batch["course"], ex.assignment):
            assert gid in cols


def test_feedback_is_nbgraders_page_with_a_summary(batch):
    page = (batch["base"] / "feedback" / "good" / EX01 / f"{EX01}.html").read_text()
    assert "Grading summary</b>: 7 / 7 points" in page
    assert "discounted_returns: all 9 cases pass" in page  # the hidden tests ran
    stub = (batch["base"] / "feedback" / "stub" / EX01 / f"{EX01}.html").read_text()
    assert "NotImplementedError" in stub
    broken = (batch["base"] / "feedback" / "not_json" / EX01 / f"{EX01}.html").read_text()
    assert "not JSON" in broken


def test_submission_is_confined(batch):
    page = (batch["base"] / "feedback" / "writes_outside" / EX01 / f"{EX01}.html").read_text()
    assert "ENVIRONMENT" in page
    assert CANARY not in page.split("ENVIRONMENT", 1)[1], "the grader's environment reached the kernel"
    if landlock_abi() < 1:
        pytest.skip("no Landlock on this system: writes and reads outside the sandbox are not blocked")
    assert not batch["outside"].exists()
    assert not list(batch["base"].rglob("escaped-relative.txt"))
    assert "LEAKED" not in page and "WROTE" not in page
    assert page.count("read blocked: PermissionError") == 4
    assert page.count("write blocked: PermissionError") == 2
    if landlock_abi() >= 4:
        assert not batch["connected"] and "CONNECTED" not in page and "connect blocked: PermissionError" in page


def test_sandboxes_are_removed(batch):
    assert not list((batch["base"] / "work").iterdir())


# ---------------------------------------------------------------- restarts
def test_rerun_grades_nothing_twice(batch):
    state = batch["run"].state / "results"
    before = {p: p.read_text() for p in state.rglob("*.json")}
    lines = []
    again = grade(batch["run"], log=lines.append)
    assert lines[0].startswith("grading 0 submission(s)"), lines
    assert {p: p.read_text() for p in state.rglob("*.json")} == before
    assert {(r["student"], r["assignment"]): r["total"] for r in again} == {
        k: r["total"] for k, r in batch["results"].items()}


def _grade_cli(base: Path, course: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "course_lib.grading", "grade", str(base / "submitted"), "--root", str(ROOT),
         "--course", str(course), "--gradebook", str(base / "grades.csv"), "--feedback", str(base / "feedback"),
         "--jobs", "1", "--cell-timeout", "60", "--work-dir", str(base / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # A test run started in the background (`make test &`, nohup) ignores SIGINT, and a child
        # inherits that, so Ctrl-C would never reach the grader: give it the terminal's default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _left_running(work: Path, seconds: float = 20) -> list[int]:
    """Processes still working in ``work`` after ``seconds`` of grace (workers and kernels)."""
    import psutil

    deadline = time.monotonic() + seconds
    while True:
        left = []
        for p in psutil.process_iter():
            try:
                if str(work) in (p.cwd() or ""):
                    left.append(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_interrupted_runs_lose_nothing_and_resume(course, tmp_path):
    submitted, work = tmp_path / "submitted", tmp_path / "work"
    results = tmp_path / "grades.csv.state" / "results" / EX01
    factory.put(submitted, "ann", EX01, b"")  # graded first, in a moment
    factory.put(submitted, "ben", EX01, factory.released(course, EX01))  # takes a kernel: in flight when stopped

    # 1. Killed outright (no cleanup at all) once ann is recorded.
    proc = _grade_cli(tmp_path, course)
    _wait_for(lambda: (results / "ann.json").exists())
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    ann = (results / "ann.json").read_text()
    assert not (results / "ben.json").exists()
    assert not _left_running(work), "workers or kernels outlived the grader"

    # 2. Ctrl-C while ben is being graded: a clean stop, ann kept, nothing half-recorded
    #    (and the sandbox the killed run left behind is cleared away).
    stale = set(work.iterdir())
    proc = _grade_cli(tmp_path, course)
    _wait_for(lambda: set(work.iterdir()) - stale)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again" in out, out
    assert "grading 1 submission(s)" in out, "ann was graded twice"
    assert list(read_gradebook(tmp_path / "grades.csv")) == [("ann", EX01)]
    assert not (results / "ben.json").exists()
    assert not list(work.iterdir()), [(d.name, sorted(x.name for x in d.iterdir())) for d in work.iterdir()]
    assert not _left_running(work)

    # 3. The same command again finishes the job, and ann's grade is the one recorded in run 1.
    proc = _grade_cli(tmp_path, course)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "grading 1 submission(s)" in out, out
    assert (results / "ann.json").read_text() == ann
    rows = read_gradebook(tmp_path / "grades.csv")
    assert sorted(rows) == [("ann", EX01), ("ben", EX01)] and all(r["total"] == "0" for r in rows.values())
    assert "the file is empty" in rows[("ann", EX01)]["status"]


def test_benchmark_class_mix_and_grade_check(course, tmp_path):
    import collections
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_grading", ROOT / "benchmarks" / "bench_grading.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    kinds = bench.make_class(course, tmp_path / "submitted", 12)
    assert collections.Counter(kinds.values()) == {"good": 8, "stub": 2, "mutant": 2}
    assert len(list((tmp_path / "submitted").glob(f"*/{EX01}/{EX01}.ipynb"))) == 12
    bench.check_grades([{"student": "student000", "total": 7.0, "max_total": 7.0, "status": "ok"}], kinds)
    with pytest.raises(AssertionError, match="student004 \\(stub\\)"):
        bench.check_grades([{"student": "student004", "total": 2.0, "max_total": 7.0, "status": ""}], kinds)
