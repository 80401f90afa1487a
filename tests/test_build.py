"""Exercise generation follows nbgrader exactly, and rebuilding never destroys a student's edits."""

import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib import build

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex[0-9]*.py"))


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_matches_nbgrader(source):
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    solution = build.read_source(source)
    ours = build.make_exercise(solution)
    theirs, resources = ClearSolutions().preprocess(build.read_source(source), {})
    theirs, _ = ClearHiddenTests().preprocess(theirs, resources)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert [c.metadata.get("nbgrader") for c in ours.cells] == [c.metadata.get("nbgrader") for c in solution.cells]


@pytest.mark.parametrize("source", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_leaks_no_solution(source):
    solution = build.read_source(source)
    text = "\n".join(c.source for c in build.make_exercise(solution).cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden=True"):
        assert marker not in text
    for cell in solution.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in body.strip().splitlines():
                if len(line.strip()) > 25:  # long enough to be the answer, not `return G`
                    assert line not in text, f"solution line leaked: {line!r}"


def test_marker_handling():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
                                  metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "f"}}),
        nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "g"}}),
        nbformat.v4.new_markdown_cell("Explain.", metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "h"}}),
        nbformat.v4.new_code_cell("assert f() == 1\n### BEGIN HIDDEN TESTS\nassert f() != 2\n### END HIDDEN TESTS",
                                  metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}}),
    ])
    out = build.make_exercise(nb)
    assert out.cells[0].source == "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert out.cells[1].source == build.CODE_STUB
    assert out.cells[2].source == build.TEXT_STUB
    assert out.cells[3].source == "assert f() == 1"
    assert nb.cells[0].source.count("SOLUTION") == 2, "the input notebook must not be modified"


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "without 'END SOLUTION'"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ("x = 1\n### END SOLUTION", "without 'BEGIN SOLUTION'"),
])
def test_malformed_markers_are_refused(source, message):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"solution": True}})])
    with pytest.raises(ValueError, match=message):
        build.make_exercise(nb)


def test_solution_region_needs_solution_metadata():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    with pytest.raises(ValueError, match="solution: true"):
        build.make_exercise(nb)


# ---------------------------------------------------------------- the edit guard
@pytest.fixture
def course(tmp_path):
    """A scratch copy of the course sources, built once."""
    for folder in ("notebooks", "solutions"):
        (tmp_path / folder).mkdir()
        for src in (ROOT / folder).glob("*.py"):
            shutil.copy(src, tmp_path / folder / src.name)
    outcomes = build.build_all(tmp_path)
    assert {o.status for o in outcomes} == {"written"}
    return tmp_path


def _first(course, folder):
    return sorted((course / folder).glob("*.ipynb"))[0]


def _touch_source(course, notebook: Path):
    folder = "solutions" if notebook.parent.name == "exercises" else notebook.parent.name
    src = course / folder / f"{notebook.stem}.py"
    src.write_text(src.read_text() + "\n# %%\nprint('a new cell from the authors')\n")


def _edit(notebook: Path, text: str):
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[1].source += f"\n{text}"
    nbformat.write(nb, notebook)


def _status(outcomes, path):
    return next(o for o in outcomes if o.path == path)


def test_rebuild_without_changes_keeps_outputs(course):
    nb_path = _first(course, "notebooks")
    nb = nbformat.read(nb_path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a student ran this\n")]
    nbformat.write(nb, nb_path)
    outcome = _status(build.build_all(course), nb_path)
    assert outcome.status == "unchanged"
    assert "a student ran this" in nb_path.read_text()


def test_untouched_notebook_follows_its_source(course):
    nb_path = _first(course, "exercises")
    _touch_source(course, nb_path)
    assert _status(build.build_all(course), nb_path).status == "written"
    assert "a new cell from the authors" in nb_path.read_text()


@pytest.mark.parametrize("folder", ["exercises", "notebooks"])
def test_edited_notebook_is_never_overwritten(course, folder, capsys):
    nb_path = _first(course, folder)
    _edit(nb_path, "# my answer, typed by a student")
    _touch_source(course, nb_path)
    before = nb_path.read_bytes()

    outcome = _status(build.build_all(course), nb_path)
    assert outcome.status == "kept-edited"
    assert "FORCE=1" in outcome.detail
    assert nb_path.read_bytes() == before

    # The command line says so too.
    build.main(["--root", str(course)])
    assert "kept-edited" in capsys.readouterr().out
    assert nb_path.read_bytes() == before


def test_force_keeps_a_backup(course):
    nb_path = _first(course, "exercises")
    _edit(nb_path, "# my answer, typed by a student")
    _touch_source(course, nb_path)
    outcome = _status(build.build_all(course, force=True), nb_path)
    assert outcome.status == "backed-up"
    backups = list(nb_path.parent.glob(f"{nb_path.stem}.backup-*.ipynb"))
    assert len(backups) == 1
    assert "typed by a student" in backups[0].read_text()
    assert "a new cell from the authors" in nb_path.read_text()
    assert "typed by a student" not in nb_path.read_text()


def test_unreadable_notebook_counts_as_someone_s_work(course):
    nb_path = _first(course, "exercises")
    nb_path.write_text("not json")
    _touch_source(course, nb_path)
    assert _status(build.build_all(course), nb_path).status == "kept-edited"
    assert nb_path.read_text() == "not json"


def test_out_dir_build_leaves_the_sources_alone(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    build.build_all(course, out=out)
    assert sorted(p.name for p in (out / "exercises").iterdir()) == sorted(p.name for p in (course / "exercises").iterdir())
