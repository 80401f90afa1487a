"""Prediction from experience: Monte Carlo, TD(0) and n-step TD on Sutton and Barto's random walk.

The task (Sutton and Barto 2018, Example 6.2): states 1..n in a row between
two terminal states 0 and n + 1. Every episode starts in the middle; each step
moves left or right with probability 1/2. Entering the right end pays
``right_reward``, the left end ``left_reward``, everything else 0; gamma = 1.
With the book's rewards (0 and 1) and n = 5 the true values of A..E are
1/6, 2/6, ..., 5/6: the probability of leaving on the right.

Prediction means estimating V_pi from sampled episodes without using P or R.
Because the policy is fixed, the episodes do not depend on what is learned,
so this module samples them all first (``sample_random_walk``, every run and
episode advancing in one array operation) and then replays them through the
learners, which update all runs and all step sizes at once. Every learner
sees the same episodes, which also makes their comparison fairer.

Array layout: ``(runs, episodes, time)``, time last. ``states[..., t]`` is
S_t (length T + 1), ``rewards[..., t]`` is R_{t+1}, ``dones[..., t]`` marks the
step that ends the episode and ``mask[..., t]`` the steps that exist (shorter
episodes are padded with their terminal state and reward 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .mdp import TabularMDP
from .returns import check_gamma, discounted_returns

__all__ = [
    "Episodes",
    "random_walk",
    "random_walk_values",
    "sample_random_walk",
    "n_step_window",
    "n_step_returns",
    "td0_update",
    "n_step_td_prediction",
    "td0_prediction",
    "mc_prediction",
    "rms_error",
]


@dataclasses.dataclass(frozen=True)
class Episodes:
    """A padded batch of episodes; leading axes are batch axes, time is last.

    states:  int (..., T + 1), S_0 .. S_T; after the end, the terminal state repeats.
    rewards: float (..., T), R_1 .. R_T; 0 after the end.
    dones:   bool (..., T), True at the one step whose reward ends the episode.
    mask:    bool (..., T), True for the steps that happened.
    """

    states: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    mask: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Number of steps of each episode, shape (...)."""
        return self.mask.sum(axis=-1)


def random_walk(n_states: int = 5, left_reward: float = 0.0, right_reward: float = 1.0, gamma: float = 1.0) -> TabularMDP:
    """The random walk as a ``TabularMDP`` with n_states + 2 states and a single action.

    State 0 and state n_states + 1 are terminal; from state i the walk moves to
    i - 1 or i + 1 with probability 1/2 each. R is the expected reward, so
    R[1] = left_reward / 2 and R[n_states] = right_reward / 2.

    >>> from course_lib.bellman import evaluate_policy
    >>> mdp = random_walk()
    >>> (evaluate_policy(mdp, np.ones((7, 1))) * 6).round(6)
    array([0., 1., 2., 3., 4., 5., 0.])
    """
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1; got {n_states}")
    S = n_states + 2
    inner = np.arange(1, n_states + 1)
    P = np.zeros((S, 1, S))
    P[inner, 0, inner - 1] = 0.5
    P[inner, 0, inner + 1] = 0.5
    P[[0, S - 1], 0, [0, S - 1]] = 1.0  # terminal states absorb
    R = np.zeros((S, 1))
    R[1, 0] += 0.5 * left_reward
    R[n_states, 0] += 0.5 * right_reward
    terminal = np.zeros(S, dtype=bool)
    terminal[[0, S - 1]] = True
    return TabularMDP(P, R, gamma, terminal=terminal, shape=(1, S))


def random_walk_values(n_states: int = 5, left_reward: float = 0.0, right_reward: float = 1.0) -> np.ndarray:
    """True values with gamma = 1, shape (n_states + 2,), terminals 0.

    From state i the walk leaves on the right with probability i / (n_states + 1)
    (gambler's ruin), so v(i) = left + (right - left) * i / (n_states + 1).

    >>> random_walk_values(5) * 6
    array([0., 1., 2., 3., 4., 5., 0.])
    """
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1; got {n_states}")
    i = np.arange(n_states + 2)
    v = left_reward + (right_reward - left_reward) * i / (n_states + 1)
    v[[0, -1]] = 0.0
    return v


