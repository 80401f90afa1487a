"""Lay out the course's exercises as an nbgrader course, and release the student notebooks.

Every ``solutions/exNN_topic.py`` is one nbgrader assignment named
``exNN_topic`` holding one notebook ``exNN_topic.ipynb``. The course folder
(``build/grading`` by default, ignored by git) gets nbgrader's layout::

    nbgrader_config.py
    gradebook.db                    cells, checksums and hidden tests (nbgrader's database)
    source/exNN_topic/exNN_topic.ipynb    the solution: instructor only
    release/exNN_topic/exNN_topic.ipynb   what students get: stubs, no hidden tests

``generate_assignment`` is nbgrader's own, so the release folder is exactly what
``nbgrader generate_assignment`` would write, and an instructor can go on with
nbgrader's exchange (``nbgrader release_assignment``) or formgrader from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..build import read_source

__all__ = ["Exercise", "find_exercises", "select", "prepare_course", "course_api", "grade_cells", "COURSE_ID", "GRADING_VERSION"]

COURSE_ID = "rl-course"
# Bump when grading changes so that results recorded by an older version are regraded.
GRADING_VERSION = 1
_STEM = re.compile(r"ex(\d+)_[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Exercise:
    chapter: int  # NN in solutions/exNN_topic.py
    assignment: str  # nbgrader assignment id, and the notebook's name: exNN_topic
    source: Path  # the jupytext solution source

    def digest(self) -> str:
        """Hash of the source and of the grading code's version: a change means regrading."""
        h = hashlib.sha256(self.source.read_bytes())
        h.update(f"grading:{GRADING_VERSION}".encode())
        return h.hexdigest()


def find_exercises(root: Path) -> list[Exercise]:
    """Every ``solutions/exNN_*.py`` under the course root, in chapter order."""
    root = Path(root)
    out = []
    for src in sorted((root / "solutions").glob("ex[0-9]*.py")):
        m = _STEM.fullmatch(src.stem)
        if m:
            out.append(Exercise(int(m.group(1)), src.stem, src.resolve()))
    return out


def select(exercises: list[Exercise], chapters=None, assignments=None) -> list[Exercise]:
    """The exercises of the given chapters and/or assignment ids (all when both are None)."""
    if chapters is None and assignments is None:
        return list(exercises)
    chapters = set(chapters or ())
    assignments = set(assignments or ())
    picked = [e for e in exercises if e.chapter in chapters or e.assignment in assignments]
    known = {e.chapter for e in exercises}
    missing = sorted(chapters - known)
    if missing:
        raise ValueError(f"chapters: no exercise for chapter(s) {missing}; there are exercises for {sorted(known)}")
    return picked


def put_environment_on_path() -> None:
    """Make the running Python's scripts folder the first on PATH.

    nbgrader creates and migrates its database by running the ``alembic``
    command, found through PATH: without this, ``.venv/bin/python -m
    course_lib.grading`` from a shell that has not activated the venv fails
    with "No such file or directory: 'alembic'".
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + (os.pathsep + path if path else "")


def course_api(course_dir: Path, config=None):
    """An ``nbgrader.apps.NbGraderAPI`` rooted at ``course_dir`` (nbgrader imported lazily: an instructor extra)."""
    put_environment_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    c = Config() if config is None else config
    c.CourseDirectory.root = str(Path(course_dir).resolve())
    c.CourseDirectory.course_id = COURSE_ID
    return NbGraderAPI(CourseDirectory(config=c), config=c)


@contextlib.contextmanager
def _locked(course_dir: Path):
    """One process at a time lays out a course folder."""
    course_dir.mkdir(parents=True, exist_ok=True)
    with open(course_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _source_notebook(ex: Exercise) -> nbformat.NotebookNode:
    nb = read_source(ex.source)
    # Travels into the release, so a notebook handed in for the wrong assignment is recognised.
    nb.metadata["course"] = {"generated_from": f"solutions/{ex.source.name}"}
    return nb


def prepare_course(course_dir: Path, exercises: list[Exercise]) -> dict[str, Path]:
    """Make ``course_dir`` an nbgrader course holding ``exercises``; returns each assignment's release notebook.

    Assignments whose source is unchanged since the last call are left alone.
    Raises RuntimeError with nbgrader's log when nbgrader cannot generate one.
    """
    course_dir = Path(course_dir).resolve()
    released = {}
    with _locked(course_dir):
        config = course_dir / "nbgrader_config.py"
        if not config.exists():
            config.write_text(
                "# Written by course_lib.grading: this folder is an nbgrader course.\n"
                "c = get_config()  # noqa: F821\n"
                f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
            )
        stamps_path = course_dir / ".sources.json"
        stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
        for ex in exercises:
            a = ex.assignment
            release = course_dir / "release" / a / f"{a}.ipynb"
            digest = ex.digest()
            if stamps.get(a) == digest and release.exists() and (course_dir / "gradebook.db").exists():
                released[a] = release
                continue
            src_dir = course_dir / "source" / a
            if src_dir.exists():
                shutil.rmtree(src_dir)
            src_dir.mkdir(parents=True)
            nbformat.write(_source_notebook(ex), src_dir / f"{a}.ipynb")
            api = course_api(course_dir)
            _forget_assignment(course_dir, a)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = api.generate_assignment(a, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader could not generate {a}:\n{result.get('log', '')}\n{result.get('error', '')}")
            stamps[a] = digest
            stamps_path.write_text(json.dumps(stamps, indent=1))
            released[a] = release
    return released


def _forget_assignment(course_dir: Path, assignment: str) -> None:
    """Drop an assignment from the template database so a changed source is stored afresh.

    The course folder's database never holds submissions (each is graded in a
    copy of it), so removing the assignment loses nothing.
    """
    db = course_dir / "gradebook.db"
    if not db.exists():
        return
    from nbgrader.api import Gradebook, MissingEntry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(f"sqlite:///{db}", COURSE_ID) as gb:
            try:
                gb.remove_assignment(assignment)
            except MissingEntry:
                pass


def grade_cells(notebook: nbformat.NotebookNode) -> list[tuple[str, float]]:
    """``(grade_id, points)`` of each graded cell, in notebook order."""
    out = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            out.append((meta["grade_id"], float(meta.get("points", 0))))
    return out
