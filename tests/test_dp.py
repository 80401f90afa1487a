"""Tests for chapter 2's kernels (course_lib.bellman control part), widget callback and benchmark.

Expected values come from the book (Sutton and Barto 2018, Figures 3.5 and 4.1)
and from plain-Python loops written here from the Bellman optimality equation.
"""

from __future__ import annotations

import doctest
import importlib.util
import sys
import zlib
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from numpy.testing import assert_allclose

from course_lib import bellman
from course_lib.bellman import (
    bellman_optimality_sweeps,
    bellman_optimality_update,
    evaluate_policy,
    greedy_policy,
    optimal_actions,
    policy_improvement,
    policy_iteration,
    value_iteration,
)
from course_lib.checks import random_mdp
from course_lib.mdp import ACTIONS, TabularMDP, small_gridworld, sutton_barto_gridworld, uniform_policy
from course_lib.plots import add_policy_arrows, value_heatmap
from course_lib.widgets import gamma_slider_optimal_policy, update_optimal_policy

# Figure 3.5 (middle): v* of Example 3.5, gamma = 0.9, one decimal.
BOOK_V_STAR = np.array([
    [22.0, 24.4, 22.0, 19.4, 17.5],
    [19.8, 22.0, 19.8, 17.8, 16.0],
    [17.8, 19.8, 17.8, 16.0, 14.4],
    [16.0, 17.8, 16.0, 14.4, 13.0],
    [14.4, 16.0, 14.4, 13.0, 11.7],
])
# Figure 3.5 (right): every optimal action, row by row.
BOOK_PI_STAR = [
    ["right", "up right down left", "left", "up right down left", "left"],
    ["up right", "up", "up left", "left", "left"],
    ["up right", "up", "up left", "up left", "up left"],
    ["up right", "up", "up left", "up left", "up left"],
    ["up right", "up", "up left", "up left", "up left"],
]


# --------------------------------------------------------------------------
# References: plain Python, one state at a time.
# --------------------------------------------------------------------------
def loop_q(mdp: TabularMDP, V) -> list[list[float]]:
    S, A = mdp.R.shape
    Q = [[0.0] * A for _ in range(S)]
    for s in range(S):
        if mdp.terminal[s]:
            continue
        for a in range(A):
            Q[s][a] = float(mdp.R[s, a]) + mdp.gamma * sum(float(mdp.P[s, a, t]) * float(V[t]) for t in range(S))
    return Q


def loop_value_iteration(mdp: TabularMDP, theta: float = 1e-13) -> np.ndarray:
    """In-place (Gauss-Seidel) value iteration, Sutton and Barto's section 4.4 box."""
    S = mdp.n_states
    V = [0.0] * S
    for _ in range(1_000_000):
        delta = 0.0
        for s in range(S):
            if mdp.terminal[s]:
                continue
            best = max(loop_q_row(mdp, V, s))
            delta = max(delta, abs(best - V[s]))
            V[s] = best
        if delta < theta:
            return np.array(V)
    raise AssertionError("reference did not converge")


def loop_q_row(mdp, V, s):
    S, A = mdp.R.shape
    return [float(mdp.R[s, a]) + mdp.gamma * sum(float(mdp.P[s, a, t]) * V[t] for t in range(S)) for a in range(A)]


def assert_one_hot(pi, S, A):
    assert pi.shape == (S, A)
    assert set(np.unique(pi)) <= {0.0, 1.0}
    assert np.all(pi.sum(axis=1) == 1.0)


def assert_optimal(mdp, V_star, pi, atol=1e-6):
    Q = np.array(loop_q(mdp, V_star))
    chosen = Q[np.arange(mdp.n_states), np.argmax(pi, axis=1)]
    assert np.all(chosen >= Q.max(axis=1) - atol)


MDP_CASES = [
    ("Example 3.5", lambda rng: sutton_barto_gridworld()),
    ("Example 4.1, gamma 1", lambda rng: small_gridworld()),
    ("random, gamma 0", lambda rng: random_mdp(rng, 5, 3, 0.0)),
    ("random, gamma 0.5, terminals", lambda rng: random_mdp(rng, 8, 4, 0.5, n_terminal=2)),
    ("random, gamma 0.95", lambda rng: random_mdp(rng, 10, 2, 0.95, n_terminal=1)),
    ("random, one action", lambda rng: random_mdp(rng, 6, 1, 0.9)),
    ("random, one state", lambda rng: random_mdp(rng, 1, 3, 0.8)),
]


