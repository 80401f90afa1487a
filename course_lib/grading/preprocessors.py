"""nbgrader preprocessors that keep grading going when a submission misbehaves.

nbgrader's autograde runs every cell of a submission in one kernel. Four things
stop it from grading the rest of a notebook, and these subclasses handle them:

* The kernel dies before it answers its first request, so before any of the
  submission ran (most often a port it was given was taken by another process in
  the meantime). :class:`RobustExecute` starts another, up to ``start_attempts``
  kernels in all.

* The kernel dies (``os._exit``, a segfault, the CPU limit). nbgrader gives up
  on the whole submission. :class:`RobustExecute` records an error in the cell
  that killed it, starts a new kernel, replays the cells that ran cleanly before
  it (so the student's definitions exist again), and carries on after it.
* A cell never returns and ignores the interrupt (``except KeyboardInterrupt``,
  or a C loop). Every later cell would then time out too; after a timeout
  :class:`RobustExecute` asks the kernel for a reply and, if none comes, treats
  it as dead.
* A cell prints without end. The outputs would fill the grader's memory; only
  ``Limits.output_chars`` characters per cell are kept.

:class:`RobustOverwriteCells` puts back grade cells and locked cells that the
student deleted, including where nbgrader's own ``add_missing_cells`` fails
(it raises ``KeyError`` when the cell before the missing one is gone too).

Both append one JSON line per event to ``notes_path``; the worker turns those
into the gradebook's status column.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import signal
import time

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbconvert.preprocessors.execute import NotebookClient
from nbformat import NotebookNode
from traitlets import Integer, Unicode

from nbgrader import utils as nbgrader_utils
from nbgrader.preprocessors import Execute, OverwriteCells

__all__ = ["RobustExecute", "RobustOverwriteCells", "NOT_RUN"]

NOT_RUN = "NotRun"


def _note(path: str, **event) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def _cell_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _describe_exit(code) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed: memory or CPU hard limit?)",
               "SIGSEGV": " (segmentation fault)", "SIGABRT": " (aborted)"}.get(name, "")
        return f"killed by {name}{why}"
    return f"exit code {code}"


class RobustExecute(Execute):
    """nbgrader's Execute, surviving kernel deaths, deaf kernels and floods of output."""

    notes_path = Unicode("", help="file to append grading notes to (JSON lines)").tag(config=True)
    output_chars = Integer(1_000_000, help="characters of output kept per cell").tag(config=True)
    max_restarts = Integer(3, help="kernel deaths survived before the rest of the notebook is marked not run").tag(config=True)
    responsive_timeout = Integer(10, help="seconds an interrupted kernel has to answer before it counts as dead").tag(config=True)
    start_attempts = Integer(3, help="tries to start a kernel that dies before answering, before the rest is marked not run").tag(config=True)

    # ------------------------------------------------------------ output cap
    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
        size += sum(len(line) for line in content.get("traceback", []))
        kept = self._kept.get(cell_index, 0)
        if kept + size > self.output_chars and msg["msg_type"] != "error":
            self._dropped[cell_index] = self._dropped.get(cell_index, 0) + size
            return None
        self._kept[cell_index] = kept + size
        return super().output(outs, msg, display_id, cell_index)

    # ------------------------------------------------------------ kernel state
    @contextlib.contextmanager
    def _remember_exit_code(self):
        """Record how the kernel ended before setup_kernel's cleanup forgets the process."""
        self._last_exit = None
        try:
            yield
        except DeadKernelError:
            try:
                self._last_exit = self.km.provisioner.process.wait(timeout=5)
            except Exception:
                self._last_exit = None
            raise

    async def _async_responsive(self, timeout: float) -> bool:
        """True when the kernel answers a kernel_info request within ``timeout`` seconds."""
        msg_id = self.kc.kernel_info()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = await asyncio.wait_for(self.kc.shell_channel.get_msg(timeout=left), timeout=left + 1)
            except Exception:
                return False
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    _responsive = run_sync(_async_responsive)

    # ------------------------------------------------------------ the loop
    def _after_cell(self, cell, i: int, seconds: float) -> str:
        """Annotate a finished cell; returns 'clean', 'error' or 'timeout'."""
        if i in self._dropped:
            cell.outputs.append(NotebookNode(
                output_type="stream", name="stdout",
                text=f"\n[grader: {self._dropped[i]:,} more characters of output were dropped]\n"))
            _note(self.notes_path, kind="output", cell=_cell_id(cell), index=i, dropped=self._dropped[i])
        if nbgrader_utils.is_grade(cell):
            # nbgrader scores a grade cell 0 when it wrote to stderr; a warning is not a failed check.
            for out in cell.outputs:
                if out.output_type == "stream" and out.name == "stderr":
                    out.name = "stdout"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if any(o.ename == "CellTimeoutError" for o in errors):
            _note(self.notes_path, kind="timeout", cell=_cell_id(cell), index=i, seconds=round(seconds))
            return "timeout"
        return "error" if errors else "clean"

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._kept, self._dropped = {}, {}
        graded = [i for i, c in enumerate(nb.cells) if nbgrader_utils.is_grade(c) or nbgrader_utils.is_task(c)]
        last = max(graded, default=len(nb.cells) - 1)
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i <= last]
        for c in nb.cells[last + 1:]:
            # Nothing after the last graded cell can change a score: a demo or a
            # training run there would only cost grading time.
            if c.cell_type == "code":
                c.outputs = [NotebookNode(output_type="stream", name="stdout",
                                          text="[not run when grading: no graded cell follows]\n")]
        clean: list[int] = []  # cells that ran without error so far: replayed after a restart
        pos, restarts, failed_starts, give_up = 0, 0, 0, None
        while pos < len(code) and give_up is None:
            culprit, reason, replaying, started = None, None, True, False
            try:
                with self.setup_kernel(), self._remember_exit_code():
                    info = self.wait_for_reply(self.kc.kernel_info())
                    started = True
                    self.nb.metadata["language_info"] = info["content"]["language_info"]
                    for i in clean:  # bring the student's definitions back; the recorded outputs stay
                        original = self.nb.cells[i]
                        self.execute_cell(copy.deepcopy(original), i, store_history=False)
                        self.nb.cells[i] = original
                    replaying = False
                    while pos < len(code):
                        i = code[pos]
                        start = time.monotonic()
                        deaf = False
                        try:
                            cell = self.execute_cell(self.nb.cells[i], i, store_history=True)
                        except CellTimeoutError:
                            # nbclient gave up waiting for the interrupted cell to finish: it is still running.
                            cell, deaf = self.nb.cells[i], True
                            cell.outputs.append(NotebookNode(output_type="error", **self.error_on_timeout))
                        pos += 1
                        outcome = self._after_cell(cell, i, time.monotonic() - start)
                        if outcome == "clean":
                            clean.append(i)
                        elif outcome == "timeout" and (deaf or not self._responsive(self.responsive_timeout)):
                            reason = "the kernel ignored the interrupt after a timeout, so it was restarted"
                            break
            except Exception as exc:
                if not started:
                    if failed_starts + 1 < self.start_attempts:
                        # Nothing of the submission ran in this kernel yet, so its death is the
                        # machine's doing, not the student's: most often another process took one
                        # of the ports jupyter_client picked for it (jupyter/jupyter_client#154).
                        failed_starts += 1
                        _note(self.notes_path, kind="start_failed", reason=f"{type(exc).__name__}: {exc}")
                        continue
                    give_up = f"the kernel would not start ({self.start_attempts} tries): {type(exc).__name__}: {exc}"
                elif isinstance(exc, DeadKernelError):
                    exit_how = _describe_exit(self._last_exit)
                    if replaying:
                        give_up = f"the kernel died ({exit_how}) while replaying earlier cells after a restart"
                    else:
                        culprit = code[pos]
                        reason = f"the kernel died while running this cell ({exit_how})"
                        pos += 1
                else:  # the kernel could not be cleaned up
                    give_up = f"the kernel failed: {type(exc).__name__}: {exc}"
            if reason is None and give_up is None:
                break  # every cell ran
            if culprit is not None:
                self.nb.cells[culprit].outputs.append(_error_output("DeadKernelError", reason))
            if reason is not None:
                restarts += 1
                _note(self.notes_path, kind="kernel_died", index=culprit, reason=reason,
                      cell=_cell_id(self.nb.cells[culprit]) if culprit is not None else None)
                if restarts > self.max_restarts:
                    give_up = f"the kernel died {restarts} times; the grader stopped restarting it"
        if give_up is not None:
            for i in code[pos:]:
                self.nb.cells[i].outputs = [_error_output(NOT_RUN, f"not run: {give_up}")]
            _note(self.notes_path, kind="gave_up", reason=give_up, not_run=len(code) - pos)
        self.set_widgets_metadata()
        return self.nb, self.resources


