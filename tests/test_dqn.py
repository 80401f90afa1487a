"""Tests for course_lib.dqn: schedule, buffer, autoreset handling, semi-gradient loss, target sync, evaluation.

References are written here as plain loops; the autoreset test replays every
stored transition through gymnasium's own single-environment CartPole, so a
reset step that slipped into the buffer cannot pass as a move of the cart.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from course_lib import dqn


# ---------------------------------------------------------------- epsilon schedule
def test_linear_epsilon_matches_loop():
    steps = np.arange(0, 300, 7)
    expected = []
    for t in steps:
        expected.append(1.0 + (0.05 - 1.0) * (t / 200) if t < 200 else 0.05)
    assert_allclose(dqn.linear_epsilon(steps, 1.0, 0.05, 200), expected)
    assert dqn.linear_epsilon(0, 0.5, 0.1, 10) == 0.5
    assert isinstance(dqn.linear_epsilon(3, 0.5, 0.1, 10), float)


@pytest.mark.parametrize("bad, match", [
    (dict(start=1.5), "start"), (dict(end=-0.1), "end"), (dict(duration=0), "duration"), (dict(step=-1), "step"),
])
def test_linear_epsilon_rejects_bad_input(bad, match):
    kwargs = dict(step=1, start=1.0, end=0.1, duration=10) | bad
    with pytest.raises(ValueError, match=match):
        dqn.linear_epsilon(**kwargs)


# ---------------------------------------------------------------- network
def test_q_network_shapes_and_errors():
    net = dqn.QNetwork(4, 2, hidden=(16, 8))
    assert net(torch.zeros(5, 4)).shape == (5, 2)
    assert [m.out_features for m in net.net if isinstance(m, torch.nn.Linear)] == [16, 8, 2]
    with pytest.raises(ValueError, match="obs_dim"):
        dqn.QNetwork(0, 2)


# ---------------------------------------------------------------- replay buffer
def test_buffer_is_a_ring_that_keeps_the_newest():
    rng = np.random.default_rng(0)
    buf = dqn.ReplayBuffer(capacity=7, obs_dim=2)
    reference = []  # every kept transition in order; the buffer must hold the last 7
    for step in range(6):
        obs = rng.normal(size=(3, 2)).astype(np.float32)
        nxt = rng.normal(size=(3, 2)).astype(np.float32)
        a, r = rng.integers(2, size=3), rng.normal(size=3).astype(np.float32)
        term, keep = rng.random(3) < 0.3, rng.random(3) < 0.7
        n = buf.add(obs, a, r, nxt, term, keep=keep)
        assert n == keep.sum()
        for i in np.flatnonzero(keep):
            reference.append((obs[i], a[i], r[i], nxt[i], term[i]))
    assert len(buf) == min(7, len(reference))
    held = sorted(range(len(buf)), key=lambda k: (k - buf.pos) % buf.capacity)  # oldest first
    for slot, (o, a, r, n, t) in zip(held, reference[-len(buf):]):
        assert_array_equal(buf.obs[slot], o)
        assert buf.actions[slot] == a and buf.rewards[slot] == r and buf.terminated[slot] == t
        assert_array_equal(buf.next_obs[slot], n)


def test_buffer_samples_only_filled_slots_as_tensors():
    buf = dqn.ReplayBuffer(capacity=100, obs_dim=1)
    buf.add(np.arange(5, dtype=np.float32)[:, None], np.zeros(5, int), np.arange(5, dtype=np.float32),
            np.zeros((5, 1), np.float32), np.zeros(5, bool), keep=np.ones(5, bool))
    batch = buf.sample(2000, np.random.default_rng(0))
    assert isinstance(batch, dqn.Batch)
    assert batch.obs.shape == (2000, 1) and batch.actions.dtype == torch.int64 and batch.terminated.dtype == torch.bool
    counts = np.bincount(batch.rewards.numpy().astype(int), minlength=5)
    assert counts.sum() == 2000 and counts.min() > 300  # uniform over the 5 stored, none of the 95 empty slots
    assert_array_equal(batch.obs[:, 0].numpy(), batch.rewards.numpy())  # rows stay together


def test_buffer_rejects_bad_input():
    buf = dqn.ReplayBuffer(capacity=4, obs_dim=2)
    good = dict(obs=np.zeros((2, 2)), actions=np.zeros(2, int), rewards=np.zeros(2), next_obs=np.zeros((2, 2)),
                terminated=np.zeros(2, bool), keep=np.ones(2, bool))
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1, np.random.default_rng(0))
    for bad, match in [(dict(obs=np.zeros((2, 3))), "obs"), (dict(next_obs=np.zeros((3, 2))), "next_obs"),
                       (dict(keep=np.ones(2)), "keep"), (dict(rewards=np.zeros(3)), "rewards"),
                       (dict(obs=np.zeros((5, 2)), next_obs=np.zeros((5, 2)), actions=np.zeros(5, int),
                             rewards=np.zeros(5), terminated=np.zeros(5, bool), keep=np.ones(5, bool)), "capacity")]:
        with pytest.raises(ValueError, match=match):
            buf.add(**(good | bad))
    with pytest.raises(ValueError, match="capacity"):
        dqn.ReplayBuffer(0, 2)


# ---------------------------------------------------------------- next-step autoreset
def _collect(n_envs, n_steps, keep_all, seed=0):
    """Random actions in gymnasium's vector CartPole, stored the way the chapter does it."""
    rng = np.random.default_rng(seed)
    envs, obs = dqn.make_cartpole(n_envs, seed=seed)
    buf = dqn.ReplayBuffer(n_envs * n_steps, 4)
    prev_done = np.zeros(n_envs, dtype=bool)
    n_done = n_reset_steps = 0
    for _ in range(n_steps):
        actions = rng.integers(2, size=n_envs)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        keep = np.ones(n_envs, bool) if keep_all else ~prev_done
        buf.add(obs, actions, rewards, next_obs, terminated, keep=keep)
        n_reset_steps += int(prev_done.sum())
        prev_done = terminated | truncated
        n_done += int(prev_done.sum())
        obs = next_obs
    return buf, n_done, n_reset_steps


