"""Tests for course_lib.pg: tabular policy-gradient kernels and the CartPole rollout collectors.

Tabular kernels are checked against plain loops and against quantities that do
not share their formula (finite differences of J, power series of P_pi,
sampled frequencies). The collectors are checked by replaying their episodes
in gymnasium's single (non-vector) CartPole from the same float64 start state.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from course_lib.bellman import evaluate_policy
from course_lib.checks import random_mdp
from course_lib.mdp import small_gridworld, uniform_policy
from course_lib.pg import (
    actor_critic_loss,
    bootstrap_truncated,
    categorical_entropy,
    categorical_log_prob,
    chain_mdp,
    collect_episodes,
    collect_rollout,
    discounted_visitation,
    exact_policy_gradient,
    expected_gae_at_start,
    gae_bias_variance,
    make_cartpole,
    mlp,
    reinforce_loss,
    sample_actions,
    sample_episodes,
    sample_gae_at_start,
    softmax_policy,
    start_rollouts,
    tabular_score_sums,
)
from course_lib.returns import discounted_returns, gae


# ====================================================================== tabular
def test_softmax_policy_matches_loop_and_is_stable():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(5, 3)) * 3
    pi = softmax_policy(theta)
    for s in range(5):
        z = [np.exp(x) for x in theta[s]]
        for a in range(3):
            assert pi[s, a] == pytest.approx(z[a] / sum(z), rel=1e-12)
    big = softmax_policy(np.array([[1000.0, 1000.0 + np.log(3.0)]]))
    assert_allclose(big, [[0.25, 0.75]])


@pytest.mark.parametrize("theta", [np.zeros(3), np.zeros((2, 0)), np.array([[np.nan, 0.0]])])
def test_softmax_policy_rejects_bad_theta(theta):
    with pytest.raises(ValueError, match="theta"):
        softmax_policy(theta)


def visitation_series(mdp, pi, mu, n_terms=3000):
    """d = sum_t gamma^t mu P_pi^t restricted to live states, by repeated vector-matrix products."""
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    live = ~mdp.terminal
    p = mu * live
    d = np.zeros(mdp.n_states)
    for t in range(n_terms):
        d += mdp.gamma**t * p
        p = (p @ P_pi) * live  # mass that enters a terminal state stops counting
    return d


@pytest.mark.parametrize("gamma, n_terminal", [(0.9, 0), (0.8, 2), (0.95, 1)])
def test_discounted_visitation_matches_power_series(gamma, n_terminal):
    rng = np.random.default_rng(1)
    mdp = random_mdp(rng, 7, 3, gamma, n_terminal=n_terminal)
    pi = rng.dirichlet(np.ones(3), size=7)
    mu = rng.dirichlet(np.ones(7))
    assert_allclose(discounted_visitation(mdp, pi, mu), visitation_series(mdp, pi, mu), atol=1e-10)


def test_discounted_visitation_counts_visits_when_undiscounted():
    # Example 4.1, gamma = 1: d sums to the expected episode length, which is -V (reward -1 a step).
    g = small_gridworld()
    pi = uniform_policy(g)
    for s in (1, 5, 6):
        mu = np.eye(16)[s]
        assert discounted_visitation(g, pi, mu).sum() == pytest.approx(-evaluate_policy(g, pi)[s])


def test_discounted_visitation_rejects_bad_mu():
    g = small_gridworld(0.9)
    with pytest.raises(ValueError, match="mu"):
        discounted_visitation(g, uniform_policy(g), np.ones(16))
    with pytest.raises(ValueError, match="mu"):
        discounted_visitation(g, uniform_policy(g), np.ones(15) / 15)


@pytest.mark.parametrize("which", ["grid", "random", "chain"])
def test_exact_policy_gradient_matches_finite_differences(which):
    rng = np.random.default_rng(2)
    if which == "grid":
        mdp = small_gridworld(0.9)
    elif which == "random":
        mdp = random_mdp(rng, 6, 3, 0.85, n_terminal=1)
    else:
        mdp = chain_mdp(5, slip=0.2, gamma=0.95)
    theta = rng.normal(size=(mdp.n_states, mdp.n_actions))
    mu = rng.dirichlet(np.ones(mdp.n_states)) * ~mdp.terminal
    mu /= mu.sum()

    def J(th):
        return mu @ evaluate_policy(mdp, softmax_policy(th))

    eps = 1e-6
    numeric = np.zeros_like(theta)
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            up, down = theta.copy(), theta.copy()
            up[s, a] += eps
            down[s, a] -= eps
            numeric[s, a] = (J(up) - J(down)) / (2 * eps)
    assert_allclose(exact_policy_gradient(mdp, theta, mu), numeric, atol=1e-7)


def test_sample_episodes_follows_the_dynamics():
    rng = np.random.default_rng(3)
    mdp = random_mdp(rng, 4, 2, 0.9, n_terminal=1)
    pi = np.array([[0.5, 0.5], [0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    E = 20000
    ep = sample_episodes(mdp, pi, rng.integers(1, 4, size=E), 6, np.random.default_rng(4))
    m = ep.mask
    s, a = ep.states[m], ep.actions[m]
    # action frequencies in each live state
    for state in (1, 2, 3):
        freq = np.mean(a[s == state] == 1)
        n = np.sum(s == state)
        assert abs(freq - pi[state, 1]) < 5 * np.sqrt(pi[state, 1] * (1 - pi[state, 1]) / n)
    # next-state frequencies for one (s, a): the next state is the following step's state,
    # or the terminal state 0 when the step is done.
    nxt = np.where(ep.dones[:, :-1], 0, ep.states[:, 1:])
    sel = m[:, :-1] & (ep.states[:, :-1] == 2) & (ep.actions[:, :-1] == 0)
    counts = np.bincount(nxt[sel], minlength=4) / sel.sum()
    assert_allclose(counts, mdp.P[2, 0], atol=5 / np.sqrt(sel.sum()))
    # rewards are R[s, a] on live steps and 0 elsewhere
    assert_allclose(ep.rewards[m], mdp.R[s, a])
    assert np.all(ep.rewards[~m] == 0)


def test_sample_episodes_mask_and_dones_are_consistent():
    rng = np.random.default_rng(5)
    g = small_gridworld(0.9)
    ep = sample_episodes(g, uniform_policy(g), np.array([0, 1, 5, 15, 6]), 40, rng)
    assert not ep.mask[0].any() and not ep.mask[3].any()  # started in a terminal state
    for e in range(5):
        m, d = ep.mask[e], ep.dones[e]
        n = m.sum()
        assert np.all(m[:n]) and not np.any(m[n:])  # a prefix
        assert d.sum() <= 1 and (d.sum() == 0 or d[n - 1])
        if d.any():
            assert g.terminal[ep.last_states[e]]
    assert np.all(~ep.dones | ep.mask)


def test_sample_episodes_first_actions_and_monte_carlo_values():
    rng = np.random.default_rng(6)
    mdp = chain_mdp(4, slip=0.1, gamma=0.9)
    pi = np.tile([0.3, 0.7], (5, 1))
    V = evaluate_policy(mdp, pi)
    Q = mdp.R + mdp.gamma * mdp.P @ V
    E = 6000
    ep = sample_episodes(mdp, pi, np.full(E, 1), 120, rng, first_actions=np.zeros(E, dtype=int))
    assert np.all(ep.actions[:, 0] == 0)
    G0 = discounted_returns(ep.rewards, 0.9, ep.dones)[:, 0]
    assert abs(G0.mean() - Q[1, 0]) < 4 * G0.std() / np.sqrt(E)


def test_sample_episodes_is_reproducible_and_validates():
    g = small_gridworld(0.9)
    pi = uniform_policy(g)
    a = sample_episodes(g, pi, np.array([5, 6]), 10, np.random.default_rng(7))
    b = sample_episodes(g, pi, np.array([5, 6]), 10, np.random.default_rng(7))
    assert np.array_equal(a.states, b.states) and np.array_equal(a.rewards, b.rewards)
    with pytest.raises(ValueError, match="starts"):
        sample_episodes(g, pi, np.array([16]), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="T"):
        sample_episodes(g, pi, np.array([5]), 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="first_actions"):
        sample_episodes(g, pi, np.array([5]), 3, np.random.default_rng(0), first_actions=np.array([4]))
    with pytest.raises(ValueError, match="pi"):
        sample_episodes(g, np.ones((16, 4)), np.array([5]), 3, np.random.default_rng(0))


def score_sums_loop(theta, states, actions, weights, mask):
    pi = softmax_policy(theta)
    E, T = states.shape
    out = np.zeros((E,) + theta.shape)
    for e in range(E):
        for t in range(T):
            if not mask[e, t]:
                continue
            s, a = states[e, t], actions[e, t]
            for b in range(theta.shape[1]):
                out[e, s, b] += weights[e, t] * ((1.0 if b == a else 0.0) - pi[s, b])
    return out


@pytest.mark.parametrize("E, T, S, A", [(5, 7, 4, 3), (1, 1, 2, 2), (3, 12, 6, 4)])
def test_tabular_score_sums_matches_loop(E, T, S, A):
    rng = np.random.default_rng(E * 100 + T)
    theta = rng.normal(size=(S, A))
    states = rng.integers(S, size=(E, T))
    actions = rng.integers(A, size=(E, T))
    weights = rng.normal(size=(E, T))
    mask = rng.random((E, T)) < 0.8
    assert_allclose(tabular_score_sums(theta, states, actions, weights, mask),
                    score_sums_loop(theta, states, actions, weights, mask), atol=1e-12)


def test_tabular_score_is_the_gradient_of_log_pi():
    # One step, weight 1: the sum is grad_theta log pi(a|s), checked by finite differences.
    rng = np.random.default_rng(8)
    theta = rng.normal(size=(3, 4))
    g = tabular_score_sums(theta, np.array([[2]]), np.array([[1]]), np.ones((1, 1)), np.ones((1, 1), bool))[0]
    eps = 1e-6
    for s in range(3):
        for b in range(4):
            up, down = theta.copy(), theta.copy()
            up[s, b] += eps
            down[s, b] -= eps
            num = (np.log(softmax_policy(up)[2, 1]) - np.log(softmax_policy(down)[2, 1])) / (2 * eps)
            assert g[s, b] == pytest.approx(num, abs=1e-7)


def test_tabular_score_sums_rejects_bad_input():
    theta = np.zeros((3, 2))
    ok = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match="actions"):
        tabular_score_sums(theta, ok, np.zeros((2, 3), dtype=int), np.ones((2, 4)), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="states"):
        tabular_score_sums(theta, ok + 3, ok, np.ones((2, 4)), np.ones((2, 4), bool))


def test_reinforce_estimate_with_and_without_baseline_is_unbiased():
    # The chapter-6 claim in miniature: both estimators average to the exact gradient.
    rng = np.random.default_rng(9)
    mdp = chain_mdp(4, slip=0.2, gamma=0.9)
    theta = rng.normal(size=(5, 2)) * 0.5
    pi = softmax_policy(theta)
    mu = np.array([1.0, 0, 0, 0, 0])
    exact = exact_policy_gradient(mdp, theta, mu)
    E, T = 4000, 80
    ep = sample_episodes(mdp, pi, np.zeros(E, dtype=int), T, rng)
    G = discounted_returns(ep.rewards, 0.9, ep.dones)
    disc = 0.9 ** np.arange(T)
    V = evaluate_policy(mdp, pi)
    variances = []
    for baseline in (0.0, V[ep.states]):
        g = tabular_score_sums(theta, ep.states, ep.actions, disc * (G - baseline), ep.mask)
        se = g.std(axis=0, ddof=1) / np.sqrt(E) + 1e-12
        assert np.max(np.abs(g.mean(axis=0) - exact) / se) < 4.5
        variances.append(g.var(axis=0).sum())
    assert variances[1] < variances[0]


def test_chain_mdp_values_by_hand():
    # No slip, always right: from cell n - 1 the goal pays 1; each earlier cell adds a step of -0.05.
    n, gamma = 4, 0.9
    mdp = chain_mdp(n, slip=0.0, gamma=gamma, goal_reward=1.0, step_reward=-0.05)
    pi = np.tile([0.0, 1.0], (n + 1, 1))
    V = evaluate_policy(mdp, pi)
    expected = [0.0] * (n + 1)
    expected[n - 1] = 1.0
    for s in range(n - 2, -1, -1):
        expected[s] = -0.05 + gamma * expected[s + 1]
    assert_allclose(V, expected)
    assert mdp.terminal.tolist() == [False] * n + [True]
    with pytest.raises(ValueError, match="slip"):
        chain_mdp(3, slip=1.5)


def test_chain_mdp_slip_reverses_the_move():
    mdp = chain_mdp(3, slip=0.25)
    assert_allclose(mdp.P[1, 1], [0.25, 0.0, 0.75, 0.0])
    assert_allclose(mdp.P[0, 0], [0.75, 0.25, 0.0, 0.0])
    assert mdp.R[2, 1] == pytest.approx(0.75 * 1.0 + 0.25 * -0.05)


# ====================================================================== torch policy pieces
def test_categorical_log_prob_and_entropy_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 3, (5, 7), generator=g)
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(categorical_log_prob(logits, actions), dist.log_prob(actions))
    assert torch.allclose(categorical_entropy(logits), dist.entropy())
    with pytest.raises(ValueError, match="actions"):
        categorical_log_prob(logits, actions[:, :3])


def test_sample_actions_frequencies_and_reproducibility():
    probs = torch.tensor([0.1, 0.6, 0.3])
    logits = probs.log().expand(20000, 3)
    a = sample_actions(logits, torch.Generator().manual_seed(1))
    freq = torch.bincount(a, minlength=3).double() / 20000
    assert torch.allclose(freq, probs.double(), atol=0.015)
    b = sample_actions(logits, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert sample_actions(torch.zeros(2, 5, 4)).shape == (2, 5)


def test_mlp_shapes_and_small_output_gain():
    torch.manual_seed(0)
    net = mlp(4, 2, hidden=(32, 32), out_gain=0.01)
    out = net(torch.randn(10, 4))
    assert out.shape == (10, 2)
    assert out.abs().max() < 0.1  # nearly uniform initial policy
    assert mlp(3, 1, hidden=())(torch.zeros(2, 3)).shape == (2, 1)
    with pytest.raises(ValueError):
        mlp(0, 2)


# ====================================================================== CartPole collectors
def random_policy(obs):
    return torch.zeros(obs.shape[0], 2)


def replay(start_state, actions, max_steps=500):
    """Step gymnasium's single CartPole from ``start_state`` (float64, shape (4,)) with ``actions``."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.array(start_state, dtype=np.float64)
    obs_seq, term = [np.array(start_state, dtype=np.float32)], False
    for a in actions:
        obs, r, term, _, _ = env.step(int(a))
        obs_seq.append(obs)
        assert r == 1.0
    return np.array(obs_seq), term


