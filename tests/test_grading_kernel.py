"""The grading kernel's start: a kernel that dies before its first reply is replaced, and kernels talk over Unix sockets.

A kernel that dies before it answers ``kernel_info`` has run none of the
submission, so that death is never the student's: the grader starts another.
The kernel here is ipykernel behind a launcher that exits the first ``FAILS``
times it is started, as a kernel does whose port was taken by another process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.preprocessors import NOT_RUN, RobustExecute
from course_lib.grading.sandbox import Limits
from course_lib.grading.worker import _config
from kernel_start import KERNEL_START_DIED, KERNEL_START_TRIES, start_retrying

LAUNCHER = """\
import os, sys
count_file, fails = sys.argv[1], int(sys.argv[2])
n = int(open(count_file).read()) if os.path.exists(count_file) else 0
with open(count_file, "w") as f:
    f.write(str(n + 1))
if n < fails:
    os._exit(3)
from ipykernel.kernelapp import launch_new_instance
launch_new_instance(argv=sys.argv[3:])
"""

PROBE = "from ipykernel.kernelapp import IPKernelApp\nprint(6 * 7, IPKernelApp.instance().transport)"


def _flaky_kernel(tmp_path: Path, monkeypatch, fails: int) -> Path:
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    count = tmp_path / "starts.txt"
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(launcher), str(count), str(fails), "-f", "{connection_file}"],
        "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return count


def _run(tmp_path: Path, sockets: Path | None, start_attempts: int):
    notes = tmp_path / "notes.jsonl"
    config = _config(Limits(), notes, sockets)
    config.RobustExecute.kernel_name = "flaky"
    config.RobustExecute.start_attempts = start_attempts
    config.RobustExecute.startup_timeout = 60
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    RobustExecute(config=config).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    events = [json.loads(line) for line in notes.read_text().splitlines()] if notes.exists() else []
    return nb.cells[0].outputs, events


@pytest.mark.parametrize("fails", [0, 2])
def test_a_kernel_that_dies_at_start_is_replaced(tmp_path, monkeypatch, fails):
    count = _flaky_kernel(tmp_path, monkeypatch, fails)
    sockets = tmp_path / "sockets" / "kernel"
    sockets.parent.mkdir()
    outputs, events = _run(tmp_path, sockets, start_attempts=3)
    assert [o.get("text") for o in outputs] == ["42 ipc\n"], outputs
    assert int(count.read_text()) == fails + 1
    assert [e["kind"] for e in events] == ["start_failed"] * fails


def test_a_kernel_that_never_starts_leaves_the_cells_not_run(tmp_path, monkeypatch):
    count = _flaky_kernel(tmp_path, monkeypatch, fails=2)
    outputs, events = _run(tmp_path, None, start_attempts=2)
    assert int(count.read_text()) == 2
    assert [o.get("ename") for o in outputs] == [NOT_RUN]
    assert "would not start (2 tries)" in outputs[0]["evalue"]
    assert [e["kind"] for e in events] == ["start_failed", "gave_up"]


def test_without_a_socket_folder_the_kernel_uses_tcp(tmp_path, monkeypatch):
    _flaky_kernel(tmp_path, monkeypatch, fails=0)
    outputs, _ = _run(tmp_path, None, start_attempts=1)
    assert [o.get("text") for o in outputs] == ["42 tcp\n"], outputs


def test_the_test_suite_starts_its_own_kernels_again_after_a_death_at_start_up():
    import nbval.kernel

    assert nbval.kernel.start_new_kernel.__wrapped__  # the conftest wrapped nbval's
    calls = []

    def start(fails):
        calls.append(fails)
        if len(calls) <= fails:
            raise RuntimeError(KERNEL_START_DIED)
        return "kernel"

    assert start_retrying(start)(KERNEL_START_TRIES - 1) == "kernel"
    assert len(calls) == KERNEL_START_TRIES
    calls.clear()
    with pytest.raises(RuntimeError, match=KERNEL_START_DIED):
        start_retrying(start)(KERNEL_START_TRIES)
    calls.clear()

    def broken():
        calls.append(1)
        raise RuntimeError("another failure")

    with pytest.raises(RuntimeError, match="another failure"):
        start_retrying(broken)()
    assert len(calls) == 1  # only a death at start-up is retried
