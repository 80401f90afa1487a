"""Tests for course_lib.bellman: exact and iterative policy evaluation, Q <-> V.

Expected values come from two independent sources: the numbers printed in
Sutton and Barto (2018), and plain-Python loops written here straight from
the Bellman expectation equation (eq. 3.14), element by element.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

from course_lib.bellman import (
    evaluate_policy,
    iterative_policy_evaluation,
    policy_dynamics,
    policy_evaluation_sweeps,
    q_from_v,
    v_from_q,
)
from course_lib.mdp import TabularMDP, small_gridworld, sutton_barto_gridworld, uniform_policy

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3

# Figure 3.2 (right): v_pi of the equiprobable random policy, gamma = 0.9.
BOOK_3_5 = [
    [3.3, 8.8, 4.4, 5.3, 1.5],
    [1.5, 3.0, 2.3, 1.9, 0.5],
    [0.1, 0.7, 0.7, 0.4, -0.4],
    [-1.0, -0.4, -0.4, -0.6, -1.2],
    [-1.9, -1.3, -1.2, -1.4, -2.0],
]
# Figure 4.1 (k = infinity): v_pi of the equiprobable random policy, gamma = 1.
BOOK_4_1 = [
    [0, -14, -20, -22],
    [-14, -18, -20, -20],
    [-20, -20, -18, -14],
    [-22, -20, -14, 0],
]
# The book prints one decimal (3.5) or integers (4.1): 0.05 covers the rounding.
BOOK_ATOL = 0.05


# --------------------------------------------------------------------------
# Independent references: nested Python loops, no numpy linear algebra.
# --------------------------------------------------------------------------


def loop_policy_evaluation(P, R, gamma, pi, terminal, theta=1e-13, max_sweeps=1_000_000):
    """In-place iterative policy evaluation (Sutton and Barto, section 4.1 box), pure Python.

    In-place (Gauss-Seidel) rather than two-array, so it is not the same
    algorithm as the library's sweeps; both converge to the same V_pi.
    """
    P, R, pi, terminal = P.tolist(), R.tolist(), pi.tolist(), terminal.tolist()
    S, A = len(P), len(P[0])
    V = [0.0] * S
    for _ in range(max_sweeps):
        delta = 0.0
        for s in range(S):
            if terminal[s]:
                continue  # terminal states are worth 0 by definition
            v = 0.0
            for a in range(A):
                expected_next = 0.0
                for s2 in range(S):
                    expected_next += P[s][a][s2] * V[s2]
                v += pi[s][a] * (R[s][a] + gamma * expected_next)
            delta = max(delta, abs(v - V[s]))
            V[s] = v
        if delta < theta:
            return np.array(V)
    raise AssertionError("reference evaluation did not converge")


def loop_q_from_v(P, R, gamma, V, terminal):
    """Q[s][a] = R[s][a] + gamma * sum_s' P[s][a][s'] V[s'], and 0 in terminal states."""
    S, A = P.shape[:2]
    Q = np.zeros((S, A))
    for s in range(S):
        if terminal[s]:
            continue  # nothing follows a terminal state: q = 0 for every action
        for a in range(A):
            total = R[s, a]
            for s2 in range(S):
                total += gamma * P[s, a, s2] * V[s2]
            Q[s, a] = total
    return Q


def random_mdp(seed, S, A, gamma, n_terminal):
    """Random MDP: Dirichlet transition rows, Gaussian rewards, last n_terminal states absorbing.

    Dirichlet rows are strictly positive, so every state reaches every state,
    and in particular a terminal one when there is any (needed for gamma = 1).
    """
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.normal(size=(S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[S - n_terminal :] = True
    for s in np.flatnonzero(terminal):
        P[s] = 0.0
        P[s, :, s] = 1.0
    # R in terminal states is left random on purpose: V must still be 0 there.
    pi = rng.dirichlet(np.ones(A), size=S)
    return TabularMDP(P, R, gamma, terminal=terminal), pi


# (seed, S, A, gamma, n_terminal)
RANDOM_CASES = [
    (0, 5, 2, 0.0, 0),
    (1, 6, 3, 0.5, 0),
    (2, 7, 4, 0.99, 0),
    (3, 6, 3, 0.0, 2),
    (4, 6, 3, 0.5, 1),
    (5, 8, 2, 0.99, 3),
    (6, 6, 3, 1.0, 1),
    (7, 7, 4, 1.0, 2),
    (8, 1, 3, 0.9, 0),  # a single state: V = r_pi / (1 - gamma)
    (9, 4, 1, 1.0, 1),  # a single action: a Markov reward process
]
RANDOM_IDS = [f"seed{c[0]}-S{c[1]}-A{c[2]}-g{c[3]}-term{c[4]}" for c in RANDOM_CASES]


# --------------------------------------------------------------------------
# The book's numbers.
# --------------------------------------------------------------------------


def test_example_3_5_matches_book():
    mdp = sutton_barto_gridworld(gamma=0.9)
    V = evaluate_policy(mdp, uniform_policy(mdp))
    assert_allclose(V.reshape(5, 5), BOOK_3_5, rtol=0, atol=BOOK_ATOL)


def test_example_4_1_matches_book():
    mdp = small_gridworld(gamma=1.0)
    V = evaluate_policy(mdp, uniform_policy(mdp))
    assert_allclose(V.reshape(4, 4), BOOK_4_1, rtol=0, atol=BOOK_ATOL)


def test_example_3_5_iterative_matches_book():
    mdp = sutton_barto_gridworld(gamma=0.9)
    V = iterative_policy_evaluation(mdp, uniform_policy(mdp), tol=1e-10)
    assert_allclose(V.reshape(5, 5), BOOK_3_5, rtol=0, atol=BOOK_ATOL)


def test_example_4_1_iterative_matches_book():
    mdp = small_gridworld(gamma=1.0)
    V = iterative_policy_evaluation(mdp, uniform_policy(mdp), tol=1e-10)
    assert_allclose(V.reshape(4, 4), BOOK_4_1, rtol=0, atol=BOOK_ATOL)


def test_example_4_1_k1_sweep_matches_book():
    # Figure 4.1, k = 1: one sweep from V_0 = 0 gives -1 everywhere but the terminals.
    mdp = small_gridworld()
    V1 = next(policy_evaluation_sweeps(mdp, uniform_policy(mdp)))
    expected = np.full(16, -1.0)
    expected[[0, 15]] = 0.0
    assert_allclose(V1, expected)


def test_example_4_1_k2_sweep_by_hand():
    # Figure 4.1, k = 2. The book prints -1.7 next to a terminal, which is
    # -1.75 truncated: from (0, 1), -1 + (0 + 3 * (-1)) / 4 (left reaches the
    # terminal worth 0, the other three land on cells worth -1 after k = 1).
    # Cells with no terminal neighbour get -1 + (-1) = -2.
    mdp = small_gridworld()
    sweeps = policy_evaluation_sweeps(mdp, uniform_policy(mdp))
    next(sweeps)
    V2 = next(sweeps).reshape(4, 4)
    expected = [
        [0.0, -1.75, -2.0, -2.0],
        [-1.75, -2.0, -2.0, -2.0],
        [-2.0, -2.0, -2.0, -1.75],
        [-2.0, -2.0, -1.75, 0.0],
    ]
    assert_allclose(V2, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# Random MDPs against the loop reference.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed, S, A, gamma, n_terminal", RANDOM_CASES, ids=RANDOM_IDS)
def test_evaluate_policy_matches_loop_reference(seed, S, A, gamma, n_terminal):
    mdp, pi = random_mdp(seed, S, A, gamma, n_terminal)
    expected = loop_policy_evaluation(mdp.P, mdp.R, gamma, pi, mdp.terminal)
    V = evaluate_policy(mdp, pi)
    assert V.shape == (S,)
    assert_allclose(V, expected, rtol=0, atol=1e-8)
    assert np.all(V[mdp.terminal] == 0.0)


@pytest.mark.parametrize("seed, S, A, gamma, n_terminal", RANDOM_CASES, ids=RANDOM_IDS)
def test_iterative_matches_loop_reference(seed, S, A, gamma, n_terminal):
    mdp, pi = random_mdp(seed, S, A, gamma, n_terminal)
    expected = loop_policy_evaluation(mdp.P, mdp.R, gamma, pi, mdp.terminal)
    V = iterative_policy_evaluation(mdp, pi, tol=1e-11)
    # Stopping at a change below tol leaves an error of up to tol * gamma / (1 - gamma).
    assert_allclose(V, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("seed, S, A, gamma, n_terminal", RANDOM_CASES, ids=RANDOM_IDS)
def test_exact_and_iterative_agree(seed, S, A, gamma, n_terminal):
    mdp, pi = random_mdp(seed, S, A, gamma, n_terminal)
    assert_allclose(
        evaluate_policy(mdp, pi), iterative_policy_evaluation(mdp, pi, tol=1e-11), rtol=0, atol=1e-7
    )


def test_single_state_closed_form():
    # One state looping on itself: V = r / (1 - gamma), the geometric series.
    mdp = TabularMDP(np.ones((1, 2, 1)), np.array([[2.0, 4.0]]), 0.75)
    pi = np.array([[0.25, 0.75]])
    r_pi = 0.25 * 2.0 + 0.75 * 4.0
    assert_allclose(evaluate_policy(mdp, pi), [r_pi / (1 - 0.75)])


def test_all_states_terminal_gives_zero():
    mdp = TabularMDP(np.ones((1, 1, 1)), np.array([[5.0]]), 1.0, terminal=np.array([True]))
    assert_allclose(evaluate_policy(mdp, np.ones((1, 1))), [0.0])


# --------------------------------------------------------------------------
# Q and V.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed, S, A, gamma, n_terminal", RANDOM_CASES, ids=RANDOM_IDS)
def test_bellman_consistency_v_from_q_of_v(seed, S, A, gamma, n_terminal):
    # v_pi(s) = sum_a pi(a|s) q_pi(s, a) with q_pi = one-step lookahead on v_pi.
    mdp, pi = random_mdp(seed, S, A, gamma, n_terminal)
    V = evaluate_policy(mdp, pi)
    assert_allclose(v_from_q(pi, q_from_v(mdp, V)), V, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed, S, A, gamma, n_terminal", RANDOM_CASES, ids=RANDOM_IDS)
def test_q_from_v_matches_loop(seed, S, A, gamma, n_terminal):
    # An arbitrary V, not V_pi: q_from_v is a one-step lookahead on any V.
    mdp, _ = random_mdp(seed, S, A, gamma, n_terminal)
    V = np.random.default_rng(seed + 100).normal(size=S)
    expected = loop_q_from_v(mdp.P, mdp.R, gamma, V, mdp.terminal)
    assert_allclose(q_from_v(mdp, V), expected, rtol=0, atol=1e-12)


def test_q_from_v_book_example():
    # From (0, 1) in Example 4.1 under the random policy: up bumps (-1 + v(0,1)),
    # right goes to (0,2), down to (1,1), left into the terminal (-1 + 0).
    mdp = small_gridworld()
    V = np.array(BOOK_4_1, dtype=float).ravel()
    Q = q_from_v(mdp, V)
    assert_allclose(Q[1], [-1 - 14, -1 - 20, -1 - 18, -1 + 0])


def test_v_from_q_matches_loop():
    rng = np.random.default_rng(3)
    pi = rng.dirichlet(np.ones(4), size=6)
    Q = rng.normal(size=(6, 4))
    expected = [sum(pi[s, a] * Q[s, a] for a in range(4)) for s in range(6)]
    assert_allclose(v_from_q(pi, Q), expected, rtol=0, atol=1e-14)


def test_v_from_q_shape_mismatch():
    with pytest.raises(ValueError, match=r"\bpi\b"):
        v_from_q(np.ones((3, 2)) / 2, np.zeros((3, 3)))


def test_q_from_v_bad_shape():
    mdp = small_gridworld()
    with pytest.raises(ValueError, match=r"\bV\b"):
        q_from_v(mdp, np.zeros(15))


# --------------------------------------------------------------------------
# gamma = 1 with a policy that never terminates.
# --------------------------------------------------------------------------


def deterministic_policy(mdp, action):
    pi = np.zeros((mdp.n_states, mdp.n_actions))
    pi[:, action] = 1.0
    return pi


def _states_in_message(message):
    lists = re.findall(r"\[([\d,\s]+)\]", message)
    assert lists, f"no list of states in: {message}"
    return {int(x) for x in lists[0].split(",")}


# Worked out by hand on the 4x4 grid (terminals 0 and 15):
# always up: column 0 climbs into (0, 0); columns 1-3 end up bumping the top
# edge forever, so 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14 never terminate.
# always left: row 0 slides into (0, 0); rows 1-3 end up bumping the left edge.
NEVER_TERMINATE = [
    (UP, {1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14}),
    (LEFT, {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}),
]


@pytest.mark.parametrize("action, stuck", NEVER_TERMINATE, ids=["up", "left"])
def test_gamma_one_non_terminating_policy_raises(action, stuck):
    mdp = small_gridworld(gamma=1.0)
    with pytest.raises(ValueError) as info:
        evaluate_policy(mdp, deterministic_policy(mdp, action))
    assert _states_in_message(str(info.value)) == stuck


@pytest.mark.parametrize("action", [UP, LEFT], ids=["up", "left"])
def test_gamma_one_non_terminating_iterative_raises(action):
    mdp = small_gridworld(gamma=1.0)
    with pytest.raises(RuntimeError):
        iterative_policy_evaluation(mdp, deterministic_policy(mdp, action), max_sweeps=50)


def test_gamma_one_continuing_task_raises():
    # Example 3.5 has no terminal state at all: every state is stuck.
    mdp = sutton_barto_gridworld().with_gamma(1.0)
    with pytest.raises(ValueError) as info:
        evaluate_policy(mdp, uniform_policy(mdp))
    assert _states_in_message(str(info.value)) == set(range(25))


def test_same_policy_is_fine_with_discount():
    # The failure is about gamma = 1, not about the policy: discounting rescues it.
    # Always up with gamma = 0.9: a top-row cell bumps forever, -1 / (1 - 0.9) = -10.
    mdp = small_gridworld(gamma=0.9)
    V = evaluate_policy(mdp, deterministic_policy(mdp, UP))
    assert_allclose(V[[1, 2, 3]], -10.0)
    # (1, 0) steps into the terminal: -1 exactly.
    assert_allclose(V[4], -1.0)
    # (2, 1): one step to (1, 1), one to (0, 1), then the top-row value.
    assert_allclose(V[9], -1 - 0.9 - 0.81 * 10.0)


def test_gamma_one_with_deterministic_terminating_policy():
    # Left along the top row, up everywhere below it: every path ends in (0, 0).
    mdp = small_gridworld(gamma=1.0)
    pi = deterministic_policy(mdp, UP)
    pi[:4] = [0.0, 0.0, 0.0, 1.0]
    V = evaluate_policy(mdp, pi).reshape(4, 4)
    # From (r, c): r steps up, then c steps left, -1 each (gamma = 1, no discount).
    expected = -np.add.outer(np.arange(4), np.arange(4)).astype(float)
    expected[0, 0] = 0.0
    expected[3, 3] = 0.0  # terminal
    assert_allclose(V, expected)


# --------------------------------------------------------------------------
# Bad policies.
# --------------------------------------------------------------------------


def _bad_pis():
    S, A = 16, 4
    u = np.full((S, A), 0.25)
    negative = u.copy()
    negative[3] = [1.5, -0.5, 0.0, 0.0]  # still sums to 1
    short_row = u.copy()
    short_row[7] = [0.25, 0.25, 0.25, 0.0]
    long_row = u.copy()
    long_row[0] = [0.5, 0.5, 0.5, 0.5]
    nan = u.copy()
    nan[2, 1] = np.nan
    return [
        ("1-D", np.full(S, 0.25)),
        ("transposed", np.full((A, S), 1 / S)),
        ("too few states", np.full((S - 1, A), 0.25)),
        ("too many actions", np.full((S, A + 1), 1 / (A + 1))),
        ("negative entry", negative),
        ("row sums to 0.75", short_row),
        ("row sums to 2", long_row),
        ("NaN", nan),
    ]


BAD_PIS = _bad_pis()


@pytest.mark.parametrize(
    "function",
    [evaluate_policy, iterative_policy_evaluation, policy_dynamics,
     lambda mdp, pi: next(policy_evaluation_sweeps(mdp, pi))],
    ids=["evaluate_policy", "iterative_policy_evaluation", "policy_dynamics", "policy_evaluation_sweeps"],
)
@pytest.mark.parametrize("pi", [p for _, p in BAD_PIS], ids=[n for n, _ in BAD_PIS])
def test_bad_pi_raises_value_error_naming_pi(function, pi):
    mdp = small_gridworld(gamma=0.9)
    with pytest.raises(ValueError, match=r"\bpi\b"):
        function(mdp, pi)


def test_iterative_bad_tol():
    mdp = small_gridworld(gamma=0.9)
    with pytest.raises(ValueError, match=r"\btol\b"):
        iterative_policy_evaluation(mdp, uniform_policy(mdp), tol=0.0)


# --------------------------------------------------------------------------
# Sweeps contract geometrically.
# --------------------------------------------------------------------------


SWEEP_CASES = [
    ("random g0.5", lambda: random_mdp(11, 6, 3, 0.5, 0), 0),
    ("random g0.9 terminal", lambda: random_mdp(12, 7, 3, 0.9, 2), 1),
    ("random g0.99", lambda: random_mdp(13, 5, 2, 0.99, 0), None),
    ("book 3.5", lambda: (sutton_barto_gridworld(), np.full((25, 4), 0.25)), 2),
]


@pytest.mark.parametrize("make, v0_seed", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_sweeps_error_shrinks_geometrically(make, v0_seed):
    mdp, pi = make()
    V_star = evaluate_policy(mdp, pi)
    if v0_seed is None:
        V0 = None
        err0 = np.max(np.abs(V_star))
    else:
        V0 = np.random.default_rng(v0_seed).normal(scale=10.0, size=mdp.n_states)
        err0 = np.max(np.abs(V0 - V_star))
    # ||V_k - V*||_inf <= gamma^k ||V_0 - V*||_inf: the Bellman operator is a
    # gamma-contraction in the max norm.
    slack = 1e-10 * (1.0 + np.max(np.abs(V_star)))
    errors = []
    for k, V in enumerate(policy_evaluation_sweeps(mdp, pi, V0=V0), start=1):
        err = np.max(np.abs(V - V_star))
        assert err <= mdp.gamma**k * err0 + slack, f"sweep {k}: error {err} > {mdp.gamma**k * err0}"
        errors.append(err)
        if k == 60:
            break
    # And it really converges (the bound is not met by luck on a stalled iterate).
    assert errors[-1] < errors[0]


def test_sweeps_do_not_modify_v0():
    mdp = small_gridworld(gamma=0.9)
    V0 = np.arange(16, dtype=float)
    before = V0.copy()
    sweeps = policy_evaluation_sweeps(mdp, uniform_policy(mdp), V0=V0)
    next(sweeps)
    next(sweeps)
    assert_allclose(V0, before)


def test_sweeps_reject_bad_v0():
    mdp = small_gridworld(gamma=0.9)
    with pytest.raises(ValueError, match=r"\bV0\b"):
        next(policy_evaluation_sweeps(mdp, uniform_policy(mdp), V0=np.zeros(5)))
