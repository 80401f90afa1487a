"""Exercise 5's checks accept correct code and reject the usual mistakes, with a useful message."""

import copy

import pytest
import torch

from course_lib import dqn
from course_lib.checks import ch05 as checks


# ---------------------------------------------------------------- linear_epsilon
def _eps_never_held(step, start, end, duration):
    return start + (end - start) * step / duration


def _eps_reversed(step, start, end, duration):
    return end + (start - end) * min(step / duration, 1.0)


def _eps_integer_division(step, start, end, duration):
    return start + (end - start) * min(step // duration, 1)


def _eps_off_by_one(step, start, end, duration):
    return dqn.linear_epsilon(step + 1, start, end, duration)


@pytest.mark.parametrize("mutant", [_eps_never_held, _eps_reversed, _eps_integer_division, _eps_off_by_one])
def test_epsilon_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_linear_epsilon(mutant)


def test_epsilon_check_accepts_the_kernel():
    checks.check_linear_epsilon(dqn.linear_epsilon, hidden=True)


# ---------------------------------------------------------------- dqn_targets
def _targets_no_mask(r, q, d, gamma):
    return r + gamma * q.max(dim=1).values


def _targets_mask_inverted(r, q, d, gamma):
    return r + gamma * d.float() * q.max(dim=1).values


def _targets_mean(r, q, d, gamma):
    return r + gamma * (1 - d.float()) * q.mean(dim=1)


def _targets_no_gamma(r, q, d, gamma):
    return r + (1 - d.float()) * q.max(dim=1).values


def _targets_first_action(r, q, d, gamma):
    return r + gamma * (1 - d.float()) * q[:, 0]


def _targets_numpy(r, q, d, gamma):
    return dqn.q_learning_target(r, q, d, gamma).numpy()


@pytest.mark.parametrize("mutant", [_targets_no_mask, _targets_mask_inverted, _targets_mean, _targets_no_gamma,
                                    _targets_first_action, _targets_numpy])
def test_targets_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_dqn_targets(mutant)


def test_targets_check_accepts_the_kernel_and_names_the_mask():
    checks.check_dqn_targets(dqn.q_learning_target, hidden=True)
    with pytest.raises(AssertionError, match=r"terminates the episode.*\(1 - terminated\)"):
        checks.check_dqn_targets(_targets_no_mask)


# ---------------------------------------------------------------- dqn_loss
def _loss_not_detached(q, a, y):
    taken = q.gather(1, a.long().unsqueeze(1)).squeeze(1)
    return 0.5 * (taken - y).pow(2).mean()


def _loss_all_actions(q, a, y):
    return 0.5 * (q - y[:, None]).pow(2).mean()


def _loss_max_action(q, a, y):
    return 0.5 * (q.max(dim=1).values - y.detach()).pow(2).mean()


def _loss_sum(q, a, y):
    return dqn.dqn_loss(q, a, y) * len(a)


def _loss_no_half(q, a, y):
    return 2 * dqn.dqn_loss(q, a, y)


def _loss_predictions_detached(q, a, y):
    taken = q.detach().gather(1, a.long().unsqueeze(1)).squeeze(1)
    return 0.5 * (taken - y.detach()).pow(2).mean().requires_grad_()


def _loss_huber(q, a, y):
    return dqn.dqn_huber_loss(q, a, y)


@pytest.mark.parametrize("mutant", [_loss_not_detached, _loss_all_actions, _loss_max_action, _loss_sum, _loss_no_half,
                                    _loss_predictions_detached, _loss_huber])
def test_loss_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_dqn_loss(mutant)


def test_loss_check_accepts_the_kernel_and_explains_semi_gradient():
    checks.check_dqn_loss(dqn.dqn_loss, hidden=True)
    with pytest.raises(AssertionError, match="semi-gradient"):
        checks.check_dqn_loss(_loss_not_detached)


# ---------------------------------------------------------------- maybe_sync_target
def _sync_correct(n, target, online, every):
    if n % every == 0:
        dqn.sync_target(target, online)
        return True
    return False


def _sync_never(n, target, online, every):
    target = copy.deepcopy(online)  # rebinds the local name only: the caller's target never changes
    return n % every == 0


def _sync_every_update(n, target, online, every):
    dqn.sync_target(target, online)
    return n % every == 0


def _sync_off_by_one(n, target, online, every):
    return _sync_correct(n + 1, target, online, every)


def _sync_shares_tensors(n, target, online, every):
    if n % every == 0:
        for p_target, p_online in zip(target.parameters(), online.parameters()):
            p_target.data = p_online.data
        return True
    return False


def _sync_wrong_return(n, target, online, every):
    _sync_correct(n, target, online, every)
    return True


@pytest.mark.parametrize("mutant", [_sync_never, _sync_every_update, _sync_off_by_one, _sync_shares_tensors, _sync_wrong_return])
def test_sync_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_maybe_sync_target(mutant)


def test_sync_check_accepts_correct_code_and_names_the_mistake():
    checks.check_maybe_sync_target(_sync_correct, hidden=True)
    checks.check_maybe_sync_target(lambda n, t, o, e: None if _sync_correct(n, t, o, e) else None)  # no return value is fine
    with pytest.raises(AssertionError, match="never updated"):
        checks.check_maybe_sync_target(_sync_never)
    with pytest.raises(AssertionError, match="only be refreshed every 3"):
        checks.check_maybe_sync_target(_sync_every_update)
    with pytest.raises(AssertionError, match="do not share tensors"):
        checks.check_maybe_sync_target(_sync_shares_tensors)
