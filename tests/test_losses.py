"""Tests for course_lib.losses: PPO's clipped and penalised losses and the adaptive KL coefficient.

References are plain Python loops over samples written from the paper's formulas
(Schulman et al. 2017, eq. 7 and section 4), not from the code under test.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from course_lib import losses
from course_lib.losses import adaptive_kl_beta, masked_mean, ppo_clip_loss, ppo_clip_objective, ppo_penalty_loss


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clip_objective_loop(ratio, adv, eps):
    out = []
    for r, a in zip(np.ravel(ratio).tolist(), np.ravel(adv).tolist()):
        clipped = min(max(r, 1 - eps), 1 + eps)
        out.append(min(r * a, clipped * a))
    return np.array(out).reshape(np.shape(ratio))


def clip_loss_loop(logp, old_logp, adv, eps, mask=None):
    logp, old_logp, adv = (np.ravel(np.asarray(x, dtype=np.float64)).tolist() for x in (logp, old_logp, adv))
    mask = [True] * len(logp) if mask is None else np.ravel(np.asarray(mask, dtype=bool)).tolist()
    total, count = 0.0, 0
    for lp, olp, a, m in zip(logp, old_logp, adv, mask):
        if not m:
            continue
        r = math.exp(lp - olp)
        total += min(r * a, min(max(r, 1 - eps), 1 + eps) * a)
        count += 1
    return -total / count


def test_doctests():
    assert doctest.testmod(losses, raise_on_error=False).failed == 0


# ---------------------------------------------------------------- ppo_clip_objective
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("eps", [0.05, 0.2, 0.5])
def test_clip_objective_matches_loop(shape, eps):
    rng = np.random.default_rng(len(shape) * 10 + int(eps * 100))
    ratio = np.exp(rng.normal(scale=0.5, size=shape))
    adv = rng.normal(size=shape)
    np.testing.assert_allclose(ppo_clip_objective(ratio, adv, eps), clip_objective_loop(ratio, adv, eps), rtol=1e-12)
    got_t = ppo_clip_objective(torch.tensor(ratio), torch.tensor(adv), eps)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), clip_objective_loop(ratio, adv, eps), rtol=1e-12)


def test_clip_objective_the_notes_example():
    # Probability of the token rises from 0.1 to 0.3: ratio 3, eps 0.2.
    assert ppo_clip_objective(np.array([3.0]), np.array([1.0]), 0.2)[0] == pytest.approx(1.2)
    # For a negative advantage the min keeps the unclipped, more pessimistic 3 * A.
    assert ppo_clip_objective(np.array([3.0]), np.array([-1.0]), 0.2)[0] == pytest.approx(-3.0)
    # A ratio that fell below 1 - eps with A < 0 is clipped: no reward for pushing further.
    assert ppo_clip_objective(np.array([0.5]), np.array([-1.0]), 0.2)[0] == pytest.approx(-0.8)
    # ... but with A > 0 it is not: the objective still pulls the ratio back up.
    assert ppo_clip_objective(np.array([0.5]), np.array([1.0]), 0.2)[0] == pytest.approx(0.5)


def test_clip_objective_edges():
    r = np.array([0.8, 1.2, 1.0, 5.0])
    np.testing.assert_allclose(ppo_clip_objective(r, np.zeros(4), 0.2), 0.0)
    np.testing.assert_allclose(ppo_clip_objective(r, np.ones(4), 0.2), [0.8, 1.2, 1.0, 1.2])


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan")])
def test_clip_objective_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        ppo_clip_objective(np.ones(3), np.ones(3), eps)


def test_clip_objective_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_objective(np.ones(3), np.ones(4), 0.2)


# ---------------------------------------------------------------- ppo_clip_loss
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 3, 5)])
def test_clip_loss_matches_loop(shape, with_mask):
    rng = np.random.default_rng(sum(shape) + with_mask)
    logp = np.log(rng.uniform(0.05, 1.0, size=shape))
    old_logp = logp + rng.normal(scale=0.4, size=shape)
    adv = rng.normal(size=shape)
    mask = rng.random(shape) < 0.6 if with_mask else None
    if mask is not None:
        mask.flat[0] = True
    expected = clip_loss_loop(logp, old_logp, adv, 0.2, mask)
    assert ppo_clip_loss(logp, old_logp, adv, 0.2, mask) == pytest.approx(expected, rel=1e-12)
    t = lambda x: None if x is None else torch.tensor(x)  # noqa: E731
    got = ppo_clip_loss(t(logp), t(old_logp), t(adv), 0.2, t(mask))
    assert isinstance(got, torch.Tensor) and got.dim() == 0
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_clip_loss_masked_entries_do_not_count():
    logp, old_logp, adv = torch.zeros(4), torch.zeros(4), torch.tensor([1.0, 2.0, 100.0, -50.0])
    mask = torch.tensor([True, True, False, False])
    assert float(ppo_clip_loss(logp, old_logp, adv, 0.2, mask)) == pytest.approx(-1.5)


def test_clip_loss_gradient_at_ratio_one_is_the_policy_gradient():
    # At theta = theta_old, d loss / d logp_t = -A_t / n (the REINFORCE-with-advantage gradient).
    g = torch.Generator().manual_seed(0)
    logp = torch.log(torch.rand(6, generator=g)).requires_grad_(True)
    adv = torch.randn(6, generator=g)
    loss = ppo_clip_loss(logp, logp.detach().clone(), adv, 0.2)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), (-adv / 6).numpy(), rtol=1e-6)


def test_clip_loss_detaches_old_logp_and_advantages():
    # Passing a not-yet-detached old_logp (the same graph as logp) must not zero the gradient.
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    logp = torch.log_softmax(theta, -1).expand(3, 2).gather(-1, torch.tensor([[0], [1], [0]])).squeeze(-1)
    adv = torch.tensor([1.0, -1.0, 0.5], requires_grad=True)
    loss = ppo_clip_loss(logp, logp, adv, 0.2)
    loss.backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    assert adv.grad is None


def test_clip_loss_gradient_vanishes_where_clipped():
    # ratio 1.5 > 1 + eps with A > 0: clipped, no gradient; ratio 0.5 < 1 - eps with A > 0: not clipped.
    logp = torch.log(torch.tensor([1.5, 0.5])).requires_grad_(True)
    loss = ppo_clip_loss(logp, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2)
    loss.backward()
    assert logp.grad[0] == 0.0
    assert logp.grad[1] == pytest.approx(-0.5 * 0.5)  # -(1/2) * r * A


def test_clip_loss_bad_input():
    with pytest.raises(ValueError, match="old_logp"):
        ppo_clip_loss(torch.zeros(3), torch.zeros(4), torch.zeros(3), 0.2)
    with pytest.raises(ValueError, match="mask"):
        ppo_clip_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.2, mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        ppo_clip_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.2, mask=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps"):
        ppo_clip_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.0)


# ---------------------------------------------------------------- ppo_penalty_loss
def test_penalty_loss_matches_loop():
    rng = np.random.default_rng(5)
    logp, old_logp, adv, kl = rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), rng.random((4, 8))
    mask = rng.random((4, 8)) < 0.7
    total, count = 0.0, 0
    for i in range(4):
        for j in range(8):
            if mask[i, j]:
                total += math.exp(logp[i, j] - old_logp[i, j]) * adv[i, j] - 0.3 * kl[i, j]
                count += 1
    assert ppo_penalty_loss(logp, old_logp, adv, kl, 0.3, mask) == pytest.approx(-total / count, rel=1e-12)
    got = ppo_penalty_loss(*(torch.tensor(x) for x in (logp, old_logp, adv, kl)), 0.3, torch.tensor(mask))
    assert float(got) == pytest.approx(-total / count, rel=1e-12)


def test_penalty_loss_bad_beta_and_shapes():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        ppo_penalty_loss(z, z, z, z, -1.0)
    with pytest.raises(ValueError, match="kl"):
        ppo_penalty_loss(z, z, z, torch.zeros(2), 1.0)


# ---------------------------------------------------------------- adaptive_kl_beta
@pytest.mark.parametrize("kl, expected", [
    (0.0, 0.5),  # far below: halve
    (0.0066, 0.5),  # just below target / 1.5 = 0.00667
    (0.01 / 1.5, 1.0),  # on the boundary: unchanged (strict inequalities)
    (0.01, 1.0),  # on target
    (0.015, 1.0),  # on the upper boundary
    (0.0151, 2.0),  # just above 1.5 * target
    (1.0, 2.0),
])
def test_adaptive_beta_rule(kl, expected):
    assert adaptive_kl_beta(1.0, kl, 0.01) == pytest.approx(expected)


def test_adaptive_beta_scales_with_beta_and_target():
    assert adaptive_kl_beta(0.3, 0.1, 1.0) == pytest.approx(0.15)
    assert adaptive_kl_beta(0.3, 2.0, 1.0) == pytest.approx(0.6)


@pytest.mark.parametrize("beta, kl, target, name", [
    (0.0, 0.01, 0.01, "beta"), (-1.0, 0.01, 0.01, "beta"), (1.0, 0.01, 0.0, "target"),
    (1.0, float("nan"), 0.01, "kl"), (float("inf"), 0.01, 0.01, "beta"),
])
def test_adaptive_beta_bad_input(beta, kl, target, name):
    with pytest.raises(ValueError, match=name):
        adaptive_kl_beta(beta, kl, target)


# ---------------------------------------------------------------- masked_mean
def test_masked_mean():
    x = np.array([[1.0, 2.0], [3.0, 10.0]])
    assert masked_mean(x) == pytest.approx(4.0)
    assert masked_mean(x, np.array([[True, True], [True, False]])) == pytest.approx(2.0)
    assert float(masked_mean(torch.tensor(x), torch.tensor([[1, 0], [0, 0]]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask"):
        masked_mean(x, np.zeros((2, 2), dtype=bool))
