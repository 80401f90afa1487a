"""Tests for the per-token KL estimators k1, k2, k3 in course_lib.losses.

The exact KL between two small categorical distributions is computed by a plain sum;
the estimators are checked against it by sampling tokens from the first distribution
(Schulman, "Approximating KL divergence", 2020).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.losses import kl_k1, kl_k2, kl_k3


def exact_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def loop_estimators(logp, ref_logp):
    k1, k2, k3 = [], [], []
    for a, b in zip(np.ravel(logp).tolist(), np.ravel(ref_logp).tolist()):
        k1.append(a - b)
        k2.append(0.5 * (a - b) ** 2)
        k3.append(math.exp(b) / math.exp(a) - (b - a) - 1.0)  # pi_ref/pi - log(pi_ref/pi) - 1
    shape = np.shape(logp)
    return (np.array(k1).reshape(shape), np.array(k2).reshape(shape), np.array(k3).reshape(shape))


@pytest.mark.parametrize("shape", [(1,), (6,), (3, 4), (2, 3, 5)])
def test_estimators_match_loop(shape):
    rng = np.random.default_rng(sum(shape))
    logp = np.log(rng.uniform(0.05, 1.0, size=shape))
    ref = np.log(rng.uniform(0.05, 1.0, size=shape))
    for fn, expected in zip((kl_k1, kl_k2, kl_k3), loop_estimators(logp, ref)):
        got = fn(logp, ref)
        assert isinstance(got, np.ndarray) and got.shape == shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        got_t = fn(torch.tensor(logp), torch.tensor(ref))
        assert isinstance(got_t, torch.Tensor)
        np.testing.assert_allclose(got_t.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_k3_is_the_control_variate_form():
    # k3 = k1 + (r - 1) with r = pi_ref/pi, and it is zero exactly where the two agree.
    logp = np.log(np.array([0.2, 0.5, 0.9]))
    ref = np.log(np.array([0.4, 0.5, 0.3]))
    r = np.exp(ref - logp)
    np.testing.assert_allclose(kl_k3(logp, ref), kl_k1(logp, ref) + (r - 1), atol=1e-12)
    assert kl_k3(logp, ref)[1] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_means_against_exact_kl_by_sampling(seed):
    rng = np.random.default_rng(seed)
    V, N = 6, 400_000
    p = rng.dirichlet(np.ones(V))
    q = rng.dirichlet(np.ones(V))
    x = rng.choice(V, size=N, p=p)  # tokens sampled from pi = p
    logp, ref = np.log(p)[x], np.log(q)[x]
    kl = exact_kl(p, q)
    for fn in (kl_k1, kl_k3):  # unbiased: the sample mean is within 5 standard errors
        samples = fn(logp, ref)
        se = samples.std() / math.sqrt(N)
        assert abs(samples.mean() - kl) < 5 * se + 1e-9, (fn.__name__, samples.mean(), kl, se)
    # k2 is biased: its mean is E_p[(log p/q)^2] / 2, not the KL (p and q far apart here).
    k2_mean = sum(pi * 0.5 * math.log(pi / qi) ** 2 for pi, qi in zip(p, q))
    samples = kl_k2(logp, ref)
    assert abs(samples.mean() - k2_mean) < 5 * samples.std() / math.sqrt(N)
    assert abs(k2_mean - kl) > 10 * samples.std() / math.sqrt(N)


def test_k3_has_lower_variance_than_k1_when_close():
    # Schulman's note: for nearby distributions k3 keeps k1's mean with far less variance.
    rng = np.random.default_rng(5)
    V, N = 8, 100_000
    p = rng.dirichlet(np.ones(V) * 5)
    q = p * np.exp(rng.normal(scale=0.1, size=V))
    q /= q.sum()
    x = rng.choice(V, size=N, p=p)
    logp, ref = np.log(p)[x], np.log(q)[x]
    assert kl_k3(logp, ref).std() < 0.2 * kl_k1(logp, ref).std()
    assert (kl_k1(logp, ref) < 0).any()  # a single k1 sample can be negative ...
    assert (kl_k3(logp, ref) >= 0).all() and (kl_k2(logp, ref) >= 0).all()  # ... k2 and k3 never are


def test_gradient_of_k3_flows_through_logp():
    logp = torch.log(torch.tensor([0.3, 0.6])).requires_grad_()
    ref = torch.log(torch.tensor([0.5, 0.5]))
    kl_k3(logp, ref).sum().backward()
    # d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp)
    expected = 1 - torch.exp(ref - logp.detach())
    torch.testing.assert_close(logp.grad, expected)


@pytest.mark.parametrize("fn", [kl_k1, kl_k2, kl_k3])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="ref_logp"):
        fn(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="ref_logp"):
        fn(torch.zeros(2, 3), torch.zeros(3, 2))
