"""Tests for course_lib.returns.td_errors and course_lib.returns.gae.

The references are plain per-step Python loops written from the definitions

    delta_t = r_t + gamma * (1 - done_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},   A_T = 0,

one sequence at a time, plus two constructions that do not use the recursion
at all: the bootstrapped Monte Carlo return minus V (lambda = 1) and the
(1 - lambda)-weighted average of k-step advantages (Schulman et al. 2016, eq. 16).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from course_lib.returns import gae, td_errors


# ----------------------------------------------------------------- references
def _rows(rewards, values, dones):
    rewards = np.asarray(rewards, dtype=np.float64)
    T = rewards.shape[-1]
    r = rewards.reshape(-1, T).tolist()
    v = np.asarray(values, dtype=np.float64).reshape(-1, T + 1).tolist()
    d = [[False] * T for _ in r] if dones is None else np.asarray(dones, dtype=bool).reshape(-1, T).tolist()
    return rewards.shape, r, v, d


def loop_td_errors(rewards, values, gamma, dones=None):
    shape, r, v, d = _rows(rewards, values, dones)
    out = []
    for rr, vv, dd in zip(r, v, d):
        row = []
        for t in range(len(rr)):
            next_value = 0.0 if dd[t] else vv[t + 1]
            row.append(rr[t] + gamma * next_value - vv[t])
        out.append(row)
    return np.array(out).reshape(shape)


def loop_gae(rewards, values, gamma, lam, dones=None):
    """The per-step loop most libraries write (CleanRL's ``lastgaelam`` form)."""
    shape, r, v, d = _rows(rewards, values, dones)
    out = []
    for rr, vv, dd in zip(r, v, d):
        T = len(rr)
        row = [0.0] * T
        lastgaelam = 0.0
        for t in reversed(range(T)):
            nextnonterminal = 0.0 if dd[t] else 1.0
            delta = rr[t] + gamma * nextnonterminal * vv[t + 1] - vv[t]
            lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
            row[t] = lastgaelam
        out.append(row)
    return np.array(out).reshape(shape)


def bootstrapped_returns_minus_values(rewards, values, gamma, dones=None):
    """lambda = 1: G_t = r_t + gamma (1 - d_t) G_{t+1}, with G_T = V(s_T) at the cut; minus V(s_t)."""
    shape, r, v, d = _rows(rewards, values, dones)
    out = []
    for rr, vv, dd in zip(r, v, d):
        T = len(rr)
        G = [0.0] * T
        after = vv[T]  # the rollout stops here: bootstrap with the critic
        for t in reversed(range(T)):
            after = rr[t] + (0.0 if dd[t] else gamma * after)
            G[t] = after
        out.append([G[t] - vv[t] for t in range(T)])
    return np.array(out).reshape(shape)


def k_step_advantage(r, v, gamma, t, k):
    """A_t^(k) = r_t + ... + gamma^(k-1) r_{t+k-1} + gamma^k V(s_{t+k}) - V(s_t), one sequence, no dones."""
    total = sum(gamma**i * r[t + i] for i in range(k))
    return total + gamma**k * v[t + k] - v[t]


def seed_for(*case):
    return zlib.crc32(repr(case).encode())


def make_dones(rng, shape, mode):
    if mode is None:
        return None
    return {"none": np.zeros(shape, dtype=bool), "all": np.ones(shape, dtype=bool), "some": rng.random(shape) < 0.25}[mode]


def values_shape(shape):
    return shape[:-1] + (shape[-1] + 1,)


# (shape of rewards, gamma, lam, dones mode)
CASES = [
    ((4, 16), 0.99, 0.95, None),
    ((4, 16), 0.9, 0.8, "some"),
    ((4, 16), 0.9, 0.8, "all"),
    ((4, 16), 0.9, 0.8, "none"),
    ((3, 1), 0.9, 0.5, "some"),      # T = 1
    ((1,), 0.9, 0.5, None),          # T = 1, no batch axis
    ((25,), 0.97, 0.9, "some"),      # 1-D
    ((2, 3, 11), 0.8, 0.7, "some"),  # two batch axes
    ((5, 9), 1.0, 1.0, "some"),
    ((5, 9), 0.0, 0.9, "some"),      # gamma = 0: delta = r - V
    ((5, 9), 0.95, 0.0, "some"),
]
IDS = [f"{'x'.join(map(str, s))}-g{g}-l{l}-dones_{m}" for s, g, l, m in CASES]


def random_case(shape, gamma, lam, mode, tag=""):
    rng = np.random.default_rng(seed_for(shape, gamma, lam, mode, tag))
    rewards = rng.normal(size=shape)
    values = rng.normal(size=values_shape(shape))
    return rewards, values, make_dones(rng, shape, mode)


# ----------------------------------------------------------------- against the loops
@pytest.mark.parametrize("shape, gamma, lam, mode", CASES, ids=IDS)
def test_numpy_matches_loops(shape, gamma, lam, mode):
    rewards, values, dones = random_case(shape, gamma, lam, mode)
    r0, v0 = rewards.copy(), values.copy()
    delta = td_errors(rewards, values, gamma, dones)
    adv = gae(rewards, values, gamma, lam, dones)
    assert isinstance(delta, np.ndarray) and isinstance(adv, np.ndarray)
    assert delta.shape == shape and adv.shape == shape
    assert_allclose(delta, loop_td_errors(rewards, values, gamma, dones), rtol=1e-12, atol=1e-12)
    assert_allclose(adv, loop_gae(rewards, values, gamma, lam, dones), rtol=1e-12, atol=1e-12)
    assert np.array_equal(rewards, r0) and np.array_equal(values, v0)  # inputs untouched


@pytest.mark.parametrize("shape, gamma, lam, mode", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_matches_loops(shape, gamma, lam, mode, dtype):
    rewards, values, dones = random_case(shape, gamma, lam, mode, "torch")
    r, v = torch.tensor(rewards, dtype=dtype), torch.tensor(values, dtype=dtype)
    d = None if dones is None else torch.tensor(dones)
    delta = td_errors(r, v, gamma, d)
    adv = gae(r, v, gamma, lam, d)
    assert isinstance(adv, torch.Tensor) and isinstance(delta, torch.Tensor)
    assert adv.dtype == dtype and delta.dtype == dtype
    assert tuple(adv.shape) == shape
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    r64, v64 = r.double().numpy(), v.double().numpy()
    assert_allclose(delta.double().numpy(), loop_td_errors(r64, v64, gamma, dones), rtol=tol, atol=tol)
    assert_allclose(adv.double().numpy(), loop_gae(r64, v64, gamma, lam, dones), rtol=tol, atol=tol)


def test_numpy_and_torch_agree_and_float32_numpy_is_accurate():
    rewards, values, dones = random_case((6, 40), 0.99, 0.95, "some", "agree")
    expected = loop_gae(rewards, values, 0.99, 0.95, dones)
    got32 = gae(rewards.astype(np.float32), values.astype(np.float32), 0.99, 0.95, dones)
    assert got32.dtype.kind == "f"
    assert_allclose(got32, expected, rtol=1e-5, atol=1e-5)
    got_torch = gae(torch.tensor(rewards), torch.tensor(values), 0.99, 0.95, torch.tensor(dones))
    assert_allclose(got_torch.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dones_dtype", [torch.bool, torch.float32, torch.int64])
def test_torch_dones_as_float_or_int(dones_dtype):
    rewards, values, dones = random_case((3, 12), 0.9, 0.8, "some", "dtype")
    d = torch.tensor(dones, dtype=dones_dtype)
    got = gae(torch.tensor(rewards), torch.tensor(values), 0.9, 0.8, d)
    assert_allclose(got.numpy(), loop_gae(rewards, values, 0.9, 0.8, dones), rtol=1e-12)


def test_numpy_dones_as_int():
    rewards, values, dones = random_case((3, 12), 0.9, 0.8, "some", "int")
    assert_allclose(gae(rewards, values, 0.9, 0.8, dones.astype(np.int64)), loop_gae(rewards, values, 0.9, 0.8, dones))


# ----------------------------------------------------------------- identities
@pytest.mark.parametrize("mode", [None, "some", "all"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lambda_zero_gives_td_errors(mode, backend):
    rewards, values, dones = random_case((4, 13), 0.93, 0.0, mode, "lam0")
    if backend == "torch":
        rewards, values = torch.tensor(rewards), torch.tensor(values)
        dones = None if dones is None else torch.tensor(dones)
    adv = gae(rewards, values, 0.93, 0.0, dones)
    delta = td_errors(rewards, values, 0.93, dones)
    assert_allclose(np.asarray(adv), np.asarray(delta), rtol=1e-12, atol=1e-12)
    # and the TD errors themselves against the definition
    assert_allclose(np.asarray(delta), loop_td_errors(np.asarray(rewards), np.asarray(values), 0.93,
                                                      None if dones is None else np.asarray(dones)), atol=1e-12)


@pytest.mark.parametrize("mode", [None, "some", "none", "all"])
@pytest.mark.parametrize("gamma", [0.9, 1.0])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lambda_one_gives_bootstrapped_returns_minus_values(mode, gamma, backend):
    rewards, values, dones = random_case((5, 17), gamma, 1.0, mode, "lam1")
    expected = bootstrapped_returns_minus_values(rewards, values, gamma, dones)
    if backend == "torch":
        got = gae(torch.tensor(rewards), torch.tensor(values), gamma, 1.0,
                  None if dones is None else torch.tensor(dones)).numpy()
    else:
        got = gae(rewards, values, gamma, 1.0, dones)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 1.0])
def test_gae_is_the_weighted_average_of_k_step_advantages(lam):
    # Finite horizon, no dones: the weights (1 - lam) lam^(k-1) for k < T - t, and
    # the leftover lam^(T-t-1) on the longest available estimate (which bootstraps from V(s_T)).
    gamma, T = 0.95, 9
    rng = np.random.default_rng(7)
    r, v = rng.normal(size=T), rng.normal(size=T + 1)
    got = gae(r, v, gamma, lam)
    for t in range(T):
        K = T - t
        expected = sum((1 - lam) * lam ** (k - 1) * k_step_advantage(r, v, gamma, t, k) for k in range(1, K))
        expected += lam ** (K - 1) * k_step_advantage(r, v, gamma, t, K)
        assert got[t] == pytest.approx(expected, rel=1e-10, abs=1e-10), f"t = {t}"


def test_k_step_advantage_is_a_discounted_sum_of_td_errors():
    gamma = 0.8
    rng = np.random.default_rng(8)
    r, v = rng.normal(size=6), rng.normal(size=7)
    delta = td_errors(r, v, gamma)
    for k in range(1, 7):
        assert k_step_advantage(r, v, gamma, 0, k) == pytest.approx(sum(gamma**i * delta[i] for i in range(k)), abs=1e-12)


def test_no_bootstrapping_across_a_done():
    # Whatever follows a done, including the value right after it, must not reach the steps before it.
    gamma, lam = 0.9, 0.8
    rewards = np.array([1.0, 2.0, 3.0, 4.0])
    dones = np.array([False, True, False, False])
    values = np.array([0.5, 0.25, 100.0, -7.0, 3.0])
    a = gae(rewards, values, gamma, lam, dones)
    changed = values.copy()
    changed[2:] = [-50.0, 9.0, 11.0]
    rewards2 = rewards.copy()
    rewards2[2:] = [-30.0, 8.0]
    b = gae(rewards2, changed, gamma, lam, dones)
    assert_allclose(a[:2], b[:2])
    # by hand: delta_1 = 2 - 0.25 (done, no V(s_2)); delta_0 = 1 + 0.9 * 0.25 - 0.5; A_0 = delta_0 + 0.72 delta_1
    assert a[1] == pytest.approx(1.75)
    assert a[0] == pytest.approx(0.725 + 0.72 * 1.75)


# ----------------------------------------------------------------- the notes' worked example
WORKED = [(0.0, 1.2), (0.5, 1.525), (0.9, 1.972), (1.0, 2.1)]


@pytest.mark.parametrize("lam, expected", WORKED)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_worked_example_from_the_notes(lam, expected, backend):
    # TD errors 1.2, 0.3, 0.8, -0.2 over K = 4 steps, no discount. Rewards are made
    # up from nonzero values so that the example also exercises the value terms:
    # r_t = delta_t + V(s_t) - V(s_{t+1}).
    deltas = np.array([1.2, 0.3, 0.8, -0.2])
    values = np.array([6.0, 7.2, 5.0, 4.5, 2.0])
    rewards = deltas + values[:-1] - values[1:]
    if backend == "torch":
        rewards, values = torch.tensor(rewards), torch.tensor(values)
    assert_allclose(np.asarray(td_errors(rewards, values, 1.0)), deltas, atol=1e-12)
    A0 = float(gae(rewards, values, gamma=1.0, lam=lam)[0])
    assert A0 == pytest.approx(expected, abs=5e-4)  # the notes round to 3 decimals
    # the exact value of the lambda-weighted sum
    assert A0 == pytest.approx(sum(lam**k * d for k, d in enumerate(deltas)), abs=1e-12)


def test_worked_example_docstring():
    assert gae(np.array([1.2, 0.3, 0.8, -0.2]), np.zeros(5), gamma=1.0, lam=0.5)[0] == pytest.approx(1.525)
    assert_allclose(td_errors(np.array([1.0, 1.0]), np.array([0.5, 0.5, 2.0]), gamma=0.5), [0.75, 1.5])


# ----------------------------------------------------------------- gradients
def test_torch_gradient_with_respect_to_values():
    # dA_t/dV(s_j) by loops: A_t = sum_{k>=t} c_{t,k} delta_k with c_{t,k} = prod (gamma lam (1-d));
    # ddelta_k/dV_k = -1, ddelta_k/dV_{k+1} = gamma (1 - d_k).
    gamma, lam, T = 0.9, 0.7, 6
    rng = np.random.default_rng(9)
    d = rng.random(T) < 0.3
    r = torch.tensor(rng.normal(size=T))
    v = torch.tensor(rng.normal(size=T + 1), requires_grad=True)
    gae(r, v, gamma, lam, torch.tensor(d)).sum().backward()
    expected = np.zeros(T + 1)
    for t in range(T):
        c = 1.0
        for k in range(t, T):
            expected[k] -= c
            expected[k + 1] += c * gamma * (0.0 if d[k] else 1.0)
            c *= gamma * lam * (0.0 if d[k] else 1.0)
    assert_allclose(v.grad.numpy(), expected, atol=1e-12)


def test_torch_gradcheck():
    rng = np.random.default_rng(10)
    r = torch.tensor(rng.normal(size=(2, 5)), requires_grad=True)
    v = torch.tensor(rng.normal(size=(2, 6)), requires_grad=True)
    d = torch.tensor(rng.random((2, 5)) < 0.3)
    assert torch.autograd.gradcheck(lambda r, v: gae(r, v, 0.9, 0.8, d), (r, v))


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(
    "r_shape, v_shape",
    [((4, 10), (4, 10)), ((4, 10), (4, 12)), ((4, 10), (11,)), ((10,), (10,)), ((2, 3, 5), (3, 2, 6)), ((4, 10), (1, 11))],
)
def test_bad_values_shape_raises(backend, r_shape, v_shape):
    lib = np if backend == "numpy" else torch
    r, v = lib.ones(r_shape), lib.ones(v_shape)
    for fn in (lambda: td_errors(r, v, 0.9), lambda: gae(r, v, 0.9, 0.9)):
        with pytest.raises(ValueError, match=r"\bvalues\b.*T \+ 1"):
            fn()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("d_shape", [(4, 9), (10,), (4, 11), (1, 10)])
def test_bad_dones_shape_raises(backend, d_shape):
    lib = np if backend == "numpy" else torch
    r, v = lib.ones((4, 10)), lib.ones((4, 11))
    d = lib.zeros(d_shape, dtype=bool if backend == "numpy" else torch.bool)
    for fn in (lambda: td_errors(r, v, 0.9, d), lambda: gae(r, v, 0.9, 0.9, d)):
        with pytest.raises(ValueError, match=r"\bdones\b"):
            fn()


@pytest.mark.parametrize("rewards", [np.float64(1.0), np.zeros((3, 0))], ids=["0-d", "T=0"])
def test_empty_time_axis_raises(rewards):
    with pytest.raises(ValueError, match=r"\brewards\b"):
        gae(rewards, np.zeros(1), 0.9, 0.9)


@pytest.mark.parametrize("gamma, lam, name", [(1.5, 0.9, "gamma"), (-0.1, 0.9, "gamma"), (0.9, 1.01, "lam"),
                                              (0.9, -0.5, "lam"), (float("nan"), 0.9, "gamma"), (0.9, float("nan"), "lam")])
def test_bad_gamma_or_lambda_raises(gamma, lam, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        gae(np.ones(3), np.ones(4), gamma, lam)


# ----------------------------------------------------------------- the benchmark script stays correct
def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ch07_gae.py"
    spec = importlib.util.spec_from_file_location("bench_ch07_gae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_baselines_compute_gae():
    bench = _bench_module()
    rewards, values, dones = random_case((5, 13), 0.9, 0.8, "some", "bench")
    expected = loop_gae(rewards, values, 0.9, 0.8, dones)
    assert_allclose(bench.gae_python_loop(rewards, values, dones, 0.9, 0.8), expected, atol=1e-12)
    tb = (rewards.T.copy(), values.T.copy(), dones.T.astype(float))
    assert_allclose(bench.gae_numpy_time_loop(*tb, 0.9, 0.8).T, expected, atol=1e-12)
    torch_tb = tuple(torch.from_numpy(x) for x in tb)
    assert_allclose(bench.gae_torch_time_loop(*torch_tb, 0.9, 0.8).numpy().T, expected, atol=1e-12)


def test_benchmark_runs_end_to_end_on_tiny_sizes(capsys):
    bench = _bench_module()
    rows = bench.main(["--repeats", "1", "--sizes", "2", "5", "3", "4"])
    assert [r["shape"] for r in rows] == [(2, 5), (3, 4)]
    assert all(r["gae_s"] > 0 and r["copy_GBps"] > 0 for r in rows)
    assert "of copy" in capsys.readouterr().out
    assert bench.check_targets([dict(rows[0], shape=(256, 512), speedup_vs_loop=25.0)])[0].endswith("met")
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "3"])


def test_numpy_keeps_float32_and_reads_strided_inputs():
    # The compiled numpy path copies what it needs into contiguous rows: a transposed
    # (time-major) buffer and float32 data must give the loop's answer, in float32.
    rng = np.random.default_rng(7)
    r_tb = rng.normal(size=(33, 5)).astype(np.float32)        # (T, B), as rollout buffers are laid out
    v_tb = rng.normal(size=(34, 5)).astype(np.float32)
    d_tb = rng.random((33, 5)) < 0.1
    got = gae(r_tb.T, v_tb.T, 0.97, 0.9, d_tb.T)
    assert got.dtype == np.float32
    assert_allclose(got, loop_gae(r_tb.T, v_tb.T, 0.97, 0.9, d_tb.T), rtol=1e-5, atol=1e-5)


def test_numpy_integer_rewards_give_floats():
    got = gae(np.array([[1, 0, 2]]), np.array([[0, 1, 0, 3]]), 0.5, 0.5, np.array([[0, 1, 0]]))
    assert got.dtype == np.float64
    assert_allclose(got, loop_gae([[1, 0, 2]], [[0, 1, 0, 3]], 0.5, 0.5, [[0, 1, 0]]))
