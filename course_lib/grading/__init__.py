"""Instructor grading: release the exercise notebooks, autograde submissions with nbgrader, write a gradebook.

Two commands (``python -m course_lib.grading --help``)::

    python -m course_lib.grading release --chapter 1 --course build/grading
    python -m course_lib.grading grade SUBMITTED --gradebook grades.csv --feedback feedback/

nbgrader is the grading engine (the ``instructor`` extra); this package lays the
course out for it (:mod:`.course`), makes its autograde survive broken and
hostile notebooks (:mod:`.preprocessors`, :mod:`.worker`), confines the code it
runs (:mod:`.sandbox`, :mod:`.kernel`), and grades many submissions in parallel
and restartably (:mod:`.runner`). The README's instructor section is the guide.
"""

__all__ = ["Exercise", "find_exercises", "prepare_course", "select", "GradeRun", "discover", "grade",
           "read_gradebook", "write_gradebook", "Limits", "release"]

# Imported on first use: the grading kernel (.kernel) starts from this package and
# must not pay for nbformat, jupytext and nbgrader before it runs a single cell.
_LAZY = {"Exercise": "course", "find_exercises": "course", "prepare_course": "course", "select": "course",
         "GradeRun": "runner", "discover": "runner", "grade": "runner", "read_gradebook": "runner",
         "write_gradebook": "runner", "Limits": "sandbox"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def release(root, course_dir, chapters=None, to=None):
    """Release the student notebooks of ``chapters`` (all when None); returns {assignment: path}.

    ``to`` also copies them into that folder, ready to hand out.
    """
    import shutil
    from pathlib import Path

    from .course import find_exercises, prepare_course, select

    exercises = select(find_exercises(root), chapters=chapters)
    if not exercises:
        raise ValueError(f"root: no solutions/exNN_*.py exercises under {root}")
    released = prepare_course(Path(course_dir), exercises)
    if to is not None:
        out = {}
        for a, path in released.items():
            dest = Path(to) / a / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            out[a] = dest
        return out
    return released
