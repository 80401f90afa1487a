"""The README's instructor section: its worked example runs as written and prints the gradebook it shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "README.md"  # its instructor section


def _block(text: str, marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, flags=re.S)
    assert m, f"no code block after <!-- {marker} --> in {GUIDE.name}"
    return m.group(1)


def test_worked_example(tmp_path):
    text = GUIDE.read_text()
    script, expected = _block(text, "worked-example"), _block(text, "worked-example-gradebook")
    # A scratch copy of the course root: the exercise sources, and nothing built yet.
    (tmp_path / "solutions").symlink_to(ROOT / "solutions")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "build/grading/gradebook.csv").read_text() == expected
    feedback = tmp_path / "build/grading/feedback/bob/ex01_mdp_bellman/ex01_mdp_bellman.html"
    assert "NotImplementedError" in feedback.read_text()
    assert not list((tmp_path / "build/grading/release").rglob("*.py"))