def test_collect_episodes_records_exactly_one_episode_per_env():
    env = make_cartpole(6)
    ep = collect_episodes(env, random_policy, seed=3, generator=torch.Generator().manual_seed(0))
    # the start states the vector env drew, recomputed from the same seed
    env2 = make_cartpole(6)
    env2.reset(seed=3)
    starts = env2.state.T.copy()  # (N, 4) float64
    N, T, D = ep.obs.shape
    assert (N, D) == (6, 4)
    assert T == int(ep.lengths.max())
    for i in range(N):
        n = int(ep.lengths[i])
        m = ep.mask[i]
        assert m[:n].all() and not m[n:].any()
        assert ep.rewards[i].sum() == n and torch.all(ep.rewards[i, n:] == 0)
        obs_seq, terminated = replay(starts[i], ep.actions[i, :n].tolist())
        assert_allclose(ep.obs[i, :n].numpy(), obs_seq[:n], atol=1e-5)
        assert terminated != bool(ep.truncated[i])  # the episode really ended at its last step
        # log-probs are those of the uniform policy
    assert torch.allclose(ep.logp[ep.mask], torch.full((int(ep.mask.sum()),), float(np.log(0.5))))


def test_collect_episodes_reports_truncation():
    env = make_cartpole(3, max_episode_steps=4)
    ep = collect_episodes(env, random_policy, seed=0)
    assert torch.all(ep.lengths <= 4)
    assert torch.equal(ep.truncated, ep.lengths == 4)


