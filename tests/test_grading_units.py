"""The grading pieces one by one, without a kernel: sandbox, file checks, metadata reset, gradebook, layout."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import course as course_mod
from course_lib.grading import runner, worker
from course_lib.grading.preprocessors import RobustOverwriteCells, _describe_exit, grade_error
from course_lib.grading.sandbox import apply_rlimits, landlock_abi

LANDLOCK = landlock_abi()


def _child(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (confinement is for life, so never in the test process)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- sandbox
@pytest.mark.parametrize("kwargs, name", [
    ({"cpu_s": 0, "memory_mb": 100, "file_mb": 1}, "cpu_s"),
    ({"cpu_s": 10, "memory_mb": -1, "file_mb": 1}, "memory_mb"),
    ({"cpu_s": 10, "memory_mb": 100, "file_mb": 1.5}, "file_mb"),
])
def test_rlimits_reject_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        apply_rlimits(**kwargs)


def test_memory_and_file_limits_bite(tmp_path):
    out = _child("""
        from course_lib.grading.sandbox import apply_rlimits
        apply_rlimits(cpu_s=60, memory_mb=400, file_mb=1)
        try:
            big = bytearray(800 * 2**20)
            print("allocated")
        except MemoryError:
            print("MemoryError")
        try:
            with open("big.bin", "wb") as f:
                f.write(b"x" * 2 * 2**20)
            print("wrote")
        except OSError as e:
            print("OSError", e.errno)
    """, tmp_path)
    assert out.stdout.split("\n")[:2] == ["MemoryError", "OSError 27"], out.stderr  # 27: EFBIG


@pytest.mark.skipif(LANDLOCK < 1, reason="Landlock is not available on this system")
def test_landlock_confines_reads_and_writes(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "secret.txt").write_text("answers")
    out = _child(f"""
        from course_lib.grading.sandbox import Confinement, confine, system_read_paths
        notes = confine(Confinement(cpu_s=60, memory_mb=2048, file_mb=10, read_paths=system_read_paths(),
                                    write_paths=[{str(tmp_path / "allowed")!r}]))
        print(notes[-1])
        for path, mode in [("allowed/ok.txt", "w"), ("elsewhere/no.txt", "w"), ("secret.txt", "r")]:
            try:
                with open({str(tmp_path)!r} + "/" + path, mode) as f:
                    f.write("x") if mode == "w" else f.read()
                print("done", path)
            except PermissionError:
                print("denied", path)
    """, tmp_path)
    lines = out.stdout.strip().split("\n")
    assert lines[0].startswith(f"landlock ABI {LANDLOCK}"), out.stdout + out.stderr
    assert lines[1:] == ["done allowed/ok.txt", "denied elsewhere/no.txt", "denied secret.txt"]
    assert not (tmp_path / "elsewhere" / "no.txt").exists()


@pytest.mark.skipif(LANDLOCK < 4, reason="Landlock has no network rules on this system (Linux < 6.7)")
def test_landlock_blocks_tcp_connect(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    out = _child(f"""
        import socket
        from course_lib.grading.sandbox import Confinement, confine, system_read_paths
        confine(Confinement(cpu_s=60, memory_mb=2048, file_mb=10, read_paths=system_read_paths(), write_paths=[]))
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=5)
            print("connected")
        except PermissionError:
            print("denied")
    """, tmp_path)
    listener.close()
    assert out.stdout.strip() == "denied", out.stderr


@pytest.mark.skipif(sys.platform != "linux" or __import__("os").geteuid() != 0, reason="only root can raise limits")
def test_root_cannot_raise_its_limits_after_dropping_privileges(tmp_path):
    out = _child("""
        import resource
        from course_lib.grading.sandbox import apply_rlimits, drop_privileges
        apply_rlimits(cpu_s=60, memory_mb=2048, file_mb=10)
        print(drop_privileges())
        try:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("raised")
        except (ValueError, PermissionError, OSError):
            print("refused")
    """, tmp_path)
    assert out.stdout.strip().split("\n") == ["[]", "refused"], out.stdout + out.stderr


# ---------------------------------------------------------------- preprocessors' helpers
def _nb(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def _code(source="", gid=None, **meta):
    md = {"nbgrader": {"grade_id": gid, **meta}} if gid else {}
    return nbformat.v4.new_code_cell(source, metadata=md)


def test_restored_cells_go_next_to_their_neighbours():
    nb = _nb(_code("a", "a"), _code("c", "c"), _code("x"))
    where = RobustOverwriteCells._insertion_index
    assert where(nb, ["a"], ["c"]) == 1  # after the nearest earlier cell
    assert where(nb, ["gone", "a", "also_gone"], ["c"]) == 1
    assert where(nb, ["gone"], ["also_gone", "c"]) == 1  # else before the nearest later one
    assert where(nb, [], ["a"]) == 0
    assert where(nb, ["gone"], ["also_gone"]) == 3  # else at the end


def test_grade_error_reads_outputs():
    cell = _code()
    assert grade_error(cell) is None
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="fine\n"),
                    nbformat.v4.new_output("error", ename="AssertionError", evalue="case 'x': expected 1, got 2", traceback=[])]
    assert grade_error(cell) == "AssertionError: case 'x': expected 1, got 2"
    cell.outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[])]
    assert grade_error(cell) == "NotImplementedError"


@pytest.mark.parametrize("code, text", [(3, "exit code 3"), (-9, "SIGKILL"), (-24, "CPU time limit"), (None, "stopped answering")])
def test_describe_exit(code, text):
    assert text in _describe_exit(code)


# ---------------------------------------------------------------- looking at a handed-in file
def _write(tmp_path, data) -> Path:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("data, reason", [
    (b"", "the file is empty"),
    (b"\x00\x01binary", "not JSON"),
    ("{\"cells\": [", "not JSON"),
    ("[1, 2, 3]", "not a notebook"),
    ("{\"metadata\": {}}", "not a notebook"),
    ("{\"cells\": \"nope\", \"nbformat\": 4, \"nbformat_minor\": 5, \"metadata\": {}}", "not a valid notebook"),
])
def test_broken_files_are_named(tmp_path, data, reason):
    with pytest.raises(worker.BrokenNotebook, match=reason):
        worker._load(_write(tmp_path, data), max_mb=1)


def test_oversized_file(tmp_path):
    nb = _nb(nbformat.v4.new_markdown_cell("x" * (2 * 2**20)))
    path = _write(tmp_path, nbformat.writes(nb))
    with pytest.raises(worker.BrokenNotebook, match="over the 1 MB limit"):
        worker._load(path, max_mb=1)
    assert len(worker._load(path, max_mb=3).cells) == 1


def _release():
    lock = {"grade": False, "locked": True, "solution": False, "schema_version": 3}
    nb = _nb(
        _code("import numpy as np", "imports", **lock),
        _code("def f():\n    raise NotImplementedError()", "f", grade=False, locked=False, solution=True, schema_version=3),
        _code("check_f(f)", "f_check", grade=True, locked=True, points=2, solution=False, schema_version=3),
    )
    nb.metadata["course"] = {"generated_from": "solutions/ex07_demo.py"}
    source = _nb(*[nbformat.from_dict(json.loads(json.dumps(c))) for c in nb.cells])
    source.cells[2].source = "check_f(f)\n### BEGIN HIDDEN TESTS\ncheck_f(f, hidden=True)\n### END HIDDEN TESTS"
    return nb, source


def test_sanitize_resets_metadata_and_notes_edits():
    release, source = _release()
    sub = nbformat.from_dict(json.loads(json.dumps(release)))
    sub.cells[2].metadata["nbgrader"]["points"] = 200
    sub.cells[2].source = "pass  # no checks today"
    sub.cells.append(_code("print('bonus')", "bonus", grade=True, points=100))
    sub.cells[0].metadata["nbgrader"] = "garbage"
    notes = worker._sanitize(sub, release, source, "ex07_demo")
    assert sub.cells[2].metadata["nbgrader"]["points"] == 2
    assert "nbgrader" not in sub.cells[3].metadata and "nbgrader" not in sub.cells[0].metadata
    assert any("'f_check' was edited" in n for n in notes)
    assert any("removed from 2 cell(s)" in n for n in notes)


def test_sanitize_accepts_the_instructors_version_of_a_cell():
    release, source = _release()
    sub = nbformat.from_dict(json.loads(json.dumps(source)))
    assert worker._sanitize(sub, release, source, "ex07_demo") == []


def test_sanitize_refuses_another_assignments_notebook():
    release, source = _release()
    other = nbformat.from_dict(json.loads(json.dumps(release)))
    other.metadata["course"] = {"generated_from": "solutions/ex03_other.py"}
    with pytest.raises(worker.BrokenNotebook, match=r"another assignment \(solutions/ex03_other.py\)"):
        worker._sanitize(other, release, source, "ex07_demo")
    other.metadata.pop("course")
    for c in other.cells:
        c.metadata["nbgrader"]["grade_id"] = "ex03_" + c.metadata["nbgrader"]["grade_id"]
    with pytest.raises(worker.BrokenNotebook, match="none of ex07_demo's cells"):
        worker._sanitize(other, release, source, "ex07_demo")


def test_sanitize_grades_a_notebook_without_any_metadata():
    release, source = _release()
    bare = _nb(_code("def f():\n    return 1"))
    notes = worker._sanitize(bare, release, source, "ex07_demo")
    assert notes == ["no cell of the released notebook was found; its checks were restored from the source"]


def test_submission_digest(tmp_path):
    assert worker.submission_digest(tmp_path / "missing") == ""
    (tmp_path / "a.ipynb").write_text("1")
    d1 = worker.submission_digest(tmp_path)
    (tmp_path / "a.ipynb").write_text("2")
    d2 = worker.submission_digest(tmp_path)
    (tmp_path / "a.ipynb").rename(tmp_path / "b.ipynb")
    assert len({d1, d2, worker.submission_digest(tmp_path)}) == 3


# ---------------------------------------------------------------- layout and gradebook
def test_discover(tmp_path):
    for student, a in [("ann", "ex01_x"), ("ann", "ex02_y"), ("bob", "ex01_x"), (".hidden", "ex01_x")]:
        (tmp_path / "submitted" / student / a).mkdir(parents=True)
    (tmp_path / "submitted" / "ann" / "stray.ipynb").write_text("{}")
    found = [(s.student, s.assignment) for s in runner.discover(tmp_path)]
    assert found == [("ann", "ex01_x"), ("ann", "ex02_y"), ("bob", "ex01_x")]
    assert found == [(s.student, s.assignment) for s in runner.discover(tmp_path / "submitted")]
    with pytest.raises(ValueError, match="submissions"):
        runner.discover(tmp_path / "nothing")


def test_gradebook_round_trip(tmp_path):
    results = [
        {"student": "zoe", "assignment": "ex01_x", "cells": [{"grade_id": "a", "score": 2.0}, {"grade_id": "b", "score": 0.5}],
         "total": 2.5, "max_total": 4.0, "status": "b: AssertionError: case 'x, y': expected 1\ngot 2"},
        {"student": "amy", "assignment": "ex02_y", "cells": [{"grade_id": "c", "score": 0.0}], "total": 0.0,
         "max_total": 3.0, "status": "ok"},
    ]
    path = tmp_path / "g.csv"
    runner.write_gradebook(path, results, ["a", "b", "c"])
    rows = runner.read_gradebook(path)
    assert list(rows) == [("amy", "ex02_y"), ("zoe", "ex01_x")]
    assert rows[("zoe", "ex01_x")] == {"student": "zoe", "assignment": "ex01_x", "a": "2", "b": "0.5", "c": "",
                                       "total": "2.5", "max_total": "4", "status": results[0]["status"]}
    assert path.read_text().splitlines()[0] == "student,assignment,a,b,c,total,max_total,status"


def test_find_and_select_exercises(tmp_path):
    (tmp_path / "solutions").mkdir()
    for name in ("ex02_b.py", "ex01_a.py", "ex10_c.py", "notes.py", "ex03.py"):
        (tmp_path / "solutions" / name).write_text("# %%\n")
    found = course_mod.find_exercises(tmp_path)
    assert [(e.chapter, e.assignment) for e in found] == [(1, "ex01_a"), (2, "ex02_b"), (10, "ex10_c")]
    assert [e.assignment for e in course_mod.select(found, chapters=[10, 1])] == ["ex01_a", "ex10_c"]
    assert course_mod.select(found) == found
    with pytest.raises(ValueError, match=r"chapters: no exercise for chapter\(s\) \[7\]"):
        course_mod.select(found, chapters=[7])
    digest = found[0].digest()
    found[0].source.write_text("# %%\nx = 1\n")
    assert found[0].digest() != digest


def test_stale_sandboxes_of_dead_graders_are_removed(tmp_path):
    import os

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = [f"grade-{dead.pid}-ex01_x-abc", f"grade-{os.getpid()}-ex01_x-def", "grade-notapid-ex01_x-ghi", "other"]
    for name in names:
        (tmp_path / name).mkdir()
    runner._remove_stale_sandboxes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