def sample_random_walk(
    n_states: int,
    shape: tuple[int, ...],
    seed: int,
    left_reward: float = 0.0,
    right_reward: float = 1.0,
    start: int | None = None,
) -> Episodes:
    """Sample ``prod(shape)`` independent episodes of the random walk at once.

    shape: leading batch shape, e.g. (runs, episodes). Every episode starts in
    ``start`` (default: the middle state (n_states + 1) // 2, which is C
    for n_states = 5). All unfinished walks take their step in one array
    operation; the loop runs over time only, until the last walk has ended.
    Returns ``Episodes`` of shape (*shape, T) with T the longest episode.

    >>> ep = sample_random_walk(5, (2, 3), seed=0)
    >>> ep.states.shape[:2], bool(np.all(ep.dones.sum(axis=-1) == 1))
    ((2, 3), True)
    """
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1; got {n_states}")
    shape = tuple(int(n) for n in shape)
    if any(n < 1 for n in shape):
        raise ValueError(f"shape must hold positive sizes; got {shape}")
    start = (n_states + 1) // 2 if start is None else int(start)
    if not 1 <= start <= n_states:
        raise ValueError(f"start must be a non-terminal state in [1, {n_states}]; got {start}")
    rng = np.random.default_rng(seed)
    B = int(np.prod(shape))
    position = np.full(B, start)
    alive = np.ones(B, dtype=bool)
    states, rewards, dones = [position.copy()], [], []
    while alive.any():
        step = np.where(rng.random(B) < 0.5, -1, 1) * alive   # finished walks stay put
        position = position + step
        ended = alive & ((position == 0) | (position == n_states + 1))
        reward = np.where(ended, np.where(position == 0, left_reward, right_reward), 0.0)
        states.append(position)
        rewards.append(reward)
        dones.append(ended)
        alive = alive & ~ended
    done_arr = np.stack(dones, axis=-1)                                  # (B, T)
    # A step happened if no earlier step ended the episode.
    mask = np.cumsum(done_arr, axis=-1) - done_arr == 0
    return Episodes(
        states=np.stack(states, axis=-1).reshape(*shape, -1),
        rewards=np.stack(rewards, axis=-1).reshape(*shape, -1),
        dones=done_arr.reshape(*shape, -1),
        mask=mask.reshape(*shape, -1),
    )


