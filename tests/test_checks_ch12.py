"""The exercise-12 checks accept the library's kernels and reject the usual RLHF mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib import rlhf
from course_lib.checks import ch12 as checks
from course_lib.gpt import entropy_from_logits, token_logprobs
from course_lib.losses import masked_mean
from course_lib.returns import gae


# ---------------------------------------------------------------- kl_penalty_rewards
def _score_on_last_column(logp, ref_logp, scores, mask, beta):
    out = -beta * (logp - ref_logp) * mask
    out[:, -1] += scores  # the padding token of a short completion gets the score
    return out


def _score_after_last_token(logp, ref_logp, scores, mask, beta):
    out = -beta * (logp - ref_logp) * mask
    last = mask.sum(dim=1).clamp(max=mask.shape[1] - 1)  # off by one: the first pad, not the <eos>
    out[torch.arange(len(scores)), last] += scores
    return out


def _kl_not_masked(logp, ref_logp, scores, mask, beta):
    return -beta * (logp - ref_logp) + scores[:, None] * rlhf.last_token_mask(mask)


def _kl_sign_flipped(logp, ref_logp, scores, mask, beta):
    return rlhf.kl_penalty_rewards(ref_logp, logp, scores, mask, beta)


def _score_on_every_token(logp, ref_logp, scores, mask, beta):
    return (-beta * (logp - ref_logp) + scores[:, None]) * mask


def _beta_on_the_score(logp, ref_logp, scores, mask, beta):
    return -beta * ((logp - ref_logp) * mask - scores[:, None] * rlhf.last_token_mask(mask))


def _score_on_first_token(logp, ref_logp, scores, mask, beta):
    out = -beta * (logp - ref_logp) * mask
    out[:, 0] += scores
    return out


KL_MUTANTS = [_score_on_last_column, _score_after_last_token, _kl_not_masked, _kl_sign_flipped, _score_on_every_token,
              _beta_on_the_score, _score_on_first_token]


@pytest.mark.parametrize("mutant", KL_MUTANTS, ids=lambda f: f.__name__)
def test_kl_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_kl_penalty_rewards(mutant)


def test_kl_check_accepts_the_kernel(capsys):
    checks.check_kl_penalty_rewards(rlhf.kl_penalty_rewards)
    checks.check_kl_penalty_rewards(rlhf.kl_penalty_rewards, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_kl_check_names_the_padding_mistake():
    with pytest.raises(AssertionError, match="last column"):
        checks.check_kl_penalty_rewards(_score_on_last_column)
    with pytest.raises(AssertionError, match="off by one"):
        checks.check_kl_penalty_rewards(_score_after_last_token)


# ---------------------------------------------------------------- score_rollout
def _score_rollout(policy, reference, critic, rollout, beta, gamma, lam, *, ref_model=None, value_slice=None,
                   logp_slice=None, dones=True, mask_values=True):
    P, m = rollout.prompt_length, rollout.completion_mask
    ids, att = rollout.ids, rollout.attention_mask
    logp_slice = logp_slice or slice(P - 1, -1)
    value_slice = value_slice or slice(P - 1, -1)
    with torch.no_grad():
        targets = ids[:, P:]
        old_logp = token_logprobs(policy(ids, attention_mask=att)[:, logp_slice], targets) * m
        ref_logp = token_logprobs((ref_model or reference)(ids, attention_mask=att)[:, logp_slice], targets) * m
        values = critic.values(ids, attention_mask=att)[:, value_slice]
        if mask_values:
            values = values * m
        rewards = rlhf.kl_penalty_rewards(old_logp, ref_logp, rollout.scores, m, beta)
        v_next = torch.nn.functional.pad(values, (0, 1))
        adv = gae(rewards, v_next, gamma, lam, dones=rlhf.last_token_mask(m) if dones else None) * m
    return old_logp, rewards, adv, (adv + values) * m


def _correct_score_rollout(*args):
    return _score_rollout(*args)


def _library_score_rollout(policy, reference, critic, rollout, beta, gamma, lam):
    P, m = rollout.prompt_length, rollout.completion_mask
    with torch.no_grad():
        old_logp, _ = rlhf.completion_logprobs_and_entropy(policy, rollout.ids, rollout.attention_mask, P)
        ref_logp, _ = rlhf.completion_logprobs_and_entropy(reference, rollout.ids, rollout.attention_mask, P)
        values = rlhf.completion_values(critic, rollout.ids, rollout.attention_mask, P)
        rewards = rlhf.kl_penalty_rewards(old_logp, ref_logp, rollout.scores, m, beta)
        adv, ret = rlhf.token_advantages(rewards, values, m, gamma, lam)
    return old_logp * m, rewards, adv, ret


def _kl_against_old_policy(policy, reference, critic, rollout, beta, gamma, lam):
    return _score_rollout(policy, reference, critic, rollout, beta, gamma, lam, ref_model=policy)


def _values_one_token_late(policy, reference, critic, rollout, beta, gamma, lam):
    P = rollout.prompt_length
    return _score_rollout(policy, reference, critic, rollout, beta, gamma, lam, value_slice=slice(P, None))


def _logprobs_one_token_late(policy, reference, critic, rollout, beta, gamma, lam):
    # logits at position P + t score token P + t + 1: the boundary is crossed the wrong way.
    P = rollout.prompt_length
    out = list(_score_rollout(policy, reference, critic, rollout, beta, gamma, lam))
    with torch.no_grad():
        logits = policy(rollout.ids, attention_mask=rollout.attention_mask)[:, P:]
        out[0] = token_logprobs(logits, rollout.ids[:, P:]) * rollout.completion_mask
    return tuple(out)


def _gae_over_prompt_and_completion(policy, reference, critic, rollout, beta, gamma, lam):
    # Advantages over the whole sequence: the prompt's values and the padding leak into the completion's.
    P, m = rollout.prompt_length, rollout.completion_mask
    with torch.no_grad():
        old_logp, rewards, _, _ = _score_rollout(policy, reference, critic, rollout, beta, gamma, lam)
        values = critic.values(rollout.ids, attention_mask=rollout.attention_mask)  # (B, P + T)
        full_rewards = torch.nn.functional.pad(rewards, (P, 0))
        adv = gae(full_rewards, torch.nn.functional.pad(values, (0, 1)), gamma, lam)[:, P:] * m
    return old_logp, rewards, adv, (adv + values[:, P - 1 : -1]) * m


def _no_done_at_the_end(policy, reference, critic, rollout, beta, gamma, lam):
    return _score_rollout(policy, reference, critic, rollout, beta, gamma, lam, dones=False, mask_values=False)


def _advantages_not_masked(policy, reference, critic, rollout, beta, gamma, lam):
    old_logp, rewards, adv, ret = _score_rollout(policy, reference, critic, rollout, beta, gamma, lam, dones=True,
                                                 mask_values=False)
    P = rollout.prompt_length
    with torch.no_grad():
        values = critic.values(rollout.ids, attention_mask=rollout.attention_mask)[:, P - 1 : -1]
        adv = gae(rewards, torch.nn.functional.pad(values, (0, 1)), gamma, lam, dones=rlhf.last_token_mask(rollout.completion_mask))
    return old_logp, rewards, adv, adv + values


def _with_gradients(policy, reference, critic, rollout, beta, gamma, lam):
    P, m = rollout.prompt_length, rollout.completion_mask
    old_logp = token_logprobs(policy(rollout.ids, attention_mask=rollout.attention_mask)[:, P - 1 : -1], rollout.ids[:, P:]) * m
    _, rewards, adv, ret = _score_rollout(policy, reference, critic, rollout, beta, gamma, lam)
    return old_logp, rewards, adv, ret


def _returns_are_the_advantages(policy, reference, critic, rollout, beta, gamma, lam):
    old_logp, rewards, adv, _ = _score_rollout(policy, reference, critic, rollout, beta, gamma, lam)
    return old_logp, rewards, adv, adv


def _whitened_advantages(policy, reference, critic, rollout, beta, gamma, lam):
    old_logp, rewards, adv, ret = _score_rollout(policy, reference, critic, rollout, beta, gamma, lam)
    return old_logp, rewards, rlhf.masked_whiten(adv, rollout.completion_mask), ret


SCORE_MUTANTS = [_kl_against_old_policy, _values_one_token_late, _logprobs_one_token_late, _gae_over_prompt_and_completion,
                 _no_done_at_the_end, _advantages_not_masked, _with_gradients, _returns_are_the_advantages,
                 _whitened_advantages]


@pytest.mark.parametrize("mutant", SCORE_MUTANTS, ids=lambda f: f.__name__)
def test_score_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_score_rollout(mutant)


@pytest.mark.parametrize("good", [_correct_score_rollout, _library_score_rollout], ids=lambda f: f.__name__)
def test_score_check_accepts_correct_versions(good, capsys):
    checks.check_score_rollout(good)
    checks.check_score_rollout(good, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_score_check_names_the_old_policy_mistake():
    with pytest.raises(AssertionError, match="against the policy itself"):
        checks.check_score_rollout(_kl_against_old_policy)


# ---------------------------------------------------------------- ppo_losses
def _ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef, *, loss_mask=None, value_mask=True,
                shift=None, value_max=True, ratio_sign=1.0, detach_values=False):
    P, m = rollout.prompt_length, rollout.completion_mask
    ids, att = rollout.ids, rollout.attention_mask
    shift = shift or slice(P - 1, -1)
    logits = policy(ids, attention_mask=att)[:, shift]
    logp = token_logprobs(logits, ids[:, P:])
    mask = m if loss_mask is None else loss_mask
    ratio = torch.exp(ratio_sign * (logp - rollout.old_logp))
    surrogate = torch.minimum(ratio * rollout.advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * rollout.advantages)
    policy_loss = -masked_mean(surrogate, mask) - entropy_coef * masked_mean(entropy_from_logits(logits), mask)
    values = critic.values(ids, attention_mask=att)[:, P - 1 : -1]
    if detach_values:
        values = values.detach()
    clipped = rollout.old_values + (values - rollout.old_values).clamp(-value_clip, value_clip)
    combine = torch.maximum if value_max else torch.minimum
    per_token = 0.5 * combine((values - rollout.returns) ** 2, (clipped - rollout.returns) ** 2)
    value_loss = masked_mean(per_token, m) if value_mask else per_token.mean()
    return policy_loss, value_loss


def _correct_losses(*args):
    return _ppo_losses(*args)


def _library_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    P, m = rollout.prompt_length, rollout.completion_mask
    logp, entropy = rlhf.completion_logprobs_and_entropy(policy, rollout.ids, rollout.attention_mask, P)
    from course_lib.losses import ppo_clip_loss

    policy_loss = ppo_clip_loss(logp, rollout.old_logp, rollout.advantages, clip_eps, m) - entropy_coef * masked_mean(entropy, m)
    values = rlhf.completion_values(critic, rollout.ids, rollout.attention_mask, P)
    return policy_loss, rlhf.clipped_value_loss(values, rollout.old_values, rollout.returns, m, value_clip)


def _value_loss_not_masked(*args):
    return _ppo_losses(*args, value_mask=False)


def _prompt_tokens_in_the_loss(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    # Averaging over the attention mask's last T columns shifted by the prompt: here simply the whole (B, T) grid.
    return _ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef,
                       loss_mask=torch.ones_like(rollout.completion_mask))


def _logits_one_late(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    return _ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef, shift=slice(rollout.prompt_length, None))


def _value_min_instead_of_max(*args):
    return _ppo_losses(*args, value_max=False)


def _ratio_inverted(*args):
    return _ppo_losses(*args, ratio_sign=-1.0)


def _values_detached(*args):
    return _ppo_losses(*args, detach_values=True)


def _no_entropy_bonus(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    return _ppo_losses(policy, critic, rollout, clip_eps, value_clip, 0.0)


def _no_half(*args):
    p, v = _ppo_losses(*args)
    return p, 2 * v


LOSS_MUTANTS = [_value_loss_not_masked, _prompt_tokens_in_the_loss, _logits_one_late, _value_min_instead_of_max,
                _ratio_inverted, _values_detached, _no_entropy_bonus, _no_half]


@pytest.mark.parametrize("mutant", LOSS_MUTANTS, ids=lambda f: f.__name__)
def test_losses_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_ppo_losses(mutant)


@pytest.mark.parametrize("good", [_correct_losses, _library_losses], ids=lambda f: f.__name__)
def test_losses_check_accepts_correct_versions(good, capsys):
    checks.check_ppo_losses(good)
    checks.check_ppo_losses(good, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_losses_check_names_the_unmasked_value_loss():
    with pytest.raises(AssertionError, match="value_loss.*real completion tokens"):
        checks.check_ppo_losses(_value_loss_not_masked)
