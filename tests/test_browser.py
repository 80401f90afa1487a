"""The sliders as a student meets them: JupyterLab in a real (headless) Chromium.

No notebook execution ever moves a slider, so nbval cannot tell whether a slider's
callback reaches the page. This test starts JupyterLab from the current environment,
opens a freshly built chapter notebook in Chromium (driven by Playwright), runs all
cells from the Run menu, moves each slider with the keyboard, and checks that the
plotted values become the ones the kernel computes, without the callback, for the
slider's new value. A second test breaks the callback in the kernel and checks that
the same checker then reports that the figure did not change.

Adding a slider (chapter 7's lambda, chapter 9's epsilon) is one more ``SliderCase``
in ``CASES``.

Chromium is Debian's package (``/usr/bin/chromium``, or ``$COURSE_CHROMIUM``); Playwright's
own browser download needs outside network, so it is never used. When the browser is
missing the test installs it with apt-get; if that fails, the test fails with the reason
in CI (``CI=true``) and is skipped with the reason elsewhere.

Screenshots of every state go to ``build/browser-artifacts/<case>/``; on failure the
page's HTML, the browser console and the JupyterLab server log go there too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from course_lib.build import build_all

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "browser-artifacts"
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
# What Chromium needs on a machine without outside network (the profile directory,
# --user-data-dir, is a fresh temporary one given to Playwright separately).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass(frozen=True)
class Move:
    # Keys pressed on the focused slider handle (noUiSlider: arrows move one step,
    # PageUp/PageDown five, Home/End to the ends).
    keys: tuple[str, ...]
    value: float  # the slider's value once they are pressed


@dataclass(frozen=True)
class SliderCase:
    """One slider of one chapter notebook, and how to tell that its figure is right.

    The widget helpers in ``course_lib.widgets`` return a box exposing the slider as an
    attribute (``.slider``, or ``.lam_slider`` where a box holds two); the notebook keeps
    the box in a variable (``box``). ``expected`` recomputes the plotted array
    in the kernel straight from the kernels (for chapter 7, say, GAE advantages for
    lambda = {value}), so a callback that draws the wrong thing cannot agree with it.
    """

    id: str  # test id and name of the artifact folder
    notebook: str  # the built notebook, relative to the course root
    label: str  # the slider's description, shown left of it
    # Python expression, run in the notebook's kernel, for the plotted values at slider
    # value {value}; computed without the slider's callback.
    expected: str
    moves: tuple[Move, ...]  # checked in order, from the value the notebook sets
    broken_move: Move  # checked once the callback has been replaced by a no-op
    box: str = "slider_box"  # the notebook's name for the widget box
    attribute: str = "slider"  # the box's attribute holding this slider
    plot: int = 0  # which plotly figure in the slider's output
    trace: int = 0  # which trace of that figure
    key: str = "z"  # which data array of that trace

    @property
    def slider(self) -> str:
        return f"{self.box}.{self.attribute}"

    @property
    def break_code(self) -> str:
        slider = self.slider
        return f"{slider}.unobserve_all('value'); {slider}.observe(lambda change: None, names='value')"


CASES = [
    SliderCase(
        id="ch01-gamma",
        notebook="notebooks/01_mdp_bellman.ipynb",
        label="gamma",
        # Exact policy evaluation for the grid and policy the slider shows (section 9).
        expected="evaluate_policy(grid35.with_gamma({value}), pi35).reshape(5, 5)",
        moves=(Move(("Home",), 0.0), Move(("ArrowRight",) * 3 + ("PageUp",), 0.08)),
        broken_move=Move(("End",), 0.99),
    ),
    SliderCase(
        id="ch09-epsilon",
        notebook="notebooks/09_ppo.ipynb",
        label="epsilon",
        # PPO's clipped objective at A = +1, min(r, clip(r, 1 - eps, 1 + eps)), written out
        # here rather than taken from the plotting code, on the figure's ratio grid.
        expected="(lambda r: np.minimum(r, np.clip(r, 1 - {value}, 1 + {value})))(np.linspace(0.0, 2.5, 501))",
        moves=(Move(("Home",), 0.01), Move(("ArrowRight",) * 3 + ("PageUp",), 0.09)),
        broken_move=Move(("End",), 0.5),
        box="clip_box",
        trace=1,
        key="y",
    ),
    SliderCase(
        id="ch07-lambda",
        notebook="notebooks/07_actor_critic_gae.ipynb",
        label="lambda",
        # The markers sit on the bias^2 / variance-of-the-mean / MSE curves at lambda. The
        # curves are re-sampled here for gamma 0.9 with the notebook's settings, and the
        # markers' heights interpolated at {value}, without the widget's code.
        expected=(
            "(lambda c, lam: [np.interp(lam, c['lams'], y) for y in (c['bias2'], c['variance'] / n_average,"
            " c['bias2'] + c['variance'] / n_average)])("
            "gae_bias_variance(chain.with_gamma(0.9), pi_chain, 0.5 * evaluate_policy(chain.with_gamma(0.9), pi_chain),"
            " np.round(np.linspace(0.0, 1.0, 21), 10), 100 if FAST else 300, 80, 0), {value})"
        ),
        moves=(Move(("Home",), 0.0), Move(("ArrowRight",) * 3, 0.15)),
        broken_move=Move(("End",), 1.0),
        box="box",
        attribute="lam_slider",
        trace=3,
        key="y",
    ),
]


class SliderCheckFailed(AssertionError):
    """The page does not show what the slider's new value should show."""


