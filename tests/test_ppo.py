"""Tests for course_lib.ppo: rollout on the next-step-autoreset CartPole, GAE with truncation, update kernels.

References are plain loops written from the definitions in the tests.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from course_lib.ppo import (
    ActorCritic,
    EnvCursor,
    PPOConfig,
    approx_kl,
    categorical_entropy,
    clip_fraction,
    collect_rollout,
    explained_variance,
    minibatch_indices,
    normalize_advantages,
    rollout_gae,
    train_ppo,
    value_loss,
)
from course_lib.returns import gae


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ch09_ppo.py"


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("field, value", [("num_envs", 0), ("epochs", 1.5), ("gamma", 1.5), ("lam", -0.1), ("clip_eps", 0.0), ("minibatches", 3)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


# ---------------------------------------------------------------- rollout
def _rollout(num_envs=4, T=60, seed=0, max_episode_steps=500):
    torch.manual_seed(seed)
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point", max_episode_steps=max_episode_steps)
    cursor = EnvCursor.start(env, seed=seed)
    agent = ActorCritic()
    return env, cursor, agent, collect_rollout(env, agent, cursor, T, torch.Generator().manual_seed(seed))


def test_rollout_shapes_and_logp():
    env, cursor, agent, ro = _rollout()
    N, T = 4, 60
    assert ro.obs.shape == (N, T, 4) and ro.next_obs.shape == (N, 4)
    for x in (ro.actions, ro.logp, ro.rewards, ro.terminated, ro.truncated, ro.mask):
        assert x.shape == (N, T)
    with torch.no_grad():
        logp = torch.log_softmax(agent.logits(ro.obs), -1).gather(-1, ro.actions[..., None]).squeeze(-1)
    torch.testing.assert_close(ro.logp, logp)


def test_rollout_masks_exactly_the_reset_steps():
    env, cursor, agent, ro = _rollout(T=120)
    done = (ro.terminated | ro.truncated).numpy()
    mask, rewards = ro.mask.numpy(), ro.rewards.numpy()
    for n in range(done.shape[0]):
        assert mask[n, 0]  # a fresh start
        for t in range(1, done.shape[1]):
            assert mask[n, t] == (not done[n, t - 1]), (n, t)
            if not mask[n, t]:
                assert rewards[n, t] == 0.0 and not done[n, t]
    assert (~ro.mask).any(), "random CartPole episodes end within 120 steps"


def test_rollout_episode_returns_match_a_loop():
    env, cursor, agent, ro = _rollout(T=150)
    rewards, done = ro.rewards.numpy(), (ro.terminated | ro.truncated).numpy()
    expected, lengths = [], []
    running, length = np.zeros(4), np.zeros(4, dtype=int)
    for t in range(150):  # episodes finish in time order, envs in index order within a step
        for n in range(4):
            running[n] += rewards[n, t]
            length[n] += bool(ro.mask[n, t])
            if done[n, t]:
                expected.append(running[n])
                lengths.append(length[n])
                running[n], length[n] = 0.0, 0
    np.testing.assert_allclose(ro.episode_returns, expected)
    np.testing.assert_array_equal(ro.episode_lengths, lengths)
    np.testing.assert_array_equal(ro.episode_returns, ro.episode_lengths)  # CartPole pays 1 per real step


def test_rollout_flags_truncation_at_the_time_limit():
    env, cursor, agent, ro = _rollout(num_envs=3, T=40, max_episode_steps=10)
    trunc, term, mask = ro.truncated.numpy(), ro.terminated.numpy(), ro.mask.numpy()
    assert (trunc & ~term).any()
    for n in range(3):
        length = 0
        for t in range(40):
            length += bool(mask[n, t])
            if trunc[n, t] and not term[n, t]:
                assert length == 10, "truncated exactly at the limit"
            if term[n, t] or trunc[n, t]:
                assert length <= 10
                length = 0


def test_rollout_is_deterministic_and_continues_across_calls():
    *_, a = _rollout(seed=3)
    *_, b = _rollout(seed=3)
    torch.testing.assert_close(a.obs, b.obs)
    torch.testing.assert_close(a.actions, b.actions)
    env, cursor, agent, first = _rollout(seed=4)
    second = collect_rollout(env, agent, cursor, 10, torch.Generator().manual_seed(9))
    torch.testing.assert_close(second.obs[:, 0], first.next_obs)


# ---------------------------------------------------------------- GAE on an autoreset rollout
def rollout_gae_loop(rewards, values, terminated, truncated, gamma, lam):
    N, T = rewards.shape
    adv = np.zeros((N, T))
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            if terminated[n, t]:
                delta, carry = rewards[n, t] - values[n, t], 0.0
            elif truncated[n, t]:
                # Time limit: the episode would have gone on, so its last state keeps its value ...
                delta, carry = rewards[n, t] + gamma * values[n, t + 1] - values[n, t], 0.0
            else:
                delta, carry = rewards[n, t] + gamma * values[n, t + 1] - values[n, t], last
            # ... but nothing from the next episode flows back.
            last = delta + gamma * lam * carry
            adv[n, t] = last
    return adv, adv + values[:, :-1]


@pytest.mark.parametrize("seed", range(4))
def test_rollout_gae_matches_loop(seed):
    rng = np.random.default_rng(seed)
    N, T = 3, 25
    rewards, values = rng.normal(size=(N, T)), rng.normal(size=(N, T + 1))
    terminated = rng.random((N, T)) < 0.1
    truncated = (rng.random((N, T)) < 0.1)
    got_a, got_r = rollout_gae(*(torch.tensor(x) for x in (rewards, values, terminated, truncated)), 0.97, 0.9)
    exp_a, exp_r = rollout_gae_loop(rewards, values, terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(got_a.numpy(), exp_a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_r.numpy(), exp_r, rtol=1e-10, atol=1e-12)


def test_rollout_gae_without_ends_is_plain_gae():
    rng = np.random.default_rng(0)
    r, v = torch.tensor(rng.normal(size=(2, 9))), torch.tensor(rng.normal(size=(2, 10)))
    none = torch.zeros(2, 9, dtype=torch.bool)
    a, _ = rollout_gae(r, v, none, none, 0.9, 0.8)
    torch.testing.assert_close(a, gae(r, v, 0.9, 0.8))


def test_rollout_gae_bad_shapes():
    z = torch.zeros(2, 5)
    b = torch.zeros(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="values"):
        rollout_gae(z, torch.zeros(2, 5), b, b, 0.9, 0.9)
    with pytest.raises(ValueError, match="truncated"):
        rollout_gae(z, torch.zeros(2, 6), b, b[:, :4], 0.9, 0.9)


# ---------------------------------------------------------------- update kernels
def test_normalize_advantages_matches_loop():
    rng = np.random.default_rng(1)
    x, m = rng.normal(3.0, 2.0, size=40), rng.random(40) < 0.7
    vals = [v for v, k in zip(x.tolist(), m.tolist()) if k]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    expected = [(v - mean) / (std + 1e-8) if k else 0.0 for v, k in zip(x.tolist(), m.tolist())]
    np.testing.assert_allclose(normalize_advantages(torch.tensor(x), torch.tensor(m)).numpy(), expected, rtol=1e-10)
    out = normalize_advantages(torch.tensor(x))
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-12) and float(out.std()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="mask"):
        normalize_advantages(torch.tensor(x), torch.zeros(40, dtype=torch.bool))


def test_value_loss_matches_loop_and_detaches_targets():
    v = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    R = torch.tensor([0.0, 2.0, 7.0], requires_grad=True)
    m = torch.tensor([True, True, False])
    loss = value_loss(v, R, m)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    loss.backward()
    assert R.grad is None
    np.testing.assert_allclose(v.grad.numpy(), [0.5, 0.0, 0.0])


def test_entropy_matches_loop():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 3))
    expected = []
    for row in logits.tolist():
        z = sum(math.exp(v) for v in row)
        expected.append(-sum(math.exp(v) / z * math.log(math.exp(v) / z) for v in row))
    np.testing.assert_allclose(categorical_entropy(torch.tensor(logits)).numpy(), expected, rtol=1e-10)
    assert float(categorical_entropy(torch.zeros(4))) == pytest.approx(math.log(4))


def test_approx_kl_and_clip_fraction_match_loops():
    rng = np.random.default_rng(3)
    lp, olp = rng.normal(size=50) * 0.3, rng.normal(size=50) * 0.3
    m = rng.random(50) < 0.8
    idx = [i for i in range(50) if m[i]]
    k3 = sum(math.exp(lp[i] - olp[i]) - 1 - (lp[i] - olp[i]) for i in idx) / len(idx)
    frac = sum(abs(math.exp(lp[i] - olp[i]) - 1) > 0.2 for i in idx) / len(idx)
    t = torch.tensor
    assert float(approx_kl(t(lp), t(olp), t(m))) == pytest.approx(k3, rel=1e-10)
    assert float(clip_fraction(t(lp), t(olp), 0.2, t(m))) == pytest.approx(frac)


def test_approx_kl_estimates_the_true_kl():
    # Sample actions from pi_old and compare with the exact categorical KL(pi_old || pi).
    g = torch.Generator().manual_seed(0)
    old_logits, new_logits = torch.tensor([0.0, 0.5, -0.3]), torch.tensor([0.2, 0.1, 0.0])
    a = torch.multinomial(torch.softmax(old_logits, 0), 200_000, replacement=True, generator=g)
    old_lp, new_lp = torch.log_softmax(old_logits, 0)[a], torch.log_softmax(new_logits, 0)[a]
    p = torch.softmax(old_logits, 0)
    exact = float((p * (torch.log_softmax(old_logits, 0) - torch.log_softmax(new_logits, 0))).sum())
    assert float(approx_kl(new_lp, old_lp)) == pytest.approx(exact, rel=0.05)


def test_explained_variance():
    R = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(R, R) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), R) == pytest.approx(0.0)
    assert explained_variance(-R, R) < 0


def test_minibatch_indices_partition():
    parts = minibatch_indices(24, 4, torch.Generator().manual_seed(0))
    assert len(parts) == 4 and all(len(p) == 6 for p in parts)
    assert sorted(torch.cat(parts).tolist()) == list(range(24))
    with pytest.raises(ValueError, match="minibatches"):
        minibatch_indices(10, 3, torch.Generator())


# ---------------------------------------------------------------- the loop
def test_train_ppo_runs_logs_and_is_deterministic():
    cfg = PPOConfig(seed=1, num_envs=4, num_steps=64, total_steps=3 * 256, epochs=2, minibatches=4)
    a = train_ppo(cfg, progress=False)
    b = train_ppo(cfg, progress=False)
    assert len(a.log) == 3 and a.log[-1]["steps"] == 768
    for key in ("mean_return", "approx_kl", "clip_fraction", "entropy", "explained_variance", "value_loss"):
        assert [r[key] for r in a.log] == pytest.approx([r[key] for r in b.log], nan_ok=True), key
    assert 0 <= a.log[-1]["clip_fraction"] <= 1 and a.log[-1]["approx_kl"] >= 0
    assert a.solved_at is None


def test_train_ppo_learns_a_little():
    # A short run must already beat random actions (about 22 steps) clearly.
    result = train_ppo(PPOConfig(seed=0, total_steps=5 * 2048), progress=False)
    assert result.log[-1]["mean_return"] > 2.5 * result.log[0]["mean_return"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ch09_ppo", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(bench, capsys):
    out = bench.main(["--seeds", "2", "--total-steps", "2048", "--target", "10"])
    text = capsys.readouterr().out
    assert "median" in text and len(out["runs"]) == 2
    assert all(r["solved"] for r in out["runs"])  # a mean return of 10 is reached at once
    unsolved = bench.run_seed(0, 2048, 1e9)
    assert not unsolved["solved"] and math.isinf(unsolved["wall_s"])


def test_benchmark_rejects_bad_seeds(bench):
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0"])
