"""The exercise-10 checks accept the library's kernels and reject plausible mistakes, saying which."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import gpt
from course_lib.checks import ch10 as checks


# ---------------------------------------------------------------- sequence_logprobs
def _no_shift(model, input_ids, attention_mask):
    # Off by one: the logits at t are scored against token t itself.
    logits = model(input_ids, attention_mask=attention_mask)
    lp = torch.log_softmax(logits, -1).gather(-1, input_ids[..., None]).squeeze(-1)
    return lp * attention_mask


def _shift_the_wrong_way(model, input_ids, attention_mask):
    logits = model(input_ids, attention_mask=attention_mask)
    lp = torch.log_softmax(logits[:, 1:], -1).gather(-1, input_ids[:, :-1, None]).squeeze(-1)
    return F.pad(lp, (1, 0)) * attention_mask


def _forgot_the_mask(model, input_ids, attention_mask):
    logits = model(input_ids, attention_mask=attention_mask)
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return F.pad(lp, (1, 0))


def _mask_not_given_to_the_model(model, input_ids, attention_mask):
    # Left-padded rows then see the pads and get shifted positions.
    logits = model(input_ids)
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return F.pad(lp, (1, 0)) * attention_mask * F.pad(attention_mask[:, :-1], (1, 0))


def _masks_only_the_token(model, input_ids, attention_mask):
    # Scores the first real token after left padding, which has no real context.
    logits = model(input_ids, attention_mask=attention_mask)
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return F.pad(lp * attention_mask[:, 1:], (1, 0))


def _probabilities_not_logs(model, input_ids, attention_mask):
    return gpt.sequence_logprobs(model, input_ids, attention_mask).exp() * attention_mask


def _short_by_one(model, input_ids, attention_mask):
    return gpt.sequence_logprobs(model, input_ids, attention_mask)[:, 1:]


def _detached(model, input_ids, attention_mask):
    with torch.no_grad():
        return gpt.sequence_logprobs(model, input_ids, attention_mask)


def _summed(model, input_ids, attention_mask):
    return gpt.sequence_logprobs(model, input_ids, attention_mask).sum(dim=1)


LOGPROB_MUTANTS = [_no_shift, _shift_the_wrong_way, _forgot_the_mask, _mask_not_given_to_the_model,
                   _masks_only_the_token, _probabilities_not_logs, _short_by_one, _detached, _summed]


@pytest.mark.parametrize("mutant", LOGPROB_MUTANTS, ids=lambda f: f.__name__)
def test_logprobs_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_sequence_logprobs(mutant)


def test_logprobs_check_accepts_the_kernel(capsys):
    checks.check_sequence_logprobs(gpt.sequence_logprobs)
    checks.check_sequence_logprobs(gpt.sequence_logprobs, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_logprobs_check_names_the_mistake():
    with pytest.raises(AssertionError, match="off-by-one"):
        checks.check_sequence_logprobs(_no_shift)
    with pytest.raises(AssertionError, match=r"(?s)case 'completions that ended early.*multiply by the mask"):
        checks.check_sequence_logprobs(_forgot_the_mask)
    with pytest.raises(AssertionError, match=r"shape \(B, T\)"):
        checks.check_sequence_logprobs(_short_by_one)
    with pytest.raises(AssertionError, match="no gradient"):
        checks.check_sequence_logprobs(_detached)
    with pytest.raises(AssertionError, match="forget `return`"):
        checks.check_sequence_logprobs(lambda model, input_ids, attention_mask: None)


def test_the_loop_reference_by_hand():
    # A "model" that ignores its input: every position predicts softmax([0, ln 3]) over V = 2 ... padded to 13.
    model = checks.tiny_policy(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.ln_f.bias[0] = 1.0  # hidden state e_0 at every position
        model.transformer.wte.weight[4, 0] = 2.0  # so token 4 gets logit 2, every other token 0
    ids = torch.tensor([[1, 4, 5]])
    got = checks._logprobs_loop(model, ids, torch.ones_like(ids))
    log_norm = torch.log(torch.tensor(12.0 + torch.e**2)).item()
    assert torch.allclose(got, torch.tensor([[0.0, 2.0 - log_norm, -log_norm]]), atol=1e-5)


# ---------------------------------------------------------------- sample_next_token
def _temperature_multiplies(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return gpt.sample_next_token(logits * temperature * temperature, 1.0, top_k, generator)


def _ignores_temperature(logits, temperature=1.0, top_k=None, generator=None):
    return gpt.sample_next_token(logits, 0.0 if temperature == 0 else 1.0, top_k, generator)


def _ignores_top_k(logits, temperature=1.0, top_k=None, generator=None):
    return gpt.sample_next_token(logits, temperature, None, generator)


def _keeps_the_smallest(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    z = logits / temperature
    if top_k is not None:
        kth = torch.topk(z, top_k, largest=False).values[:, -1:]
        z = z.masked_fill(z > kth, float("-inf"))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(-1)


def _top_k_plus_one(logits, temperature=1.0, top_k=None, generator=None):
    k = None if top_k is None else min(top_k + 1, logits.shape[-1])
    return gpt.sample_next_token(logits, temperature, k, generator)


def _masks_with_zero(logits, temperature=1.0, top_k=None, generator=None):
    # Sets the dropped logits to 0 instead of -inf: they keep probability.
    if temperature == 0:
        return logits.argmax(-1)
    z = logits / temperature
    if top_k is not None:
        kth = torch.topk(z, top_k).values[:, -1:]
        z = z.masked_fill(z < kth, 0.0)
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(-1)


def _greedy_is_argmin(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmin(-1)
    return gpt.sample_next_token(logits, temperature, top_k, generator)


def _keeps_a_column(logits, temperature=1.0, top_k=None, generator=None):
    return gpt.sample_next_token(logits, temperature, top_k, generator)[:, None]


def _always_greedy(logits, temperature=1.0, top_k=None, generator=None):
    return logits.argmax(-1)


def _uniform_over_top_k(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    z = torch.zeros_like(logits)
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[:, -1:]
        z = z.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(-1)


SAMPLING_MUTANTS = [_temperature_multiplies, _ignores_temperature, _ignores_top_k, _keeps_the_smallest,
                    _top_k_plus_one, _masks_with_zero, _greedy_is_argmin, _keeps_a_column, _always_greedy,
                    _uniform_over_top_k]


@pytest.mark.parametrize("mutant", SAMPLING_MUTANTS, ids=lambda f: f.__name__)
def test_sampling_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_sample_next_token(mutant)


def test_sampling_check_accepts_the_kernel(capsys):
    checks.check_sample_next_token(gpt.sample_next_token)
    checks.check_sample_next_token(gpt.sample_next_token, hidden=True)
    assert "pass" in capsys.readouterr().out


def test_sampling_check_accepts_other_correct_samplers():
    # Categorical instead of multinomial, and no generator: still right in distribution.
    def via_categorical(logits, temperature=1.0, top_k=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1)
        z = logits / temperature
        if top_k is not None:
            z = z.masked_fill(z < torch.topk(z, top_k).values[:, -1:], float("-inf"))
        return torch.distributions.Categorical(logits=z).sample()

    torch.manual_seed(0)
    checks.check_sample_next_token(via_categorical, hidden=True)


def test_sampling_check_messages():
    def off_by_one_above_one(logits, temperature=1.0, top_k=None, generator=None):
        k = top_k + 1 if top_k is not None and top_k > 1 else top_k
        return gpt.sample_next_token(logits, temperature, k, generator)

    with pytest.raises(AssertionError, match=r"case 'top_k = 3 at temperature 1': token \d is not among the top 3"):
        checks.check_sample_next_token(off_by_one_above_one)
    with pytest.raises(AssertionError, match=r"case 'temperature 0 is greedy.*argmax"):
        checks.check_sample_next_token(_greedy_is_argmin)
    with pytest.raises(AssertionError, match=r"case 'temperature 0.5.*token \d.*expected"):
        checks.check_sample_next_token(_ignores_temperature)
