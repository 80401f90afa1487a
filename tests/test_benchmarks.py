"""Smoke tests for benchmarks/bench_ch01.py on tiny sizes, so the script cannot rot.

The script is loaded from its path (it is not part of the installed package).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ch01.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ch01", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_returns_loop_by_hand(bench):
    # The benchmark's own baseline must be right, or its speed-up means nothing.
    rewards = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    dones = np.array([[False, True, False], [False, False, False]])
    assert_allclose(bench.returns_loop(rewards, 0.5, dones), [[1.5, 1.0, 1.0], [2.75, 3.5, 3.0]])


def test_bench_returns_tiny(bench):
    row = bench.bench_returns(batch=3, horizon=7, repeats=2, loop_repeats=1)
    assert row["shape"] == (3, 7)
    assert row["vectorised_s"] > 0 and row["loop_s"] > 0
    assert row["max_abs_diff"] < 1e-10
    assert "speed-up" in bench.format_returns_table(row)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_bench_policy_evaluation_tiny(bench, n):
    row = bench.bench_policy_evaluation(n, repeats=1)
    assert row["S"] == n * n
    assert row["exact_s"] > 0 and row["iterative_s"] > 0
    assert row["max_abs_diff"] < 1e-8


def test_main_runs_end_to_end(bench, capsys):
    result = bench.main(["--repeats", "1", "--batch", "2", "--horizon", "5", "--grid-sizes", "2", "3"])
    out = capsys.readouterr().out
    assert "(a)" in out and "(b)" in out
    assert "3x3" in out
    assert [r["S"] for r in result["policy_evaluation"]] == [4, 9]


def test_main_rejects_bad_repeats(bench):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
