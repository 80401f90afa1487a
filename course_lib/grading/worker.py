"""Grade one submission in its own process and folder: ``python -m course_lib.grading.worker JOB.json``.

The runner starts one worker per submission in a fresh temporary folder (the
sandbox) and kills it, kernel included, when it runs past the wall-time limit.
The worker:

1. checks each expected notebook before nbgrader sees it (present, not empty,
   JSON, a valid notebook, this assignment's and not another's, not too big) and
   resets the nbgrader metadata of every cell to the instructor's, so a student
   cannot change points, unlock a cell or invent a grade cell;
2. runs nbgrader's ``autograde`` through its Python API on a copy of the course
   database, with :mod:`course_lib.grading.preprocessors` in place of the
   preprocessors that give up, and a kernel that confines itself
   (:mod:`course_lib.grading.kernel`);
3. reads the points per grade cell back from that database, the error of each
   failed cell from the autograded notebook, and nbgrader's ``generate_feedback``
   HTML, and writes everything to the job's result file as JSON.

Whatever goes wrong with one notebook scores 0 on that notebook's cells with the
reason, never an exception out of the worker.
"""

from __future__ import annotations

import ctypes
import hashlib
import html
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import nbformat

from .course import COURSE_ID, grade_cells
from .sandbox import Limits, landlock_abi, system_read_paths

__all__ = ["grade_submission", "submission_digest", "main"]

KERNEL_NAME = "python3"  # the name the course's notebooks ask for; the sandbox's spec shadows the real one


def submission_digest(folder: Path) -> str:
    """Hash of every regular file under ``folder`` (names and bytes); '' when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        return ""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- step 1: look at the file
class BrokenNotebook(Exception):
    """A submitted notebook that cannot be graded at all; the message is the reason."""


def _short(text: str, n: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _load(path: Path, max_mb: int) -> nbformat.NotebookNode:
    size = path.stat().st_size
    if size == 0:
        raise BrokenNotebook("the file is empty")
    if size > max_mb * 1024 * 1024:
        raise BrokenNotebook(f"the file is {size / 2**20:.1f} MB, over the {max_mb} MB limit")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrokenNotebook(f"the file is not JSON ({_short(exc, 80)})") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise BrokenNotebook("the file is JSON but not a notebook (no cells)")
    try:
        nb = nbformat.reads(raw.decode(), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        raise BrokenNotebook(f"the file is not a valid notebook ({_short(exc, 120)})") from None
    return nb


def _sanitize(nb: nbformat.NotebookNode, release: nbformat.NotebookNode, source: nbformat.NotebookNode,
              assignment: str) -> list[str]:
    """Make ``nb``'s nbgrader metadata the instructor's; raise BrokenNotebook for another assignment's notebook."""
    expected, given = {}, {}
    for cell in release.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            expected[meta["grade_id"]] = meta
            given[meta["grade_id"]] = {cell.source.rstrip()}
    for cell in source.cells:  # the instructor's version (with hidden tests) is not an edit either
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in given:
            given[gid].add(cell.source.rstrip())
    marker = nb.metadata.get("course", {}).get("generated_from") if isinstance(nb.metadata.get("course"), dict) else None
    if isinstance(marker, str) and Path(marker).stem != assignment:
        raise BrokenNotebook(f"this is the notebook of another assignment ({marker}), not {assignment}")
    ids = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            ids.add(meta["grade_id"])
    answer_ids = {k for k, m in expected.items() if m.get("grade") or m.get("solution")}
    if ids and not ids & answer_ids:
        raise BrokenNotebook(f"this is the notebook of another assignment: none of {assignment}'s cells are in it")
    notes, foreign = [], 0
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if gid in expected:
            cell.metadata["nbgrader"] = json.loads(json.dumps(expected[gid]))
            if expected[gid].get("locked") and cell.get("source", "").rstrip() not in given[gid]:
                notes.append(f"cell '{gid}' was edited: restored from the source")
        else:
            del cell.metadata["nbgrader"]
            foreign += 1
    if foreign:
        notes.append(f"nbgrader metadata removed from {foreign} cell(s) that are not part of {assignment}")
    if not ids:
        notes.append("no cell of the released notebook was found; its checks were restored from the source")
    return notes