def _check_n(n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    return int(n)


def n_step_window(rewards, gamma: float, n: int, dones=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts of the n-step return that do not depend on V: (reward_sum, weight, index), each (..., T).

    For step t the window ends after m = min(n, T - t) rewards, or earlier at a done:

        reward_sum[t] = sum_{k < m, no done before t + k} gamma^k r[t + k]
        weight[t]     = gamma^m if no done in r[t .. t + m - 1] else 0
        index[t]      = t + m,

    so that G^(n)_t = reward_sum[t] + weight[t] * V(S_{index[t]}). It is
    computed without a loop over k from the returns-to-go G of
    ``discounted_returns``: sum_{k < m} gamma^k r[t + k] = G_t - gamma^m G_{t+m}
    when no done falls in the window, and G_t itself when one does.

    >>> s, w, i = n_step_window(np.array([1.0, 1.0, 1.0]), gamma=0.5, n=2)
    >>> s, w, i
    (array([1.5, 1.5, 1. ]), array([0.25, 0.25, 0.5 ]), array([2, 3, 3]))
    """
    gamma = check_gamma(gamma)
    n = _check_n(n)
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim < 1 or rewards.shape[-1] == 0:
        raise ValueError(f"rewards must have shape (..., T) with T >= 1; got shape {rewards.shape}")
    T = rewards.shape[-1]
    dones = np.zeros(rewards.shape, dtype=bool) if dones is None else np.asarray(dones, dtype=bool)
    if dones.shape != rewards.shape:
        raise ValueError(f"dones must have the shape of rewards {rewards.shape}; got shape {dones.shape}")
    G = discounted_returns(rewards, gamma, dones)
    G = np.concatenate([G, np.zeros(G.shape[:-1] + (1,))], axis=-1)          # G_T = 0, (..., T + 1)
    t = np.arange(T)
    end = np.minimum(t + n, T)                                                # (T,)
    m = end - t
    # Dones before step t, so dones inside the window = count[end] - count[t].
    count = np.concatenate([np.zeros(dones.shape[:-1] + (1,), dtype=np.int64), np.cumsum(dones, axis=-1)], axis=-1)
    alive = (count[..., end] - count[..., t]) == 0                            # (..., T)
    weight = np.where(alive, gamma ** m.astype(np.float64), 0.0)
    reward_sum = G[..., :T] - weight * G[..., end]
    index = np.broadcast_to(end, rewards.shape)
    return reward_sum, weight, index


def n_step_returns(rewards, values, gamma: float, n: int, dones=None) -> np.ndarray:
    """G^(n)_t = r_t + gamma r_{t+1} + ... + gamma^{n-1} r_{t+n-1} + gamma^n V(S_{t+n}), shape (..., T).

    rewards, dones: (..., T); values: (..., T + 1), ``values[..., t]`` = V(S_t)
    with ``values[..., T]`` the bootstrap value after the last step (the
    ``td_errors`` convention). Near the end of the sequence the window is cut
    at T and bootstraps from values[..., T]; a done inside the window stops the
    sum there and drops the bootstrap (no value crosses an episode end).
    n = 1 is the TD(0) target; n >= T gives Monte Carlo returns.

    >>> n_step_returns(np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 0.0, 8.0]), gamma=0.5, n=2)
    array([1.5, 3.5, 5. ])
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    expected = rewards.shape[:-1] + (rewards.shape[-1] + 1,) if rewards.ndim else None
    if rewards.ndim < 1 or values.shape != expected:
        raise ValueError(
            f"values must have shape (..., T + 1) = {expected} (one more than rewards, for the bootstrap); "
            f"got shape {values.shape}"
        )
    reward_sum, weight, index = n_step_window(rewards, gamma, n, dones)
    return reward_sum + weight * np.take_along_axis(values, index, axis=-1)