# --------------------------------------------------------------------------
# greedy_policy
# --------------------------------------------------------------------------
def loop_greedy(Q, atol=0.0):
    S, A = Q.shape
    pi = np.zeros((S, A))
    for s in range(S):
        top = max(Q[s])
        for a in range(A):
            if Q[s, a] >= top - atol:
                pi[s, a] = 1.0
                break
    return pi


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (5, 1), (7, 3), (40, 6)])
@pytest.mark.parametrize("ties", [False, True])
def test_greedy_policy_matches_loop(shape, ties):
    rng = np.random.default_rng(zlib.crc32(repr((shape, ties)).encode()))
    Q = rng.integers(-2, 3, size=shape).astype(float) if ties else rng.normal(size=shape)
    pi = greedy_policy(Q)
    assert_one_hot(pi, *shape)
    assert_allclose(pi, loop_greedy(Q))


def test_greedy_policy_treats_round_off_as_a_tie():
    Q = np.array([[1.0, 1.0 + 1e-12, 0.0], [0.0, 2.0, 2.0 + 1e-3]])
    assert_allclose(greedy_policy(Q), [[1, 0, 0], [0, 0, 1]])
    assert_allclose(greedy_policy(Q, atol=0.0), [[0, 1, 0], [0, 0, 1]])
    assert_allclose(greedy_policy(Q, atol=1e-2), [[1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize("Q, match", [
    (np.zeros(4), "Q must have shape"),
    (np.zeros((0, 3)), "Q must have shape"),
    (np.array([[1.0, np.nan]]), "finite"),
])
def test_greedy_policy_rejects_bad_q(Q, match):
    with pytest.raises(ValueError, match=match):
        greedy_policy(Q)


def test_greedy_policy_rejects_negative_atol():
    with pytest.raises(ValueError, match="atol"):
        greedy_policy(np.zeros((2, 2)), atol=-1.0)


# --------------------------------------------------------------------------
# Bellman optimality update and sweeps
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name, make", MDP_CASES)
def test_optimality_update_matches_loop(name, make):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    mdp = make(rng)
    V = rng.normal(size=mdp.n_states)
    expected = [0.0 if mdp.terminal[s] else max(row) for s, row in enumerate(loop_q(mdp, V))]
    assert_allclose(bellman_optimality_update(mdp, V), expected, atol=1e-12)


def test_sweeps_apply_the_update_repeatedly_and_zero_terminals():
    rng = np.random.default_rng(3)
    mdp = random_mdp(rng, 6, 3, 0.9, n_terminal=2)
    V0 = rng.normal(size=6)
    sweeps = bellman_optimality_sweeps(mdp, V0)
    V_start = V0.copy()
    V_start[:2] = 0.0
    V1, V2 = next(sweeps), next(sweeps)
    assert_allclose(V1, bellman_optimality_update(mdp, V_start))
    assert_allclose(V2, bellman_optimality_update(mdp, V1))
    assert np.all(V1[:2] == 0.0) and np.all(V2[:2] == 0.0)


def test_sweeps_reject_bad_v0():
    with pytest.raises(ValueError, match="V0 must have shape"):
        next(bellman_optimality_sweeps(small_gridworld(), np.zeros(3)))


def test_optimality_update_rejects_bad_v():
    with pytest.raises(ValueError, match="V must have shape"):
        bellman_optimality_update(small_gridworld(), np.zeros((16, 1)))


# --------------------------------------------------------------------------
# value_iteration and policy_iteration
# --------------------------------------------------------------------------
def test_value_iteration_reproduces_figure_3_5():
    V, pi = value_iteration(sutton_barto_gridworld())
    assert np.max(np.abs(V.reshape(5, 5) - BOOK_V_STAR)) <= 0.05
    assert_one_hot(pi, 25, 4)
    best = optimal_actions(sutton_barto_gridworld(), V)
    for s in range(25):
        assert {ACTIONS[a] for a in np.flatnonzero(best[s])} == set(BOOK_PI_STAR[s // 5][s % 5].split()), s
        assert best[s, np.argmax(pi[s])]


def test_example_4_1_optimal_values_are_minus_the_distance():
    rows, cols = np.divmod(np.arange(16), 4)
    distance = np.minimum(rows + cols, 6 - rows - cols)
    for solver in (value_iteration, policy_iteration):
        V, pi = solver(small_gridworld())
        assert_allclose(V, -distance, atol=1e-9)
        assert_allclose(evaluate_policy(small_gridworld(), pi), -distance, atol=1e-9)


@pytest.mark.parametrize("name, make", MDP_CASES)
def test_both_solvers_match_loop_value_iteration(name, make):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    mdp = make(rng)
    V_ref = loop_value_iteration(mdp)
    for solver in (value_iteration, policy_iteration):
        V, pi = solver(mdp)
        assert_allclose(V, V_ref, atol=1e-8)
        assert_one_hot(pi, mdp.n_states, mdp.n_actions)
        assert_optimal(mdp, V_ref, pi)
        # The returned policy's own value is V*.
        assert_allclose(evaluate_policy(mdp, pi), V_ref, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_value_iteration_respects_its_error_bound(gamma):
    mdp = sutton_barto_gridworld(gamma)
    V_exact, _ = policy_iteration(mdp)
    tol = 1e-4
    V, _ = value_iteration(mdp, tol=tol)
    assert np.max(np.abs(V - V_exact)) <= tol * gamma / (1 - gamma) + 1e-12


def test_value_iteration_and_policy_iteration_agree_on_the_policy():
    for gamma in (0.3, 0.9, 0.99):
        mdp = sutton_barto_gridworld(gamma)
        assert_allclose(value_iteration(mdp)[1], policy_iteration(mdp)[1])


def test_value_iteration_argument_errors():
    with pytest.raises(ValueError, match="tol must be > 0"):
        value_iteration(small_gridworld(), tol=0.0)
    # gamma = 1 on a continuing task: the values grow without bound.
    with pytest.raises(RuntimeError, match="did not reach tol"):
        value_iteration(sutton_barto_gridworld(1.0), max_sweeps=50)


def test_policy_iteration_argument_errors():
    grid = small_gridworld()
    always_up = np.zeros((16, 4))
    always_up[:, 0] = 1.0
    with pytest.raises(ValueError, match="never reaches a terminal state"):
        policy_iteration(grid, pi0=always_up)
    with pytest.raises(ValueError, match="pi must have shape"):
        policy_iteration(grid, pi0=np.ones((4, 4)) / 4)
    with pytest.raises(RuntimeError, match="did not settle"):
        policy_iteration(grid, max_iterations=0)


def test_policy_iteration_accepts_a_starting_policy():
    grid = sutton_barto_gridworld()
    pi0 = np.zeros((25, 4))
    pi0[:, 2] = 1.0  # always down: a poor but valid start with gamma < 1
    V, _ = policy_iteration(grid, pi0=pi0)
    assert_allclose(V, value_iteration(grid)[0], atol=1e-8)


# --------------------------------------------------------------------------
# policy_improvement
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_policy_improvement_never_makes_a_state_worse(seed):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(rng, 9, 3, 0.9, n_terminal=1)
    pi = rng.dirichlet(np.ones(3), size=9)
    V = evaluate_policy(mdp, pi)
    improved = policy_improvement(mdp, V)
    assert np.all(evaluate_policy(mdp, improved) >= V - 1e-9)


def test_policy_improvement_keeps_tied_actions():
    grid = sutton_barto_gridworld()
    V_star, _ = value_iteration(grid)
    best = optimal_actions(grid, V_star)
    # An optimal policy that prefers the highest-index optimal action: nothing to improve.
    last_best = best.shape[1] - 1 - np.argmax(best[:, ::-1], axis=1)
    pi = np.eye(4)[last_best]
    assert_allclose(policy_improvement(grid, V_star, pi), pi)
    # Without the current policy, ties go to the lowest index.
    assert_allclose(policy_improvement(grid, V_star), greedy_policy(bellman.q_from_v(grid, V_star)))
    # A strictly worse action is replaced.
    worse = pi.copy()
    worse[0] = [0, 0, 1, 0]  # down from (0, 0) is not optimal
    assert np.argmax(policy_improvement(grid, V_star, worse)[0]) == 1


def test_policy_improvement_rejects_stochastic_current_policy():
    grid = small_gridworld()
    with pytest.raises(ValueError, match="deterministic"):
        policy_improvement(grid, np.zeros(16), uniform_policy(grid))


def test_optimal_actions_rejects_negative_atol():
    with pytest.raises(ValueError, match="atol"):
        optimal_actions(small_gridworld(), np.zeros(16), atol=-1)


def test_docstring_examples():
    assert doctest.testmod(bellman).failed == 0


# --------------------------------------------------------------------------
# The gamma slider over the optimal policy (callback tested without a kernel)
# --------------------------------------------------------------------------
def _arrow_figure():
    fig = go.Figure(value_heatmap(np.zeros(25), (5, 5)))
    return add_policy_arrows(fig, np.ones((25, 4)), (5, 5))


def test_update_optimal_policy_draws_values_and_book_arrows():
    grid = sutton_barto_gridworld()
    fig = _arrow_figure()
    V, best = update_optimal_policy(fig, grid, 0.9)
    assert_allclose(np.asarray(fig.data[0].z, dtype=float), BOOK_V_STAR, atol=0.05)
    arrows = dict(zip(ACTIONS, "↑→↓←"))
    expected = ["".join(arrows[a] for a in ACTIONS if a in BOOK_PI_STAR[s // 5][s % 5].split()) for s in range(25)]
    assert list(fig.data[1].text) == expected
    assert "0.90" in fig.layout.title.text
    assert best.shape == (25, 4)


def test_update_optimal_policy_at_gamma_zero_is_the_best_immediate_reward():
    grid = sutton_barto_gridworld()
    fig = _arrow_figure()
    V, best = update_optimal_policy(fig, grid, 0.0)
    assert_allclose(V, grid.R.max(axis=1))
    assert fig.data[1].text[1] == "↑→↓←"    # in A every action pays 10
    assert fig.data[1].text[0] == "→↓"      # in the corner, the two moves that avoid the walls


def test_slider_moves_redraw_and_policy_changes_with_gamma():
    box = gamma_slider_optimal_policy(sutton_barto_gridworld(), gamma=0.9)
    below_B = 1 * 5 + 3
    assert box.figure.data[1].text[below_B] == "←"
    box.slider.value = 0.7
    assert box.figure.data[1].text[below_B] == "↑"
    assert "0.70" in box.figure.layout.title.text
    V07, _ = value_iteration(sutton_barto_gridworld(0.7))
    assert_allclose(np.asarray(box.figure.data[0].z, dtype=float), V07.reshape(5, 5))


def test_slider_marks_terminal_cells_blank():
    fig = go.Figure(value_heatmap(np.zeros(16), (4, 4)))
    add_policy_arrows(fig, np.ones((16, 4)), (4, 4))
    update_optimal_policy(fig, small_gridworld(), 1.0)
    assert fig.data[1].text[0] == "" and fig.data[1].text[15] == ""
    assert fig.data[1].text[1] == "←"


def test_slider_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gamma must lie"):
        gamma_slider_optimal_policy(sutton_barto_gridworld(), gamma=1.5)
    with pytest.raises(ValueError, match="grid MDP"):
        gamma_slider_optimal_policy(random_mdp(np.random.default_rng(0), 4, 4, 0.9))


# --------------------------------------------------------------------------
# benchmarks/bench_ch02.py on tiny sizes, so the script cannot rot
# --------------------------------------------------------------------------
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ch02.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ch02", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_bench_solvers_agree_with_the_library(bench, n):
    mdp = bench.slippery_grid(n)
    tabular = bench.to_tabular(mdp)            # validated by TabularMDP: rows sum to 1
    V_lib, pi_lib = value_iteration(tabular)
    assert_allclose(V_lib, loop_value_iteration(tabular), atol=1e-8)
    for solver in (bench.value_iteration_vectorized, bench.value_iteration_state_loop, bench.value_iteration_loop):
        V, actions, sweeps = solver(mdp)
        assert_allclose(V, V_lib, atol=1e-8)
        assert_optimal(tabular, V_lib, np.eye(4)[actions])
        assert sweeps >= 1


def test_bench_grid_rewards_by_hand(bench):
    mdp = bench.slippery_grid(2, slip=0.1)
    # State 0 (top-left), action up: 0.8 bump (-1), 0.1 slip right (0), 0.1 slip left (bump, -1).
    assert mdp.R[0, 0] == pytest.approx(-0.9)
    # State 1 (top-right), action down: 0.8 into the goal (+10), slips right (bump -1) and left (0).
    assert mdp.R[2, 1] == pytest.approx(0.8 * 10 - 0.1)
    assert mdp.terminal.tolist() == [False, False, False, True]


def test_bench_size_tiny(bench):
    row = bench.bench_size(3, repeats=1, loop_repeats=1, dense_max_states=100)
    assert row["S"] == 9 and row["sweeps"] > 1
    assert row["vectorized_s"] > 0 and row["state_loop_s"] > 0 and row["python_s"] > 0 and row["dense_s"] > 0
    assert row["max_abs_diff"] < 1e-8
    row = bench.bench_size(3, repeats=1, loop_repeats=1, dense_max_states=4)
    assert row["dense_s"] is None
    assert "3 x  3" in bench.format_table([row], 1, 1)


def test_bench_main_end_to_end(bench, capsys):
    rows = bench.main(["--sizes", "2", "3", "--repeats", "1"])
    out = capsys.readouterr().out
    assert [r["S"] for r in rows] == [4, 9]
    assert "state loop/vec" in out and "Python/vec" in out


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--sizes", "1"], ["--loop-repeats", "0"]])
def test_bench_main_rejects_bad_arguments(bench, argv):
    with pytest.raises(SystemExit):
        bench.main(argv)
