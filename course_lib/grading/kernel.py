"""The grading kernel: an ipykernel that confines itself before it runs any submitted code.

The worker writes a kernel spec whose argv is
``python -m course_lib.grading.kernel -f {connection_file}`` and puts the
confinement (limits and allowed paths, as JSON) in the ``COURSE_GRADING_SANDBOX``
variable. This module reads the connection file (to learn its own ports), scrubs
the environment, calls :func:`course_lib.grading.sandbox.confine`, starts a
watchdog that exits when the worker that launched it is gone, and then hands
over to ipykernel.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from .sandbox import Confinement, confine

ENV_VAR = "COURSE_GRADING_SANDBOX"
# What the submitted code may see of the grader's environment; everything else
# (tokens, credentials, paths) is removed before the kernel starts.
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR", "COURSE_FAST", "PYTHONHASHSEED",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
            "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
            "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "PYTHONDONTWRITEBYTECODE", "JPY_PARENT_PID", "VIRTUAL_ENV")


def _connection(argv: list[str], private_dir: str | None) -> list[int]:
    """The kernel's TCP ports; the connection file is copied into ``private_dir`` (argv updated) so it stays readable."""
    if "-f" not in argv:
        return []
    i = argv.index("-f") + 1
    with open(argv[i]) as f:
        text = f.read()
    if private_dir:
        copy = os.path.join(private_dir, "kernel-connection.json")
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        argv[i] = copy
    info = json.loads(text)
    if info.get("transport", "tcp") != "tcp":
        return []  # Unix sockets: the "ports" only number the socket files
    return [int(v) for k, v in info.items() if k.endswith("_port")]


def _watch_parent(parent: int) -> None:
    """Exit when re-parented: the worker died or was killed, so nobody will ever read our output."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(70)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(os.environ.get(ENV_VAR, "{}"))
    for key in list(os.environ):
        if key not in KEEP_ENV:
            del os.environ[key]
    if spec:
        c = Confinement(**spec)
        # Port 0: the ephemeral port ipykernel binds to collect the output of subprocesses.
        c.bind_ports = _connection(argv, c.write_paths[0] if c.write_paths else None) + [0]
        c.read_paths = list(c.read_paths) + [f"/proc/{os.getpid()}"]
        notes = confine(c)
        print("grading sandbox: " + "; ".join(notes), file=sys.__stderr__, flush=True)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance(argv=argv)


if __name__ == "__main__":
    main()
