"""Tests for course_lib.prediction: the random walk, n-step returns, and the batched learners.

References are plain Python written here from the definitions, one run,
episode and step at a time (the n-step learner follows Sutton and Barto's
section 7.1 box line by line); the true values come from chapter 1's exact
evaluation, independently of the closed form.
"""

from __future__ import annotations

import doctest
import zlib

import numpy as np
import pytest
from numpy.testing import assert_allclose

from course_lib import prediction
from course_lib.bellman import evaluate_policy
from course_lib.prediction import (
    Episodes,
    mc_prediction,
    n_step_returns,
    n_step_td_prediction,
    n_step_window,
    random_walk,
    random_walk_values,
    rms_error,
    sample_random_walk,
    td0_prediction,
    td0_update,
)
from course_lib.returns import discounted_returns


def seed_for(*case) -> int:
    return zlib.crc32(repr(case).encode())


# --------------------------------------------------------------------------
# The random walk
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n, left, right", [(5, 0.0, 1.0), (19, -1.0, 1.0), (1, 2.0, -3.0), (3, 0.5, 0.5)])
def test_random_walk_values_match_exact_evaluation(n, left, right):
    mdp = random_walk(n, left, right)
    assert mdp.n_states == n + 2 and mdp.n_actions == 1
    assert mdp.terminal.tolist() == [True] + [False] * n + [True]
    V = evaluate_policy(mdp, np.ones((n + 2, 1)))
    assert_allclose(random_walk_values(n, left, right), V, atol=1e-12)


def test_book_values():
    assert_allclose(random_walk_values(5)[1:6], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert_allclose(random_walk_values(19, -1.0, 1.0)[1:20], np.arange(-9, 10) / 10, atol=1e-12)


def test_random_walk_rejects_no_states():
    for fn in (random_walk, random_walk_values):
        with pytest.raises(ValueError, match="n_states"):
            fn(0)


def test_sampled_episodes_are_valid_walks():
    ep = sample_random_walk(5, (30, 20), seed=1)
    assert ep.states.shape[:2] == (30, 20)
    T = ep.rewards.shape[-1]
    assert ep.states.shape[-1] == T + 1 and ep.dones.shape == ep.mask.shape == ep.rewards.shape
    flat = Episodes(*(a.reshape(600, -1) for a in (ep.states, ep.rewards, ep.dones, ep.mask)))
    for b in range(600):
        L = int(flat.mask[b].sum())
        s = flat.states[b]
        assert s[0] == 3                                             # starts in C
        assert np.all(np.abs(np.diff(s[: L + 1])) == 1)              # one step left or right
        assert np.all((s[1:L] >= 1) & (s[1:L] <= 5))                 # inside until the end
        assert s[L] in (0, 6) and np.all(s[L:] == s[L])              # ends in a terminal and stays
        assert flat.mask[b, :L].all() and not flat.mask[b, L:].any()
        assert flat.dones[b].sum() == 1 and flat.dones[b, L - 1]
        assert flat.rewards[b, L - 1] == (1.0 if s[L] == 6 else 0.0)
        assert np.all(flat.rewards[b, : L - 1] == 0) and np.all(flat.rewards[b, L:] == 0)
    assert_allclose(ep.lengths, ep.mask.sum(axis=-1))


def test_sampled_walk_statistics():
    ep = sample_random_walk(5, (20_000,), seed=2)
    # From C: right with probability 1/2; expected duration 3 * 3 = 9 (gambler's ruin).
    right = ep.rewards.sum(axis=-1)
    assert abs(right.mean() - 0.5) < 4 * 0.5 / np.sqrt(20_000)
    L = ep.lengths
    assert abs(L.mean() - 9.0) < 4 * L.std() / np.sqrt(20_000)
    ep = sample_random_walk(5, (20_000,), seed=3, start=1)
    # From A: right with probability 1/6, duration 1 * 5 = 5.
    assert abs(ep.rewards.sum(axis=-1).mean() - 1 / 6) < 0.015
    assert abs(ep.lengths.mean() - 5.0) < 4 * ep.lengths.std() / np.sqrt(20_000)


def test_sampling_is_seeded():
    a, b, c = (sample_random_walk(5, (4, 3), seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.states, b.states)
    assert a.states.shape != c.states.shape or not np.array_equal(a.states, c.states)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_states=0, shape=(2,)), "n_states"),
    (dict(n_states=5, shape=(0, 3)), "shape"),
    (dict(n_states=5, shape=(2,), start=0), "start"),
    (dict(n_states=5, shape=(2,), start=6), "start"),
])
def test_sampling_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_random_walk(seed=0, **kwargs)