def test_collect_rollout_marks_autoreset_steps_and_continues():
    env = make_cartpole(4, max_episode_steps=15)
    state = start_rollouts(env, seed=1)
    gen = torch.Generator().manual_seed(2)
    r1 = collect_rollout(env, random_policy, state, 23, gen)
    r2 = collect_rollout(env, random_policy, state, 23, gen)
    assert torch.equal(r1.obs[:, -1], r2.obs[:, 0])  # the second rollout starts where the first stopped
    valid = torch.cat([r1.valid, r2.valid], dim=1)
    dones = torch.cat([r1.dones, r2.dones], dim=1)
    rewards = torch.cat([r1.rewards, r2.rewards], dim=1)
    obs = torch.cat([r1.obs[:, :-1], r2.obs], dim=1)
    assert dones.any() and r1.truncated.any()
    # a step is an autoreset step exactly when the step before it ended an episode
    expected_valid = torch.ones_like(valid)
    expected_valid[:, 1:] = ~dones[:, :-1]
    assert torch.equal(valid, expected_valid)
    assert torch.all(rewards[~valid] == 0) and torch.all(rewards[valid] == 1)
    assert not dones[~valid].any()
    # after a termination, obs[t + 1] is the final (out-of-bounds) observation; obs[t + 2] is a fresh start
    n, t = torch.nonzero(torch.cat([r1.terminated, r2.terminated], 1) & (torch.arange(46) < 44), as_tuple=True)
    for i, j in zip(n.tolist(), t.tolist()):
        x, theta = obs[i, j + 1, 0], obs[i, j + 1, 2]
        assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
        assert torch.all(obs[i, j + 2].abs() <= 0.05)
    # episode bookkeeping: returns are lengths (reward 1 a step), at most the time limit
    assert r1.episode_returns == [float(x) for x in r1.episode_lengths]
    assert all(1 <= x <= 15 for x in state.finished_lengths)
    assert state.env_steps == int(valid.sum())
    assert len(state.finished_returns) == int(dones.sum())


