"""Tests for course_lib.returns.discounted_returns.

The reference is a plain double Python loop (over sequences, then backwards
over time) written from the definition G_t = R_{t+1} + gamma G_{t+1}, with the
sum cut after a step whose ``done`` flag is set.
"""

from __future__ import annotations

import doctest
import zlib

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from course_lib.returns import discounted_returns


def loop_returns(rewards, gamma, dones=None):
    """Pure-Python reference: returns as a float64 array of the shape of ``rewards``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    shape = rewards.shape
    T = shape[-1]
    rows = rewards.reshape(-1, T).tolist()
    if dones is None:
        done_rows = [[False] * T for _ in rows]
    else:
        done_rows = np.asarray(dones, dtype=bool).reshape(-1, T).tolist()
    out = []
    for r, d in zip(rows, done_rows):
        G = [0.0] * T
        g = 0.0  # the return after the last step: the sequence just stops
        for t in range(T - 1, -1, -1):
            future = 0.0 if d[t] else g  # an episode that ended at t adds nothing later
            g = r[t] + gamma * future
            G[t] = g
        out.append(G)
    return np.array(out, dtype=np.float64).reshape(shape)


def seed_for(*case):
    """A seed per case that is stable across runs (hash() of str is salted per process)."""
    return zlib.crc32(repr(case).encode())


def make_dones(rng, shape, mode):
    if mode is None:
        return None
    if mode == "none":
        return np.zeros(shape, dtype=bool)
    if mode == "all":
        return np.ones(shape, dtype=bool)
    if mode == "some":
        return rng.random(shape) < 0.2
    raise ValueError(mode)


# (shape, gamma, dones mode)
CASES = [
    ((4, 20), 0.9, None),
    ((4, 20), 0.9, "some"),
    ((4, 20), 0.9, "all"),
    ((4, 20), 0.9, "none"),
    ((4, 1), 0.9, "some"),  # T = 1: the return is the reward
    ((1,), 0.9, None),
    ((30,), 0.95, "some"),  # 1-D input
    ((2, 3, 15), 0.8, "some"),  # 3-D batch
    ((2, 3, 15), 0.8, None),
    ((5, 12), 0.0, "some"),  # gamma = 0: returns are the rewards
    ((5, 12), 1.0, None),  # gamma = 1: reverse cumulative sums
    ((5, 12), 1.0, "some"),
    ((3, 50), 0.99, "some"),
]
CASE_IDS = [f"{'x'.join(map(str, s))}-g{g}-dones_{m}" for s, g, m in CASES]


@pytest.mark.parametrize("shape, gamma, mode", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_matches_loop(shape, gamma, mode, dtype):
    rng = np.random.default_rng(seed_for(shape, gamma, mode))
    rewards = rng.normal(size=shape).astype(dtype)
    dones = make_dones(rng, shape, mode)
    before = rewards.copy()
    G = discounted_returns(rewards, gamma, dones)
    assert isinstance(G, np.ndarray)
    assert G.shape == shape
    assert G.dtype == dtype  # float in, same float out
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(G, loop_returns(rewards, gamma, dones), rtol=tol, atol=tol)
    assert np.array_equal(rewards, before)  # the input is not modified


@pytest.mark.parametrize("shape, gamma, mode", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_matches_loop(shape, gamma, mode, dtype):
    rng = np.random.default_rng(seed_for(shape, gamma, mode, "torch"))
    rewards_np = rng.normal(size=shape)
    dones_np = make_dones(rng, shape, mode)
    rewards = torch.tensor(rewards_np, dtype=dtype)
    dones = None if dones_np is None else torch.tensor(dones_np)
    G = discounted_returns(rewards, gamma, dones)
    assert isinstance(G, torch.Tensor)
    assert G.dtype == dtype
    assert tuple(G.shape) == shape
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    expected = loop_returns(rewards.double().numpy(), gamma, dones_np)
    assert_allclose(G.double().numpy(), expected, rtol=tol, atol=tol)


def test_torch_dones_as_float_or_int():
    # Rollout buffers often store dones as 0/1 floats; they must mean the same thing.
    rng = np.random.default_rng(0)
    r = rng.normal(size=(3, 10))
    d = rng.random((3, 10)) < 0.3
    expected = loop_returns(r, 0.9, d)
    for dtype in (torch.bool, torch.float32, torch.int64):
        dones = torch.tensor(d, dtype=dtype)
        assert_allclose(discounted_returns(torch.tensor(r), 0.9, dones).numpy(), expected, rtol=1e-12)


def test_numpy_dones_as_int():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(3, 10))
    d = rng.random((3, 10)) < 0.3
    assert_allclose(discounted_returns(r, 0.9, d.astype(int)), loop_returns(r, 0.9, d), rtol=1e-12)


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.int8])
@pytest.mark.parametrize("mode", [None, "some"])
def test_numpy_integer_rewards(int_dtype, mode):
    # Integer rewards (e.g. +1 per step) must not be truncated by discounting.
    rng = np.random.default_rng(2)
    rewards = rng.integers(-3, 4, size=(4, 25)).astype(int_dtype)
    dones = make_dones(rng, rewards.shape, mode)
    G = discounted_returns(rewards, 0.9, dones)
    assert G.dtype.kind == "f"
    assert_allclose(G, loop_returns(rewards, 0.9, dones), rtol=1e-12)


def test_python_list_input():
    G = discounted_returns([1, 2, 3], 0.5)
    assert isinstance(G, np.ndarray)
    assert_allclose(G, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])


def test_torch_integer_rewards():
    G = discounted_returns(torch.tensor([1, 1, 1]), 0.5)
    assert_allclose(G.double().numpy(), [1.75, 1.5, 1.0])


# --------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------


def loop_weight_sums(gamma, dones, shape):
    """d(sum_t G_t) / d r_k = sum_{t <= k} prod_{j = t}^{k-1} gamma (1 - done_j), by loops."""
    T = shape[-1]
    d = np.zeros(shape, dtype=bool) if dones is None else np.asarray(dones, dtype=bool)
    d = d.reshape(-1, T).tolist()
    out = []
    for row in d:
        grads = []
        for k in range(T):
            total = 0.0
            for t in range(k + 1):
                w = 1.0
                for j in range(t, k):
                    w *= 0.0 if row[j] else gamma
                total += w
            grads.append(total)
        out.append(grads)
    return np.array(out).reshape(shape)


@pytest.mark.parametrize("mode", [None, "some", "all"])
@pytest.mark.parametrize("gamma", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("shape", [(3, 12), (12,), (2, 2, 6)])
def test_torch_gradient_is_sum_of_discount_weights(shape, gamma, mode):
    rng = np.random.default_rng(5)
    dones_np = make_dones(rng, shape, mode)
    rewards = torch.tensor(rng.normal(size=shape), dtype=torch.float64, requires_grad=True)
    dones = None if dones_np is None else torch.tensor(dones_np)
    discounted_returns(rewards, gamma, dones).sum().backward()
    expected = loop_weight_sums(gamma, dones_np, shape)
    assert_allclose(rewards.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_torch_gradcheck():
    # Finite differences as a second, assumption-free check of the backward pass.
    rng = np.random.default_rng(6)
    rewards = torch.tensor(rng.normal(size=(2, 7)), dtype=torch.float64, requires_grad=True)
    dones = torch.tensor(rng.random((2, 7)) < 0.3)
    assert torch.autograd.gradcheck(lambda r: discounted_returns(r, 0.9, dones), (rewards,))


# --------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [-0.1, 1.0001, 2.0, float("nan")])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bad_gamma_raises(gamma, backend):
    r = np.ones(5) if backend == "numpy" else torch.ones(5)
    with pytest.raises(ValueError, match=r"\bgamma\b"):
        discounted_returns(r, gamma)


@pytest.mark.parametrize(
    "r_shape, d_shape",
    [((4, 10), (4, 9)), ((4, 10), (10,)), ((10,), (1, 10)), ((2, 3, 5), (3, 2, 5))],
)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_mismatched_dones_shape_raises(r_shape, d_shape, backend):
    # Broadcasting dones of the wrong shape would silently cut the wrong episodes.
    if backend == "numpy":
        r, d = np.ones(r_shape), np.zeros(d_shape, dtype=bool)
    else:
        r, d = torch.ones(r_shape), torch.zeros(d_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\bdones\b"):
        discounted_returns(r, 0.9, d)


@pytest.mark.parametrize(
    "rewards", [np.float64(1.0), np.zeros((3, 0)), torch.zeros(2, 0)], ids=["0-d", "T=0 numpy", "T=0 torch"]
)
def test_empty_time_axis_raises(rewards):
    with pytest.raises(ValueError, match=r"\brewards\b"):
        discounted_returns(rewards, 0.9)


# --------------------------------------------------------------------------
# Docstring example.
# --------------------------------------------------------------------------


def test_docstring_examples_by_hand():
    # gamma = 0.5, three rewards of 1: G_2 = 1, G_1 = 1 + 0.5, G_0 = 1 + 0.5 * 1.5.
    assert_allclose(discounted_returns(np.array([1.0, 1.0, 1.0]), gamma=0.5), [1.75, 1.5, 1.0])
    # done after step 1: G_1 = 1 stops there, G_0 = 1 + 0.5 * 1; G_2 = 1.
    G = discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5, dones=np.array([0, 1, 0]))
    assert_allclose(G, [1.5, 1.0, 1.0])


def test_docstring_doctest_passes():
    # Keeps the printed example in discounted_returns' docstring in step with
    # the code (only that function: other kernels in the module have their own tests).
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    globs = {"np": np, "discounted_returns": discounted_returns}
    tests = doctest.DocTestFinder().find(discounted_returns, globs=globs)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 2
    assert result.failed == 0
