"""The exercise 2 checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest

from course_lib import bellman
from course_lib.checks import ch02 as checks


# ---------------------------------------------------------------- greedy_policy
def _greedy_argmin(Q):
    return bellman.greedy_policy(-np.asarray(Q))


def _greedy_indices(Q):
    return np.argmax(Q, axis=1)


def _greedy_all_ties(Q):
    Q = np.asarray(Q)
    return (Q == Q.max(axis=1, keepdims=True)).astype(float)


def _greedy_highest_tie(Q):
    Q = np.asarray(Q)
    A = Q.shape[1]
    pi = np.zeros_like(Q, dtype=float)
    pi[np.arange(Q.shape[0]), A - 1 - np.argmax(Q[:, ::-1], axis=1)] = 1.0
    return pi


def _greedy_over_states(Q):
    Q = np.asarray(Q)
    pi = np.zeros_like(Q, dtype=float)
    best_state = np.argmax(Q, axis=0)          # argmax over the wrong axis
    pi[best_state, np.arange(Q.shape[1])] = 1.0
    return pi


def _greedy_softmax(Q):
    e = np.exp(Q - np.max(Q, axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("mutant", [
    _greedy_argmin, _greedy_indices, _greedy_all_ties, _greedy_highest_tie, _greedy_over_states, _greedy_softmax,
])
def test_greedy_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_greedy_policy(mutant)


def test_greedy_check_accepts_the_kernel_and_explains_ties(capsys):
    checks.check_greedy_policy(bellman.greedy_policy, hidden=True)
    assert "7 cases pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="one-hot"):
        checks.check_greedy_policy(_greedy_all_ties)
    with pytest.raises(AssertionError, match=r"shape \(S, A\)"):
        checks.check_greedy_policy(_greedy_indices)


# ---------------------------------------------------------------- value_iteration
def _vi_mean_not_max(mdp, tol=1e-10):
    # Averages over actions: evaluates the random policy instead of optimising.
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    V = bellman.iterative_policy_evaluation(mdp, pi, tol=tol)
    return V, bellman.greedy_policy(bellman.q_from_v(mdp, V))


def _vi_ten_sweeps(mdp, tol=1e-10):
    V = np.zeros(mdp.n_states)
    for _, V in zip(range(10), bellman.bellman_optimality_sweeps(mdp)):
        pass
    return V, bellman.greedy_policy(bellman.q_from_v(mdp, V))


def _vi_discount_twice(mdp, tol=1e-10):
    return bellman.value_iteration(mdp.with_gamma(mdp.gamma**2), tol)


def _vi_policy_from_rewards(mdp, tol=1e-10):
    # Right values, but the policy is greedy on the immediate reward only.
    V, _ = bellman.value_iteration(mdp, tol)
    return V, bellman.greedy_policy(mdp.R)


def _vi_returns_q(mdp, tol=1e-10):
    V, pi = bellman.value_iteration(mdp, tol)
    return bellman.q_from_v(mdp, V), pi


def _vi_swapped(mdp, tol=1e-10):
    V, pi = bellman.value_iteration(mdp, tol)
    return pi, V


def _vi_no_return(mdp, tol=1e-10):
    bellman.value_iteration(mdp, tol)


@pytest.mark.parametrize("mutant", [
    _vi_mean_not_max, _vi_ten_sweeps, _vi_discount_twice, _vi_policy_from_rewards, _vi_returns_q, _vi_swapped,
    _vi_no_return,
])
def test_value_iteration_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_value_iteration(mutant)


def test_value_iteration_check_accepts_both_kernels(capsys):
    checks.check_value_iteration(bellman.value_iteration, hidden=True)
    checks.check_value_iteration(bellman.policy_iteration, hidden=True)   # same contract
    assert "7 cases pass" in capsys.readouterr().out


def test_value_iteration_check_speaks_grid_and_names_the_better_action():
    with pytest.raises(AssertionError, match=r"state \d+ \(row \d, col \d\)"):
        checks.check_value_iteration(_vi_ten_sweeps)
    with pytest.raises(AssertionError, match=r"picks \w+ with Q\* = .* but \w+ has Q\* ="):
        checks.check_value_iteration(_vi_policy_from_rewards)
    with pytest.raises(AssertionError, match="forget `return V, pi`"):
        checks.check_value_iteration(_vi_no_return)


def test_tied_optimal_actions_are_all_accepted():
    # Example 3.5 has ties (e.g. up and right at (1, 0)); a policy that breaks them
    # towards the highest index is just as optimal and must pass.
    def highest_index_ties(mdp, tol=1e-10):
        V, _ = bellman.value_iteration(mdp, tol)
        return V, _greedy_highest_tie(np.round(bellman.q_from_v(mdp, V), 6))

    checks.check_value_iteration(highest_index_ties, hidden=True)


# ---------------------------------------------------------------- policy_iteration
def _pi_one_improvement_old_values(mdp):
    uniform = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    V = bellman.evaluate_policy(mdp, uniform)
    return V, bellman.greedy_policy(bellman.q_from_v(mdp, V))


def _pi_one_improvement(mdp):
    _, pi = _pi_one_improvement_old_values(mdp)
    return bellman.evaluate_policy(mdp, pi), pi


def _pi_improves_with_argmin(mdp):
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    for _ in range(50):
        V = bellman.evaluate_policy(mdp.with_gamma(min(mdp.gamma, 0.99)), pi)
        new = bellman.greedy_policy(-bellman.q_from_v(mdp, V))
        if np.array_equal(new, pi):
            break
        pi = new
    return V, pi


def _pi_stochastic_result(mdp):
    V, pi = bellman.policy_iteration(mdp)
    return V, 0.9 * pi + 0.1 / mdp.n_actions


@pytest.mark.parametrize("mutant", [
    _pi_one_improvement_old_values, _pi_one_improvement, _pi_improves_with_argmin, _pi_stochastic_result,
])
def test_policy_iteration_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_policy_iteration(mutant, hidden=True)


def test_policy_iteration_check_catches_one_improvement_without_hidden_cases():
    # Stopping after one improvement is the most likely mistake: the visible cases must see it.
    with pytest.raises(AssertionError, match="Example 3.5"):
        checks.check_policy_iteration(_pi_one_improvement)


# ---------------------------------------------------------------- the references themselves
def test_reference_value_iteration_matches_the_book():
    from course_lib.mdp import sutton_barto_gridworld

    book_row0 = [22.0, 24.4, 22.0, 19.4, 17.5]
    book_row4 = [14.4, 16.0, 14.4, 13.0, 11.7]
    V = checks._value_iteration_loop(sutton_barto_gridworld()).reshape(5, 5)
    np.testing.assert_allclose(V[0], book_row0, atol=0.05)
    np.testing.assert_allclose(V[4], book_row4, atol=0.05)
