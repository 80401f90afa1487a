"""Policy-gradient tools: tabular softmax policies with their exact gradient, and CartPole rollouts.

Two halves, one per use.

**Tabular** (chapters 6 and 7), where everything can be computed exactly with
the chapter-1 kernels and compared with what sampling gives:

- ``softmax_policy(theta)``: pi(a|s) = exp(theta[s, a]) / sum_b exp(theta[s, b]);
- ``discounted_visitation(mdp, pi, mu)``: d(s) = sum_t gamma^t Pr(S_t = s), from start distribution mu;
- ``exact_policy_gradient(mdp, theta, mu)``: dJ/dtheta[s, a] = d(s) pi(a|s) A(s, a);
- ``sample_episodes(mdp, pi, starts, T, rng)``: a batch of episodes of a TabularMDP, all advancing at once;
- ``tabular_score_sums``: per-episode sums of weight_t * grad log pi(a_t|s_t), the REINFORCE estimator;
- ``chain_mdp``: a small corridor with a slippery floor whose values are known exactly;
- ``expected_gae_at_start``, ``sample_gae_at_start``, ``gae_bias_variance``: GAE's estimate of
  A(s, a) with an imperfect critic, exactly in expectation and by sampling (chapter 7).

**CartPole** (chapters 6 to 9) with gymnasium's numpy-batched CartPole:

- ``mlp``, ``categorical_log_prob``, ``categorical_entropy``, ``sample_actions``;
- ``reinforce_loss`` and ``actor_critic_loss``, the surrogate losses of chapters 6 and 7;
- ``make_cartpole(num_envs)``;
- ``collect_episodes(env, policy, ...)``: exactly one complete episode per sub-environment
  (what REINFORCE needs: unbiased Monte Carlo returns);
- ``start_rollouts`` + ``collect_rollout(env, policy, state, T)``: fixed-length segments that
  continue from call to call (what actor-critic, TRPO and PPO need);
- ``bootstrap_truncated(rewards, next_values, truncated, gamma)``: folds the value of the
  state where the time limit cut an episode into its last reward.

Conventions (as in ``course_lib.returns``): time is the last axis of rewards,
actions, log-probs, dones and masks, shape (N, T); observations carry their
feature axis after time, shape (N, T, D). ``rewards[:, t]`` follows the action
at step t; ``dones[:, t]`` says the episode ended with it.

Gymnasium's vector CartPole resets a finished sub-environment on the *next*
call to ``step`` (autoreset mode "NextStep"): that call ignores the action,
returns the first observation of the new episode with reward 0 and
terminated = truncated = False. It is not a transition of the MDP, so the
rollouts below mark it ``valid = False`` and every loss must leave it out.

Speed: the networks here are tiny, and on a 2-core machine torch's second
intra-op thread costs far more than it saves (small softmaxes stalled for
milliseconds under load); notebooks that train them call
``torch.set_num_threads(1)`` first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .bellman import check_policy, evaluate_policy, policy_dynamics, q_from_v
from .mdp import TabularMDP

if TYPE_CHECKING:  # torch is imported lazily: the tabular half of this module does not need it
    from torch import Tensor

__all__ = [
    # tabular
    "softmax_policy",
    "discounted_visitation",
    "exact_policy_gradient",
    "sample_episodes",
    "TabularEpisodes",
    "tabular_score_sums",
    "chain_mdp",
    "expected_gae_at_start",
    "sample_gae_at_start",
    "gae_bias_variance",
    # CartPole
    "mlp",
    "categorical_log_prob",
    "categorical_entropy",
    "sample_actions",
    "reinforce_loss",
    "actor_critic_loss",
    "make_cartpole",
    "Episodes",
    "collect_episodes",
    "EnvState",
    "Rollout",
    "start_rollouts",
    "collect_rollout",
    "bootstrap_truncated",
]


# ====================================================================== tabular
def softmax_policy(theta) -> np.ndarray:
    """pi[s, a] = exp(theta[s, a]) / sum_b exp(theta[s, b]), shape (S, A).

    The tabular softmax ("Gibbs") policy of Sutton and Barto (2018), eq. 13.2.
    Subtracting the row maximum first changes nothing mathematically and keeps
    exp() from overflowing.

    >>> softmax_policy(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] == 0:
        raise ValueError(f"theta must have shape (S, A) with A >= 1; got shape {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("theta must be finite (no NaN or inf)")
    z = np.exp(theta - theta.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _check_mu(mdp: TabularMDP, mu) -> np.ndarray:
    mu = np.asarray(mu, dtype=np.float64)
    if mu.shape != (mdp.n_states,):
        raise ValueError(f"mu must have shape (S,) = ({mdp.n_states},); got shape {mu.shape}")
    if mu.min() < 0 or abs(mu.sum() - 1.0) > 1e-8:
        raise ValueError(f"mu must be a probability distribution over states (>= 0, sums to 1); sums to {mu.sum():.6g}")
    return mu


def discounted_visitation(mdp: TabularMDP, pi, mu) -> np.ndarray:
    """d(s) = sum_t gamma^t Pr(S_t = s | S_0 ~ mu, pi), shape (S,); zero on terminal states.

    Solves d^T (I - gamma P_pi) = mu^T over the non-terminal states (terminal
    states absorb and contribute nothing). With gamma = 1 and episodes that end
    surely, d(s) is the expected number of visits to s.

    >>> from course_lib.mdp import small_gridworld, uniform_policy
    >>> g = small_gridworld()
    >>> mu = np.full(16, 0.0); mu[5] = 1.0
    >>> round(float(discounted_visitation(g, uniform_policy(g), mu).sum()), 6)   # expected episode length from state 5
    18.0
    """
    pi = check_policy(mdp, pi)
    mu = _check_mu(mdp, mu)
    P_pi, _ = policy_dynamics(mdp, pi)
    live = ~mdp.terminal
    d = np.zeros(mdp.n_states)
    A = np.eye(int(live.sum())) - mdp.gamma * P_pi[np.ix_(live, live)]
    d[live] = np.linalg.solve(A.T, mu[live])
    return d


def exact_policy_gradient(mdp: TabularMDP, theta, mu) -> np.ndarray:
    """dJ/dtheta for the tabular softmax policy, J = sum_s mu(s) V_pi(s); shape (S, A).

    The policy gradient theorem gives grad J = sum_s d(s) sum_a pi(a|s) grad log pi(a|s) Q(s, a),
    and for the softmax, d log pi(a|s) / d theta[s, b] = 1[a = b] - pi(b|s), so

        dJ/dtheta[s, a] = d(s) * pi(a|s) * (Q(s, a) - V(s)) = d(s) * pi(a|s) * A(s, a),

    with d the discounted visitation (``discounted_visitation``). Uses the
    chapter-1 kernels ``evaluate_policy`` and ``q_from_v``.
    """
    pi = softmax_policy(theta)
    V = evaluate_policy(mdp, pi)
    advantage = q_from_v(mdp, V) - V[:, None]
    return discounted_visitation(mdp, pi, mu)[:, None] * pi * advantage


@dataclass
class TabularEpisodes:
    """A batch of E episodes of a TabularMDP, cut after T steps; arrays of shape (E, T).

    ``mask[e, t]`` is True while episode e is still running at step t (it is
    False from the step after the one that entered a terminal state); masked
    entries hold state 0, action 0, reward 0. ``dones[e, t]`` is True on the
    step whose reward ended the episode. ``last_states`` (E,) is the state after
    step T - 1 (for bootstrapping an unfinished episode).
    """

    states: np.ndarray       # (E, T) int: S_t
    actions: np.ndarray      # (E, T) int: A_t
    rewards: np.ndarray      # (E, T) float: R_{t+1}
    dones: np.ndarray        # (E, T) bool: S_{t+1} is terminal
    mask: np.ndarray         # (E, T) bool: step t happened
    last_states: np.ndarray  # (E,) int: S_T


def sample_episodes(mdp: TabularMDP, pi, starts, T: int, rng, first_actions=None) -> TabularEpisodes:
    """Sample episodes S_0, A_0, R_1, S_1, ... for every start state at once; see ``TabularEpisodes``.

    starts: int array (E,) of start states. first_actions: optional int array
    (E,) that fixes A_0 (to estimate Q(s, a) or A(s, a) for a given pair);
    later actions follow ``pi`` (S, A). T: number of steps. rng: a numpy Generator.
    The loop runs over time only; all E episodes advance together.
    """
    pi = check_policy(mdp, pi)
    starts = np.asarray(starts)
    if starts.ndim != 1 or starts.dtype.kind not in "iu" or (starts.size and (starts.min() < 0 or starts.max() >= mdp.n_states)):
        raise ValueError(f"starts must be a 1-D int array of states in [0, {mdp.n_states}); got {starts!r}")
    if int(T) < 1:
        raise ValueError(f"T must be >= 1; got {T}")
    E, T = starts.shape[0], int(T)
    if first_actions is not None:
        first_actions = np.asarray(first_actions)
        if first_actions.shape != (E,) or first_actions.dtype.kind not in "iu" or (
            E and (first_actions.min() < 0 or first_actions.max() >= mdp.n_actions)
        ):
            raise ValueError(f"first_actions must be an int array of shape ({E},) with actions in [0, {mdp.n_actions})")
    cum_pi = np.cumsum(pi, axis=1)
    cum_P = np.cumsum(mdp.P, axis=2)
    out = TabularEpisodes(
        states=np.zeros((E, T), dtype=np.int64), actions=np.zeros((E, T), dtype=np.int64),
        rewards=np.zeros((E, T)), dones=np.zeros((E, T), dtype=bool), mask=np.zeros((E, T), dtype=bool),
        last_states=np.zeros(E, dtype=np.int64),
    )
    s = starts.astype(np.int64)
    alive = ~mdp.terminal[s]
    for t in range(T):
        # Inverse-CDF draws; min() guards against round-off at the top of a cumulative sum.
        a = np.minimum((rng.random(E)[:, None] > cum_pi[s]).sum(axis=1), mdp.n_actions - 1)
        if t == 0 and first_actions is not None:
            a = first_actions.astype(np.int64)
        s_next = np.minimum((rng.random(E)[:, None] > cum_P[s, a]).sum(axis=1), mdp.n_states - 1)
        out.states[:, t] = np.where(alive, s, 0)
        out.actions[:, t] = np.where(alive, a, 0)
        out.rewards[:, t] = np.where(alive, mdp.R[s, a], 0.0)
        out.mask[:, t] = alive
        ended = alive & mdp.terminal[s_next]
        out.dones[:, t] = ended
        s = np.where(alive, s_next, s)
        alive = alive & ~ended
    out.last_states = s
    return out


def tabular_score_sums(theta, states, actions, weights, mask) -> np.ndarray:
    """Per-episode REINFORCE sums g_e = sum_t mask * weight_t * grad_theta log pi(a_t|s_t); shape (E, S, A).

    For the softmax policy, grad log pi(a|s) is zero outside row s, and in row s
    it is onehot(a) - pi(.|s). The mean of g_e over episodes estimates grad J
    when weight_t = gamma^t (G_t - b(s_t)) (Sutton and Barto 2018, section 13.4).

    theta: (S, A); states, actions: int (E, T); weights: float (E, T); mask: bool (E, T).

    >>> theta = np.zeros((1, 2))                                           # pi = (0.5, 0.5)
    >>> tabular_score_sums(theta, np.array([[0]]), np.array([[1]]), np.array([[2.0]]), np.array([[True]]))
    array([[[-1.,  1.]]])
    """
    pi = softmax_policy(theta)
    S, A = pi.shape
    states, actions = np.asarray(states), np.asarray(actions)
    weights = np.asarray(weights, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if states.ndim != 2:
        raise ValueError(f"states must have shape (E, T); got shape {states.shape}")
    for name, x in (("actions", actions), ("weights", weights), ("mask", mask)):
        if x.shape != states.shape:
            raise ValueError(f"{name} must have the shape of states {states.shape}; got shape {x.shape}")
    if states.size and (states.min() < 0 or states.max() >= S or actions.min() < 0 or actions.max() >= A):
        raise ValueError(f"states must lie in [0, {S}) and actions in [0, {A})")
    E = states.shape[0]
    w = (weights * mask).ravel()                              # (E * T,)
    episode = np.repeat(np.arange(E), states.shape[1])        # (E * T,) which episode each step belongs to
    # sum_t w_t onehot(s_t) onehot(a_t), by counting into flat (E, S, A) bins
    chosen = np.bincount((episode * S + states.ravel()) * A + actions.ravel(), weights=w, minlength=E * S * A)
    # sum_t w_t onehot(s_t), then times pi(.|s) for the "- pi(.|s)" part of the score
    visits = np.bincount(episode * S + states.ravel(), weights=w, minlength=E * S)
    return chosen.reshape(E, S, A) - visits.reshape(E, S, 1) * pi[None]


def chain_mdp(n: int = 6, slip: float = 0.2, gamma: float = 0.9, goal_reward: float = 1.0,
              step_reward: float = -0.05) -> TabularMDP:
    """A corridor of n cells plus a terminal goal to the right; actions 0 = left, 1 = right.

    Cell n - 1's "right" reaches the goal (state n, terminal) and pays
    ``goal_reward``; every other move pays ``step_reward``. With probability
    ``slip`` the floor sends the agent the other way. Walking left from cell 0
    stays in cell 0. States 0..n-1 are live; state n is the goal.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip must be in [0, 1]; got {slip}")
    S = n + 1
    P = np.zeros((S, 2, S))
    R = np.full((S, 2), float(step_reward))
    cells = np.arange(n)
    left, right = np.maximum(cells - 1, 0), cells + 1
    P[cells, 0, left] += 1.0 - slip
    P[cells, 0, right] += slip
    P[cells, 1, right] += 1.0 - slip
    P[cells, 1, left] += slip
    # Expected reward: the goal pays when the move actually lands in it.
    R[n - 1, 1] = (1.0 - slip) * goal_reward + slip * step_reward
    R[n - 1, 0] = slip * goal_reward + (1.0 - slip) * step_reward
    P[n, :, n] = 1.0
    R[n] = 0.0
    terminal = np.zeros(S, dtype=bool)
    terminal[n] = True
    return TabularMDP(P, R, gamma, terminal=terminal, shape=(1, S))


def _check_critic(mdp: TabularMDP, critic) -> np.ndarray:
    critic = np.asarray(critic, dtype=np.float64)
    if critic.shape != (mdp.n_states,):
        raise ValueError(f"critic must have shape (S,) = ({mdp.n_states},); got shape {critic.shape}")
    return np.where(mdp.terminal, 0.0, critic)  # a terminal state is worth 0 to any critic


def _check_lams(lams) -> np.ndarray:
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    if lams.ndim != 1 or np.any(~(lams >= 0.0)) or np.any(~(lams <= 1.0)):
        raise ValueError(f"lams must be a 1-D array of values in [0, 1]; got {lams}")
    return lams


def expected_gae_at_start(mdp: TabularMDP, pi, critic, lams, horizon: int) -> np.ndarray:
    """E[A_hat_0 | S_0 = s, A_0 = a] of GAE(gamma, lambda) with an arbitrary critic, exactly; shape (L, S, A).

    A_hat_0 = sum_{k < H} (gamma lambda)^k delta_k, with delta_k = R_{k+1} + gamma V_hat(S_{k+1}) - V_hat(S_k),
    over an episode cut after H = ``horizon`` steps (the last delta bootstraps from V_hat(S_H)) and
    stopped at a terminal state. By linearity, E[delta_0] = R[s, a] + gamma P[s, a] V_hat - V_hat(s),
    and for k >= 1 E[delta_k] = p_k . (r_pi + gamma P_pi V_hat - V_hat), with p_k the probability
    of being alive in each state at step k. With V_hat = V_pi every E[delta_k] with k >= 1 is 0 and
    the result is the true advantage Q - V for every lambda: the bias of GAE comes from the critic.

    critic: V_hat, shape (S,) (terminal entries are treated as 0); lams: (L,) values in [0, 1].
    """
    pi = check_policy(mdp, pi)
    V_hat = _check_critic(mdp, critic)
    lams = _check_lams(lams)
    if int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1; got {horizon}")
    gamma = mdp.gamma
    live = ~mdp.terminal
    P_pi, r_pi = policy_dynamics(mdp, pi)
    delta_first = mdp.R + gamma * mdp.P @ V_hat - V_hat[:, None]      # (S, A): E[delta_0 | s, a]
    delta_later = (r_pi + gamma * P_pi @ V_hat - V_hat) * live         # (S,): E[delta_k | S_k = s]
    p = mdp.P * live                                                   # (S, A, S): alive at step 1
    expected_delta = [delta_first]                                     # E[delta_k | s, a], k = 0..H-1
    for _ in range(1, int(horizon)):
        expected_delta.append(p @ delta_later)
        p = (p @ P_pi) * live
    expected_delta = np.stack(expected_delta)                          # (H, S, A)
    weights = (gamma * lams[:, None]) ** np.arange(int(horizon))       # (L, H)
    out = np.einsum("lh,hsa->lsa", weights, expected_delta)
    out[:, mdp.terminal] = 0.0
    return out


def sample_gae_at_start(mdp: TabularMDP, pi, critic, lams, starts, first_actions, horizon: int, rng) -> np.ndarray:
    """Sampled GAE estimates A_hat_0 for episodes that start with (starts[e], first_actions[e]); shape (L, E).

    Each episode is sampled with ``sample_episodes`` for ``horizon`` steps; its values are the
    critic's V_hat(S_t) with V_hat(S_H) as the bootstrap, and ``course_lib.returns.gae`` does the rest
    for every lambda in ``lams``.
    """
    from .returns import gae

    V_hat = _check_critic(mdp, critic)
    lams = _check_lams(lams)
    ep = sample_episodes(mdp, pi, starts, horizon, rng, first_actions=first_actions)
    values = np.concatenate([V_hat[ep.states], V_hat[ep.last_states][:, None]], axis=1)  # (E, H + 1)
    return np.stack([gae(ep.rewards, values, mdp.gamma, lam, ep.dones)[:, 0] for lam in lams])


def gae_bias_variance(mdp: TabularMDP, pi, critic, lams, n_per_pair: int, horizon: int, seed: int = 0) -> dict:
    """Bias and variance of GAE(gamma = mdp.gamma, lambda) as an estimate of the true advantage.

    For every live (s, a) pair, ``n_per_pair`` episodes start in s with first action a and
    ``sample_gae_at_start`` estimates A(s, a) with the critic V_hat = ``critic`` (S,). Errors
    are measured against A = Q_pi - V_pi from ``evaluate_policy`` and ``q_from_v``.

    Bias comes in two parts. An error that is the same for every action of a state (for
    example -(V_hat(s) - V(s)), which lambda = 1 leaves in) acts like a baseline: it does not
    bias the policy gradient (chapter 6). What does is the rest, the action-dependent part
    c(s, a) = b(s, a) - sum_a' pi(a'|s) b(s, a'), where b(s, a) = E[A_hat | s, a] - A(s, a).

    Returns a dict of arrays of shape (L,), averaged uniformly over the live (s, a) pairs:
    ``bias2`` (mean of c^2, exact, from ``expected_gae_at_start``), ``bias2_raw`` (mean of b^2,
    exact), ``variance`` (mean sample variance of A_hat given (s, a)); and ``lams``,
    ``A_true`` (S, A), ``mean_exact``, ``mean_sampled`` and ``se`` (L, S, A).
    """
    pi = check_policy(mdp, pi)
    lams = _check_lams(lams)
    if int(n_per_pair) < 2:
        raise ValueError(f"n_per_pair must be >= 2 to estimate a variance; got {n_per_pair}")
    V = evaluate_policy(mdp, pi)
    A_true = q_from_v(mdp, V) - V[:, None]
    A_true[mdp.terminal] = 0.0
    mean_exact = expected_gae_at_start(mdp, pi, critic, lams, horizon)            # (L, S, A)
    b = mean_exact - A_true[None]                                                  # (L, S, A)
    c = b - (pi[None] * b).sum(axis=2, keepdims=True)
    live_s = np.flatnonzero(~mdp.terminal)
    pairs_s = np.repeat(live_s, mdp.n_actions)                                     # (P,)
    pairs_a = np.tile(np.arange(mdp.n_actions), len(live_s))                       # (P,)
    starts = np.repeat(pairs_s, n_per_pair)
    first = np.repeat(pairs_a, n_per_pair)
    est = sample_gae_at_start(mdp, pi, critic, lams, starts, first, horizon, np.random.default_rng(seed))
    est = est.reshape(len(lams), len(pairs_s), int(n_per_pair))                    # (L, P, M)
    var_s = est.var(axis=2, ddof=1)                                                # (L, P)
    shape = (len(lams),) + A_true.shape
    mean_sampled, se = np.zeros(shape), np.zeros(shape)
    mean_sampled[:, pairs_s, pairs_a] = est.mean(axis=2)
    se[:, pairs_s, pairs_a] = np.sqrt(var_s / n_per_pair)
    return {
        "lams": lams,
        "A_true": A_true,
        "bias2": (c[:, pairs_s, pairs_a] ** 2).mean(axis=1),
        "bias2_raw": (b[:, pairs_s, pairs_a] ** 2).mean(axis=1),
        "variance": var_s.mean(axis=1),
        "mean_exact": mean_exact,
        "mean_sampled": mean_sampled,
        "se": se,
    }


# ====================================================================== CartPole
def _torch():
    import torch

    return torch


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...] = (64, 64), out_gain: float = 1.0):
    """A tanh MLP ``in_dim -> hidden... -> out_dim`` with orthogonal initialisation.

    Hidden layers get gain sqrt(2) and the output layer ``out_gain``; a policy
    head uses a small gain (0.01) so that the initial policy is nearly uniform,
    a value head gain 1 (the recipe of Engstrom et al. 2020, "Implementation
    Matters in Deep Policy Gradients", and of most PPO code). Biases start at 0.
    Input (..., in_dim), output (..., out_dim).
    """
    torch = _torch()
    nn = torch.nn
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"in_dim and out_dim must be >= 1; got {in_dim} and {out_dim}")
    sizes = (in_dim, *hidden, out_dim)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def categorical_log_prob(logits, actions):
    """log pi(a|s) from unnormalised ``logits`` (..., A) and int ``actions`` (...); shape (...).

    Equals ``torch.distributions.Categorical(logits=logits).log_prob(actions)``
    without building a distribution object (which validates its input on
    every call and is slow in a tight loop).

    >>> import torch
    >>> categorical_log_prob(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).exp()
    tensor([0.5000])
    """
    torch = _torch()
    if tuple(actions.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"actions must have shape {tuple(logits.shape[:-1])} (logits without the last axis); "
                         f"got shape {tuple(actions.shape)}")
    logp_all = torch.log_softmax(logits, dim=-1)
    return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits):
    """H = -sum_a pi(a|s) log pi(a|s) from logits (..., A); shape (...).

    >>> import torch
    >>> round(float(categorical_entropy(torch.zeros(2))), 4) == round(math.log(2), 4)
    True
    """
    torch = _torch()
    logp_all = torch.log_softmax(logits, dim=-1)
    return -(logp_all.exp() * logp_all).sum(-1)


def sample_actions(logits, generator=None):
    """Draw a ~ softmax(logits) for every row of ``logits`` (..., A); returns int64 (...)."""
    torch = _torch()
    probs = torch.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def reinforce_loss(logp, returns, baseline, mask):
    """The REINFORCE surrogate to minimise: -(1/N) sum_{n,t} mask * log pi(a_t|s_t) * (G_t - b(s_t)).

    Its gradient is minus the REINFORCE estimate of grad J averaged over the N
    episodes (Williams 1992; Sutton and Barto 2018, section 13.4, without the
    gamma^t factor, as practical implementations do). The weights G_t - b(s_t)
    are constants for the policy: ``returns`` and ``baseline`` are detached here,
    so a learned baseline receives no gradient from this loss (it has its own).

    logp: (N, T) log-probabilities of the actions taken, with grad; returns,
    baseline, mask: (N, T) (baseline may also be a float). Returns a scalar tensor.

    >>> import torch
    >>> logp = torch.log(torch.tensor([[0.5, 0.25]]))
    >>> float(reinforce_loss(logp, torch.tensor([[3.0, 1.0]]), 1.0, torch.tensor([[True, True]])))
    1.3862943649291992
    """
    torch = _torch()
    if tuple(returns.shape) != tuple(logp.shape) or tuple(mask.shape) != tuple(logp.shape):
        raise ValueError(f"returns and mask must have the shape of logp {tuple(logp.shape)}; "
                         f"got {tuple(returns.shape)} and {tuple(mask.shape)}")
    if torch.is_tensor(baseline) and baseline.ndim and tuple(baseline.shape) != tuple(logp.shape):
        raise ValueError(f"baseline must be a number or have the shape of logp {tuple(logp.shape)}; "
                         f"got {tuple(baseline.shape)}")
    if logp.ndim < 1:
        raise ValueError("logp must have shape (N, T) or (T,)")
    weights = (returns - baseline).detach()
    n_episodes = logp.shape[0] if logp.ndim > 1 else 1
    return -(logp * weights * mask.to(logp.dtype)).sum() / n_episodes


def actor_critic_loss(logp, values, advantages, returns, mask, value_coef: float = 0.5, entropy=None,
                      entropy_coef: float = 0.0):
    """The actor-critic loss to minimise, averaged over the steps where ``mask`` is True:

        L = -mean(log pi(a_t|s_t) * A_t) + value_coef * mean((V(s_t) - G_t)^2) - entropy_coef * mean(H_t).

    The advantages A_t and the critic's targets G_t (e.g. GAE + V) are constants: they are
    detached here, so the actor's term sends no gradient into the critic and the critic
    regresses on a fixed target (a semi-gradient, as in TD learning).

    logp, values, advantages, returns, mask: (N, T); entropy: optional (N, T). Returns a scalar.

    >>> import torch
    >>> one = torch.ones(1, 2)
    >>> float(actor_critic_loss(torch.log(0.5 * one), 2 * one, one, 3 * one, one.bool()))   # -log(0.5) + 0.5 * 1
    1.1931471824645996
    """
    torch = _torch()
    shape = tuple(logp.shape)
    for name, x in (("values", values), ("advantages", advantages), ("returns", returns), ("mask", mask)) + (
        (("entropy", entropy),) if entropy is not None else ()
    ):
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} must have the shape of logp {shape}; got {tuple(x.shape)}")
    m = mask.to(logp.dtype)
    n = m.sum().clamp(min=1.0)
    policy_loss = -(logp * advantages.detach() * m).sum() / n
    value_loss = ((values - returns.detach()) ** 2 * m).sum() / n
    loss = policy_loss + value_coef * value_loss
    if entropy is not None:
        loss = loss - entropy_coef * (entropy * m).sum() / n
    return loss


def make_cartpole(num_envs: int, max_episode_steps: int = 500):
    """Gymnasium's numpy-batched CartPole-v1 (time limit 500 steps, next-step autoreset).

    A shorter ``max_episode_steps`` makes time-limit truncations easy to see (and to test).
    """
    import gymnasium as gym

    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1; got {num_envs}")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1; got {max_episode_steps}")
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        max_episode_steps=max_episode_steps)


@dataclass
class Episodes:
    """One complete episode per sub-environment, padded to the longest; torch tensors.

    obs (N, T, D), actions (N, T), logp (N, T), rewards (N, T), mask (N, T) bool
    (True on the steps of the episode), lengths (N,). Every episode ends by
    termination or by the time limit at its last unmasked step.
    """

    obs: Tensor        # (N, T, D) float32
    actions: Tensor    # (N, T) int64
    logp: Tensor       # (N, T) log pi(a_t | s_t) at collection time (no grad)
    rewards: Tensor    # (N, T) float32, 0 after the episode's end
    mask: Tensor       # (N, T) bool: the steps of the episode
    lengths: Tensor    # (N,) int64
    truncated: Tensor  # (N,) bool: the episode was cut by the time limit rather than terminated


def collect_episodes(env, policy, seed: int | None = None, generator=None, max_steps: int = 10_000) -> Episodes:
    """Run every sub-environment of ``env`` until its first episode ends; return those N episodes.

    ``policy`` maps observations (N, D) float32 to logits (N, A). Steps are taken
    under ``torch.no_grad()``; to differentiate, recompute
    ``categorical_log_prob(policy(obs), actions)`` from the returned tensors.
    Sub-environments that finish early keep stepping (the vector env moves all
    of them at once) but nothing after their first episode is recorded, so the N
    returns are independent samples of the policy's return.
    """
    torch = _torch()
    obs, _ = env.reset(seed=seed)
    N = obs.shape[0]
    obs_buf, act_buf, logp_buf, rew_buf, mask_buf = [], [], [], [], []
    running = np.ones(N, dtype=bool)
    truncated_any = np.zeros(N, dtype=bool)
    with torch.no_grad():
        for _ in range(max_steps):
            obs_t = torch.as_tensor(obs)
            logits = policy(obs_t)
            actions = sample_actions(logits, generator)
            logp = categorical_log_prob(logits, actions)
            next_obs, reward, terminated, truncated, _ = env.step(actions.numpy())
            obs_buf.append(obs_t)
            act_buf.append(actions)
            logp_buf.append(logp)
            rew_buf.append(torch.as_tensor(np.where(running, reward, 0.0), dtype=torch.float32))
            mask_buf.append(torch.as_tensor(running.copy()))
            truncated_any |= running & truncated
            running &= ~(terminated | truncated)
            obs = next_obs
            if not running.any():
                break
        else:
            raise RuntimeError(f"some episodes did not end within max_steps = {max_steps}")
    mask = torch.stack(mask_buf, dim=1)                       # (N, T)
    return Episodes(
        obs=torch.stack(obs_buf, dim=1),                      # (N, T, D)
        actions=torch.stack(act_buf, dim=1),                  # (N, T)
        logp=torch.stack(logp_buf, dim=1),                    # (N, T)
        rewards=torch.stack(rew_buf, dim=1),                  # (N, T)
        mask=mask,
        lengths=mask.sum(dim=1),                              # (N,)
        truncated=torch.as_tensor(truncated_any),
    )


@dataclass
class EnvState:
    """What a rollout carries over to the next one: the current observations and bookkeeping."""

    obs: np.ndarray                 # (N, D) the observation the next action is chosen from
    resetting: np.ndarray           # (N,) bool: the next step() is the autoreset step of that sub-env
    episode_return: np.ndarray      # (N,) undiscounted return of the running episode so far
    episode_length: np.ndarray      # (N,) steps of the running episode so far
    finished_returns: list = field(default_factory=list)  # returns of every episode finished so far, in order
    finished_lengths: list = field(default_factory=list)
    env_steps: int = 0              # transitions taken so far (valid steps only)


def start_rollouts(env, seed: int | None = None) -> EnvState:
    """Reset ``env`` and return the state that ``collect_rollout`` continues from."""
    obs, _ = env.reset(seed=seed)
    N = obs.shape[0]
    return EnvState(obs=obs, resetting=np.zeros(N, dtype=bool),
                    episode_return=np.zeros(N), episode_length=np.zeros(N, dtype=np.int64))


@dataclass
class Rollout:
    """T steps of N sub-environments; torch tensors, time on axis 1.

    ``obs[:, t]`` is what action t was chosen from and ``obs[:, T]`` the
    observation after the last step (for the bootstrap value), so values of
    shape (N, T + 1) come from one call ``critic(obs)``. When step t ends an
    episode, ``obs[:, t + 1]`` is its final observation (that is when
    gymnasium reports it), so ``values[:, t + 1]`` is the value needed to
    bootstrap a time-limit truncation; step t + 1 is then the autoreset step,
    marked ``valid[:, t + 1] = False``.
    """

    obs: Tensor           # (N, T + 1, D) float32
    actions: Tensor       # (N, T) int64
    logp: Tensor          # (N, T) float32: log pi_old(a_t | s_t) at collection time (no grad)
    rewards: Tensor       # (N, T) float32 (0 on autoreset steps)
    terminated: Tensor    # (N, T) bool: the episode ended in a terminal state with this step
    truncated: Tensor     # (N, T) bool: the time limit cut the episode after this step
    valid: Tensor         # (N, T) bool: False on autoreset steps, which are not transitions
    episode_returns: list  # returns of the episodes that finished inside this rollout
    episode_lengths: list

    @property
    def dones(self):
        """terminated | truncated: where the advantage recursion must stop."""
        return self.terminated | self.truncated


def collect_rollout(env, policy, state: EnvState, T: int, generator=None) -> Rollout:
    """Step ``env`` T times with actions sampled from ``policy``; update ``state`` in place.

    ``policy`` maps observations (N, D) float32 to logits (N, A); it runs
    under ``torch.no_grad()``. The next call continues where this one stopped,
    including an autoreset that is still due. See ``Rollout`` for the layout.
    """
    torch = _torch()
    if int(T) < 1:
        raise ValueError(f"T must be >= 1; got {T}")
    N, D = state.obs.shape
    obs_buf = np.empty((N, T + 1, D), dtype=np.float32)
    act_buf = np.empty((N, T), dtype=np.int64)
    logp_buf = np.empty((N, T), dtype=np.float32)
    rew_buf = np.empty((N, T), dtype=np.float32)
    term_buf = np.empty((N, T), dtype=bool)
    trunc_buf = np.empty((N, T), dtype=bool)
    valid_buf = np.empty((N, T), dtype=bool)
    n_finished = len(state.finished_returns)
    obs = state.obs
    with torch.no_grad():
        for t in range(T):
            logits = policy(torch.from_numpy(obs))
            actions = sample_actions(logits, generator)
            logp_buf[:, t] = categorical_log_prob(logits, actions).numpy()
            act = actions.numpy()
            next_obs, reward, terminated, truncated, _ = env.step(act)
            obs_buf[:, t] = obs
            act_buf[:, t] = act
            rew_buf[:, t] = reward
            term_buf[:, t] = terminated
            trunc_buf[:, t] = truncated
            valid = ~state.resetting
            valid_buf[:, t] = valid
            # Episode bookkeeping on real transitions only.
            state.episode_return += np.where(valid, reward, 0.0)
            state.episode_length += valid
            done = terminated | truncated
            for i in np.flatnonzero(done):
                state.finished_returns.append(float(state.episode_return[i]))
                state.finished_lengths.append(int(state.episode_length[i]))
            state.episode_return[done] = 0.0
            state.episode_length[done] = 0
            state.env_steps += int(valid.sum())
            state.resetting = done
            obs = next_obs
    obs_buf[:, T] = obs
    state.obs = obs
    return Rollout(
        obs=torch.from_numpy(obs_buf), actions=torch.from_numpy(act_buf), logp=torch.from_numpy(logp_buf),
        rewards=torch.from_numpy(rew_buf), terminated=torch.from_numpy(term_buf),
        truncated=torch.from_numpy(trunc_buf), valid=torch.from_numpy(valid_buf),
        episode_returns=state.finished_returns[n_finished:], episode_lengths=state.finished_lengths[n_finished:],
    )


def bootstrap_truncated(rewards, next_values, truncated, gamma: float):
    """r'_t = r_t + gamma * V(s_{t+1}) where the time limit cut the episode after step t; else r_t.

    A time limit is not part of CartPole's MDP: the pole was still up, so the
    return after a truncation is V(s_{t+1}), not 0 (Pardo et al. 2018, "Time
    Limits in Reinforcement Learning"). Folding that value into the last reward
    lets ``gae``/``discounted_returns`` treat every end (``dones =
    terminated | truncated``) the same way and still bootstrap truncations.

    rewards, truncated: (..., T); next_values: (..., T), the value of the state
    after each step (``values[..., 1:]``). numpy or torch, same type out. The
    values should carry no gradient (detach them): they are a target.

    >>> bootstrap_truncated(np.array([1.0, 1.0]), np.array([5.0, 7.0]), np.array([False, True]), 0.5)
    array([1. , 4.5])
    """
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
    if tuple(next_values.shape) != tuple(rewards.shape) or tuple(truncated.shape) != tuple(rewards.shape):
        raise ValueError(
            f"next_values and truncated must have the shape of rewards {tuple(rewards.shape)}; "
            f"got {tuple(next_values.shape)} and {tuple(truncated.shape)}"
        )
    if type(rewards).__module__.startswith("torch"):
        return rewards + gamma * truncated.to(rewards.dtype) * next_values
    rewards = np.asarray(rewards, dtype=np.float64)
    return rewards + gamma * np.asarray(truncated, dtype=np.float64) * np.asarray(next_values, dtype=np.float64)