def test_collect_rollout_matches_a_replay():
    env = make_cartpole(2)
    state = start_rollouts(env, seed=5)
    start = env.state.T.copy()
    r = collect_rollout(env, random_policy, state, 60, torch.Generator().manual_seed(3))
    for i in range(2):
        first_done = int(torch.nonzero(r.dones[i])[0]) if r.dones[i].any() else 59
        n = first_done + 1
        obs_seq, terminated = replay(start[i], r.actions[i, :n].tolist())
        assert_allclose(r.obs[i, : n + 1].numpy(), obs_seq, atol=1e-5)
        assert terminated == bool(r.terminated[i, first_done])


def test_rollout_advantages_equal_a_per_episode_loop():
    # The pipeline the PPO and actor-critic chapters use: values from obs (N, T + 1),
    # bootstrap_truncated, gae with dones = terminated | truncated, keep the valid steps.
    # The reference splits each sub-env's stream into episodes and runs GAE on each,
    # bootstrapping truncated episodes (and the unfinished last one) with V of the final obs.
    gamma, lam = 0.97, 0.9
    env = make_cartpole(3, max_episode_steps=12)
    state = start_rollouts(env, seed=0)
    r = collect_rollout(env, random_policy, state, 40, torch.Generator().manual_seed(0))
    values = (r.obs * torch.tensor([0.3, -0.2, 1.5, 0.1])).sum(-1).double() + 2.0  # any critic, (N, T + 1)
    rewards = bootstrap_truncated(r.rewards.double(), values[:, 1:], r.truncated, gamma)
    adv = gae(rewards, values, gamma, lam, r.dones)
    N, T = r.rewards.shape
    for i in range(N):
        t = 0
        while t < T:
            if not r.valid[i, t]:
                t += 1
                continue
            start = t
            while t < T - 1 and not r.dones[i, t]:
                t += 1
            end = t  # last step of this episode inside the rollout
            steps = range(start, end + 1)
            if r.terminated[i, end]:
                bootstrap = 0.0
            else:  # truncated, or cut by the end of the rollout
                bootstrap = float(values[i, end + 1])
            a = 0.0
            for k in reversed(steps):
                v_next = bootstrap if k == end else float(values[i, k + 1])
                delta = float(r.rewards[i, k]) + gamma * v_next - float(values[i, k])
                a = delta + gamma * lam * a
                assert float(adv[i, k]) == pytest.approx(a, abs=1e-9), f"env {i}, step {k}"
            t = end + 1