# --- Chromium ---------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _cannot_run(reason: str):
    message = f"the browser test cannot run: {reason}"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message + " (outside CI this is a skip; with CI=true it is a failure)")


def _install_chromium() -> str | None:
    """Install Debian's chromium with apt-get; return None on success, otherwise why not."""
    if shutil.which("apt-get") is None:
        return "there is no apt-get here to install Debian's chromium; install Chromium and set COURSE_CHROMIUM to its path"
    if getattr(os, "geteuid", lambda: -1)() != 0:
        return "installing it needs root: run `apt-get update && apt-get install -y chromium` as root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took more than 15 minutes"
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` exited with status {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _cannot_run(f"the playwright package is missing ({exc}); `make setup` installs it")
    if not Path(CHROMIUM).exists():
        if "COURSE_CHROMIUM" in os.environ:
            _cannot_run(f"COURSE_CHROMIUM={CHROMIUM} does not exist")
        why = _install_chromium()
        if why is not None:
            _cannot_run(f"Chromium is not at {CHROMIUM} and installing it failed: {why}")
        if not Path(CHROMIUM).exists():
            _cannot_run(f"apt-get installed chromium, but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        try:
            # A persistent context is how Playwright takes a --user-data-dir: here a fresh, empty one.
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport=VIEWPORT, timeout=60_000,
            )
        except Exception as exc:
            pytest.fail(f"Chromium at {chromium} did not start under Playwright: {exc}", pytrace=False)
        try:
            yield context
        finally:
            context.close()


# --- JupyterLab -------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the server's root: a fresh build of every notebook
    log: Path  # the server's stdout and stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(lab: Lab, path: str, timeout: float = 5.0) -> bytes:
    req = urllib.request.Request(f"{lab.url}{path}", headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.read()


def _log_tail(lab: Lab, n: int = 4000) -> str:
    try:
        return lab.log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no server log)"


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels, whatever state they are in.

    Everything they wrote lives in temporary directories, so there is nothing to tidy:
    SIGTERM, then SIGKILL for what is still there after two seconds (a clean shutdown
    through the API takes several seconds longer on a busy machine).
    """
    import psutil  # a dependency of ipykernel

    try:
        server = psutil.Process(proc.pid)
        # Kernels run in sessions of their own (jupyter_client), outside the server's group.
        procs = [server, *server.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=2)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything else left in the server's process group
    proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "course"
    build_all(ROOT, out=root)
    # Config, data, runtime files, settings, workspaces and IPython profile all live
    # under base, so nothing of the user's (a password, another python3 kernel, a saved
    # layout) changes what the test sees.
    home = base / "home"
    settings = home / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    # Offline, the "get Jupyter news?" toast only covers the notebook.
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {
        **os.environ,
        "COURSE_FAST": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        # The test reads kernel and cell state through window.jupyterapp; it drives the page like a student.
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if getattr(os, "geteuid", lambda: -1)() == 0:
        cmd.append("--allow-root")
    lab = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=base / "jupyterlab.log")
    with open(lab.log, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {proc.returncode} before serving:\n{_log_tail(lab)}", pytrace=False)
            with contextlib.suppress(OSError):
                _get(lab, "/api/status", timeout=2)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {lab.url} within 120 s:\n{_log_tail(lab)}", pytrace=False)
            time.sleep(0.25)
        yield lab
    finally:
        _stop(proc)


# --- The notebook in the page -----------------------------------------------

# The kernel of the notebook at `path` is started, connected and idle. (The toolbar and
# status bar read "idle" before the kernel exists, and Run All in that window opens a
# "Select Kernel" dialog instead of running.)
KERNEL_IDLE = """(path) => {
  const app = window.jupyterapp;
  const panel = app && [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
# Run All has begun once any code cell's prompt is no longer "[ ]:" (or a dialog asks something).
RUN_ALL_STARTED = """() => !!document.querySelector('.jp-Dialog') ||
  [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]
    .some(p => p.textContent.trim() !== '[ ]:')"""
# No cell waits ("[*]:") any more; after an error the cells still queued go back to "[ ]:".
NO_CELL_WAITS = """() => ![...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]
    .some(p => p.textContent.trim() === '[*]:')"""
# Every code cell of the notebook at `path`: where it is, its execution count and its error outputs.
CELL_STATES = """(path) => {
  const app = window.jupyterapp;
  if (!app) throw new Error('window.jupyterapp is missing: JupyterLab needs --LabApp.expose_app_in_browser=True');
  const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  if (!panel) throw new Error('no open notebook at ' + path);
  return panel.content.widgets.map((cell, index) => ({index, cell})).filter(({cell}) => cell.model.type === 'code')
    .map(({index, cell}) => ({
      index,
      first_line: cell.model.sharedModel.getSource().split('\\n')[0].slice(0, 60),
      count: cell.model.executionCount,
      errors: cell.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
    }));
}"""
# Run `code` in the kernel of the notebook at `path`; return its stdout and its error, if any.
RUN_IN_KERNEL = """async ([path, code]) => {
  const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === path);
  const future = panel.sessionContext.session.kernel.requestExecute({code, store_history: false});
  let stdout = '', error = null;
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream' && msg.content.name === 'stdout') stdout += msg.content.text;
    if (msg.header.msg_type === 'error') error = msg.content.ename + ': ' + msg.content.evalue;
  };
  await future.done;
  return {stdout, error};
}"""
# What ipywidgets writes in place of a widget it cannot show.
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "Error creating widget")


def _poll(read: Callable[[], object], done: Callable[[object], bool], timeout_s: float, interval_s: float = 0.1):
    """Call ``read`` until ``done`` holds for what it returns or ``timeout_s`` passes; return the last reading."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = read()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(interval_s)


class OpenNotebook:
    """One notebook open in a page of the browser, with the checks the tests make on it."""

    def __init__(self, case: SliderCase, lab: Lab, page, artifacts: Path):
        self.case, self.lab, self.page, self.artifacts = case, lab, page, artifacts
        self.console: list[str] = []
        self.shots = 0
        page.set_default_timeout(60_000)
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        label = page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(case.label)}\s*$"))
        slider = page.locator(".widget-slider").filter(has=label)
        self.handle = slider.locator(".noUi-handle")
        self.output = page.locator(".jp-OutputArea-output").filter(has=slider)
        self.plot = self.output.locator(".js-plotly-plot").nth(case.plot)

    # Acting as a student.

    def open_and_run_all(self, timeout_s: float = 240) -> None:
        page, start = self.page, time.monotonic()
        page.goto(f"{self.lab.url}/lab/tree/{self.case.notebook}?token={self.lab.token}&reset")
        page.wait_for_function(KERNEL_IDLE, arg=self.case.notebook, polling=250, timeout=120_000)
        kernel_ready = time.monotonic()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        page.wait_for_function(RUN_ALL_STARTED, polling=100)
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise AssertionError(f"Run All opened a dialog instead of running: {dialog.first.inner_text()!r}")
        page.wait_for_function(NO_CELL_WAITS, polling=250, timeout=timeout_s * 1000)
        page.wait_for_function(KERNEL_IDLE, arg=self.case.notebook, polling=250, timeout=60_000)
        ran = time.monotonic()
        problems = self.cell_problems()
        if problems:
            raise AssertionError(f"after Run All in {self.case.notebook}:\n" + "\n".join(problems))
        self.output.scroll_into_view_if_needed()
        # The widget's figure is drawn empty first and gets its data a moment later.
        has_data = "([gd, t, k]) => !!(gd.data && gd.data[t] && gd.data[t][k])"
        try:
            page.wait_for_function(has_data, arg=[self.plot.element_handle(), self.case.trace, self.case.key], timeout=30_000)
        except Exception as exc:
            raise AssertionError(f"the {self.case.label} slider's figure has no data[{self.case.trace}].{self.case.key} 30 s after Run All") from exc
        self.screenshot("after-run-all")
        print(f"{self.case.notebook}: page and kernel ready in {kernel_ready - start:.1f} s, Run All took {ran - kernel_ready:.1f} s")

    def press(self, keys: tuple[str, ...]) -> None:
        self.handle.focus()
        for key in keys:
            self.page.keyboard.press(key)

    # Looking.

    def cell_problems(self) -> list[str]:
        problems = []
        for cell in self.page.evaluate(CELL_STATES, self.case.notebook):
            # Numbered from 1, as JupyterLab's status bar counts ("Cell 12/28").
            where = f"cell {cell['index'] + 1} ({cell['first_line']!r})"
            if cell["count"] is None:
                problems.append(f"{where} did not run")
            problems += [f"{where} shows {e}" for e in cell["errors"]]
        text = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").inner_text()
        problems += [f"the page shows '{f}'" for f in WIDGET_FAILURES if f in text]
        return problems

    def slider_value(self) -> float:
        # noUiSlider rounds aria-valuenow to one decimal; aria-valuetext has the value in full.
        return float(self.handle.get_attribute("aria-valuetext"))

    def shown(self) -> np.ndarray:
        data = self.plot.evaluate("(gd, [t, k]) => gd.data[t][k]", [self.case.trace, self.case.key])
        return np.asarray(data, dtype=float)

    def run_in_kernel(self, code: str) -> str:
        result = self.page.evaluate(RUN_IN_KERNEL, [self.case.notebook, code])
        if result["error"]:
            raise RuntimeError(f"code run in the kernel failed with {result['error']}:\n{code}")
        return result["stdout"]

    def kernel_expected(self) -> tuple[float, np.ndarray]:
        """The kernel's slider value and the plot expected there, from the case's independent expression."""
        expr = self.case.expected.format(value=f"{self.case.slider}.value")
        code = (
            "import json as _json, numpy as _np; "
            f"print(_json.dumps([float({self.case.slider}.value), _np.asarray({expr}, dtype=float).tolist()]))"
        )
        value, expected = json.loads(self.run_in_kernel(code).strip().splitlines()[-1])
        return value, np.asarray(expected, dtype=float)

    # The check.

    def check_move(self, move: Move, redraw_timeout_s: float = 20.0) -> None:
        """Press ``move.keys`` on the slider; the page must end up plotting the values for ``move.value``.

        Raises SliderCheckFailed, saying which link broke: the slider, the kernel, or the redraw.
        """
        case, label = self.case, self.case.label
        before = self.shown()
        old = float(f"{self.slider_value():.12g}")  # 0.9000000000000001 reads better as 0.9
        self.press(move.keys)
        now = _poll(self.slider_value, lambda v: abs(v - move.value) < 1e-6, 10)
        if abs(now - move.value) >= 1e-6:
            raise SliderCheckFailed(f"pressing {move.keys} took the {label} slider from {old} to {now:.12g}, not {move.value}")
        value, expected = _poll(self.kernel_expected, lambda r: abs(r[0] - move.value) < 1e-6, 10)
        if abs(value - move.value) >= 1e-6:
            raise SliderCheckFailed(f"the page's {label} slider reads {move.value} but the kernel's stayed at {value}")
        if expected.shape == before.shape and np.allclose(expected, before):
            raise ValueError(f"case {case.id}: moving {label} from {old} to {move.value} should change the plot; pick another move")

        def matches(shown: np.ndarray) -> bool:
            return shown.shape == expected.shape and np.allclose(shown, expected, rtol=1e-9, atol=1e-9)

        shown = _poll(self.shown, matches, redraw_timeout_s)
        if matches(shown):
            return
        if shown.shape == before.shape and np.allclose(shown, before, rtol=1e-9, atol=1e-9):
            raise SliderCheckFailed(
                f"the figure did not change within {redraw_timeout_s:g} s of moving the {label} slider from {old} to "
                f"{move.value} (the kernel has the new value too): it still shows the values for {label} = {old}"
            )
        if shown.shape != expected.shape:
            raise SliderCheckFailed(f"the figure shows an array of shape {shown.shape}, expected {expected.shape} for {label} = {move.value}")
        worst = np.unravel_index(np.argmax(np.abs(shown - expected)), expected.shape)
        raise SliderCheckFailed(
            f"the figure changed, but not to the values for {label} = {move.value}: at index {tuple(map(int, worst))} "
            f"it shows {shown[worst]:.6g}, expected {expected[worst]:.6g}"
        )

    # Evidence.

    def screenshot(self, name: str) -> Path:
        self.shots += 1
        path = self.artifacts / f"{self.shots:02d}-{name}.png"
        self.output.screenshot(path=str(path))
        return path

    @contextlib.contextmanager
    def saved_on_failure(self, what: str) -> Iterator[None]:
        """On any failure inside, save the page, its console and the server log next to the screenshots."""
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(self.artifacts / "failure-page.png"), full_page=True)
            with contextlib.suppress(Exception):
                (self.artifacts / "failure-page.html").write_text(self.page.content())
            (self.artifacts / "failure-console.log").write_text("\n".join(self.console) + "\n")
            with contextlib.suppress(OSError):
                shutil.copyfile(self.lab.log, self.artifacts / "failure-jupyterlab.log")
            exc.add_note(f"while {what}; screenshots, page HTML, browser console and server log are in {self.artifacts}")
            raise


@pytest.fixture(scope="module", params=CASES, ids=[case.id for case in CASES])
def notebook(request, browser, lab) -> Iterator[OpenNotebook]:
    case: SliderCase = request.param
    artifacts = ARTIFACTS / case.id
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    print(f"browser artifacts for {case.id}: {artifacts}")
    nb = OpenNotebook(case, lab, browser.new_page(), artifacts)
    try:
        with nb.saved_on_failure(f"opening {case.notebook} and running all its cells"):
            nb.open_and_run_all()
        yield nb
    finally:
        nb.page.close()


# --- The tests --------------------------------------------------------------
# Both run on the same page, in this order; the second leaves the callback broken.


def test_moving_the_slider_redraws_the_values_for_the_new_value(notebook):
    case = notebook.case
    with notebook.saved_on_failure(f"checking the {case.label} slider"):
        # (The fixture has checked that Run All ran every cell without an error.)
        for move in case.moves:
            notebook.check_move(move)
            notebook.screenshot(f"{case.label}-{move.value:g}")
        problems = notebook.cell_problems()
        assert not problems, f"after moving the {case.label} slider:\n" + "\n".join(problems)


def test_the_check_fails_when_the_callback_is_broken(notebook):
    """Replace the slider's callback by a no-op in the kernel: the same check must now fail."""
    case = notebook.case
    with notebook.saved_on_failure(f"breaking the {case.label} slider's callback"):
        notebook.run_in_kernel(case.break_code)
        with pytest.raises(SliderCheckFailed, match="did not change") as caught:
            notebook.check_move(case.broken_move, redraw_timeout_s=5)
        notebook.screenshot(f"{case.label}-{case.broken_move.value:g}-callback-broken")
        print(f"the check caught the broken callback: {caught.value}")
