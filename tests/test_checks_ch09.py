"""The exercise-9 checks accept correct code and reject plausible mistakes, with a useful message."""

import pytest
import torch

from course_lib import losses
from course_lib.checks import ch09 as checks


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- action_log_probs
def logp_correct(logits, actions):
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def logp_action_zero(logits, actions):
    return torch.log_softmax(logits, -1)[..., 0]


def logp_greedy(logits, actions):
    # The probability of the most likely action, not of the one taken.
    return torch.log_softmax(logits, -1).max(-1).values


def logp_wrong_axis(logits, actions):
    # Gathers along the state axis: picks other states' rows.
    lp = torch.log_softmax(logits, -1)
    idx = actions.clamp(max=lp.shape[-2] - 1)
    return lp.gather(-2, idx.unsqueeze(-1).expand(*idx.shape, lp.shape[-1]))[..., 0]


def logp_unnormalised(logits, actions):
    return logits.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def logp_probability_not_log(logits, actions):
    return torch.softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def logp_log_of_softmax(logits, actions):
    # Underflows to -inf on peaked logits.
    return torch.log(torch.softmax(logits, -1)).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def logp_keepdim(logits, actions):
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1))


def logp_detached(logits, actions):
    return logp_correct(logits, actions).detach()


def logp_entropy_weighted(logits, actions):
    # sum_a pi_a log pi_a: an expectation over actions, not the taken action.
    lp = torch.log_softmax(logits, -1)
    return (lp.exp() * lp).sum(-1)


@pytest.mark.parametrize("mutant", [
    logp_action_zero, logp_greedy, logp_wrong_axis, logp_unnormalised, logp_probability_not_log,
    logp_keepdim, logp_detached, logp_entropy_weighted,
])
def test_logp_check_rejects_mutants_on_visible_cases(mutant):
    with pytest.raises(AssertionError):
        checks.check_action_log_probs(mutant)


def test_logp_check_rejects_log_of_softmax_in_hidden_cases():
    checks.check_action_log_probs(logp_log_of_softmax)  # fine on mild logits ...
    with pytest.raises(AssertionError):
        checks.check_action_log_probs(logp_log_of_softmax, hidden=True)  # ... -inf on peaked ones


def test_logp_check_accepts_correct_code(capsys):
    checks.check_action_log_probs(logp_correct, hidden=True)
    assert "pass" in capsys.readouterr().out


# ---------------------------------------------------------------- ppo_clip_loss
def _masked_mean(x, mask):
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum()


def clip_min_max_swapped(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp.detach()).exp()
    return -_masked_mean(torch.maximum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages), mask)


def clip_not_detached(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp).exp()
    return -_masked_mean(torch.minimum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages), mask)


def clip_only_clipped_term(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp.detach()).exp()
    return -_masked_mean(r.clamp(1 - eps, 1 + eps) * advantages, mask)


def clip_ratio_inverted(logp, old_logp, advantages, eps, mask=None):
    r = (old_logp.detach() - logp).exp()
    return -_masked_mean(torch.minimum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages), mask)


def clip_advantage_clipped(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp.detach()).exp()
    return -_masked_mean(torch.minimum(r * advantages, r * advantages.clamp(1 - eps, 1 + eps)), mask)


def clip_objective_not_loss(logp, old_logp, advantages, eps, mask=None):
    return -losses.ppo_clip_loss(logp, old_logp, advantages, eps, mask)


def clip_ignores_mask(logp, old_logp, advantages, eps, mask=None):
    return losses.ppo_clip_loss(logp, old_logp, advantages, eps)


def clip_mask_zeroes_but_divides_by_all(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp.detach()).exp()
    obj = torch.minimum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages)
    return -(obj if mask is None else obj * mask).mean()


def clip_ratio_of_probabilities_not_logs(logp, old_logp, advantages, eps, mask=None):
    # Treats the log-probabilities as probabilities.
    r = logp / old_logp.detach()
    return -_masked_mean(torch.minimum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages), mask)


def clip_sum(logp, old_logp, advantages, eps, mask=None):
    r = (logp - old_logp.detach()).exp()
    obj = torch.minimum(r * advantages, r.clamp(1 - eps, 1 + eps) * advantages)
    return -(obj if mask is None else obj[mask]).sum()


@pytest.mark.parametrize("mutant", [
    clip_min_max_swapped, clip_not_detached, clip_only_clipped_term, clip_ratio_inverted, clip_advantage_clipped,
    clip_objective_not_loss, clip_ignores_mask, clip_mask_zeroes_but_divides_by_all,
    clip_ratio_of_probabilities_not_logs, clip_sum,
])
def test_clip_check_rejects_mutants_on_visible_cases(mutant):
    with pytest.raises(AssertionError):
        checks.check_ppo_clip_loss(mutant)


def test_clip_check_accepts_the_library_loss(capsys):
    checks.check_ppo_clip_loss(losses.ppo_clip_loss, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_clip_check_explains_the_detach():
    with pytest.raises(AssertionError, match="detach"):
        checks.check_ppo_clip_loss(clip_not_detached)


def test_clip_check_names_the_notes_example_for_swapped_min():
    with pytest.raises(AssertionError, match="notes' example"):
        checks.check_ppo_clip_loss(clip_min_max_swapped)


# ---------------------------------------------------------------- adaptive_kl_beta
def beta_reversed(beta, kl, target):
    if kl < target / 1.5:
        return beta * 2
    if kl > target * 1.5:
        return beta / 2
    return beta


def beta_thresholds_at_target(beta, kl, target):
    if kl < target:
        return beta / 2
    if kl > target:
        return beta * 2
    return beta


def beta_factor_one_and_a_half(beta, kl, target):
    if kl < target / 1.5:
        return beta / 1.5
    if kl > target * 1.5:
        return beta * 1.5
    return beta


def beta_never_decreases(beta, kl, target):
    return beta * 2 if kl > 1.5 * target else beta


def beta_kl_instead_of_beta(beta, kl, target):
    return losses.adaptive_kl_beta(kl if kl > 0 else 1.0, kl, target)


@pytest.mark.parametrize("mutant", [
    beta_reversed, beta_thresholds_at_target, beta_factor_one_and_a_half, beta_never_decreases, beta_kl_instead_of_beta,
])
def test_beta_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_adaptive_kl_beta(mutant)


def test_beta_check_accepts_the_library_rule():
    checks.check_adaptive_kl_beta(losses.adaptive_kl_beta, hidden=True)
