"""Tests for course_lib.trpo: conjugate gradient, KL, Fisher-vector products, step and line search.

References: direct linear solves (numpy), a textbook CG with Python floats, the KL
written as a loop over actions, and the Fisher matrix built from its definition
(sum over actions of pi * grad log pi grad log pi^T, one state at a time).
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from course_lib import trpo
from course_lib.trpo import (
    backtracking_line_search,
    categorical_kl,
    conjugate_gradient,
    flat_grad,
    flat_params,
    make_fisher_vector_product,
    set_flat_params,
    trust_region_step,
)


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_spd(rng, n, condition):
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (Q * np.geomspace(1.0, condition, n)) @ Q.T


def cg_loop(A, b, iters):
    n = len(b)
    x, r, p = [0.0] * n, list(b), list(b)
    rr = sum(v * v for v in r)
    for _ in range(iters):
        if rr == 0.0:
            break
        Ap = [sum(A[i][j] * p[j] for j in range(n)) for i in range(n)]
        alpha = rr / sum(p[i] * Ap[i] for i in range(n))
        x = [x[i] + alpha * p[i] for i in range(n)]
        r = [r[i] - alpha * Ap[i] for i in range(n)]
        rr_new = sum(v * v for v in r)
        p = [r[i] + rr_new / rr * p[i] for i in range(n)]
        rr = rr_new
    return np.array(x)


def test_doctests():
    assert doctest.testmod(trpo, raise_on_error=False).failed == 0


# ---------------------------------------------------------------- conjugate gradient
@pytest.mark.parametrize("n, condition", [(1, 1.0), (2, 3.0), (5, 10.0), (20, 100.0), (50, 1e3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_solves_random_spd_systems(n, condition, seed):
    rng = np.random.default_rng(1000 * n + seed)
    A = random_spd(rng, n, condition)
    b = rng.normal(size=n)
    x = conjugate_gradient(lambda v: A @ v, b, iters=3 * n, tol=1e-12)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("iters", [1, 2, 4, 7])
def test_cg_iterates_match_textbook_loop(iters):
    rng = np.random.default_rng(iters)
    A, b = random_spd(rng, 12, 50.0), rng.normal(size=12)
    np.testing.assert_allclose(conjugate_gradient(lambda v: A @ v, b, iters=iters, tol=0.0),
                               cg_loop(A.tolist(), b.tolist(), iters), rtol=1e-8, atol=1e-10)


def test_cg_is_exact_in_n_steps_and_uses_one_product_per_iteration():
    rng = np.random.default_rng(7)
    A, b = random_spd(rng, 6, 20.0), rng.normal(size=6)
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or A @ v, b, iters=6, tol=0.0)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8)
    assert len(calls) == 6


def test_cg_stops_early_on_a_few_distinct_eigenvalues():
    # Three distinct eigenvalues: exact after 3 iterations, so a tolerance stops it there.
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    A = (Q * np.repeat([1.0, 5.0, 20.0], 10)) @ Q.T
    b = rng.normal(size=30)
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or A @ v, b, iters=30, tol=1e-10)
    assert len(calls) == 3
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8)


def test_cg_torch_in_torch_out():
    rng = np.random.default_rng(11)
    A = torch.tensor(random_spd(rng, 8, 10.0))
    b = torch.tensor(rng.normal(size=8))
    x = conjugate_gradient(lambda v: A @ v, b, iters=8, tol=0.0)
    assert isinstance(x, torch.Tensor)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_cg_zero_rhs_gives_zero():
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or v, np.zeros(4), iters=3)
    np.testing.assert_array_equal(x, np.zeros(4))
    assert not calls


def test_cg_bad_input():
    A = np.eye(3)
    with pytest.raises(ValueError, match="iters"):
        conjugate_gradient(lambda v: A @ v, np.ones(3), iters=0)
    with pytest.raises(ValueError, match="iters"):
        conjugate_gradient(lambda v: A @ v, np.ones(3), iters=2.5)
    with pytest.raises(ValueError, match="b must"):
        conjugate_gradient(lambda v: A @ v, np.ones((3, 1)), iters=2)
    with pytest.raises(ValueError, match="positive definite"):
        conjugate_gradient(lambda v: -v, np.ones(3), iters=2)
    with pytest.raises(ValueError, match="Avp must return"):
        conjugate_gradient(lambda v: np.ones(2), np.ones(3), iters=2)


# ---------------------------------------------------------------- categorical KL
def kl_loop(lp, lq):
    A = lp.shape[-1]
    out = []
    for row_p, row_q in zip(lp.reshape(-1, A).tolist(), lq.reshape(-1, A).tolist()):
        zp = math.log(sum(math.exp(v) for v in row_p))
        zq = math.log(sum(math.exp(v) for v in row_q))
        out.append(sum(math.exp(p - zp) * ((p - zp) - (q - zq)) for p, q in zip(row_p, row_q)))
    return np.array(out).reshape(lp.shape[:-1])


@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (2, 4, 6), (7, 1)])
def test_categorical_kl_matches_loop(shape):
    rng = np.random.default_rng(sum(shape))
    lp, lq = rng.normal(scale=2, size=shape), rng.normal(scale=2, size=shape)
    np.testing.assert_allclose(categorical_kl(lp, lq), kl_loop(lp, lq), rtol=1e-10, atol=1e-12)
    got = categorical_kl(torch.tensor(lp), torch.tensor(lq))
    np.testing.assert_allclose(got.numpy(), kl_loop(lp, lq), rtol=1e-10, atol=1e-12)


def test_categorical_kl_properties():
    rng = np.random.default_rng(0)
    lp, lq = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    assert np.all(categorical_kl(lp, lq) >= 0)
    np.testing.assert_allclose(categorical_kl(lp, lp + 3.0), 0.0, atol=1e-12)  # shift-invariant logits
    assert not np.allclose(categorical_kl(lp, lq), categorical_kl(lq, lp))  # not symmetric


def test_categorical_kl_bad_shapes():
    with pytest.raises(ValueError, match="logits_q"):
        categorical_kl(np.zeros((3, 2)), np.zeros((3, 3)))


# ---------------------------------------------------------------- flat parameters
def test_flat_params_round_trip():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    params = list(net.parameters())
    theta = flat_params(params)
    assert theta.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    set_flat_params(params, theta * 2)
    torch.testing.assert_close(flat_params(params), theta * 2)
    torch.testing.assert_close(params[0].detach(), (theta[:12] * 2).view(4, 3))
    with pytest.raises(ValueError, match="flat"):
        set_flat_params(params, theta[:-1])


def test_flat_grad_fills_unused_with_zeros():
    a, b = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    g = flat_grad((a * 3).sum(), [a, b])
    torch.testing.assert_close(g, torch.tensor([3.0, 3.0, 0.0, 0.0, 0.0]))


# ---------------------------------------------------------------- Fisher-vector products
def tiny_policy(seed=0, hidden=5):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 3)).double()


def explicit_fisher(net, states):
    params = list(net.parameters())
    n = sum(p.numel() for p in params)
    F = torch.zeros(n, n, dtype=torch.float64)
    for s in states:
        log_pi = torch.log_softmax(net(s), -1)
        for a in range(log_pi.shape[0]):
            g = flat_grad(log_pi[a], params, retain_graph=True)
            F += log_pi[a].exp().item() * torch.outer(g, g)
    return F / len(states)


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_matches_explicit_fisher(damping):
    net = tiny_policy()
    states = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        old = net(states)
    kl = categorical_kl(old, net(states)).mean()
    fvp = make_fisher_vector_product(kl, list(net.parameters()), damping)
    F = explicit_fisher(net, states)
    for seed in range(3):
        v = torch.randn(F.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), F @ v + damping * v, rtol=1e-8, atol=1e-10)


def test_fisher_vector_product_bad_input():
    net = tiny_policy()
    states = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        old = net(states)
    per_state = categorical_kl(old, net(states))
    with pytest.raises(ValueError, match="scalar"):
        make_fisher_vector_product(per_state, list(net.parameters()))
    with pytest.raises(ValueError, match="damping"):
        make_fisher_vector_product(per_state.mean(), list(net.parameters()), damping=-1.0)
    fvp = make_fisher_vector_product(per_state.mean(), list(net.parameters()))
    with pytest.raises(ValueError, match="v must"):
        fvp(torch.zeros(3, dtype=torch.float64))


# ---------------------------------------------------------------- step and line search
def test_trust_region_step_lands_on_the_kl_boundary():
    rng = np.random.default_rng(2)
    F = random_spd(rng, 5, 30.0)
    g = rng.normal(size=5)
    s = np.linalg.solve(F, g)
    step = trust_region_step(s, F @ s, max_kl=0.02)
    assert 0.5 * step @ F @ step == pytest.approx(0.02)
    # It is the maximiser of g.x on the ellipse: no random point on the boundary does better.
    for _ in range(200):
        d = rng.normal(size=5)
        d *= math.sqrt(2 * 0.02 / (d @ F @ d))
        assert g @ d <= g @ step + 1e-12


def test_trust_region_step_bad_input():
    with pytest.raises(ValueError, match="max_kl"):
        trust_region_step(np.ones(2), np.ones(2), 0.0)
    with pytest.raises(ValueError, match="s\\^T F s"):
        trust_region_step(np.ones(2), -np.ones(2), 0.01)
    with pytest.raises(ValueError, match="Fdirection"):
        trust_region_step(np.ones(2), np.ones(3), 0.01)


def test_line_search_accepts_full_step_when_models_hold():
    full = np.array([1.0, 0.0])
    res = backtracking_line_search(lambda step: (float(step[0]), 0.5 * float(step[0]) ** 2 * 0.01), full, 1.0, max_kl=0.01)
    assert res.accepted and res.fraction == 1.0 and len(res.trials) == 1
    np.testing.assert_array_equal(res.step, full)


def test_line_search_backtracks_on_kl():
    # KL grows like 4 f^2 delta: the full step and half of it break the bound, a quarter passes.
    res = backtracking_line_search(lambda step: (float(step.sum()), 4.0 * float(step.sum()) ** 2), np.array([0.1]), 0.1, max_kl=0.01)
    assert res.fraction == pytest.approx(0.25)
    assert [t["accepted"] for t in res.trials] == [False, False, True]


def test_line_search_backtracks_on_too_small_improvement():
    # The surrogate saturates at 0.01 while the linear model promised 1.0 * fraction.
    evaluate = lambda step: (min(float(step[0]), 0.01), 0.0)  # noqa: E731
    res = backtracking_line_search(evaluate, np.array([1.0]), 1.0, max_kl=1.0, accept_ratio=0.1)
    # Accepted once 0.01 >= 0.1 * fraction, i.e. fraction <= 0.1: 1/16.
    assert res.fraction == pytest.approx(1 / 16)


def test_line_search_rejects_everything_when_surrogate_falls():
    res = backtracking_line_search(lambda step: (-1.0, 0.0), np.array([1.0, 2.0]), 1.0, max_kl=0.01, max_backtracks=5)
    assert not res.accepted and res.fraction == 0.0 and len(res.trials) == 5
    np.testing.assert_array_equal(res.step, np.zeros(2))


def test_line_search_bad_input():
    ok = lambda step: (1.0, 0.0)  # noqa: E731
    with pytest.raises(ValueError, match="expected_improve"):
        backtracking_line_search(ok, np.ones(2), 0.0, 0.01)
    with pytest.raises(ValueError, match="shrink"):
        backtracking_line_search(ok, np.ones(2), 1.0, 0.01, shrink=1.0)
    with pytest.raises(ValueError, match="max_kl"):
        backtracking_line_search(ok, np.ones(2), 1.0, -0.01)


# ---------------------------------------------------------------- the pieces together
def test_one_trpo_update_respects_the_trust_region_and_improves():
    from course_lib.losses import masked_mean
    from course_lib.ppo import ActorCritic, EnvCursor, collect_rollout, make_cartpole, normalize_advantages, rollout_gae

    torch.manual_seed(0)
    env = make_cartpole(4)
    agent = ActorCritic()
    rollout = collect_rollout(env, agent, EnvCursor.start(env, 0), 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], 1))
        adv, _ = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, 0.99, 0.97)
    adv = normalize_advantages(adv, rollout.mask)
    params = list(agent.actor.parameters())
    with torch.no_grad():
        old_logits = agent.logits(rollout.obs)

    def surrogate():
        logp = torch.log_softmax(agent.logits(rollout.obs), -1).gather(-1, rollout.actions[..., None]).squeeze(-1)
        return masked_mean((logp - rollout.logp).exp() * adv, rollout.mask)

    def kl():
        return masked_mean(categorical_kl(old_logits, agent.logits(rollout.obs)), rollout.mask)

    g = flat_grad(surrogate(), params)
    fvp = make_fisher_vector_product(kl(), params, 0.1)
    s = conjugate_gradient(fvp, g, iters=10)
    full = trust_region_step(s, fvp(s), 0.01)
    theta0 = flat_params(params)
    with torch.no_grad():
        L0 = float(surrogate())

    def evaluate(step):
        set_flat_params(params, theta0 + step)
        with torch.no_grad():
            out = float(surrogate()) - L0, float(kl())
        set_flat_params(params, theta0)
        return out

    res = backtracking_line_search(evaluate, full, float(g @ full), 0.01)
    assert res.accepted
    set_flat_params(params, theta0 + res.step)
    with torch.no_grad():
        assert float(kl()) <= 0.01
        assert float(surrogate()) > L0
    env.close()
