"""Exercise 6's checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest
import torch

from course_lib import pg
from course_lib.checks import ch06 as checks
from course_lib.returns import discounted_returns


# ---------------------------------------------------------------- softmax_score
def _score(theta, s, a):
    out = np.zeros(np.shape(theta))
    out[s] = -pg.softmax_policy(theta)[s]
    out[s, a] += 1.0
    return out


def _score_forgot_minus_pi(theta, s, a):
    out = np.zeros(np.shape(theta))
    out[s, a] = 1.0
    return out


def _score_only_chosen_entry(theta, s, a):
    out = np.zeros(np.shape(theta))
    out[s, a] = 1.0 - pg.softmax_policy(theta)[s, a]
    return out


def _score_every_row(theta, s, a):
    out = -pg.softmax_policy(theta)
    out[:, a] += 1.0
    return out


def _score_of_pi_not_log_pi(theta, s, a):
    pi = pg.softmax_policy(theta)
    return pi[s, a] * _score(theta, s, a)


def _score_unstable_softmax(theta, s, a):
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.exp(theta)
        pi = z / z.sum(axis=1, keepdims=True)
    out = np.zeros(np.shape(theta))
    out[s] = -pi[s]
    out[s, a] += 1.0
    return out


@pytest.mark.parametrize("mutant", [_score_forgot_minus_pi, _score_only_chosen_entry, _score_every_row,
                                    _score_of_pi_not_log_pi])
def test_score_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_softmax_score(mutant)


def test_score_check_hidden_catches_an_unstable_softmax():
    checks.check_softmax_score(_score_unstable_softmax)  # fine on moderate preferences
    with pytest.raises(AssertionError, match="large preferences"):
        checks.check_softmax_score(_score_unstable_softmax, hidden=True)


def test_score_check_accepts_correct_code_and_names_the_entry(capsys):
    checks.check_softmax_score(_score, hidden=True)
    assert "pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"theta\[\d, \d\].*expected .* got"):
        checks.check_softmax_score(_score_forgot_minus_pi)


# ---------------------------------------------------------------- reinforce_estimates
def _weights(rewards, mask, gamma, states, baseline, sign=-1.0, discount=True, reward_to_go=True):
    T = rewards.shape[1]
    G = discounted_returns(np.where(mask, rewards, 0.0), gamma)
    if not reward_to_go:
        G = np.repeat(G[:, :1], T, axis=1)
    w = G + sign * baseline[states]
    return w * (gamma ** np.arange(T) if discount else 1.0)


def _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, baseline, **kw):
    w = _weights(rewards, mask, gamma, states, baseline, **kw)
    return pg.tabular_score_sums(theta, states, actions, w, mask)


def _correct(theta, states, actions, rewards, mask, gamma, baseline):
    return _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, baseline)


def _baseline_wrong_sign(theta, states, actions, rewards, mask, gamma, baseline):
    return _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, baseline, sign=+1.0)


def _no_discount_factor(theta, states, actions, rewards, mask, gamma, baseline):
    return _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, baseline, discount=False)


def _whole_episode_return(theta, states, actions, rewards, mask, gamma, baseline):
    return _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, baseline, reward_to_go=False)


def _ignores_mask(theta, states, actions, rewards, mask, gamma, baseline):
    w = _weights(rewards, mask, gamma, states, baseline)
    return pg.tabular_score_sums(theta, states, actions, w, np.ones_like(mask))


def _no_baseline(theta, states, actions, rewards, mask, gamma, baseline):
    return _estimates_via_kernel(theta, states, actions, rewards, mask, gamma, np.zeros_like(baseline))


def _batch_average(theta, states, actions, rewards, mask, gamma, baseline):
    return _correct(theta, states, actions, rewards, mask, gamma, baseline).mean(axis=0)


@pytest.mark.parametrize("mutant", [_baseline_wrong_sign, _no_discount_factor, _whole_episode_return, _ignores_mask,
                                    _no_baseline, _batch_average])
def test_estimates_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_reinforce_estimates(mutant)


def test_estimates_check_explains_the_baseline_sign():
    with pytest.raises(AssertionError, match="baseline is subtracted"):
        checks.check_reinforce_estimates(_baseline_wrong_sign)


def test_estimates_check_accepts_correct_code(capsys):
    checks.check_reinforce_estimates(_correct, hidden=True)
    assert "pass" in capsys.readouterr().out


# ---------------------------------------------------------------- reinforce_loss
def _loss_correct(logp, returns, baseline, mask):
    return -(logp * (returns - baseline).detach() * mask).sum() / logp.shape[0]


def _loss_baseline_wrong_sign(logp, returns, baseline, mask):
    return -(logp * (returns + baseline).detach() * mask).sum() / logp.shape[0]


def _loss_not_detached(logp, returns, baseline, mask):
    return -(logp * (returns - baseline) * mask).sum() / logp.shape[0]


def _loss_wrong_sign(logp, returns, baseline, mask):
    return (logp * (returns - baseline).detach() * mask).sum() / logp.shape[0]


def _loss_mean_over_steps(logp, returns, baseline, mask):
    return -(logp * (returns - baseline).detach() * mask).sum() / mask.sum()


def _loss_ignores_mask(logp, returns, baseline, mask):
    return -(logp * (returns - baseline).detach()).sum() / logp.shape[0]


def _loss_per_episode(logp, returns, baseline, mask):
    return -(logp * (returns - baseline).detach() * mask).sum(dim=1) / logp.shape[0]


def _loss_numpy(logp, returns, baseline, mask):
    return float(_loss_correct(logp, returns, baseline, mask).detach())


def _loss_no_baseline(logp, returns, baseline, mask):
    return -(logp * returns * mask).sum() / logp.shape[0]


@pytest.mark.parametrize("mutant", [_loss_baseline_wrong_sign, _loss_not_detached, _loss_wrong_sign, _loss_mean_over_steps,
                                    _loss_ignores_mask, _loss_per_episode, _loss_numpy, _loss_no_baseline])
def test_loss_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_reinforce_loss(mutant)


@pytest.mark.parametrize("mutant, message", [
    (_loss_baseline_wrong_sign, "baseline is subtracted"),
    (_loss_wrong_sign, "sign is flipped"),
    (_loss_not_detached, "detach"),
    (_loss_per_episode, "scalar"),
])
def test_loss_check_messages(mutant, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_reinforce_loss(mutant)


def test_loss_check_accepts_correct_code_and_the_library_kernel():
    checks.check_reinforce_loss(_loss_correct, hidden=True)
    checks.check_reinforce_loss(pg.reinforce_loss, hidden=True)


def test_library_reinforce_loss_is_what_the_check_expects_by_hand():
    # -(1/1) * (log 0.5 * (3 - 1) + log 0.25 * (1 - 1)) = 2 log 2
    loss = pg.reinforce_loss(torch.log(torch.tensor([[0.5, 0.25]])), torch.tensor([[3.0, 1.0]]), 1.0,
                             torch.tensor([[True, True]]))
    assert float(loss) == pytest.approx(2 * np.log(2))
