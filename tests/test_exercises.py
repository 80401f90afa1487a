"""The meta-test: every graded check fails on the exercise stubs and passes on the solution.

A check that passes on a stub would hand out points for nothing, so each
exercise notebook is generated from its solution source, executed with its
stubs in place, and every nbgrader grade cell must end in an error there;
the solution notebook, executed the same way, must run without any error.
"""

import copy
from pathlib import Path

import nbclient
import pytest
from kernel_start import start_retrying

from course_lib.build import make_exercise, read_source

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex[0-9]*.py"))


@start_retrying
def _execute(nb, cwd: Path):
    nb = copy.deepcopy(nb)  # a retry starts from the notebook as it was given
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def _graded_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def _error(cell):
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"
    return None


def test_there_are_exercises():
    assert SOLUTIONS, "no solutions/exNN_*.py sources found"


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_checks_fail_on_stubs_and_pass_on_solution(source, tmp_path):
    solution = read_source(source)
    graded_ids = [c.metadata["nbgrader"]["grade_id"] for c in _graded_cells(solution)]
    assert graded_ids, f"{source.name} has no graded check cell"
    assert any(c.metadata.get("nbgrader", {}).get("solution") for c in solution.cells), f"{source.name} has no solution cell"

    exercise = _execute(make_exercise(solution), tmp_path)
    passing_on_stub = [c.metadata["nbgrader"]["grade_id"] for c in _graded_cells(exercise) if _error(c) is None]
    assert not passing_on_stub, f"{source.name}: these checks pass on the unsolved stub: {passing_on_stub}"

    solved = _execute(read_source(source), tmp_path)
    errors = [(i, _error(c)) for i, c in enumerate(solved.cells) if c.cell_type == "code" and _error(c)]
    assert not errors, f"{source.name}: the solution fails in cells {errors}"