def td0_update(V, states, rewards, next_states, dones, alpha: float, gamma: float) -> np.ndarray:
    """One TD(0) step for B independent runs at once; returns the new V (the input is not changed).

        V[b, s_b] <- V[b, s_b] + alpha * (r_b + gamma * (1 - done_b) * V[b, s'_b] - V[b, s_b])

    V: (B, S); states, rewards, next_states, dones: (B,). A done means the
    episode ended with this reward: nothing is bootstrapped from ``next_states``
    then, whatever it holds (a vectorized environment reports the next
    episode's first state there).

    >>> td0_update(np.array([[0.0, 0.5, 1.0]]), np.array([1]), np.array([0.0]), np.array([2]),
    ...            np.array([False]), alpha=0.5, gamma=1.0)
    array([[0.  , 0.75, 1.  ]])
    """
    V = np.array(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"V must have shape (B, S); got shape {V.shape}")
    B = V.shape[0]
    states, next_states = np.asarray(states), np.asarray(next_states)
    rewards, dones = np.asarray(rewards, dtype=np.float64), np.asarray(dones, dtype=bool)
    for name, arr in (("states", states), ("rewards", rewards), ("next_states", next_states), ("dones", dones)):
        if arr.shape != (B,):
            raise ValueError(f"{name} must have shape (B,) = ({B},); got shape {arr.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    gamma = check_gamma(gamma)
    runs = np.arange(B)
    target = rewards + gamma * (1.0 - dones) * V[runs, next_states]
    V[runs, states] += alpha * (target - V[runs, states])
    return V


def _check_alphas(alpha) -> np.ndarray:
    alphas = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    if alphas.ndim != 1 or np.any((alphas < 0) | (alphas > 1)):
        raise ValueError(f"alpha must be a number or a 1-D array of step sizes in [0, 1]; got {alpha!r}")
    return alphas


def n_step_td_prediction(episodes: Episodes, n: int, alpha, V0, gamma: float = 1.0) -> np.ndarray:
    """Online n-step TD (Sutton and Barto, section 7.1) for every run and step size at once.

    episodes: ``Episodes`` of shape (R, E, T): R independent runs of E episodes.
    alpha: a step size or a 1-D array of K step sizes. V0: initial values, (S,).
    Returns V after each episode, shape (K, R, E + 1, S) (or (R, E + 1, S) for a
    scalar alpha); [..., 0, :] is V0.

    Within an episode, V(S_t) moves towards G^(n)_t, bootstrapping on the
    values as they are when R_{t+n} arrives: the updates run forward in t, so
    V(S_{t+n}) already holds every earlier update, exactly as in the book's
    algorithm. n = 1 is TD(0); n >= T is constant-alpha Monte Carlo.
    """
    n = _check_n(n)
    alphas = _check_alphas(alpha)
    V0 = np.asarray(V0, dtype=np.float64)
    if episodes.states.ndim != 3:
        raise ValueError(f"episodes must have shape (runs, episodes, T); got states of shape {episodes.states.shape}")
    R_, E, T1 = episodes.states.shape
    if V0.ndim != 1 or episodes.states.max() >= V0.shape[0]:
        raise ValueError(f"V0 must have shape (S,) covering every state index; got shape {V0.shape}")
    K = len(alphas)
    V = np.broadcast_to(V0, (K, R_, V0.shape[0])).copy()                  # (K, R, S)
    history = np.empty((K, R_, E + 1, V0.shape[0]))
    history[:, :, 0] = V
    k_idx, r_idx = np.arange(K)[:, None], np.arange(R_)[None, :]          # broadcast to (K, R)
    step = alphas[:, None]                                                # (K, 1)
    for e in range(E):
        states = episodes.states[:, e]                                    # (R, T + 1)
        reward_sum, weight, index = n_step_window(episodes.rewards[:, e], gamma, n, episodes.dones[:, e])
        boot_state = np.take_along_axis(states, index, axis=-1)           # (R, T)
        mask = episodes.mask[:, e]
        for t in range(int(episodes.lengths[:, e].max())):
            s = states[:, t]                                              # (R,)
            G = reward_sum[:, t] + weight[:, t] * V[k_idx, r_idx, boot_state[:, t]]   # (K, R)
            V[k_idx, r_idx, s] += step * mask[:, t] * (G - V[k_idx, r_idx, s])
        history[:, :, e + 1] = V
    return history if np.ndim(alpha) else history[0]


def td0_prediction(episodes: Episodes, alpha, V0, gamma: float = 1.0) -> np.ndarray:
    """Online TD(0): V(S_t) <- V(S_t) + alpha (R_{t+1} + gamma V(S_{t+1}) - V(S_t)).

    n-step TD with n = 1; shapes as in ``n_step_td_prediction``.
    """
    return n_step_td_prediction(episodes, 1, alpha, V0, gamma)


def mc_prediction(episodes: Episodes, alpha, V0, gamma: float = 1.0) -> np.ndarray:
    """Constant-alpha Monte Carlo (every visit): V(S_t) <- V(S_t) + alpha (G_t - V(S_t)) after the episode.

    n-step TD with n at least the episode length: the target is the whole
    return and never bootstraps. Shapes as in ``n_step_td_prediction``.
    """
    return n_step_td_prediction(episodes, episodes.rewards.shape[-1], alpha, V0, gamma)


def rms_error(V, v_true, states=None) -> np.ndarray:
    """Root-mean-squared error over states: sqrt(mean_s (V[..., s] - v_true[s])^2), shape (...).

    ``states`` (indices or a boolean mask over S) picks the states averaged
    over, e.g. the non-terminal ones.

    >>> rms_error(np.array([[0.5, 0.5], [0.0, 1.0]]), np.array([0.0, 1.0]))
    array([0.5, 0. ])
    """
    V = np.asarray(V, dtype=np.float64)
    v_true = np.asarray(v_true, dtype=np.float64)
    if v_true.ndim != 1 or V.shape[-1:] != v_true.shape:
        raise ValueError(f"V must have shape (..., S) with S = len(v_true) = {v_true.shape}; got shape {V.shape}")
    err = V - v_true
    if states is not None:
        err = err[..., states]
    return np.sqrt(np.mean(err**2, axis=-1))
