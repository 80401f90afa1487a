"""The exercise 3 checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest

from course_lib import prediction
from course_lib.checks import ch03 as checks


# ---------------------------------------------------------------- td0_update
def _td0_no_done_mask(V, states, rewards, next_states, dones, alpha, gamma):
    return prediction.td0_update(V, states, rewards, next_states, np.zeros_like(dones), alpha, gamma)


def _td0_no_gamma(V, states, rewards, next_states, dones, alpha, gamma):
    return prediction.td0_update(V, states, rewards, next_states, dones, alpha, 1.0)


def _td0_updates_next_state(V, states, rewards, next_states, dones, alpha, gamma):
    V = np.array(V, dtype=float)
    runs = np.arange(len(states))
    target = rewards + gamma * (1 - dones) * V[runs, next_states]
    V[runs, next_states] += alpha * (target - V[runs, states])
    return V


def _td0_in_place(V, states, rewards, next_states, dones, alpha, gamma):
    runs = np.arange(len(states))
    V[runs, states] += alpha * (rewards + gamma * (1 - dones) * V[runs, next_states] - V[runs, states])
    return V


def _td0_wrong_indexing(V, states, rewards, next_states, dones, alpha, gamma):
    V = np.array(V, dtype=float)
    # V[:, states] is (B, B): every run reads every run's state.
    target = rewards + gamma * (1 - dones) * V[:, next_states]
    V[:, states] += alpha * (target - V[:, states])
    return V


def _td0_sign_flipped(V, states, rewards, next_states, dones, alpha, gamma):
    V = np.array(V, dtype=float)
    runs = np.arange(len(states))
    V[runs, states] += alpha * (V[runs, states] - (rewards + gamma * (1 - dones) * V[runs, next_states]))
    return V


def _td0_no_step_size(V, states, rewards, next_states, dones, alpha, gamma):
    return prediction.td0_update(V, states, rewards, next_states, dones, 1.0, gamma)


@pytest.mark.parametrize("mutant", [
    _td0_no_done_mask, _td0_no_gamma, _td0_updates_next_state, _td0_in_place, _td0_wrong_indexing,
    _td0_sign_flipped, _td0_no_step_size,
])
def test_td0_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_td0_update(mutant)


def test_td0_check_accepts_the_kernel_and_names_the_mistake(capsys):
    checks.check_td0_update(prediction.td0_update, hidden=True)
    assert "6 cases pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="the episode ends.*must not be used.*run 0, state 3"):
        checks.check_td0_update(_td0_no_done_mask)
    with pytest.raises(AssertionError, match="was modified"):
        checks.check_td0_update(_td0_in_place)


# ---------------------------------------------------------------- n_step_returns
def _loop_over_k(rewards, values, gamma, n, dones, n_rewards, boot_offset, boot_power, stop_at_done=True, mask_boot=True):
    """A family of n-step returns that get one detail wrong at a time (vectorized over t)."""
    rewards, values = np.asarray(rewards, float), np.asarray(values, float)
    T = rewards.shape[-1]
    dones = np.zeros(rewards.shape, bool) if dones is None else np.asarray(dones, bool)
    t = np.arange(T)
    G = np.zeros_like(rewards)
    alive = np.ones_like(rewards)
    for k in range(n_rewards):
        inside = t + k < T
        idx = np.minimum(t + k, T - 1)
        G += np.where(inside, alive * gamma**k * rewards[..., idx], 0.0)
        if stop_at_done:
            alive = np.where(inside, alive * ~dones[..., idx], alive)
    end = np.minimum(t + boot_offset, T)
    power = np.minimum(boot_power, T - t)
    return G + (alive if mask_boot else 1.0) * gamma**power * values[..., end]


def _n_minus_one_rewards(rewards, values, gamma, n, dones=None):
    return _loop_over_k(rewards, values, gamma, n, dones, n - 1, n - 1, n - 1)


def _n_plus_one_rewards(rewards, values, gamma, n, dones=None):
    return _loop_over_k(rewards, values, gamma, n, dones, n + 1, n + 1, n + 1)


def _bootstrap_one_step_early(rewards, values, gamma, n, dones=None):
    return _loop_over_k(rewards, values, gamma, n, dones, n, n - 1, n)


def _bootstrap_gamma_n_minus_one(rewards, values, gamma, n, dones=None):
    return _loop_over_k(rewards, values, gamma, n, dones, n, n, n - 1)


def _ignores_dones(rewards, values, gamma, n, dones=None):
    return _loop_over_k(rewards, values, gamma, n, None, n, n, n)


def _bootstraps_across_done(rewards, values, gamma, n, dones=None):
    # Stops the reward sum at a done but still adds the value after the window.
    return _loop_over_k(rewards, values, gamma, n, dones, n, n, n, mask_boot=False)


def _full_gamma_n_at_the_end(rewards, values, gamma, n, dones=None):
    # Near the end of the sequence, discounts the bootstrap by gamma^n instead of gamma^(T - t).
    G = prediction.n_step_returns(rewards, values, gamma, n, dones)
    rewards = np.asarray(rewards, float)
    T = rewards.shape[-1]
    t = np.arange(T)
    short = t + n > T
    _, weight, index = prediction.n_step_window(rewards, gamma, n, dones)
    boot = weight * np.take_along_axis(np.asarray(values, float), index, axis=-1)
    return np.where(short, G - boot + boot * gamma ** np.maximum(n - (T - t), 0), G)


def _always_td0(rewards, values, gamma, n, dones=None):
    return prediction.n_step_returns(rewards, values, gamma, 1, dones)


@pytest.mark.parametrize("mutant", [
    _n_minus_one_rewards, _n_plus_one_rewards, _bootstrap_one_step_early, _bootstrap_gamma_n_minus_one,
    _ignores_dones, _bootstraps_across_done, _full_gamma_n_at_the_end, _always_td0,
])
def test_n_step_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_n_step_returns(mutant)


def test_the_mutant_family_is_right_when_nothing_is_wrong():
    # The helper the mutants share must equal the reference when every detail is right,
    # or the mutants above would fail for the wrong reason.
    rng = np.random.default_rng(0)
    r, v, d = rng.normal(size=(3, 9)), rng.normal(size=(3, 10)), rng.random((3, 9)) < 0.3
    for n in (1, 2, 4, 12):
        np.testing.assert_allclose(_loop_over_k(r, v, 0.9, n, d, n, n, n), checks._n_step_loop(r, v, 0.9, n, d))


def test_n_step_check_accepts_the_kernel_and_names_the_case(capsys):
    checks.check_n_step_returns(prediction.n_step_returns, hidden=True)
    assert "10 cases pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="case 'n = 2 with an episode end at step 2: no bootstrap across it'"):
        checks.check_n_step_returns(_bootstraps_across_done)


def test_reference_n_step_loop_by_hand():
    # Worked by hand: rewards 1, 2, 3; values 10, 20, 30, 40; gamma 0.5; n = 2; episode ends after step 1.
    r = np.array([1.0, 2.0, 3.0])
    v = np.array([10.0, 20.0, 30.0, 40.0])
    d = np.array([False, True, False])
    # t=0: 1 + 0.5*2 (done: stop) = 2; t=1: 2 (done); t=2: 3 + 0.5*40 = 23 (cut at T)
    np.testing.assert_allclose(checks._n_step_loop(r, v, 0.5, 2, d), [2.0, 2.0, 23.0])