def _physics_step(obs, action):
    """What CartPole does from ``obs`` under ``action``, by gymnasium's single-env implementation."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.asarray(obs, dtype=np.float64)
    next_obs, reward, terminated, _, _ = env.step(int(action))
    return next_obs, reward, terminated


def test_reset_steps_never_enter_the_buffer():
    buf, n_done, n_reset_steps = _collect(n_envs=8, n_steps=300, keep_all=False)
    assert n_done > 50 and n_reset_steps > 50                       # many episodes ended
    assert len(buf) == 8 * 300 - n_reset_steps
    assert np.all(buf.rewards[: len(buf)] == 1.0)                   # a reset step pays 0
    assert buf.terminated[: len(buf)].sum() >= n_reset_steps - 8    # every finished episode left its last move
    for i in range(len(buf)):
        expected_next, reward, terminated = _physics_step(buf.obs[i], buf.actions[i])
        assert_allclose(buf.next_obs[i], expected_next, rtol=1e-5, atol=1e-5, err_msg=f"transition {i}")
        assert reward == 1.0 and terminated == buf.terminated[i]


def test_storing_every_step_would_let_resets_in():
    # The same collection without the mask stores reset steps: the check above can fail.
    buf, _, n_reset_steps = _collect(n_envs=8, n_steps=300, keep_all=True)
    assert np.sum(buf.rewards[: len(buf)] == 0.0) == n_reset_steps > 0


# ---------------------------------------------------------------- loss
def _loss_loop(q, actions, targets, huber_delta=None):
    total = 0.0
    for i in range(len(actions)):
        err = float(q[i, actions[i]] - targets[i])
        if huber_delta is None:
            total += 0.5 * err**2
        else:
            total += 0.5 * err**2 if abs(err) <= huber_delta else huber_delta * (abs(err) - 0.5 * huber_delta)
    return total / len(actions)


@pytest.mark.parametrize("loss_fn, delta", [(dqn.dqn_loss, None), (dqn.dqn_huber_loss, 1.0)])
def test_loss_value_gradient_and_semi_gradient(loss_fn, delta):
    gen = torch.Generator().manual_seed(0)
    q = (3 * torch.randn(16, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    actions = torch.randint(0, 3, (16,), generator=gen)
    targets = (3 * torch.randn(16, generator=gen, dtype=torch.float64)).requires_grad_()
    loss = loss_fn(q, actions, targets)
    assert loss.item() == pytest.approx(_loss_loop(q.detach().numpy(), actions.numpy(), targets.detach().numpy(), delta))
    loss.backward()
    # dL/dQ(s_i, a) is nonzero only for the taken action: (Q - y) / B, clipped to +-delta for Huber.
    expected = np.zeros((16, 3))
    for i in range(16):
        err = q[i, actions[i]].item() - targets[i].item()
        expected[i, actions[i]] = (err if delta is None else np.clip(err, -delta, delta)) / 16
    assert_allclose(q.grad.numpy(), expected, atol=1e-12)
    assert targets.grad is None  # the target is held fixed: no gradient flows into it


def test_loss_rejects_bad_shapes():
    q = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="actions"):
        dqn.dqn_loss(q, torch.zeros(3, dtype=torch.long), torch.zeros(4))
    with pytest.raises(ValueError, match="targets"):
        dqn.dqn_huber_loss(q, torch.zeros(4, dtype=torch.long), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="q_values"):
        dqn.dqn_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long), torch.zeros(4))


def test_dqn_target_uses_terminated_only():
    # A truncated step (time limit) still bootstraps: only terminated zeroes the max.
    rewards = torch.tensor([1.0, 1.0, 1.0])
    q_next = torch.tensor([[2.0, 4.0], [2.0, 4.0], [2.0, 4.0]])
    terminated = torch.tensor([False, True, False])
    assert_allclose(dqn.q_learning_target(rewards, q_next, terminated, 0.5).numpy(), [3.0, 1.0, 3.0])


# ---------------------------------------------------------------- target network
def test_sync_target_copies_and_stays_independent():
    torch.manual_seed(0)
    online, target = dqn.QNetwork(4, 2, (8,)), dqn.QNetwork(4, 2, (8,))
    x = torch.randn(5, 4)
    assert not torch.allclose(online(x), target(x))
    dqn.sync_target(target, online)
    assert torch.equal(online(x), target(x))
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    assert not torch.allclose(online(x), target(x))  # a copy, not shared tensors


def test_one_update_moves_q_towards_the_target():
    torch.manual_seed(0)
    net = dqn.QNetwork(4, 2, (32,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    obs, actions, targets = torch.randn(64, 4), torch.randint(0, 2, (64,)), torch.randn(64) + 5
    before = dqn.dqn_loss(net(obs), actions, targets).item()
    for _ in range(20):
        loss = dqn.dqn_loss(net(obs), actions, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert dqn.dqn_loss(net(obs), actions, targets).item() < 0.5 * before


# ---------------------------------------------------------------- evaluation
class _Controller(torch.nn.Module):
    """A hand-made linear balancing rule: push right when 0.5 x + x_dot + 10 theta + 2 theta_dot > 0."""

    def forward(self, obs):
        score = obs @ torch.tensor([0.5, 1.0, 10.0, 2.0])
        return torch.stack([-score, score], dim=1)


class _AlwaysLeft(torch.nn.Module):
    def forward(self, obs):
        return torch.tensor([[1.0, 0.0]]).repeat(obs.shape[0], 1)


def test_greedy_returns_counts_each_episode_once():
    good = dqn.greedy_returns(_Controller(), n_episodes=10, seed=0)
    assert good.shape == (10,) and np.all(good == 500.0)  # truncated at 500, the reset step adds nothing
    bad = dqn.greedy_returns(_AlwaysLeft(), n_episodes=20, seed=0)
    assert np.all((bad >= 8) & (bad <= 12))                 # pushing one way drops the pole in ~10 steps
    assert_array_equal(dqn.greedy_returns(_AlwaysLeft(), 20, seed=0), bad)


# ---------------------------------------------------------------- benchmark smoke test
@pytest.fixture(scope="module")
def bench05():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ch05.py"
    spec = importlib.util.spec_from_file_location("bench_ch05", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_main_tiny(bench05, capsys):
    threads = torch.get_num_threads()
    try:
        result = bench05.main(["--repeats", "1", "--env-sizes", "1", "4", "--env-steps", "20", "--batch-sizes", "8",
                               "--updates", "5", "--train-steps", "30"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "(a)" in out and "(d)" in out and "gradient updates" in out
    assert [r["num_envs"] for r in result["env"]] == [1, 4]
    assert result["updates"][0]["updates_per_s"] > 0
    # 30 vector steps of 8 envs; updates start once the buffer holds a batch (128 transitions,
    # 16 steps at the earliest: reset steps are not stored).
    assert 0 < result["training"]["updates"] <= 30 - 15


def test_bench_rejects_bad_arguments(bench05):
    with pytest.raises(SystemExit):
        bench05.main(["--repeats", "0"])
