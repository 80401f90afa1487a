"""Build the course's .ipynb files from their jupytext sources, never clobbering a student's work.

Sources (the only files anyone edits) are jupytext percent-format scripts:

    notebooks/NN_topic.py   -> notebooks/NN_topic.ipynb          (chapter)
    solutions/exNN_topic.py -> solutions/exNN_topic.ipynb        (solved exercise)
                            -> exercises/exNN_topic.ipynb        (student version)

The student version follows nbgrader's conventions: code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``# YOUR CODE HERE`` / ``raise NotImplementedError()``, a solution cell with no
markers is replaced whole, and lines between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS`` are removed. Cells keep their ``nbgrader`` metadata so
the notebooks drop into an nbgrader course. (tests/test_build.py checks the
result against nbgrader's own ClearSolutions and ClearHiddenTests.)

Every generated notebook records the hash of its source and of the cells it was
written with. A rebuild skips notebooks whose source has not changed (so a
student's outputs survive), rewrites those nobody has touched, and refuses to
overwrite one whose cells were edited since it was generated; with
``--force`` it first moves the edited file to ``NAME.backup-TIMESTAMP.ipynb``.

Usage: ``python -m course_lib.build [--force] [--out DIR] [--root DIR]``
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

__all__ = [
    "CODE_STUB",
    "TEXT_STUB",
    "read_source",
    "make_exercise",
    "cells_digest",
    "write_guarded",
    "build_all",
    "main",
]

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
_BEGIN_SOLUTION, _END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
_BEGIN_HIDDEN, _END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
# Bump when the generator's output changes for the same source, so that
# untouched generated notebooks are refreshed.
GENERATOR_VERSION = 1


def read_source(path: Path) -> nbformat.NotebookNode:
    """Read a jupytext percent-format script as a notebook (no outputs)."""
    nb = jupytext.read(path, fmt="py:percent")
    # Drop jupytext's own bookkeeping so JupyterLab treats the .ipynb as a
    # plain notebook, not as one half of a pair to keep in sync.
    nb.metadata.pop("jupytext", None)
    return nb


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _replace_regions(source: str, begin: str, end: str, stub: list[str] | None, what: str) -> tuple[str, bool]:
    """Replace each begin..end region (marker lines included) by ``stub``, indented like the marker."""
    out, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError(f"nested '{begin}' markers in a {what} cell:\n{source}")
            inside = found = True
            if stub is not None:
                indent = re.match(r"\s*", line).group(0)
                out.extend(indent + s for s in stub)
        elif end in line:
            if not inside:
                raise ValueError(f"'{end}' without '{begin}' in a {what} cell:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{begin}' without '{end}' in a {what} cell:\n{source}")
    return "\n".join(out), found


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a solution notebook (a new notebook; the input is untouched)."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        cell.source, replaced = _replace_regions(cell.source, _BEGIN_SOLUTION, _END_SOLUTION, stub.split("\n"), "solution")
        if replaced and not meta.get("solution"):
            raise ValueError(
                "a cell has a solution region but no nbgrader metadata marking it as a solution cell "
                f"(add solution: true):\n{cell.source}"
            )
        if meta.get("solution") and not replaced:
            cell.source = stub
        cell.source, _ = _replace_regions(cell.source, _BEGIN_HIDDEN, _END_HIDDEN, None, "hidden-test")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def cells_digest(nb: nbformat.NotebookNode) -> str:
    """Hash of what a person edits: each cell's type and source (outputs excluded)."""
    payload = json.dumps([[c.cell_type, c.source] for c in nb.cells], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _source_digest(path: Path, kind: str) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(f"{kind}:{GENERATOR_VERSION}".encode())
    return h.hexdigest()


@dataclass
class Outcome:
    path: Path
    status: str  # written | unchanged | kept-edited | backed-up
    detail: str = ""


def write_guarded(nb: nbformat.NotebookNode, dest: Path, source: Path, kind: str, force: bool = False, label: str | None = None) -> Outcome:
    """Write ``nb`` to ``dest`` unless that would destroy edits made there since the last build.

    ``source`` is the file ``nb`` was built from (its hash is recorded); ``label``
    is how the notebook names it (default: the path as given).
    """
    source_digest = _source_digest(source, kind)
    nb.metadata["course"] = {
        "generated_from": label or source.as_posix(),
        "source_sha256": source_digest,
        "cells_sha256": cells_digest(nb),
        "note": "Generated file: edit the source named in generated_from, not this notebook.",
    }
    if dest.exists():
        try:
            old = nbformat.read(dest, as_version=4)
            record = old.metadata.get("course", {})
            edited = record.get("cells_sha256") != cells_digest(old)
            same_source = record.get("source_sha256") == source_digest
        except Exception:  # not a notebook we can read: treat it as someone's work
            edited, same_source = True, False
        if same_source:
            return Outcome(dest, "unchanged")
        if edited and not force:
            return Outcome(
                dest, "kept-edited",
                f"{label or source} changed, but {dest} has edits of yours, so it was left as it is. "
                "To get the new version, run `make notebooks FORCE=1`: your file is first moved to a backup.",
            )
        if edited:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            backup = dest.with_name(f"{dest.stem}.backup-{stamp}{dest.suffix}")
            dest.rename(backup)
            dest.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest)
            return Outcome(dest, "backed-up", f"your edited version was moved to {backup}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return Outcome(dest, "written")


def build_all(root: Path, out: Path | None = None, force: bool = False) -> list[Outcome]:
    """Build every chapter, solution and exercise notebook of the course rooted at ``root``.

    ``out`` puts the three folders under another directory (the test command
    builds a throw-away copy there); by default they go next to their sources.
    """
    root = Path(root)
    out = root if out is None else Path(out)
    outcomes = []
    for src in sorted((root / "notebooks").glob("[0-9]*.py")):
        nb = read_source(src)
        label = src.relative_to(root).as_posix()
        outcomes.append(write_guarded(nb, out / "notebooks" / f"{src.stem}.ipynb", src, "chapter", force, label))
    for src in sorted((root / "solutions").glob("ex[0-9]*.py")):
        solution = read_source(src)
        label = src.relative_to(root).as_posix()
        outcomes.append(write_guarded(make_exercise(solution), out / "exercises" / f"{src.stem}.ipynb", src, "exercise", force, label))
        outcomes.append(write_guarded(solution, out / "solutions" / f"{src.stem}.ipynb", src, "solution", force, label))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.build", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="course root (default: current directory)")
    parser.add_argument("--out", type=Path, default=None, help="write the notebooks under this directory instead")
    parser.add_argument("--force", action="store_true", help="back up edited notebooks, then regenerate them")
    args = parser.parse_args(argv)
    if not (args.root / "notebooks").is_dir():
        parser.error(f"--root {args.root} has no notebooks/ folder; run from the course root")
    outcomes = build_all(args.root, args.out, args.force)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
        if o.status != "unchanged" or o.detail:
            print(f"  {o.status:<11} {o.path}" + (f"\n              {o.detail}" if o.detail else ""))
    print("notebooks: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
