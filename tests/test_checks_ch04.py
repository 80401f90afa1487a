"""Exercise 4's checks accept correct code and reject the usual mistakes, with a useful message."""

import numpy as np
import pytest

from course_lib import td
from course_lib.checks import ch04 as checks


# ---------------------------------------------------------------- epsilon_greedy
def _eg_first_tie(q, epsilon, rng):
    explore = rng.random(q.shape[0]) < epsilon
    return np.where(explore, rng.integers(q.shape[1], size=q.shape[0]), q.argmax(axis=1))


def _eg_explore_excludes_greedy(q, epsilon, rng):
    N, A = q.shape
    greedy = td.epsilon_greedy(q, 0.0, rng)
    other = (greedy + rng.integers(1, A, size=N)) % A if A > 1 else greedy
    return np.where(rng.random(N) < epsilon, other, greedy)


def _eg_inverted(q, epsilon, rng):
    return td.epsilon_greedy(q, 1.0 - epsilon, rng)


def _eg_one_coin_for_all_rows(q, epsilon, rng):
    # Explores with every run at once or with none.
    if rng.random() < epsilon:
        return rng.integers(q.shape[1], size=q.shape[0])
    return td.epsilon_greedy(q, 0.0, rng)


def _eg_argmin(q, epsilon, rng):
    return td.epsilon_greedy(-q, epsilon, rng)


def _eg_float_actions(q, epsilon, rng):
    return td.epsilon_greedy(q, epsilon, rng).astype(float)


@pytest.mark.parametrize("mutant", [_eg_first_tie, _eg_explore_excludes_greedy, _eg_inverted, _eg_argmin, _eg_float_actions])
def test_epsilon_greedy_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_epsilon_greedy(mutant)


def test_one_coin_for_all_rows_is_caught_in_hidden_cases():
    # With one coin per call the frequencies over a single call are all-or-nothing.
    with pytest.raises(AssertionError):
        checks.check_epsilon_greedy(_eg_one_coin_for_all_rows, hidden=True)


def test_epsilon_greedy_check_accepts_the_kernel_and_explains(capsys):
    checks.check_epsilon_greedy(td.epsilon_greedy, hidden=True)
    assert "pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"two tied greedy actions.*probability 0.500"):
        checks.check_epsilon_greedy(_eg_first_tie)


# ---------------------------------------------------------------- targets
def _sarsa_with_max(r, q_next, a_next, d, gamma):
    return td.q_learning_target(r, q_next, d, gamma)


def _sarsa_no_mask(r, q_next, a_next, d, gamma):
    return td.sarsa_target(r, q_next, a_next, np.zeros_like(d), gamma)


def _sarsa_mask_inverted(r, q_next, a_next, d, gamma):
    return td.sarsa_target(r, q_next, a_next, ~d.astype(bool), gamma)


def _sarsa_no_gamma(r, q_next, a_next, d, gamma):
    return td.sarsa_target(r, q_next, a_next, d, 1.0)


def _sarsa_wrong_index(r, q_next, a_next, d, gamma):
    # q_next[:, a_next] is a (B, B) block; its diagonal would be right, its first row is not.
    return r + gamma * (1 - d) * q_next[:, a_next][0]


def _sarsa_terminal_drops_reward(r, q_next, a_next, d, gamma):
    return np.where(d, 0.0, td.sarsa_target(r, q_next, a_next, d, gamma))


@pytest.mark.parametrize("mutant", [_sarsa_with_max, _sarsa_no_mask, _sarsa_mask_inverted, _sarsa_no_gamma,
                                    _sarsa_wrong_index, _sarsa_terminal_drops_reward])
def test_sarsa_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_sarsa_target(mutant)


def test_sarsa_check_names_the_mistake():
    checks.check_sarsa_target(td.sarsa_target, hidden=True)
    with pytest.raises(AssertionError, match=r"max_a Q\(S', a\).*action A' actually taken"):
        checks.check_sarsa_target(_sarsa_with_max)
    with pytest.raises(AssertionError, match=r"case 'the middle transition ends the episode'.*\(1 - done\)"):
        checks.check_sarsa_target(_sarsa_no_mask)


def _q_no_mask(r, q_next, d, gamma):
    return td.q_learning_target(r, q_next, np.zeros_like(d), gamma)


def _q_mean(r, q_next, d, gamma):
    return r + gamma * (1 - d) * q_next.mean(axis=1)


def _q_max_over_batch(r, q_next, d, gamma):
    return r + gamma * (1 - d) * q_next.max(axis=0)[: len(r)].max()


def _q_first_action(r, q_next, d, gamma):
    return r + gamma * (1 - d) * q_next[:, 0]


@pytest.mark.parametrize("mutant", [_q_no_mask, _q_mean, _q_max_over_batch, _q_first_action])
def test_q_learning_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_q_learning_target(mutant)


def test_q_learning_check_accepts_the_kernel_and_names_the_mask():
    checks.check_q_learning_target(td.q_learning_target, hidden=True)
    with pytest.raises(AssertionError, match=r"\(1 - done\)"):
        checks.check_q_learning_target(_q_no_mask)


# ---------------------------------------------------------------- td_update
def _update_in_place(Q, s, a, y, alpha):
    runs = np.arange(Q.shape[0])
    Q[runs, s, a] += alpha * (y - Q[runs, s, a])
    return Q


def _update_block(Q, s, a, y, alpha):
    out = Q.copy()
    out[:, s, a] += alpha * (y - Q[:, s, a])  # (N, N) block: every run at every run's state
    return out


def _update_wrong_sign(Q, s, a, y, alpha):
    return td.td_update(Q, s, a, 2 * Q[np.arange(Q.shape[0]), s, a] - y, alpha)


def _update_replace(Q, s, a, y, alpha):
    return td.td_update(Q, s, a, y, 1.0)


def _update_first_run_only(Q, s, a, y, alpha):
    out = Q.copy()
    out[0, s[0], a[0]] += alpha * (y[0] - Q[0, s[0], a[0]])
    return out


@pytest.mark.parametrize("mutant", [_update_in_place, _update_block, _update_wrong_sign, _update_replace, _update_first_run_only])
def test_td_update_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_td_update(mutant)


def test_td_update_check_accepts_the_kernel_and_speaks_runs():
    checks.check_td_update(td.td_update, hidden=True)
    with pytest.raises(AssertionError, match=r"run \d+, state \d+, action \d+"):
        checks.check_td_update(_update_block)
    with pytest.raises(AssertionError, match="input table was changed"):
        checks.check_td_update(_update_in_place)
