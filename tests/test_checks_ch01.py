"""The exercise checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest

from course_lib import bellman, returns
from course_lib.checks import ch01 as checks


# ---------------------------------------------------------------- discounted_returns
def _returns_ignoring_dones(rewards, gamma, dones=None):
    return returns.discounted_returns(rewards, gamma)


def _returns_undiscounted(rewards, gamma, dones=None):
    return returns.discounted_returns(rewards, 1.0, dones)


def _returns_done_one_step_late(rewards, gamma, dones=None):
    if dones is None:
        return returns.discounted_returns(rewards, gamma)
    shifted = np.zeros_like(dones)
    shifted[..., 1:] = dones[..., :-1]
    return returns.discounted_returns(rewards, gamma, shifted)


def _returns_forward_in_time(rewards, gamma, dones=None):
    # Accumulates past rewards instead of future ones.
    return returns.discounted_returns(rewards[..., ::-1], gamma, None if dones is None else dones[..., ::-1])[..., ::-1]


def _returns_time_on_first_axis(rewards, gamma, dones=None):
    r = np.moveaxis(rewards, -1, 0)
    d = None if dones is None else np.moveaxis(dones, -1, 0)
    out = np.zeros_like(r, dtype=float)
    g = np.zeros(r.shape[1:]) if r.ndim > 1 else 0.0
    for t in reversed(range(r.shape[0])):
        g = r[t] + gamma * g * (1 if d is None else 1 - d[t])
        out[t] = g
    return out  # forgot to move the axis back


def _returns_list(rewards, gamma, dones=None):
    return returns.discounted_returns(rewards, gamma, dones).tolist()


@pytest.mark.parametrize("mutant", [
    _returns_ignoring_dones, _returns_undiscounted, _returns_done_one_step_late,
    _returns_forward_in_time, _returns_time_on_first_axis, _returns_list,
])
def test_returns_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_discounted_returns(mutant, hidden=True)


def test_returns_check_accepts_the_kernel_and_is_specific(capsys):
    checks.check_discounted_returns(returns.discounted_returns, hidden=True)
    assert "pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"case 'episode ends after step 1'.*expected .* got"):
        checks.check_discounted_returns(_returns_ignoring_dones)


def test_returns_check_names_missing_return():
    with pytest.raises(AssertionError, match="forget `return`"):
        checks.check_discounted_returns(lambda rewards, gamma, dones=None: None)


# ---------------------------------------------------------------- evaluate_policy
def _evaluate_transposed(mdp, pi):
    P_pi = np.einsum("sa,sat->ts", pi, mdp.P)
    r_pi = (pi * mdp.R).sum(axis=1)
    V = np.zeros(mdp.n_states)
    live = ~mdp.terminal
    V[live] = np.linalg.lstsq(np.eye(live.sum()) - mdp.gamma * P_pi[np.ix_(live, live)], r_pi[live], rcond=None)[0]
    return V


def _evaluate_without_gamma(mdp, pi):
    return bellman.evaluate_policy(mdp.with_gamma(min(1.0, mdp.gamma + 0.05)) if mdp.gamma < 1 else mdp, pi)


def _evaluate_ignoring_terminals(mdp, pi):
    P_pi, r_pi = bellman.policy_dynamics(mdp, pi)
    gamma = min(mdp.gamma, 0.999)  # keep the full system solvable
    return np.linalg.solve(np.eye(mdp.n_states) - gamma * P_pi, r_pi)


def _evaluate_few_sweeps(mdp, pi):
    V = np.zeros(mdp.n_states)
    for _, V in zip(range(20), bellman.policy_evaluation_sweeps(mdp, pi)):
        pass
    return V


@pytest.mark.parametrize("mutant", [_evaluate_transposed, _evaluate_without_gamma, _evaluate_ignoring_terminals, _evaluate_few_sweeps])
def test_evaluate_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_evaluate_policy(mutant)


def test_evaluate_check_accepts_the_kernel_and_speaks_grid():
    checks.check_evaluate_policy(bellman.evaluate_policy, hidden=True)
    with pytest.raises(AssertionError, match=r"state \d+ \(row \d, col \d\)"):
        checks.check_evaluate_policy(_evaluate_few_sweeps)


# ---------------------------------------------------------------- q_from_v
def _q_no_gamma(mdp, V):
    Q = mdp.R + mdp.P @ V
    Q[mdp.terminal] = 0.0
    return Q


def _q_wrong_axis(mdp, V):
    Q = mdp.R + mdp.gamma * np.einsum("sat,s->ta", mdp.P, V)[: mdp.n_states]
    Q[mdp.terminal] = 0.0
    return Q


def _q_terminal_not_zero(mdp, V):
    return mdp.R + mdp.gamma * (mdp.P @ V)


def _q_sign_flip(mdp, V):
    Q = mdp.R - mdp.gamma * (mdp.P @ V)
    Q[mdp.terminal] = 0.0
    return Q


@pytest.mark.parametrize("mutant", [_q_no_gamma, _q_wrong_axis, _q_sign_flip, _q_terminal_not_zero])
def test_q_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_q_from_v(mutant)


def test_q_check_accepts_the_kernel():
    checks.check_q_from_v(bellman.q_from_v, hidden=True)


def test_assert_close_reports_a_wrong_scalar():
    from course_lib.checks import assert_close

    with pytest.raises(AssertionError, match=r"scalar\) result expected 2, got 1"):
        assert_close(np.array(1.0), np.array(2.0), "f", "a scalar case")
