"""Checks for exercise 3: the TD(0) update for a batch of runs, and n-step returns.

References are plain loops over runs, time steps and window offsets, written
from the definitions, independently of ``course_lib.prediction``. The cases
are chosen to expose the usual mistakes: bootstrapping across an episode end
(a missing (1 - done) mask), an n-step window one reward too short or too
long, and gamma^(n-1) instead of gamma^n on the bootstrap.
"""

from __future__ import annotations

import numpy as np

from . import assert_close

__all__ = ["check_td0_update", "check_n_step_returns"]


# ---------------------------------------------------------------- TD(0)
def _td0_loop(V, states, rewards, next_states, dones, alpha, gamma):
    V = V.copy()
    for b in range(V.shape[0]):
        s, s2 = int(states[b]), int(next_states[b])
        bootstrap = 0.0 if dones[b] else V[b, s2]
        V[b, s] = V[b, s] + alpha * (rewards[b] + gamma * bootstrap - V[b, s])
    return V


def _td0_cases(hidden: bool):
    rng = np.random.default_rng(51 if hidden else 50)
    yield (
        "one run, one step, no episode end",
        np.array([[0.0, 0.5, 0.5, 0.5, 0.0]]), np.array([2]), np.array([0.0]), np.array([3]), np.array([False]), 0.1, 1.0,
    )
    yield (
        "the episode ends: its next state (the next episode's start) holds 0.9, which must not be used",
        np.array([[0.0, 0.3, 0.9, 0.6, 0.0]]), np.array([3]), np.array([1.0]), np.array([2]), np.array([True]), 0.5, 1.0,
    )
    V = rng.random((4, 6))
    yield (
        "4 runs, gamma 0.9, two of them at an episode end",
        V, np.array([1, 2, 3, 4]), np.array([0.0, 1.0, -1.0, 0.5]), np.array([2, 0, 5, 3]),
        np.array([False, True, False, True]), 0.2, 0.9,
    )
    if hidden:
        yield (
            "every run done, alpha 1: V(s) becomes the reward",
            rng.random((3, 4)), np.array([0, 1, 2]), np.array([2.0, -1.0, 0.5]), np.array([3, 3, 0]),
            np.array([True, True, True]), 1.0, 0.9,
        )
        yield (
            "a self-loop: next state = state",
            rng.random((2, 3)), np.array([1, 2]), np.array([0.5, 0.0]), np.array([1, 2]), np.array([False, False]), 0.3, 0.8,
        )
        B = 32
        yield (
            "32 runs, random everything",
            rng.normal(size=(B, 7)), rng.integers(7, size=B), rng.normal(size=B), rng.integers(7, size=B),
            rng.random(B) < 0.3, 0.05, 0.99,
        )


def check_td0_update(td0_update, hidden: bool = False) -> None:
    """Check ``td0_update(V, states, rewards, next_states, dones, alpha, gamma)`` against a loop over runs."""
    n = 0
    for case, V, s, r, s2, d, alpha, gamma in _td0_cases(hidden):
        V_in = V.copy()
        got = td0_update(V_in, s.copy(), r.copy(), s2.copy(), d.copy(), alpha, gamma)
        expected = _td0_loop(V, s, r, s2, d, alpha, gamma)
        assert_close(got, expected, "td0_update", case, atol=1e-9, labels=lambda idx: f"run {idx[0]}, state {idx[1]}")
        if not np.array_equal(V_in, V):
            raise AssertionError(
                f"td0_update, case '{case}': the V passed in was modified. Work on a copy "
                "(V = V.copy()) and return it, so the caller's table stays as it was."
            )
        n += 1
    print(f"td0_update: all {n} cases pass.")


# ---------------------------------------------------------------- n-step returns
def _n_step_loop(rewards, values, gamma, n, dones):
    flat_r = rewards.reshape(-1, rewards.shape[-1])
    flat_v = values.reshape(-1, values.shape[-1])
    flat_d = np.zeros(flat_r.shape, dtype=bool) if dones is None else dones.reshape(flat_r.shape)
    B, T = flat_r.shape
    out = np.zeros((B, T))
    for b in range(B):
        for t in range(T):
            g, discount, ended = 0.0, 1.0, False
            k = 0
            while k < n and t + k < T:
                g += discount * flat_r[b, t + k]
                discount *= gamma
                if flat_d[b, t + k]:
                    ended = True
                    break
                k += 1
            if not ended:
                g += discount * flat_v[b, t + k]  # k = min(n, T - t): the state after the window
            out[b, t] = g
    return out.reshape(rewards.shape)


def _n_step_cases(hidden: bool):
    rng = np.random.default_rng(61 if hidden else 60)
    ones = np.ones(4)
    yield "n = 1 is the TD target r + gamma V(s')", ones, np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 0.5, 1, None
    yield "n = 2, gamma 0.5, rewards 1", ones, np.array([0.0, 0.0, 0.0, 0.0, 8.0]), 0.5, 2, None
    yield "n = 3, gamma 0.9, the window is cut at the end of the sequence", rng.normal(size=5), rng.normal(size=6), 0.9, 3, None
    yield (
        "n = 2 with an episode end at step 2: no bootstrap across it",
        np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]), 1.0, 2,
        np.array([False, False, True, False, False]),
    )
    yield "n >= T gives the Monte Carlo return (plus the final bootstrap)", rng.normal(size=4), rng.normal(size=5), 0.8, 10, None
    yield (
        "batch of 3, n = 4, gamma 0.95, with episode ends",
        rng.normal(size=(3, 9)), rng.normal(size=(3, 10)), 0.95, 4, rng.random((3, 9)) < 0.25,
    )
    if hidden:
        yield "T = 1", np.array([2.0]), np.array([1.0, 3.0]), 0.9, 3, None
        yield "gamma 0: only the first reward", rng.normal(size=6), rng.normal(size=7), 0.0, 3, None
        yield "every step is an episode end", rng.normal(size=(2, 5)), rng.normal(size=(2, 6)), 0.9, 3, np.ones((2, 5), dtype=bool)
        yield "two batch axes, n = 5", rng.normal(size=(2, 3, 12)), rng.normal(size=(2, 3, 13)), 0.9, 5, rng.random((2, 3, 12)) < 0.1


def check_n_step_returns(n_step_returns, hidden: bool = False) -> None:
    """Check ``n_step_returns(rewards, values, gamma, n, dones=None)`` against a plain loop."""
    count = 0
    for case, rewards, values, gamma, n, dones in _n_step_cases(hidden):
        expected = _n_step_loop(rewards, values, gamma, n, dones)
        if dones is None:
            got = n_step_returns(rewards.copy(), values.copy(), gamma, n)
        else:
            got = n_step_returns(rewards.copy(), values.copy(), gamma, n, dones.copy())
        assert_close(got, expected, "n_step_returns", case, atol=1e-9)
        count += 1
    print(f"n_step_returns: all {count} cases pass.")
