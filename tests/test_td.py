"""Tests for course_lib.td and course_lib.mdp.cliff_walking.

The learners are checked against a plain loop over runs written here, one
scalar at a time, that draws the same random numbers in the documented order
(so every run must match exactly), and against facts of the book that do not
depend on the code: Q-learning's greedy path on the cliff is the optimal one
along the edge, SARSA's online return is higher than Q-learning's at
epsilon = 0.1 (Sutton and Barto 2018, Example 6.6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from course_lib import td
from course_lib.checks import random_mdp
from course_lib.mdp import CLIFF_CELLS, CLIFF_GOAL, CLIFF_START, cliff_walking, small_gridworld

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3


# ---------------------------------------------------------------- cliff walking
def cell(r, c):
    return r * 12 + c


def next_of(mdp, s, a):
    assert mdp.P[s, a].max() == 1.0  # deterministic
    return int(np.argmax(mdp.P[s, a]))


def test_cliff_layout_and_constants():
    mdp = cliff_walking()
    assert (mdp.n_states, mdp.n_actions, mdp.gamma, mdp.shape) == (48, 4, 1.0, (4, 12))
    assert CLIFF_START == cell(3, 0) and CLIFF_GOAL == cell(3, 11)
    assert CLIFF_CELLS == tuple(cell(3, c) for c in range(1, 11))
    assert mdp.terminal[CLIFF_GOAL] and not mdp.terminal[CLIFF_START]


@pytest.mark.parametrize("s, a, s2, r", [
    (cell(3, 0), RIGHT, cell(3, 0), -100.0),    # off the edge from the start: back to start
    (cell(2, 5), DOWN, cell(3, 0), -100.0),     # off the edge from above
    (cell(2, 1), DOWN, cell(3, 0), -100.0),
    (cell(2, 10), DOWN, cell(3, 0), -100.0),
    (cell(3, 0), UP, cell(2, 0), -1.0),
    (cell(3, 0), LEFT, cell(3, 0), -1.0),       # bumping the wall costs a step
    (cell(3, 0), DOWN, cell(3, 0), -1.0),
    (cell(0, 4), UP, cell(0, 4), -1.0),
    (cell(2, 11), DOWN, cell(3, 11), -1.0),     # into the goal
    (cell(2, 4), RIGHT, cell(2, 5), -1.0),
    (cell(0, 11), RIGHT, cell(0, 11), -1.0),
])
def test_cliff_transitions(s, a, s2, r):
    mdp = cliff_walking()
    assert next_of(mdp, s, a) == s2
    assert mdp.R[s, a] == r


def test_cliff_goal_absorbs_and_nothing_enters_the_cliff():
    mdp = cliff_walking()
    assert_allclose(mdp.P[CLIFF_GOAL, :, CLIFF_GOAL], 1.0)
    assert_allclose(mdp.R[CLIFF_GOAL], 0.0)
    live = ~mdp.terminal
    assert mdp.P[live][:, :, list(CLIFF_CELLS)].sum() == 0.0


def value_iteration_loop(mdp, sweeps=200):
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    for _ in range(sweeps):
        V = Q.max(axis=1)
        new = np.zeros_like(Q)
        for s in range(mdp.n_states):
            if mdp.terminal[s]:
                continue
            for a in range(mdp.n_actions):
                new[s, a] = mdp.R[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in np.flatnonzero(mdp.P[s, a]))
        Q = new
    return Q


def test_cliff_optimal_return_is_minus_13():
    # The shortest route: up, 11 steps right along the edge, down.
    Q_star = value_iteration_loop(cliff_walking(), sweeps=60)
    assert Q_star[CLIFF_START].max() == pytest.approx(-13.0)


# ---------------------------------------------------------------- epsilon-greedy
def epsilon_greedy_loop(q, epsilon, rng):
    q = np.asarray(q)
    batch, A = q.shape[:-1], q.shape[-1]
    u = rng.random(batch)
    tie = rng.random(batch + (A,))
    out = np.zeros(batch, dtype=np.int64)
    for idx in np.ndindex(*batch):
        explore = u[idx] < epsilon
        best, best_score = -1, -1.0
        top = max(q[idx])
        for a in range(A):
            # Exploring: the action with the largest score among all; else among the maxima of q.
            if (explore or q[idx][a] == top) and tie[idx][a] > best_score:
                best, best_score = a, tie[idx][a]
        out[idx] = best
    return out


@pytest.mark.parametrize("shape, epsilon", [((7, 4), 0.1), ((3, 5, 2), 0.5), ((1, 3), 0.0), ((6, 4), 1.0), ((4,), 0.3)])
def test_epsilon_greedy_matches_loop(shape, epsilon):
    rng = np.random.default_rng(0)
    q = rng.integers(0, 3, size=shape).astype(float)  # small integers: many ties
    got = td.epsilon_greedy(q, epsilon, np.random.default_rng(5))
    assert_array_equal(got, epsilon_greedy_loop(q, epsilon, np.random.default_rng(5)))


def test_epsilon_greedy_frequencies():
    # pi(greedy) = 1 - eps + eps / A; ties split the greedy share evenly.
    q = np.tile([0.0, 1.0, 1.0, -1.0], (200_000, 1))
    a = td.epsilon_greedy(q, 0.2, np.random.default_rng(1))
    freq = np.bincount(a, minlength=4) / len(a)
    assert_allclose(freq, [0.05, 0.45, 0.45, 0.05], atol=0.005)


def test_epsilon_greedy_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="epsilon"):
        td.epsilon_greedy(np.zeros((2, 3)), 1.5, rng)
    with pytest.raises(ValueError, match="q must have shape"):
        td.epsilon_greedy(np.zeros((2, 0)), 0.1, rng)


def epsilon_greedy_probs_loop(q, epsilon):
    q = np.asarray(q, dtype=float)
    out = np.zeros_like(q)
    for idx in np.ndindex(*q.shape[:-1]):
        row = q[idx]
        top = [a for a in range(len(row)) if row[a] == row.max()]
        for a in range(len(row)):
            out[idx + (a,)] = epsilon / len(row) + ((1 - epsilon) / len(top) if a in top else 0.0)
    return out


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0])
def test_epsilon_greedy_probs_matches_loop_numpy_and_torch(epsilon):
    q = np.random.default_rng(2).integers(0, 3, size=(5, 3, 4)).astype(float)
    expected = epsilon_greedy_probs_loop(q, epsilon)
    assert_allclose(td.epsilon_greedy_probs(q, epsilon), expected)
    assert_allclose(td.epsilon_greedy_probs(torch.tensor(q), epsilon).numpy(), expected)
    assert_allclose(expected.sum(-1), 1.0)


# ---------------------------------------------------------------- targets
def targets_loop(kind, r, q_next, a_next, d, gamma, epsilon=0.0):
    out = np.zeros(len(r))
    for i in range(len(r)):
        if kind == "sarsa":
            boot = q_next[i, a_next[i]]
        elif kind == "q":
            boot = max(q_next[i])
        else:
            probs = epsilon_greedy_probs_loop(q_next[i][None], epsilon)[0]
            boot = sum(p * v for p, v in zip(probs, q_next[i]))
        out[i] = r[i] + (0.0 if d[i] else gamma * boot)
    return out


def target_case(name, B=9, A=4, seed=0):
    rng = np.random.default_rng(seed)
    r, q_next = rng.normal(size=B), rng.normal(size=(B, A))
    a_next = rng.integers(A, size=B)
    d = {"some done": rng.random(B) < 0.4, "none done": np.zeros(B, bool), "all done": np.ones(B, bool)}[name]
    return r, q_next, a_next, d


@pytest.mark.parametrize("name", ["some done", "none done", "all done"])
@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_targets_match_loop(name, gamma):
    r, q_next, a_next, d = target_case(name)
    assert_allclose(td.sarsa_target(r, q_next, a_next, d, gamma), targets_loop("sarsa", r, q_next, a_next, d, gamma))
    assert_allclose(td.q_learning_target(r, q_next, d, gamma), targets_loop("q", r, q_next, a_next, d, gamma))
    assert_allclose(td.expected_sarsa_target(r, q_next, d, gamma, 0.3),
                    targets_loop("expected", r, q_next, a_next, d, gamma, 0.3))


def test_targets_torch_in_torch_out_and_batch_axes():
    r, q_next, a_next, d = target_case("some done", B=6)
    expected_q = targets_loop("q", r, q_next, a_next, d, 0.9)
    got = td.q_learning_target(torch.tensor(r), torch.tensor(q_next), torch.tensor(d), 0.9)
    assert isinstance(got, torch.Tensor)
    assert_allclose(got.numpy(), expected_q)
    got = td.sarsa_target(torch.tensor(r), torch.tensor(q_next), torch.tensor(a_next), torch.tensor(d), 0.9)
    assert_allclose(got.numpy(), targets_loop("sarsa", r, q_next, a_next, d, 0.9))
    # Leading batch axes (2, 3) instead of (6,).
    got = td.q_learning_target(r.reshape(2, 3), q_next.reshape(2, 3, 4), d.reshape(2, 3), 0.9)
    assert_allclose(got, expected_q.reshape(2, 3))


def test_expected_sarsa_interpolates():
    r, q_next, a_next, d = target_case("some done")
    # epsilon 0: the greedy policy's expectation is the max; epsilon 1: the plain mean.
    assert_allclose(td.expected_sarsa_target(r, q_next, d, 0.9, 0.0), td.q_learning_target(r, q_next, d, 0.9))
    assert_allclose(td.expected_sarsa_target(r, q_next, d, 0.9, 1.0), r + 0.9 * ~d * q_next.mean(axis=1))


def test_targets_reject_bad_input():
    r, q_next, a_next, d = target_case("some done")
    with pytest.raises(ValueError, match="q_next"):
        td.q_learning_target(r, q_next[:-1], d, 0.9)
    with pytest.raises(ValueError, match="dones"):
        td.q_learning_target(r, q_next, d[:-1], 0.9)
    with pytest.raises(ValueError, match="gamma"):
        td.sarsa_target(r, q_next, a_next, d, 1.2)
    with pytest.raises(ValueError, match="next_actions"):
        td.sarsa_target(r, q_next, a_next[:2], d, 0.9)
    with pytest.raises(ValueError, match=r"next_actions must lie in \[0, 4\)"):
        td.sarsa_target(r, q_next, a_next + 4, d, 0.9)


def test_td_update_matches_loop_and_is_pure():
    rng = np.random.default_rng(3)
    Q = rng.normal(size=(5, 6, 3))
    s, a, y = rng.integers(6, size=5), rng.integers(3, size=5), rng.normal(size=5)
    alpha = np.array([0.5, 0.0, 1.0, 0.1, 0.5])
    expected = Q.copy()
    for n in range(5):
        expected[n, s[n], a[n]] += alpha[n] * (y[n] - expected[n, s[n], a[n]])
    before = Q.copy()
    assert_allclose(td.td_update(Q, s, a, y, alpha), expected)
    assert_array_equal(Q, before)
    with pytest.raises(ValueError, match="states"):
        td.td_update(Q, s[:2], a, y, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        td.td_update(Q, s, a, y, 1.5)
    with pytest.raises(ValueError, match="Q must"):
        td.td_update(Q[0], s, a, y, 0.5)


# ---------------------------------------------------------------- learners against a plain loop
def learner_loop(method, mdp, start, n_episodes, n_runs, alpha, epsilon, seed, max_episode_steps=100_000):
    """The book's pseudocode for each run, the runs stepped in lock step so that they
    consume the random numbers in the order the vectorised learners document."""
    rng = np.random.default_rng(seed)
    S_, A_ = mdp.n_states, mdp.n_actions
    cum = np.cumsum(mdp.P, axis=2)
    deterministic = np.all(mdp.P.max(axis=2) == 1.0)
    Q = np.zeros((n_runs, S_, A_))
    returns = np.zeros((n_runs, n_episodes))
    done_eps = [0] * n_runs
    G, disc, t = [0.0] * n_runs, [1.0] * n_runs, [0] * n_runs
    s = [start] * n_runs
    a = list(epsilon_greedy_loop(Q[np.arange(n_runs), s], epsilon, rng))
    while min(done_eps) < n_episodes:
        u = np.zeros(n_runs) if deterministic else rng.random(n_runs)
        s2, r, term, ended = [0] * n_runs, [0.0] * n_runs, [False] * n_runs, [False] * n_runs
        for n in range(n_runs):
            if deterministic:
                s2[n] = int(np.argmax(mdp.P[s[n], a[n]]))
            else:
                s2[n] = min(int(np.sum(u[n] >= cum[s[n], a[n]])), S_ - 1)
            r[n] = mdp.R[s[n], a[n]]
            term[n] = bool(mdp.terminal[s2[n]])
            t[n] += 1
            ended[n] = term[n] or t[n] >= max_episode_steps
        if method == "sarsa":
            a2 = epsilon_greedy_loop(Q[np.arange(n_runs), s2], epsilon, rng)
        for n in range(n_runs):
            if method == "sarsa":
                boot = Q[n, s2[n], a2[n]]
            elif method == "q_learning":
                boot = max(Q[n, s2[n]])
            else:
                probs = epsilon_greedy_probs_loop(Q[n, s2[n]][None], epsilon)[0]
                boot = sum(p * v for p, v in zip(probs, Q[n, s2[n]]))
            y = r[n] + (0.0 if term[n] else mdp.gamma * boot)
            if done_eps[n] < n_episodes:
                Q[n, s[n], a[n]] += alpha * (y - Q[n, s[n], a[n]])
        if method == "sarsa":
            if any(ended):
                fresh = epsilon_greedy_loop(Q[np.arange(n_runs), [start] * n_runs], epsilon, rng)
                a2 = [fresh[n] if ended[n] else a2[n] for n in range(n_runs)]
        else:
            where = [start if ended[n] else s2[n] for n in range(n_runs)]
            a2 = epsilon_greedy_loop(Q[np.arange(n_runs), where], epsilon, rng)
        for n in range(n_runs):
            G[n] += disc[n] * r[n]
            disc[n] *= mdp.gamma
            if ended[n]:
                if done_eps[n] < n_episodes:
                    returns[n, done_eps[n]] = G[n]
                    done_eps[n] += 1
                G[n], disc[n], t[n] = 0.0, 1.0, 0
                s[n] = start
            else:
                s[n] = s2[n]
            a[n] = a2[n]
    return returns, Q


LEARNERS = {"sarsa": td.sarsa, "q_learning": td.q_learning, "expected_sarsa": td.expected_sarsa}


@pytest.mark.parametrize("method", list(LEARNERS))
def test_learners_match_loop_on_cliff(method):
    mdp = cliff_walking()
    kwargs = dict(n_episodes=4, n_runs=3, alpha=0.5, epsilon=0.1, seed=7)
    got_returns, got_Q = LEARNERS[method](mdp, CLIFF_START, **kwargs)
    exp_returns, exp_Q = learner_loop(method, mdp, CLIFF_START, **kwargs)
    assert got_returns.shape == (3, 4) and got_Q.shape == (3, 48, 4)
    assert_allclose(got_returns, exp_returns)
    assert_allclose(got_Q, exp_Q)


@pytest.mark.parametrize("method", list(LEARNERS))
def test_learners_match_loop_on_random_stochastic_mdp_with_discount_and_time_limit(method):
    mdp = random_mdp(np.random.default_rng(4), S=6, A=3, gamma=0.8, n_terminal=1)
    kwargs = dict(n_episodes=5, n_runs=4, alpha=0.3, epsilon=0.4, seed=11, max_episode_steps=6)
    got_returns, got_Q = LEARNERS[method](mdp, 3, **kwargs)
    exp_returns, exp_Q = learner_loop(method, mdp, 3, **kwargs)
    assert_allclose(got_returns, exp_returns)
    assert_allclose(got_Q, exp_Q)


def test_single_run_and_seed_determinism():
    mdp = cliff_walking()
    r1, Q1 = td.q_learning(mdp, CLIFF_START, n_episodes=5, n_runs=1, seed=3)
    r2, Q2 = td.q_learning(mdp, CLIFF_START, n_episodes=5, n_runs=1, seed=3)
    r3, _ = td.q_learning(mdp, CLIFF_START, n_episodes=5, n_runs=1, seed=4)
    assert r1.shape == (1, 5)
    assert_array_equal(r1, r2)
    assert_array_equal(Q1, Q2)
    assert not np.array_equal(r1, r3)


def test_returns_are_sums_of_rewards_on_the_cliff():
    # Every reward is -1 or -100, so each episode's return is an integer <= -13
    # (the shortest route) and -100 shows up only with a fall.
    returns, _ = td.sarsa(cliff_walking(), CLIFF_START, n_episodes=30, n_runs=5, seed=0)
    assert np.all(returns <= -13)
    assert_array_equal(returns, np.round(returns))


@pytest.mark.parametrize("bad, match", [
    (dict(start=CLIFF_GOAL), "start"), (dict(start=48), "start"), (dict(n_episodes=0), "n_episodes"),
    (dict(n_runs=0), "n_runs"), (dict(alpha=0.0), "alpha"), (dict(epsilon=-0.1), "epsilon"),
    (dict(max_episode_steps=0), "max_episode_steps"),
])
def test_learners_reject_bad_arguments(bad, match):
    kwargs = dict(start=CLIFF_START, n_episodes=2, n_runs=2) | bad
    with pytest.raises(ValueError, match=match):
        td.q_learning(cliff_walking(), **kwargs)


# ---------------------------------------------------------------- what the book shows
@pytest.fixture(scope="module")
def cliff_runs():
    mdp = cliff_walking()
    kwargs = dict(n_episodes=300, n_runs=30, alpha=0.5, epsilon=0.1, seed=0)
    return mdp, td.sarsa(mdp, CLIFF_START, **kwargs), td.q_learning(mdp, CLIFF_START, **kwargs)


def test_q_learning_finds_the_edge_path_sarsa_the_safe_one(cliff_runs):
    mdp, (_, Q_sarsa), (_, Q_q) = cliff_runs
    edge = [CLIFF_START] + [cell(2, c) for c in range(12)] + [CLIFF_GOAL]
    q_paths = [td.greedy_path(Q, mdp, CLIFF_START).tolist() for Q in Q_q]
    assert sum(p == edge for p in q_paths) >= 28
    sarsa_rows = [min(s // 12 for s in td.greedy_path(Q, mdp, CLIFF_START)) for Q in Q_sarsa]
    # SARSA keeps away from the edge: most runs climb to row 0 or 1.
    assert np.mean(np.array(sarsa_rows) <= 1) >= 0.8


def test_sarsa_online_return_beats_q_learning(cliff_runs):
    _, (r_sarsa, _), (r_q, _) = cliff_runs
    late = slice(100, None)
    assert r_sarsa[:, late].mean() > r_q[:, late].mean() + 10


def test_q_learning_values_on_the_path_approach_q_star(cliff_runs):
    mdp, _, (_, Q_q) = cliff_runs
    Q_star = value_iteration_loop(mdp, sweeps=60)
    edge = [CLIFF_START] + [cell(2, c) for c in range(11)]
    best = Q_q.mean(axis=0)[edge].max(axis=1)
    assert_allclose(best, Q_star[edge].max(axis=1), atol=0.5)


# ---------------------------------------------------------------- greedy path
def test_greedy_path_stops_on_loops_and_limits():
    mdp = small_gridworld()
    Q = np.zeros((16, 4))
    Q[:, UP] = 1.0
    assert td.greedy_path(Q, mdp, start=13).tolist() == [13, 9, 5, 1, 1]  # 1 bumps the top wall
    Q[:, RIGHT] = 2.0
    assert td.greedy_path(Q, mdp, start=12, max_steps=2).tolist() == [12, 13, 14]
    with pytest.raises(ValueError, match="Q must have shape"):
        td.greedy_path(np.zeros((3, 4)), mdp, 0)


# ---------------------------------------------------------------- benchmark smoke test
@pytest.fixture(scope="module")
def bench04():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ch04.py"
    spec = importlib.util.spec_from_file_location("bench_ch04", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_python_baseline_learns_the_edge(bench04):
    # The plain-Python baseline must be a real Q-learner, or the speed-up means nothing:
    # with epsilon = 0 it settles on the optimal return of -13.
    returns = bench04.q_learning_python(n_episodes=150, alpha=0.5, epsilon=0.0, seed=0)
    assert returns[-1] == -13.0
    assert all(r <= -13 for r in returns)


def test_bench_main_tiny(bench04, capsys):
    row = bench04.main(["--runs", "3", "--episodes", "20", "--repeats", "1", "--scale-runs", "4"])
    out = capsys.readouterr().out
    assert "speed-up" in out and "(c) plain Python" in out
    assert row["vectorised_s"] > 0 and row["python_s"] > 0
    assert set(row["late_mean_return"]) == {"vectorised", "one_at_a_time", "python"}
    assert [r["n_runs"] for r in row["scaling"]] == [4] and "As N grows" in out


def test_bench_rejects_bad_arguments(bench04):
    with pytest.raises(SystemExit):
        bench04.main(["--repeats", "0"])
