"""Checks for exercise 1: discounted returns, exact policy evaluation, Q from V."""

from __future__ import annotations

import numpy as np

from ..mdp import TabularMDP, small_gridworld, sutton_barto_gridworld, uniform_policy
from . import assert_close, grid_labels, random_mdp

__all__ = ["check_discounted_returns", "check_evaluate_policy", "check_q_from_v"]


# ---------------------------------------------------------------- returns
def _returns_loop(rewards: np.ndarray, gamma: float, dones: np.ndarray | None) -> np.ndarray:
    """G_t = r_t + gamma (1 - d_t) G_{t+1}, one element at a time."""
    flat_r = rewards.reshape(-1, rewards.shape[-1]).astype(np.float64)
    flat_d = np.zeros_like(flat_r, dtype=bool) if dones is None else dones.reshape(flat_r.shape).astype(bool)
    out = np.zeros_like(flat_r)
    for b in range(flat_r.shape[0]):
        g = 0.0
        for t in reversed(range(flat_r.shape[1])):
            if flat_d[b, t]:
                g = 0.0
            g = flat_r[b, t] + gamma * g
            out[b, t] = g
    return out.reshape(rewards.shape)


def _returns_cases(hidden: bool):
    rng = np.random.default_rng(1 if hidden else 0)
    yield "three rewards of 1, gamma 0.5", np.array([1.0, 1.0, 1.0]), 0.5, None
    yield "gamma 0: the return is the next reward", np.array([3.0, -1.0, 2.0]), 0.0, None
    yield "episode ends after step 1", np.array([1.0, 2.0, 3.0, 4.0]), 0.9, np.array([False, True, False, False])
    yield "batch of 2 episodes (time on the last axis)", rng.normal(size=(2, 6)), 0.9, None
    yield "batch with dones", rng.normal(size=(3, 8)), 0.95, rng.random((3, 8)) < 0.3
    if hidden:
        yield "single step", np.array([2.5]), 0.7, None
        yield "gamma 1, undiscounted", rng.normal(size=(4, 5)), 1.0, None
        yield "every step done", rng.normal(size=(2, 5)), 0.9, np.ones((2, 5), dtype=bool)
        yield "three batch axes", rng.normal(size=(2, 3, 7)), 0.8, rng.random((2, 3, 7)) < 0.2


def check_discounted_returns(discounted_returns, hidden: bool = False) -> None:
    """Check ``discounted_returns(rewards, gamma, dones=None)`` against a plain loop."""
    n = 0
    for case, rewards, gamma, dones in _returns_cases(hidden):
        expected = _returns_loop(rewards, gamma, dones)
        got = discounted_returns(rewards.copy(), gamma) if dones is None else discounted_returns(rewards.copy(), gamma, dones.copy())
        assert_close(got, expected, "discounted_returns", case)
        n += 1
    print(f"discounted_returns: all {n} cases pass.")


# ---------------------------------------------------------------- policy evaluation
def _evaluate_loop(mdp: TabularMDP, pi: np.ndarray, sweeps: int = 5000) -> np.ndarray:
    """Iterate the Bellman expectation equation state by state until it settles."""
    S, A = pi.shape
    V = np.zeros(S)
    for _ in range(sweeps):
        new = np.zeros(S)
        for s in range(S):
            if mdp.terminal[s]:
                continue
            for a in range(A):
                new[s] += pi[s, a] * (mdp.R[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in range(S)))
        if np.max(np.abs(new - V)) < 1e-12:
            return new
        V = new
    return V


def _policy_cases(hidden: bool):
    rng = np.random.default_rng(11 if hidden else 10)
    grid = small_gridworld()
    yield "Example 4.1 (4x4 grid, gamma 1, random policy)", grid, uniform_policy(grid)
    g35 = sutton_barto_gridworld()
    yield "Example 3.5 (5x5 grid, gamma 0.9, random policy)", g35, uniform_policy(g35)
    mdp = random_mdp(rng, 6, 3, 0.8)
    yield "random 6-state MDP, gamma 0.8", mdp, rng.dirichlet(np.ones(3), size=6)
    if hidden:
        mdp = random_mdp(rng, 7, 2, 0.5, n_terminal=2)
        yield "random MDP with 2 terminal states, gamma 0.5", mdp, rng.dirichlet(np.ones(2), size=7)
        mdp = random_mdp(rng, 5, 4, 0.0)
        yield "gamma 0: V is the expected next reward", mdp, rng.dirichlet(np.ones(4), size=5)
        yield "deterministic policy on the 4x4 grid", small_gridworld(), _route_to_corner()


def _route_to_corner() -> np.ndarray:
    """Deterministic 4x4 policy: go left along the row, then up column 0 into (0, 0)."""
    pi = np.zeros((16, 4))
    for s in range(16):
        pi[s, 3 if s % 4 > 0 else 0] = 1.0
    return pi


def check_evaluate_policy(evaluate_policy, hidden: bool = False) -> None:
    """Check ``evaluate_policy(mdp, pi)`` against state-by-state Bellman iteration."""
    n = 0
    for case, mdp, pi in _policy_cases(hidden):
        expected = _evaluate_loop(mdp, pi)
        assert_close(evaluate_policy(mdp, pi), expected, "evaluate_policy", case, atol=1e-6, labels=grid_labels(mdp))
        n += 1
    print(f"evaluate_policy: all {n} cases pass.")


def _q_loop(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    S, A = mdp.R.shape
    Q = np.zeros((S, A))
    for s in range(S):
        if mdp.terminal[s]:
            continue
        for a in range(A):
            Q[s, a] = mdp.R[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in range(S))
    return Q


def check_q_from_v(q_from_v, hidden: bool = False) -> None:
    """Check ``q_from_v(mdp, V)`` against a one-step look-ahead written as loops."""
    rng = np.random.default_rng(21 if hidden else 20)
    grid = small_gridworld()
    cases = [
        ("Example 4.1 values", grid, _evaluate_loop(grid, uniform_policy(grid))),
        ("random 5-state MDP with one terminal state, arbitrary V", random_mdp(rng, 5, 3, 0.9, n_terminal=1), rng.normal(size=5)),
    ]
    if hidden:
        cases += [
            ("Example 3.5, arbitrary V", sutton_barto_gridworld(), rng.normal(size=25)),
            ("MDP with two terminal states", random_mdp(rng, 6, 2, 0.7, n_terminal=2), rng.normal(size=6)),
            ("gamma 0", random_mdp(rng, 4, 2, 0.0), rng.normal(size=4)),
        ]
    for case, mdp, V in cases:
        assert_close(q_from_v(mdp, V.copy()), _q_loop(mdp, V), "q_from_v", case, labels=grid_labels(mdp))
    print(f"q_from_v: all {len(cases)} cases pass.")
