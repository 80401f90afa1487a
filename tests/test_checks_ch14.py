"""The exercise-14 checks accept the library's kernels and reject plausible mistakes, saying which."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import ch14 as checks
from course_lib.dpo import completion_logprobs
from course_lib.losses import dpo_loss


# ---------------------------------------------------------------- completion_logprobs
def _summed_over_padding(token_logps, completion_mask):
    return token_logps.sum(dim=-1)


def _mean_not_sum(token_logps, completion_mask):
    m = completion_mask.to(token_logps.dtype)
    return (token_logps * m).sum(-1) / m.sum(-1).clamp(min=1)


def _inverted_mask(token_logps, completion_mask):
    return (token_logps * (1 - completion_mask.to(token_logps.dtype))).sum(-1)


def _mask_shifted_by_one(token_logps, completion_mask):
    m = F.pad(completion_mask[:, 1:], (0, 1)).to(token_logps.dtype)
    return (token_logps * m).sum(-1)


def _per_token_not_summed(token_logps, completion_mask):
    return token_logps * completion_mask


def _detached_sum(token_logps, completion_mask):
    return (token_logps * completion_mask).sum(-1).detach()


def _probabilities_multiplied(token_logps, completion_mask):
    # Multiplies probabilities, then logs: right in exact arithmetic but here forgets the masked ones count as 1.
    return torch.log((token_logps.exp() * completion_mask).prod(-1).clamp(min=1e-300))


COMPLETION_MUTANTS = [_summed_over_padding, _mean_not_sum, _inverted_mask, _mask_shifted_by_one,
                      _per_token_not_summed, _detached_sum, _probabilities_multiplied]


@pytest.mark.parametrize("mutant", COMPLETION_MUTANTS, ids=lambda f: f.__name__)
def test_completion_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_completion_logprobs(mutant)


def test_completion_check_accepts_the_kernel(capsys):
    checks.check_completion_logprobs(completion_logprobs)
    checks.check_completion_logprobs(completion_logprobs, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_completion_check_names_the_mistake():
    with pytest.raises(AssertionError, match="prompt and the padding included"):
        checks.check_completion_logprobs(_summed_over_padding)
    with pytest.raises(AssertionError, match="SUM"):
        checks.check_completion_logprobs(_mean_not_sum)
    with pytest.raises(AssertionError, match=r"shape \(B,\)"):
        checks.check_completion_logprobs(_per_token_not_summed)
    with pytest.raises(AssertionError, match="no gradient"):
        checks.check_completion_logprobs(_detached_sum)
    with pytest.raises(AssertionError, match="forget `return`"):
        checks.check_completion_logprobs(lambda token_logps, completion_mask: None)


# ---------------------------------------------------------------- dpo_loss
def _beta_on_chosen_only(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - rc) - (pr - rr)).mean()


def _beta_on_rejected_only(pc, pr, rc, rr, beta):
    return -F.logsigmoid((pc - rc) - beta * (pr - rr)).mean()


def _swapped(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()


def _no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)).mean()


def _unstable_log_sigmoid(pc, pr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


def _unstable_clamped(pc, pr, rc, rr, beta):
    # A common "fix" of the unstable form: clamping keeps it finite but gives the wrong loss and zero gradient far out.
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))).clamp(min=1e-8)).mean()


def _sign_flipped(pc, pr, rc, rr, beta):
    return F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def _summed_over_pairs(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()


def _no_beta(pc, pr, rc, rr, beta):
    return -F.logsigmoid((pc - rc) - (pr - rr)).mean()


def _beta_divides(pc, pr, rc, rr, beta):
    return -F.logsigmoid(((pc - rc) - (pr - rr)) / beta).mean()


def _reference_added(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc + rc) - (pr + rr))).mean()


def _per_pair_not_mean(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def _detached(pc, pr, rc, rr, beta):
    return dpo_loss(pc.detach(), pr.detach(), rc, rr, beta)


def _sigmoid_not_log(pc, pr, rc, rr, beta):
    return (1 - torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


DPO_MUTANTS = [_beta_on_chosen_only, _beta_on_rejected_only, _swapped, _no_reference, _unstable_log_sigmoid,
               _unstable_clamped, _sign_flipped, _summed_over_pairs, _no_beta, _beta_divides, _reference_added,
               _per_pair_not_mean, _detached, _sigmoid_not_log]


@pytest.mark.parametrize("mutant", DPO_MUTANTS, ids=lambda f: f.__name__)
def test_dpo_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_dpo_loss(mutant)


def test_dpo_check_accepts_the_kernel(capsys):
    checks.check_dpo_loss(dpo_loss)
    checks.check_dpo_loss(dpo_loss, hidden=True)
    assert "pass" in capsys.readouterr().out


@pytest.mark.parametrize("mutant, message", [
    (_swapped, "swapped"),
    (_beta_on_chosen_only, "only one side"),
    (_beta_on_rejected_only, "only one side"),
    (_no_reference, "reference log-probs are not subtracted"),
    (_unstable_log_sigmoid, "logsigmoid"),
    (_sign_flipped, "sign is flipped"),
    (_summed_over_pairs, "take the mean"),
    (_no_beta, "beta is missing"),
    (_per_pair_not_mean, "scalar"),
    (_detached, "no gradient"),
])
def test_dpo_check_names_the_mistake(mutant, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_dpo_loss(mutant)


def test_dpo_loop_reference_by_hand():
    # one pair: chosen up 0.5 nats, rejected down 0.5 nats, beta 0.5 -> h = 0.5
    got = checks._dpo_loop([-2.0], [-3.0], [-2.5], [-2.5], 0.5)
    assert abs(float(got) - 0.47407698418010663) < 1e-12
    assert abs(checks._neg_log_sigmoid(-800.0) - 800.0) < 1e-9 and checks._neg_log_sigmoid(800.0) < 1e-300