# ---------------------------------------------------------------- step 2: autograde
def _kernel_spec(sandbox: Path, limits: Limits, read_paths: list[str], write_paths: list[str]) -> Path:
    spec_dir = sandbox / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    confinement = {"cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
                   "read_paths": read_paths, "write_paths": write_paths}
    spec = {
        "argv": [sys.executable, "-m", "course_lib.grading.kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "env": {"COURSE_GRADING_SANDBOX": json.dumps(confinement)},
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def _config(limits: Limits, notes_path: Path, sockets: Path | None = None):
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        IgnorePattern, LimitOutput, OverwriteKernelspec, SaveAutoGrades)
    from traitlets.config import Config

    from .preprocessors import RobustExecute, RobustOverwriteCells

    c = Config()
    c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, RobustOverwriteCells, CheckCellMetadata]
    c.Autograde.autograde_preprocessors = [RobustExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    c.RobustOverwriteCells.add_missing_cells = True
    c.RobustOverwriteCells.notes_path = str(notes_path)
    c.RobustExecute.notes_path = str(notes_path)
    c.RobustExecute.timeout = limits.cell_timeout_s
    # nbclient gives a kernel 60 s to start; on a busy 2-core machine grading several
    # submissions at once that is not always enough, and a slow start is not the student's fault.
    c.RobustExecute.startup_timeout = 300
    c.RobustExecute.output_chars = limits.output_chars
    c.RobustExecute.max_restarts = limits.max_restarts
    c.RobustExecute.kernel_name = KERNEL_NAME
    if sockets is not None:
        # Unix sockets in the sandbox instead of TCP ports: jupyter_client picks free ports
        # and releases them before the kernel binds them, and when many kernels start at once
        # another process can take one in between, which kills the kernel at start-up
        # (jupyter/jupyter_client#154). A socket file in a folder of our own cannot be taken.
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip = str(sockets)
    c.RobustExecute.shutdown_kernel = "immediate"  # the notebook is done: no need to wait for a clean exit
    c.RobustExecute.error_on_timeout = {
        "ename": "CellTimeoutError",
        "evalue": f"the cell ran longer than {limits.cell_timeout_s} s and was interrupted (an infinite loop?)",
        "traceback": [f"CellTimeoutError: the cell ran longer than {limits.cell_timeout_s} s and was interrupted"],
    }
    return c


def _describe_notes(notes_path: Path, cell_names: dict[int, str]) -> list[str]:
    out = []
    if not notes_path.exists():
        return out
    for line in notes_path.read_text().splitlines():
        e = json.loads(line)
        where = e.get("cell") or cell_names.get(e.get("index"), f"cell {e.get('index')}")
        if e["kind"] == "restored":
            out.append(f"cell '{where}' was {e.get('attr')}: restored from the source")
        elif e["kind"] == "timeout":
            out.append(f"cell '{where}' timed out after {e.get('seconds')} s")
        elif e["kind"] == "output":
            out.append(f"cell '{where}' printed too much: {e['dropped']:,} characters dropped")
        elif e["kind"] == "kernel_died":
            out.append(f"cell '{where}': {e['reason']}; the kernel was restarted" if e.get("index") is not None
                       else f"{e['reason']}")
        elif e["kind"] == "gave_up":
            out.append(f"{e['reason']}: {e['not_run']} cell(s) not run")
    return list(dict.fromkeys(out))


def grade_submission(job: dict) -> dict:
    """Grade ``job['submission']`` (a folder) for ``job['assignment']``; returns the result record."""
    from .preprocessors import grade_error

    t0 = time.monotonic()
    limits = Limits(**job["limits"])
    sandbox = Path(job["sandbox"]).resolve()
    course_dir = Path(job["course_dir"]).resolve()
    a, student = job["assignment"], job["student"]
    submission = Path(job["submission"])
    work = sandbox / "course"
    (work / "source").mkdir(parents=True)
    shutil.copytree(course_dir / "source" / a, work / "source" / a)
    shutil.copy(course_dir / "gradebook.db", work / "gradebook.db")
    release_dir = course_dir / "release" / a
    submitted = work / "submitted" / student / a
    submitted.mkdir(parents=True)

    problems: list[str] = []
    cells: list[dict] = []
    graded_notebooks, broken = [], {}
    for src in sorted((work / "source" / a).glob("*.ipynb")):
        name = src.stem
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        path = submission / f"{name}.ipynb"
        try:
            if not path.is_file() or path.is_symlink():
                found = sorted(p.name for p in submission.glob("*")) if submission.is_dir() else []
                raise BrokenNotebook(f"no {name}.ipynb was handed in" + (f" (found: {', '.join(found[:5])})" if found else ""))
            nb = _load(path, limits.submission_mb)
            problems += _sanitize(nb, release, nbformat.read(src, as_version=4), a)
        except BrokenNotebook as exc:
            broken[name] = str(exc)
            problems.append(f"{name}.ipynb: {exc}")
            continue
        nbformat.write(nb, submitted / f"{name}.ipynb")
        graded_notebooks.append(name)
    # Other files handed in (data a notebook reads) go along; links and big files do not.
    for extra in sorted(submission.glob("*")) if submission.is_dir() else []:
        if extra.suffix != ".ipynb" and extra.is_file() and not extra.is_symlink() and extra.stat().st_size <= limits.file_mb * 2**20:
            shutil.copy(extra, submitted / extra.name)

    sandbox_note = ""
    if graded_notebooks:
        sandbox_note = _autograde(job, limits, sandbox, work, a, student, problems)
    feedback = {}
    for src in sorted((work / "source" / a).glob("*.ipynb")):
        name = src.stem
        source_nb = nbformat.read(src, as_version=4)
        scores, errors, solution_errors = {}, {}, []
        autograded = work / "autograded" / student / a / f"{name}.ipynb"
        if name in graded_notebooks and name not in broken and autograded.exists():
            scores = _scores(work / "gradebook.db", a, name, student)
            done = nbformat.read(autograded, as_version=4)
            for cell in done.cells:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                if cell.cell_type != "code" or not meta.get("grade_id"):
                    continue
                err = grade_error(cell)
                if err and meta.get("grade"):
                    errors[meta["grade_id"]] = err
                elif err and meta.get("solution"):
                    solution_errors.append(f"in your cell '{meta['grade_id']}': {_short(err, 160)}")
                elif err:  # the instructor's own cell failed (an import, under the memory limit?)
                    solution_errors.append(f"in cell '{meta['grade_id']}': {_short(err, 160)}")
            fb = work / "feedback" / student / a / f"{name}.html"
            if fb.exists():
                feedback[name] = str(fb)
        elif name in graded_notebooks and name not in broken:
            broken[name] = "nbgrader could not grade it"
        for gid, points in grade_cells(source_nb):
            score = scores.get(gid)
            error = errors.get(gid) or broken.get(name)
            if score is None:
                score = 0.0
                error = error or "not graded"
            cells.append({"notebook": name, "grade_id": gid, "points": points, "score": float(score), "error": error})
        problems += solution_errors
        if name not in feedback:
            feedback[name] = str(_plain_feedback(work, student, a, name, broken.get(name, "not graded"), source_nb))

    lost = []
    for c in cells:
        if c["score"] < c["points"] and not broken.get(c["notebook"]):
            why = c["error"] or f"{c['score']:g} of {c['points']:g} points"
            lost.append(f"{c['grade_id']}: {_short(why, 200)}")
    status_parts = list(dict.fromkeys(problems + lost))
    result = {
        "student": student,
        "assignment": a,
        "cells": cells,
        "total": sum(c["score"] for c in cells),
        "max_total": sum(c["points"] for c in cells),
        "status": "; ".join(status_parts) if status_parts else "ok",
        "feedback": feedback,
        "sandbox": sandbox_note,
        "seconds": round(time.monotonic() - t0, 2),
    }
    _annotate_feedback(result)
    return result


def _autograde(job, limits: Limits, sandbox: Path, work: Path, a: str, student: str, problems: list[str]) -> str:
    """Run nbgrader autograde and generate_feedback in ``work``; append what went wrong to ``problems``."""
    from .course import course_api

    home, tmp, runtime = sandbox / "home", sandbox / "tmp", sandbox / "runtime"
    for d in (home, tmp, runtime):
        d.mkdir(parents=True, exist_ok=True)
    cwd = work / "autograded" / student / a
    cwd.mkdir(parents=True, exist_ok=True)
    import course_lib

    read_paths = system_read_paths() + [str(Path(p).resolve()) for p in course_lib.__path__]
    read_paths += [str(Path(p).resolve()) for p in job.get("allow_read", [])] + [str(runtime)]
    _kernel_spec(sandbox, limits, read_paths, [str(home), str(tmp), str(cwd)])
    os.environ.update({
        "HOME": str(home), "TMPDIR": str(tmp), "JUPYTER_PATH": str(sandbox / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"), "IPYTHONDIR": str(home / ".ipython"),
        "MPLCONFIGDIR": str(home / ".matplotlib"), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"), "PYTHONDONTWRITEBYTECODE": "1",
        # one grading job per core: no job may spread over the others'
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
    })
    tempfile.tempdir = str(tmp)  # may have been cached as /tmp before TMPDIR was set
    if job.get("fast"):
        os.environ["COURSE_FAST"] = "1"
    else:
        os.environ.pop("COURSE_FAST", None)
    notes_path = sandbox / "notes.jsonl"
    # The kernel binds its sockets at SOCKETS-1 to SOCKETS-5, in a folder it may write to;
    # a Unix socket's path has at most 107 bytes, so a deep temporary folder keeps TCP.
    sockets = tmp / "kernel"
    api = course_api(work, _config(limits, notes_path, sockets if len(os.fsencode(sockets)) <= 100 else None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = api.autograde(a, student, force=True, create=True)
        if not result["success"]:
            text = (result.get("log") or "") + "\n" + (result.get("error") or "")
            errors = [line.strip() for line in text.splitlines()
                      if re.match(r"\s*[\w.]+(Error|Exception)\b", line) and "NbGraderException" not in line]
            problems.append("nbgrader could not grade this submission: " + _short(errors[-1] if errors else "unknown error", 200))
        else:
            fb = api.generate_feedback(a, student, force=True)
            if not fb["success"]:
                problems.append("nbgrader could not write the feedback page")
    names = {}
    for nb_path in (work / "autograded" / student / a).glob("*.ipynb"):
        for i, cell in enumerate(nbformat.read(nb_path, as_version=4).cells):
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            names[i] = gid or f"cell {i}"
    problems += _describe_notes(notes_path, names)
    return _sandbox_summary(sandbox)


def _sandbox_summary(sandbox: Path) -> str:
    log = sandbox / "worker.log"
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("grading sandbox: "):
                return line[len("grading sandbox: "):]
    abi = landlock_abi()
    return f"landlock ABI {abi}" if abi else "landlock unavailable"


def _scores(db: Path, a: str, name: str, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(f"sqlite:///{db}", COURSE_ID) as gb:
            nb = gb.find_submission_notebook(name, a, student)
            return {g.name: float(g.score) for g in nb.grades if g.score is not None}


def _plain_feedback(work: Path, student: str, a: str, name: str, reason: str, source_nb) -> Path:
    """A feedback page for a notebook nbgrader could not grade: the reason, and the points it was worth."""
    rows = "".join(f"<tr><td>{html.escape(g)}</td><td>0 / {p:g}</td></tr>" for g, p in grade_cells(source_nb))
    path = work / "feedback" / student / a / f"{name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(a)}: {html.escape(student)}</title></head>"
        f"<body><h1>{html.escape(name)}.ipynb: not graded</h1><p>{html.escape(reason)}</p>"
        f"<table><tr><th>check</th><th>points</th></tr>{rows}</table>"
        "<p>Every check of this notebook scores 0. Hand in the notebook you worked on, saved from Jupyter.</p></body></html>"
    )
    return path


def _annotate_feedback(result: dict) -> None:
    """Put the gradebook's status at the top of each feedback page, so the student sees what the instructor sees."""
    banner = (f"<div style='border:2px solid #c60;padding:0.6em;margin:1em;font-family:sans-serif'>"
              f"<b>Grading summary</b>: {result['total']:g} / {result['max_total']:g} points. "
              f"{html.escape(result['status']) if result['status'] != 'ok' else 'Everything ran.'}</div>")
    for path in result["feedback"].values():
        p = Path(path)
        text = p.read_text(errors="replace")
        i = text.find("<body")
        j = text.find(">", i) + 1 if i >= 0 else 0
        p.write_text(text[:j] + banner + text[j:])


# ---------------------------------------------------------------- entry point
def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux), so nothing is left running after the grader."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    """Grade the job described by the JSON file ``argv[0]``; the result goes to the job's result path."""
    argv = sys.argv[1:] if argv is None else argv
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text())
    try:
        result = grade_submission(job)
    except Exception:  # the grader's own failure: still a row, with the reason
        result = {"student": job["student"], "assignment": job["assignment"], "cells": [], "total": 0.0,
                  "max_total": 0.0, "feedback": {},
                  "status": "the grader failed on this submission: " + _short(traceback.format_exc().splitlines()[-1], 200),
                  "traceback": traceback.format_exc()}
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    result["cpu_s"] = round(sum(u.ru_utime + u.ru_stime for u in used), 2)  # this worker and its kernels
    out = Path(job["result"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
