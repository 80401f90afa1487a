"""The exercise-8 checks accept correct code and reject plausible mistakes, with a useful message."""

import numpy as np
import pytest
import torch

from course_lib import trpo
from course_lib.checks import ch08 as checks


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- surrogate_objective
def _logp(logits, actions):
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def surrogate_correct(logits, old_logits, actions, advantages):
    return ((_logp(logits, actions) - _logp(old_logits.detach(), actions)).exp() * advantages).mean()


def surrogate_not_detached(logits, old_logits, actions, advantages):
    return ((_logp(logits, actions) - _logp(old_logits, actions)).exp() * advantages).mean()


def surrogate_action_zero(logits, old_logits, actions, advantages):
    # The ratio of the probabilities of action 0, whatever was taken.
    zeros = torch.zeros_like(actions)
    return surrogate_correct(logits, old_logits, zeros, advantages)


def surrogate_greedy_action(logits, old_logits, actions, advantages):
    # The ratio of the most likely action under the old policy instead of the one taken.
    return surrogate_correct(logits, old_logits, old_logits.argmax(-1), advantages)


def surrogate_gather_wrong_axis(logits, old_logits, actions, advantages):
    # Gathers along the sample axis: the probabilities of other samples' actions.
    idx = actions.clamp(max=logits.shape[-2] - 1) if logits.dim() > 1 else actions
    lp = torch.log_softmax(logits, -1)
    olp = torch.log_softmax(old_logits.detach(), -1)
    pick = lambda x: x.gather(-2, idx.unsqueeze(-1).expand(*idx.shape, x.shape[-1]))[..., 0]  # noqa: E731
    return ((pick(lp) - pick(olp)).exp() * advantages).mean()


def surrogate_unnormalised(logits, old_logits, actions, advantages):
    # Logits used as if they were log-probabilities.
    pick = lambda x: x.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    return ((pick(logits) - pick(old_logits.detach())).exp() * advantages).mean()


def surrogate_inverted(logits, old_logits, actions, advantages):
    return ((_logp(old_logits.detach(), actions) - _logp(logits, actions)).exp() * advantages).mean()


def surrogate_whole_distribution(logits, old_logits, actions, advantages):
    # Ratio of full distributions summed over actions, ignoring which action was taken.
    ratio = torch.softmax(logits, -1) / torch.softmax(old_logits.detach(), -1)
    return (ratio.mean(-1) * advantages).mean()


def surrogate_sum(logits, old_logits, actions, advantages):
    return ((_logp(logits, actions) - _logp(old_logits.detach(), actions)).exp() * advantages).sum()


def surrogate_numpy(logits, old_logits, actions, advantages):
    return surrogate_correct(logits, old_logits, actions, advantages).item()


@pytest.mark.parametrize("mutant", [
    surrogate_not_detached, surrogate_action_zero, surrogate_greedy_action, surrogate_gather_wrong_axis,
    surrogate_unnormalised, surrogate_inverted, surrogate_whole_distribution, surrogate_sum, surrogate_numpy,
])
def test_surrogate_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_surrogate_objective(mutant, hidden=True)


def test_surrogate_check_rejects_mutants_on_visible_cases():
    # The mistakes the exercise names must be caught before the hidden tests.
    for mutant in (surrogate_not_detached, surrogate_action_zero, surrogate_greedy_action, surrogate_unnormalised):
        with pytest.raises(AssertionError):
            checks.check_surrogate_objective(mutant)


def test_surrogate_check_accepts_correct_code_and_explains_detach(capsys):
    checks.check_surrogate_objective(surrogate_correct, hidden=True)
    assert "pass" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="detach"):
        checks.check_surrogate_objective(surrogate_not_detached)


# ---------------------------------------------------------------- categorical_kl
def kl_reversed(logits_p, logits_q):
    return trpo.categorical_kl(logits_q, logits_p)


def kl_unnormalised(logits_p, logits_q):
    p = torch.softmax(logits_p, -1)
    return (p * (logits_p - logits_q)).sum(-1)


def kl_mean_over_actions(logits_p, logits_q):
    lp, lq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (lp.exp() * (lp - lq)).mean(-1)


def kl_wrong_axis(logits_p, logits_q):
    lp, lq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (lp.exp() * (lp - lq)).sum(0)


def kl_log_ratio_only(logits_p, logits_q):
    # Forgets to weight by p: the plain sum of log-ratios.
    return (torch.log_softmax(logits_p, -1) - torch.log_softmax(logits_q, -1)).sum(-1)


@pytest.mark.parametrize("mutant", [kl_reversed, kl_unnormalised, kl_mean_over_actions, kl_wrong_axis, kl_log_ratio_only])
def test_kl_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_categorical_kl(mutant)


def test_kl_check_accepts_the_library_kernel():
    checks.check_categorical_kl(trpo.categorical_kl, hidden=True)


def test_kl_check_names_the_state():
    with pytest.raises(AssertionError, match=r"case '.*'.*expected .* got"):
        checks.check_categorical_kl(kl_reversed)


# ---------------------------------------------------------------- conjugate_gradient
def _dot(u, v):
    return float((u * v).sum())


def cg_steepest_descent(Avp, b, iters):
    x, r = b * 0, b * 1
    for _ in range(iters):
        Ar = Avp(r)
        x = x + _dot(r, r) / _dot(r, Ar) * r
        r = r - _dot(r, r) / _dot(r, Ar) * Ar
    return x


def cg_beta_inverted(Avp, b, iters):
    x, r, p = b * 0, b * 1, b * 1
    rr = _dot(r, r)
    for _ in range(iters):
        if rr < 1e-20:
            break
        Ap = Avp(p)
        alpha = rr / _dot(p, Ap)
        x, r = x + alpha * p, r - alpha * Ap
        rr_new = _dot(r, r)
        p = r + (rr / rr_new) * p
        rr = rr_new
    return x


def cg_no_direction_update(Avp, b, iters):
    # Keeps searching along b: a line search in one direction.
    x, r, p = b * 0, b * 1, b * 1
    for _ in range(iters):
        Ap = Avp(p)
        alpha = _dot(r, r) / _dot(p, Ap)
        x, r = x + alpha * p, r - alpha * Ap
    return x


def cg_ignores_iters(Avp, b, iters):
    return trpo.conjugate_gradient(Avp, b, iters=len(b))


def cg_returns_residual(Avp, b, iters):
    x = trpo.conjugate_gradient(Avp, b, iters)
    return b - Avp(x)


def cg_numpy_only(Avp, b, iters):
    A_cols = np.stack([np.asarray(Avp(e)) for e in np.eye(len(b))], axis=1)
    return np.linalg.solve(A_cols, np.asarray(b))


@pytest.mark.parametrize("mutant", [
    cg_steepest_descent, cg_beta_inverted, cg_no_direction_update, cg_ignores_iters, cg_returns_residual, cg_numpy_only,
])
def test_cg_check_rejects_mutants(mutant):
    with pytest.raises(AssertionError):
        checks.check_conjugate_gradient(mutant)


def test_cg_check_accepts_the_library_kernel(capsys):
    checks.check_conjugate_gradient(lambda Avp, b, iters: trpo.conjugate_gradient(Avp, b, iters, tol=0.0), hidden=True)
    assert "pass" in capsys.readouterr().out


def test_cg_check_counts_products():
    with pytest.raises(AssertionError, match="called Avp"):
        checks.check_conjugate_gradient(cg_numpy_only)