def test_bootstrap_truncated_numpy_and_torch():
    rng = np.random.default_rng(10)
    r, v = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    tr = rng.random((3, 8)) < 0.3
    expected = r.copy()
    for i in range(3):
        for t in range(8):
            if tr[i, t]:
                expected[i, t] += 0.9 * v[i, t]
    assert_allclose(bootstrap_truncated(r, v, tr, 0.9), expected)
    got = bootstrap_truncated(torch.tensor(r), torch.tensor(v), torch.tensor(tr), 0.9)
    assert isinstance(got, torch.Tensor)
    assert_allclose(got.numpy(), expected)
    with pytest.raises(ValueError, match="next_values"):
        bootstrap_truncated(r, v[:, 1:], tr, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        bootstrap_truncated(r, v, tr, 1.5)


def test_make_cartpole_validates():
    with pytest.raises(ValueError, match="num_envs"):
        make_cartpole(0)


# ====================================================================== GAE on a tabular MDP
def _chain_setup(gamma=0.9):
    mdp = chain_mdp(4, slip=0.2, gamma=gamma)
    pi = np.tile([0.4, 0.6], (5, 1))
    return mdp, pi, evaluate_policy(mdp, pi)


def test_expected_gae_with_the_true_critic_is_the_advantage_for_every_lambda():
    mdp, pi, V = _chain_setup()
    A = mdp.R + mdp.gamma * mdp.P @ V - V[:, None]
    A[mdp.terminal] = 0
    got = expected_gae_at_start(mdp, pi, V, [0.0, 0.3, 0.9, 1.0], horizon=30)
    for layer in got:
        assert_allclose(layer, A, atol=1e-12)


def test_expected_gae_lambda_zero_is_the_one_step_mean_and_lambda_one_the_return_minus_critic():
    mdp, pi, V = _chain_setup()
    rng = np.random.default_rng(11)
    critic = V + rng.normal(size=5) * 0.3
    critic_live = np.where(mdp.terminal, 0.0, critic)
    got = expected_gae_at_start(mdp, pi, critic, [0.0, 1.0], horizon=400)
    one_step = mdp.R + mdp.gamma * mdp.P @ critic_live - critic_live[:, None]
    live = ~mdp.terminal
    assert_allclose(got[0][live], one_step[live], atol=1e-12)
    Q = mdp.R + mdp.gamma * mdp.P @ V
    assert_allclose(got[1][live], (Q - critic_live[:, None])[live], atol=1e-10)  # gamma^400: nothing left


def test_sampled_gae_matches_a_per_episode_loop_and_its_exact_mean():
    mdp, pi, V = _chain_setup()
    critic = 0.5 * V
    lams = np.array([0.0, 0.7, 1.0])
    E, H = 3000, 25
    starts, first = np.full(E, 1), np.full(E, 0)
    est = sample_gae_at_start(mdp, pi, critic, lams, starts, first, H, np.random.default_rng(12))
    ep = sample_episodes(mdp, pi, starts, H, np.random.default_rng(12), first_actions=first)  # the same draws
    for li, lam in enumerate(lams):
        for e in range(0, E, 97):
            total, weight = 0.0, 1.0
            for t in range(H):
                if not ep.mask[e, t]:
                    break
                v_next = 0.0 if ep.dones[e, t] else critic[ep.states[e, t + 1] if t + 1 < H else ep.last_states[e]]
                delta = ep.rewards[e, t] + mdp.gamma * v_next - critic[ep.states[e, t]]
                total += weight * delta
                weight *= mdp.gamma * lam
            assert est[li, e] == pytest.approx(total, abs=1e-12)
    exact = expected_gae_at_start(mdp, pi, critic, lams, H)[:, 1, 0]
    se = est.std(axis=1) / np.sqrt(E)
    assert np.all(np.abs(est.mean(axis=1) - exact) < 4.5 * se)


def test_gae_bias_variance_shape_and_direction():
    mdp, pi, V = _chain_setup()
    out = gae_bias_variance(mdp, pi, 0.5 * V, np.linspace(0, 1, 5), n_per_pair=300, horizon=60, seed=1)
    assert out["bias2"].shape == out["variance"].shape == out["bias2_raw"].shape == (5,)
    assert out["bias2"][0] > out["bias2"][-1] and out["bias2"][-1] < 1e-6
    assert out["variance"][-1] > out["variance"][0]
    # the raw bias at lambda = 1 is the critic's own error in the state, (V_hat - V)^2 = (V / 2)^2 on average
    live = ~mdp.terminal
    # (up to the gamma^60 the horizon leaves)
    assert out["bias2_raw"][-1] == pytest.approx(np.mean(np.repeat((0.5 * V[live]) ** 2, 2)), rel=1e-3)
    with pytest.raises(ValueError, match="lams"):
        gae_bias_variance(mdp, pi, V, [0.5, 1.5], 10, 10)
    with pytest.raises(ValueError, match="critic"):
        expected_gae_at_start(mdp, pi, V[:3], [0.5], 10)
    with pytest.raises(ValueError, match="n_per_pair"):
        gae_bias_variance(mdp, pi, V, [0.5], 1, 10)


# ====================================================================== losses
def test_reinforce_loss_value_gradient_and_detached_baseline():
    g = torch.Generator().manual_seed(3)
    logp = (-torch.rand(3, 4, generator=g)).requires_grad_(True)
    G = torch.randn(3, 4, generator=g)
    b = torch.randn(3, 4, generator=g).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    loss = reinforce_loss(logp, G, b, mask)
    expected = 0.0
    for i in range(3):
        for t in range(4):
            if mask[i, t]:
                expected -= float(logp[i, t].detach()) * float(G[i, t] - b[i, t].detach()) / 3
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert b.grad is None
    assert torch.allclose(logp.grad, -(G - b.detach()) * mask / 3)
    with pytest.raises(ValueError, match="mask"):
        reinforce_loss(logp, G, b, mask[:, :2])


def test_actor_critic_loss_by_hand_and_entropy_term():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5]])).requires_grad_(True)
    values = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -2.0, 5.0]])
    ret = torch.tensor([[2.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    ent = torch.tensor([[0.6, 0.4, 9.0]])
    loss = actor_critic_loss(logp, values, adv, ret, mask, value_coef=0.5, entropy=ent, entropy_coef=0.1)
    policy = -(np.log(0.5) * 1.0 + np.log(0.25) * -2.0) / 2
    value = ((1.0 - 2.0) ** 2 + 0.0) / 2
    assert float(loss.detach()) == pytest.approx(policy + 0.5 * value - 0.1 * 0.5, rel=1e-6)
    loss.backward()
    assert torch.allclose(values.grad, torch.tensor([[0.5 * 2 * (1.0 - 2.0) / 2, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="returns"):
        actor_critic_loss(logp, values, adv, ret[:, :2], mask)