class RobustOverwriteCells(OverwriteCells):
    """OverwriteCells that also restores deleted locked cells, and never fails to place a restored cell."""

    notes_path = Unicode("", help="file to append grading notes to (JSON lines)").tag(config=True)

    def report_change(self, name, attr, old, new):
        super().report_change(name, attr, old, new)
        # A checksum change is also how nbgrader puts the hidden tests back, so edits
        # to a cell's text are reported by the worker, which compares with the release.
        if attr == "cell_type":
            _note(self.notes_path, kind="restored", cell=name, attr=f"turned into a {new} cell")

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = list(source_nb.source_cells)
        order = [c.name for c in source_cells]
        grade_cells = {c.name: c for c in source_nb.grade_cells}
        solution_ids = {c.name for c in source_nb.solution_cells}
        present = {_cell_id(c) for c in nb.cells if _cell_id(c)}
        for k, src in enumerate(source_cells):
            if src.name in present:
                continue
            if src.name in grade_cells:
                cell = self.missing_cell_transform(src, grade_cells[src.name].max_score, is_solution=src.name in solution_ids)
            elif src.locked and src.cell_type == "code" and src.name not in solution_ids:
                cell = nbformat.v4.new_code_cell(src.source, metadata={
                    "deletable": False, "editable": False,
                    "nbgrader": {"grade": False, "grade_id": src.name, "locked": True, "solution": False,
                                 "task": False, "schema_version": 3, "checksum": src.checksum}})
            else:
                continue  # a deleted solution cell stays deleted: that is the student's answer
            where = self._insertion_index(nb, order[:k], order[k + 1:])
            nb.cells.insert(where, cell)
            present.add(src.name)
            _note(self.notes_path, kind="restored", cell=src.name, attr="deleted")
        return nb, resources

    @staticmethod
    def _insertion_index(nb, before: list[str], after: list[str]) -> int:
        """After the nearest earlier source cell still present, else before the nearest later one, else at the end."""
        index = {_cell_id(c): i for i, c in enumerate(nb.cells) if _cell_id(c)}
        for name in reversed(before):
            if name in index:
                return index[name] + 1
        for name in after:
            if name in index:
                return index[name]
        return len(nb.cells)


def grade_error(cell) -> str | None:
    """``ename: evalue`` of the first error in a code cell (or why nbgrader gives it 0), None when it has none."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            evalue = str(out.get("evalue") or "").strip()
            return f"{out.get('ename')}: {evalue}" if evalue else str(out.get("ename"))
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            return "wrote to stderr: " + out.get("text", "").strip().splitlines()[-1][:200] if out.get("text", "").strip() else "wrote to stderr"
    return None
