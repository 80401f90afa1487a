"""Exercise 7's checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest
import torch

from course_lib import pg, returns
from course_lib.checks import ch07 as checks


# ---------------------------------------------------------------- td_errors
def _td_correct(rewards, values, gamma, dones=None):
    return returns.td_errors(rewards, values, gamma, dones)


def _td_ignores_dones(rewards, values, gamma, dones=None):
    return returns.td_errors(rewards, values, gamma)


def _td_no_gamma(rewards, values, gamma, dones=None):
    return returns.td_errors(rewards, values, 1.0, dones)


def _td_values_shifted(rewards, values, gamma, dones=None):
    # uses V(s_t) for "next" and V(s_t+1) for "now"
    v = np.asarray(values, dtype=float)
    nd = 1.0 if dones is None else 1.0 - np.asarray(dones, dtype=float)
    return rewards + gamma * nd * v[..., :-1] - v[..., 1:]


def _td_no_reward(rewards, values, gamma, dones=None):
    # the notes' shortcut: delta = V(s_t+1) - V(s_t)
    return returns.td_errors(np.zeros_like(np.asarray(rewards, dtype=float)), values, gamma, dones)


def _td_done_cuts_current_value(rewards, values, gamma, dones=None):
    v = np.asarray(values, dtype=float)
    nd = 1.0 if dones is None else 1.0 - np.asarray(dones, dtype=float)
    return rewards + gamma * v[..., 1:] - nd * v[..., :-1]


@pytest.mark.parametrize("mutant", [_td_ignores_dones, _td_no_gamma, _td_values_shifted, _td_no_reward,
                                    _td_done_cuts_current_value])
def test_td_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_td_errors(mutant)


def test_td_check_hints_at_bootstrapping_across_a_done():
    with pytest.raises(AssertionError, match=r"episode ends after step 1.*\n.*leave it out"):
        checks.check_td_errors(_td_ignores_dones)


def test_td_check_accepts_the_kernel(capsys):
    checks.check_td_errors(_td_correct, hidden=True)
    assert "pass" in capsys.readouterr().out


# ---------------------------------------------------------------- gae
def _gae_loop(rewards, values, gamma, lam, dones, bootstrap_across=False, recurse_across=False, delta_gamma=None,
              recursion=None):
    """A flexible (deliberately mistaken when asked) batch GAE over the last axis."""
    r = np.asarray(rewards, dtype=float)
    v = np.asarray(values, dtype=float)
    d = np.zeros_like(r) if dones is None else np.asarray(dones, dtype=float)
    delta_gamma = gamma if delta_gamma is None else delta_gamma
    recursion = gamma * lam if recursion is None else recursion
    delta = r + delta_gamma * (1.0 if bootstrap_across else 1.0 - d) * v[..., 1:] - v[..., :-1]
    out = np.zeros_like(r)
    a = np.zeros(r.shape[:-1])
    for t in reversed(range(r.shape[-1])):
        a = delta[..., t] + recursion * (1.0 if recurse_across else 1.0 - d[..., t]) * a
        out[..., t] = a
    return out


def _gae_correct(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, dones)


def _gae_bootstraps_across_episode_end(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, dones, bootstrap_across=True)


def _gae_recursion_runs_across_episode_end(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, dones, recurse_across=True)


def _gae_ignores_dones(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, None)


def _gae_lambda_gamma_swapped(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, lam, gamma, dones)


def _gae_recursion_lambda_only(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, dones, recursion=lam)


def _gae_recursion_gamma_only(rewards, values, gamma, lam, dones=None):
    return _gae_loop(rewards, values, gamma, lam, dones, recursion=gamma)


def _gae_forward_in_time(rewards, values, gamma, lam, dones=None):
    r = np.asarray(rewards, dtype=float)
    delta = returns.td_errors(r, values, gamma, dones)
    out = np.zeros_like(r)
    a = np.zeros(r.shape[:-1])
    for t in range(r.shape[-1]):
        a = delta[..., t] + gamma * lam * a
        out[..., t] = a
    return out


def _gae_plus_values(rewards, values, gamma, lam, dones=None):
    # returned the lambda-returns (the critic's targets) instead of the advantages
    return _gae_correct(rewards, values, gamma, lam, dones) + np.asarray(values, dtype=float)[..., :-1]


@pytest.mark.parametrize("mutant", [
    _gae_bootstraps_across_episode_end, _gae_recursion_runs_across_episode_end, _gae_ignores_dones,
    _gae_lambda_gamma_swapped, _gae_recursion_lambda_only, _gae_recursion_gamma_only, _gae_forward_in_time,
    _gae_plus_values,
])
def test_gae_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_gae(mutant)


@pytest.mark.parametrize("mutant, hint", [
    (_gae_lambda_gamma_swapped, "swapped"),
    (_gae_recursion_runs_across_episode_end, "runs on across an episode end"),
    (_gae_bootstraps_across_episode_end, "bootstraps from the next episode"),
    (_gae_ignores_dones, "ignored"),
])
def test_gae_check_names_the_mistake(mutant, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_gae(mutant)


def test_gae_check_accepts_the_library_kernel_and_correct_code(capsys):
    checks.check_gae(returns.gae, hidden=True)
    checks.check_gae(_gae_correct, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_gae_check_without_gamma_in_the_recursion_fails_where_gamma_matters():
    # recursion with lambda only gives the same worked example (gamma = 1) but fails later, with a case name
    with pytest.raises(AssertionError, match=r"case 'one episode, gamma 0.9"):
        checks.check_gae(_gae_recursion_lambda_only)


# ---------------------------------------------------------------- actor_critic_loss
def _ac_correct(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return (-(logp * advantages.detach() * m).sum() + value_coef * ((values - returns_.detach()) ** 2 * m).sum()) / m.sum()


def _ac_advantages_not_detached(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return (-(logp * advantages * m).sum() + value_coef * ((values - returns_.detach()) ** 2 * m).sum()) / m.sum()


def _ac_returns_not_detached(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return (-(logp * advantages.detach() * m).sum() + value_coef * ((values - returns_) ** 2 * m).sum()) / m.sum()


def _ac_ignores_mask(logp, values, advantages, returns_, mask, value_coef):
    return _ac_correct(logp, values, advantages, returns_, torch.ones_like(mask), value_coef)


def _ac_policy_sign(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return ((logp * advantages.detach() * m).sum() + value_coef * ((values - returns_.detach()) ** 2 * m).sum()) / m.sum()


def _ac_value_sign(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return (-(logp * advantages.detach() * m).sum() - value_coef * ((values - returns_.detach()) ** 2 * m).sum()) / m.sum()


def _ac_divides_by_all_steps(logp, values, advantages, returns_, mask, value_coef):
    m = mask.to(logp.dtype)
    return (-(logp * advantages.detach() * m).sum() + value_coef * ((values - returns_.detach()) ** 2 * m).sum()) / m.numel()


def _ac_no_value_coef(logp, values, advantages, returns_, mask, value_coef):
    return _ac_correct(logp, values, advantages, returns_, mask, 1.0)


def _ac_library(logp, values, advantages, returns_, mask, value_coef):
    return pg.actor_critic_loss(logp, values, advantages, returns_, mask, value_coef)


@pytest.mark.parametrize("mutant", [
    _ac_advantages_not_detached, _ac_returns_not_detached, _ac_ignores_mask, _ac_policy_sign, _ac_value_sign,
    _ac_divides_by_all_steps, _ac_no_value_coef,
])
def test_actor_critic_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_actor_critic_loss(mutant, hidden=True)


@pytest.mark.parametrize("mutant", [_ac_advantages_not_detached, _ac_returns_not_detached])
def test_actor_critic_check_explains_detaching(mutant):
    with pytest.raises(AssertionError, match="detach"):
        checks.check_actor_critic_loss(mutant)


def test_actor_critic_check_accepts_correct_code_and_the_library():
    checks.check_actor_critic_loss(_ac_correct, hidden=True)
    checks.check_actor_critic_loss(_ac_library, hidden=True)
