"""The exercise-13 checks accept the library's kernels and reject plausible mistakes, saying which."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import grpo, losses
from course_lib.checks import ch13 as checks


# ---------------------------------------------------------------- group_advantages
def _correct_advantages(rewards, group_size, eps=1e-4):
    return grpo.group_advantages(rewards, group_size, eps=eps)


def _whole_batch(rewards, group_size, eps=1e-4):
    return (rewards - rewards.mean()) / (rewards.std(correction=0) + eps)


def _no_eps(rewards, group_size, eps=1e-4):
    g = rewards.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / g.std(1, keepdim=True, correction=0)).reshape(-1)


def _sample_std(rewards, group_size, eps=1e-4):
    g = rewards.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).reshape(-1)


def _interleaved_groups(rewards, group_size, eps=1e-4):
    g = rewards.reshape(group_size, -1)
    return ((g - g.mean(0)) / (g.std(0, correction=0) + eps)).reshape(-1)


def _only_centred(rewards, group_size, eps=1e-4):
    g = rewards.reshape(-1, group_size)
    return (g - g.mean(1, keepdim=True)).reshape(-1)


def _batch_std(rewards, group_size, eps=1e-4):
    # Centres each group but divides by the std of the whole batch.
    g = rewards.reshape(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (rewards.std(correction=0) + eps)).reshape(-1)


def _per_group_mean_only_of_first(rewards, group_size, eps=1e-4):
    # Uses the first group's statistics for every group.
    g = rewards.reshape(-1, group_size)
    return ((g - g[0].mean()) / (g[0].std(correction=0) + eps)).reshape(-1)


ADVANTAGE_MUTANTS = [_whole_batch, _no_eps, _sample_std, _interleaved_groups, _only_centred,
                     _batch_std, _per_group_mean_only_of_first]


@pytest.mark.parametrize("mutant", ADVANTAGE_MUTANTS, ids=lambda f: f.__name__)
def test_advantage_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_group_advantages(mutant)


def test_advantage_check_accepts_the_kernel(capsys):
    checks.check_group_advantages(_correct_advantages)
    checks.check_group_advantages(_correct_advantages, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_advantage_check_names_the_mistake():
    with pytest.raises(AssertionError, match="whole batch"):
        checks.check_group_advantages(_whole_batch)
    with pytest.raises(AssertionError, match="std 0"):
        checks.check_group_advantages(_no_eps)
    with pytest.raises(AssertionError, match="population std"):
        checks.check_group_advantages(_sample_std)
    with pytest.raises(AssertionError, match="contiguous"):
        checks.check_group_advantages(_interleaved_groups)
    with pytest.raises(AssertionError, match="did not divide"):
        checks.check_group_advantages(_only_centred)
    with pytest.raises(AssertionError, match="forget `return`"):
        checks.check_group_advantages(lambda rewards, group_size, eps=1e-4: None)


# ---------------------------------------------------------------- kl_k3
def _inverted(logp, ref_logp):
    return losses.kl_k3(ref_logp, logp)


def _k1(logp, ref_logp):
    return logp - ref_logp


def _no_minus_one(logp, ref_logp):
    x = ref_logp - logp
    return x.exp() - x


def _k2(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def _summed_over_tokens(logp, ref_logp):
    return losses.kl_k3(logp, ref_logp).sum(-1)


def _probabilities_minus(logp, ref_logp):
    return (logp.exp() - ref_logp.exp()).abs()


K3_MUTANTS = [_inverted, _k1, _no_minus_one, _k2, _summed_over_tokens, _probabilities_minus]


@pytest.mark.parametrize("mutant", K3_MUTANTS, ids=lambda f: f.__name__)
def test_k3_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_kl_k3(mutant)


def test_k3_check_accepts_the_kernel(capsys):
    checks.check_kl_k3(losses.kl_k3)
    checks.check_kl_k3(losses.kl_k3, hidden=True)
    assert "exact KL" in capsys.readouterr().out


def test_k3_check_names_the_mistake():
    with pytest.raises(AssertionError, match="inverted"):
        checks.check_kl_k3(_inverted)
    with pytest.raises(AssertionError, match="k1"):
        checks.check_kl_k3(_k1)
    with pytest.raises(AssertionError, match="forgot the - 1"):
        checks.check_kl_k3(_no_minus_one)


# ---------------------------------------------------------------- sequence_mean
def _summed_over_padding(per_token, mask):
    return per_token.mean(-1).mean()


def _divided_by_T(per_token, mask):
    return ((per_token * mask).sum(-1) / per_token.shape[-1]).mean()


def _token_mean(per_token, mask):
    return grpo.token_mean(per_token, mask)


def _summed_not_averaged(per_token, mask):
    return (per_token * mask).sum(-1).mean()


def _detached_mean(per_token, mask):
    return grpo.sequence_mean(per_token, mask).detach()


def _nan_for_empty_rows_dropped_lengths(per_token, mask):
    return ((per_token * mask).sum(-1) / mask.sum(-1)).sum() / mask.shape[0] * 0.999


SEQUENCE_MUTANTS = [_summed_over_padding, _divided_by_T, _token_mean, _summed_not_averaged, _detached_mean,
                    _nan_for_empty_rows_dropped_lengths]


@pytest.mark.parametrize("mutant", SEQUENCE_MUTANTS, ids=lambda f: f.__name__)
def test_sequence_mean_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_sequence_mean(mutant)


def test_sequence_mean_check_accepts_the_kernel(capsys):
    checks.check_sequence_mean(grpo.sequence_mean)
    checks.check_sequence_mean(grpo.sequence_mean, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_sequence_mean_check_names_the_mistake():
    with pytest.raises(AssertionError, match="padding entries were counted"):
        checks.check_sequence_mean(_summed_over_padding)
    with pytest.raises(AssertionError, match="its own length"):
        checks.check_sequence_mean(_divided_by_T)
    with pytest.raises(AssertionError, match="token mean"):
        checks.check_sequence_mean(_token_mean)
    with pytest.raises(AssertionError, match="no gradient"):
        checks.check_sequence_mean(_detached_mean)


def test_loop_references_by_hand():
    adv = checks._advantages_loop([1.0, 0.0, 2.0, 2.0], 2, 0.0 + 1e-12)
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-6)
    assert checks._sequence_mean_loop([[1.0, 1.0, 1.0, 1.0], [4.0, 9.0, 9.0, 9.0]], [[1, 1, 1, 1], [1, 0, 0, 0]]) == 2.5
    k3 = checks._k3_loop([math.log(0.5)], [math.log(0.25)])[0]  # r = 0.5
    assert abs(k3 - (0.5 - math.log(0.5) - 1)) < 1e-12