# --------------------------------------------------------------------------
# n-step returns
# --------------------------------------------------------------------------
def loop_n_step(rewards, values, gamma, n, dones):
    """For one sequence: up to n rewards, stop after a done, else bootstrap from the state after the window."""
    T = len(rewards)
    out = []
    for t in range(T):
        g, k = 0.0, 0
        ended = False
        while k < n and t + k < T:
            g += gamma**k * rewards[t + k]
            if dones[t + k]:
                ended = True
                break
            k += 1
        out.append(g if ended else g + gamma**k * values[t + k])
    return np.array(out)


def loop_batch(rewards, values, gamma, n, dones):
    T = rewards.shape[-1]
    r, v = rewards.reshape(-1, T), values.reshape(-1, T + 1)
    d = np.zeros(r.shape, bool) if dones is None else dones.reshape(-1, T)
    return np.stack([loop_n_step(r[b], v[b], gamma, n, d[b]) for b in range(len(r))]).reshape(rewards.shape)


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("n", [1, 2, 3, 10])
@pytest.mark.parametrize("gamma", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("dones_mode", [None, "some", "all"])
def test_n_step_returns_match_loop(batch, T, n, gamma, dones_mode):
    rng = np.random.default_rng(seed_for(batch, T, n, gamma, dones_mode))
    rewards = rng.normal(size=batch + (T,))
    values = rng.normal(size=batch + (T + 1,))
    dones = None if dones_mode is None else (rng.random(batch + (T,)) < 0.3 if dones_mode == "some" else np.ones(batch + (T,), bool))
    got = n_step_returns(rewards, values, gamma, n, dones)
    assert got.shape == rewards.shape
    assert_allclose(got, loop_batch(rewards, values, gamma, n, dones), atol=1e-12)


def test_n_step_window_parts():
    rng = np.random.default_rng(0)
    rewards, dones = rng.normal(size=(4, 9)), rng.random((4, 9)) < 0.25
    for n in (1, 3, 9):
        reward_sum, weight, index = n_step_window(rewards, 0.9, n, dones)
        # With zero values only the rewards remain; with unit values and zero rewards only the weight.
        assert_allclose(reward_sum, loop_batch(rewards, np.zeros((4, 10)), 0.9, n, dones), atol=1e-12)
        assert_allclose(weight, loop_batch(np.zeros((4, 9)), np.ones((4, 10)), 0.9, n, dones), atol=1e-12)
        assert_allclose(index, np.broadcast_to(np.minimum(np.arange(9) + n, 9), (4, 9)))


def test_n_step_special_cases():
    rng = np.random.default_rng(1)
    rewards, values, dones = rng.normal(size=(3, 8)), rng.normal(size=(3, 9)), rng.random((3, 8)) < 0.3
    # n = 1 is the TD target.
    assert_allclose(n_step_returns(rewards, values, 0.9, 1, dones), rewards + 0.9 * (1 - dones) * values[:, 1:])
    # With an episode end at the last step, n >= T gives the Monte Carlo returns.
    dones[:, -1] = True
    assert_allclose(n_step_returns(rewards, values, 0.9, 8, dones), discounted_returns(rewards, 0.9, dones))
    assert_allclose(n_step_returns(rewards, values, 0.9, 100, dones), discounted_returns(rewards, 0.9, dones))


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=np.zeros(4)), "values must have shape"),
    (dict(values=np.zeros((2, 5))), "values must have shape"),
    (dict(n=0), "n must be an integer >= 1"),
    (dict(n=1.5), "n must be an integer >= 1"),
    (dict(n=True), "n must be an integer >= 1"),
    (dict(gamma=1.5), "gamma"),
    (dict(dones=np.zeros(3, bool)), "dones must have the shape"),
])
def test_n_step_returns_rejects_bad_input(kwargs, match):
    args = dict(rewards=np.zeros(4), values=np.zeros(5), gamma=0.9, n=2, dones=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        n_step_returns(**args)


def test_n_step_window_rejects_empty_time_axis():
    with pytest.raises(ValueError, match="T >= 1"):
        n_step_window(np.zeros((2, 0)), 0.9, 1)


# --------------------------------------------------------------------------
# td0_update
# --------------------------------------------------------------------------
def loop_td0(V, s, r, s2, d, alpha, gamma):
    V = V.copy()
    for b in range(len(s)):
        boot = 0.0 if d[b] else V[b, s2[b]]
        V[b, s[b]] += alpha * (r[b] + gamma * boot - V[b, s[b]])
    return V


@pytest.mark.parametrize("B, S", [(1, 1), (1, 5), (8, 3), (50, 10)])
def test_td0_update_matches_loop_and_leaves_input(B, S):
    rng = np.random.default_rng(seed_for(B, S))
    V = rng.normal(size=(B, S))
    args = rng.integers(S, size=B), rng.normal(size=B), rng.integers(S, size=B), rng.random(B) < 0.4
    before = V.copy()
    got = td0_update(V, *args, alpha=0.3, gamma=0.9)
    assert_allclose(got, loop_td0(V, *args, 0.3, 0.9))
    assert np.array_equal(V, before)


def test_td0_update_ignores_the_next_state_after_a_done():
    V = np.array([[0.0, 0.2, 0.9]])
    out = td0_update(V, np.array([1]), np.array([1.0]), np.array([2]), np.array([True]), alpha=1.0, gamma=1.0)
    assert out[0, 1] == 1.0     # the reward alone, not 1 + 0.9


@pytest.mark.parametrize("kwargs, match", [
    (dict(V=np.zeros(3)), "V must have shape"),
    (dict(states=np.zeros(3, int)), "states must have shape"),
    (dict(dones=np.zeros((2, 1), bool)), "dones must have shape"),
    (dict(alpha=1.5), "alpha"),
    (dict(gamma=-0.1), "gamma"),
])
def test_td0_update_rejects_bad_input(kwargs, match):
    args = dict(V=np.zeros((2, 3)), states=np.zeros(2, int), rewards=np.zeros(2), next_states=np.ones(2, int),
                dones=np.zeros(2, bool), alpha=0.1, gamma=0.9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        td0_update(**args)


# --------------------------------------------------------------------------
# The batched learners against the textbook algorithms
# --------------------------------------------------------------------------
def textbook_n_step_td(states, rewards, n, alpha, V0, gamma):
    """Sutton and Barto's n-step TD box (section 7.1), for one run; returns V after each episode."""
    V = V0.astype(float).copy()
    out = [V.copy()]
    for S_ep, R_ep in zip(states, rewards):       # one episode: S_0..S_T and R_1..R_T
        T = len(R_ep)
        t = 0
        while True:
            tau = t - n + 1
            if tau >= 0:
                G = sum(gamma ** (i - tau - 1) * R_ep[i - 1] for i in range(tau + 1, min(tau + n, T) + 1))
                if tau + n < T:
                    G += gamma**n * V[S_ep[tau + n]]
                V[S_ep[tau]] += alpha * (G - V[S_ep[tau]])
            if tau == T - 1:
                break
            t += 1
        out.append(V.copy())
    return np.array(out)


def textbook_td0(states, rewards, alpha, V0, gamma):
    V = V0.astype(float).copy()
    out = [V.copy()]
    for S_ep, R_ep in zip(states, rewards):
        for t in range(len(R_ep)):
            terminal_next = t == len(R_ep) - 1
            V[S_ep[t]] += alpha * (R_ep[t] + (0.0 if terminal_next else gamma * V[S_ep[t + 1]]) - V[S_ep[t]])
        out.append(V.copy())
    return np.array(out)


def textbook_mc(states, rewards, alpha, V0, gamma):
    V = V0.astype(float).copy()
    out = [V.copy()]
    for S_ep, R_ep in zip(states, rewards):
        G = np.zeros(len(R_ep))
        g = 0.0
        for t in reversed(range(len(R_ep))):
            g = R_ep[t] + gamma * g
            G[t] = g
        for t in range(len(R_ep)):                  # every visit, in time order, after the episode
            V[S_ep[t]] += alpha * (G[t] - V[S_ep[t]])
        out.append(V.copy())
    return np.array(out)


def unpadded(ep: Episodes, run: int):
    L = ep.lengths[run]
    return ([ep.states[run, e, : L[e] + 1].tolist() for e in range(len(L))],
            [ep.rewards[run, e, : L[e]].tolist() for e in range(len(L))])


@pytest.fixture(scope="module")
def small_walks():
    return sample_random_walk(7, (4, 6), seed=11, left_reward=-1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 50])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_n_step_td_matches_textbook(small_walks, n, gamma):
    alphas = np.array([0.1, 0.4, 1.0])
    # Nonzero values on the terminal states too: the learner must never bootstrap from
    # them nor update them (the padding after an episode's end must not count).
    V0 = np.random.default_rng(seed_for(n, gamma)).normal(size=9)
    hist = n_step_td_prediction(small_walks, n, alphas, V0, gamma)
    assert hist.shape == (3, 4, 7, 9)
    for k, a in enumerate(alphas):
        for run in range(4):
            expected = textbook_n_step_td(*unpadded(small_walks, run), n, a, V0, gamma)
            assert_allclose(hist[k, run], expected, atol=1e-12)


@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_td0_and_mc_match_textbook(small_walks, gamma):
    V0 = np.r_[0.0, np.full(7, 0.3), 0.0]
    td = td0_prediction(small_walks, 0.2, V0, gamma)
    mc = mc_prediction(small_walks, 0.2, V0, gamma)
    assert td.shape == mc.shape == (4, 7, 9)          # scalar alpha: no step-size axis
    for run in range(4):
        states, rewards = unpadded(small_walks, run)
        assert_allclose(td[run], textbook_td0(states, rewards, 0.2, V0, gamma), atol=1e-12)
        assert_allclose(mc[run], textbook_mc(states, rewards, 0.2, V0, gamma), atol=1e-12)


def test_learners_converge_towards_the_true_values():
    ep = sample_random_walk(5, (50, 300), seed=4)
    V0 = np.r_[0.0, np.full(5, 0.5), 0.0]
    v = random_walk_values(5)
    for learner in (td0_prediction, mc_prediction):
        err = rms_error(learner(ep, [0.02], V0)[0], v, slice(1, 6)).mean(axis=0)   # (episodes + 1,)
        assert err[-1] < 0.4 * err[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=np.ones((2, 2)) * 0.1), "alpha"),
    (dict(V0=np.zeros(3)), "V0 must have shape"),
    (dict(n=0), "n must be"),
])
def test_learners_reject_bad_input(small_walks, kwargs, match):
    args = dict(episodes=small_walks, n=2, alpha=0.1, V0=np.zeros(9), gamma=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        n_step_td_prediction(**args)


def test_learners_want_runs_episodes_time():
    ep = sample_random_walk(5, (3,), seed=0)
    with pytest.raises(ValueError, match="runs, episodes, T"):
        td0_prediction(ep, 0.1, np.zeros(7))


# --------------------------------------------------------------------------
# rms_error
# --------------------------------------------------------------------------
def test_rms_error_matches_loop():
    rng = np.random.default_rng(5)
    V, v = rng.normal(size=(3, 4, 6)), rng.normal(size=6)
    got = rms_error(V, v, states=slice(1, 5))
    for i in range(3):
        for j in range(4):
            assert got[i, j] == pytest.approx(np.sqrt(sum((V[i, j, s] - v[s]) ** 2 for s in range(1, 5)) / 4))
    mask = np.array([False, True, True, False, True, False])
    assert_allclose(rms_error(V, v, states=mask), np.sqrt(((V - v)[..., mask] ** 2).mean(axis=-1)))


def test_rms_error_rejects_mismatch():
    with pytest.raises(ValueError, match="V must have shape"):
        rms_error(np.zeros((2, 5)), np.zeros(6))


def test_docstring_examples():
    assert doctest.testmod(prediction).failed == 0
