"""Deep Q-networks (Mnih et al. 2015): Q-learning with a neural network, a replay buffer and a target network.

The pieces, one function (or one small class) each:

- ``QNetwork``: an MLP from an observation to one value per action, shape (B, obs) -> (B, A);
- ``ReplayBuffer``: a ring buffer of transitions (s, a, r, s', terminated), sampled uniformly;
- ``linear_epsilon``: the exploration schedule, epsilon falling linearly then held;
- ``q_learning_target`` (from ``course_lib.td``): y = r + gamma * (1 - terminated) * max_a' Q_target(s', a');
- ``dqn_loss`` / ``dqn_huber_loss``: the semi-gradient TD loss on Q(s, a) with y held fixed;
- ``sync_target``: copy the online weights into the target network;
- ``greedy_returns``: evaluate the greedy policy on fresh CartPole episodes.

Vector environments. ``make_cartpole`` returns gymnasium's numpy-batched
CartPole (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``),
which resets finished environments on the *next* call to ``step``
(``AutoresetMode.NEXT_STEP``): the step after a terminated or truncated one
ignores the action, returns the first observation of a new episode with reward
0, and is not a transition of the MDP. Pass ``keep = ~prev_done`` to
``ReplayBuffer.add`` so that those reset steps never reach the buffer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .td import q_learning_target

__all__ = [
    "make_cartpole",
    "QNetwork",
    "ReplayBuffer",
    "Batch",
    "linear_epsilon",
    "q_learning_target",
    "dqn_loss",
    "dqn_huber_loss",
    "sync_target",
    "greedy_returns",
]


def make_cartpole(num_envs: int, seed: int | None = None):
    """``num_envs`` CartPole-v1 environments stepped as one numpy batch; returns (envs, first observations).

    Episodes end when the pole falls (terminated) or after 500 steps (truncated).
    Reset is next-step (see the module docstring).
    """
    import gymnasium as gym

    if int(num_envs) < 1:
        raise ValueError(f"num_envs must be >= 1; got {num_envs}")
    envs = gym.make_vec("CartPole-v1", num_envs=int(num_envs), vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=seed)
    return envs, obs


class QNetwork(nn.Module):
    """Q(s, .; theta): an MLP with ReLU hidden layers, (B, obs_dim) -> (B, n_actions).

    >>> QNetwork(4, 2, hidden=(8,))(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (128, 128)):
        super().__init__()
        if obs_dim < 1 or n_actions < 1:
            raise ValueError(f"obs_dim and n_actions must be >= 1; got {obs_dim}, {n_actions}")
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class Batch(NamedTuple):
    """A sampled minibatch of B transitions, as torch tensors."""

    obs: torch.Tensor          # (B, obs_dim)
    actions: torch.Tensor      # (B,) int64
    rewards: torch.Tensor      # (B,)
    next_obs: torch.Tensor     # (B, obs_dim)
    terminated: torch.Tensor   # (B,) bool: s' is terminal, do not bootstrap


class ReplayBuffer:
    """The last ``capacity`` transitions (s, a, r, s', terminated), overwritten oldest first.

    Replay (Lin 1992; Mnih et al. 2015) breaks the correlation between
    consecutive steps and reuses every transition in many updates. Only
    ``terminated`` is stored: a time-limit truncation is not the end of the
    task, so its s' still bootstraps.

    >>> buf = ReplayBuffer(capacity=4, obs_dim=1)
    >>> buf.add(np.zeros((3, 1)), np.array([0, 1, 1]), np.ones(3), np.ones((3, 1)),
    ...         np.array([False, False, True]), keep=np.array([True, False, True]))
    2
    >>> len(buf), buf.actions[:2].tolist()
    (2, [0, 1])
    """

    def __init__(self, capacity: int, obs_dim: int):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity, self.obs_dim = int(capacity), int(obs_dim)
        self.obs = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.actions = np.zeros(self.capacity, dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=bool)
        self.pos = 0        # where the next transition goes
        self.size = 0       # how many slots hold a transition

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminated, keep) -> int:
        """Store the transitions of one vector step for which ``keep`` is true; return how many.

        obs, next_obs : (N, obs_dim); actions, rewards, terminated, keep : (N,).
        With a next-step-autoreset vector env, ``keep = ~prev_done``: an env that
        finished on the previous step has just been reset, not moved.
        """
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        keep = np.asarray(keep)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, obs_dim) = (N, {self.obs_dim}); got shape {obs.shape}")
        N = obs.shape[0]
        if next_obs.shape != obs.shape:
            raise ValueError(f"next_obs must have the shape of obs {obs.shape}; got shape {next_obs.shape}")
        if keep.dtype != bool or keep.shape != (N,):
            raise ValueError(f"keep must be a boolean array of shape (N,) = ({N},); got {keep.dtype} of shape {keep.shape}")
        arrays = {"actions": actions, "rewards": rewards, "terminated": terminated}
        for name, value in arrays.items():
            if np.shape(value) != (N,):
                raise ValueError(f"{name} must have shape (N,) = ({N},); got shape {np.shape(value)}")
        n = int(keep.sum())
        if n > self.capacity:
            raise ValueError(f"one step adds {n} transitions, more than the capacity {self.capacity}")
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs[keep]
        self.next_obs[idx] = next_obs[keep]
        self.actions[idx] = np.asarray(actions)[keep]
        self.rewards[idx] = np.asarray(rewards)[keep]
        self.terminated[idx] = np.asarray(terminated)[keep]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return n

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement, as torch tensors."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        idx = rng.integers(self.size, size=int(batch_size))
        return Batch(
            torch.from_numpy(self.obs[idx]),
            torch.from_numpy(self.actions[idx]),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.next_obs[idx]),
            torch.from_numpy(self.terminated[idx]),
        )


def linear_epsilon(step, start: float, end: float, duration: int):
    """epsilon_t = start + (end - start) * min(t / duration, 1): a linear fall, then held at ``end``.

    ``step`` may be an int or an int array. duration >= 1.

    >>> linear_epsilon(np.array([0, 50, 100, 200]), 1.0, 0.1, 100)
    array([1.  , 0.55, 0.1 , 0.1 ])
    """
    for name, value in (("start", start), ("end", end)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1]; got {value}")
    if int(duration) < 1:
        raise ValueError(f"duration must be >= 1; got {duration}")
    step = np.asarray(step)
    if np.any(step < 0):
        raise ValueError(f"step must be >= 0; got {step.min()}")
    frac = np.minimum(step / duration, 1.0)
    out = start + (end - start) * frac
    return float(out) if out.ndim == 0 else out


def _gather_taken(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if q_values.ndim != 2:
        raise ValueError(f"q_values must have shape (B, A); got shape {tuple(q_values.shape)}")
    B = q_values.shape[0]
    for name, value in (("actions", actions), ("targets", targets)):
        if tuple(value.shape) != (B,):
            raise ValueError(f"{name} must have shape (B,) = ({B},); got shape {tuple(value.shape)}")
    return q_values.gather(1, actions.long().unsqueeze(1)).squeeze(1)  # (B,): Q(s_i, a_i)


def dqn_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Semi-gradient TD loss L = mean_i 1/2 (Q(s_i, a_i) - y_i)^2, the targets y held fixed.

    q_values : (B, A), the online network's output for the sampled s.  actions : int (B,).
    targets : (B,). ``targets`` is detached, so the gradient only moves Q(s_i, a_i)
    towards y_i and never y_i towards Q (that is what "semi-gradient" means).

    >>> dqn_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([1]), torch.tensor([1.0])).item()
    2.0
    """
    taken = _gather_taken(q_values, actions, targets)
    return 0.5 * (taken - targets.detach()).pow(2).mean()


def dqn_huber_loss(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """The same semi-gradient loss with the square replaced by Huber's: quadratic within
    ``delta`` of the target, linear beyond, so one large TD error cannot take a huge step.
    Mnih et al. (2015) clip the error term to [-1, 1], which is this loss with delta = 1.

    >>> dqn_huber_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([1]), torch.tensor([1.0])).item()
    1.5
    """
    taken = _gather_taken(q_values, actions, targets)
    return nn.functional.huber_loss(taken, targets.detach(), delta=delta)


@torch.no_grad()
def sync_target(target: nn.Module, online: nn.Module) -> None:
    """theta_target <- theta: copy every parameter of ``online`` into ``target`` (in place)."""
    target.load_state_dict(online.state_dict())


@torch.no_grad()
def greedy_returns(q_net: nn.Module, n_episodes: int = 100, seed: int = 0) -> np.ndarray:
    """Undiscounted returns of ``n_episodes`` CartPole-v1 episodes played greedily by ``q_net``.

    The episodes run side by side in one vector env, one per environment; each
    env's first episode counts. Returns float array (n_episodes,), each in [1, 500].
    """
    envs, obs = make_cartpole(n_episodes, seed=seed)
    returns = np.zeros(n_episodes)
    running = np.ones(n_episodes, dtype=bool)
    while running.any():
        actions = q_net(torch.as_tensor(obs)).argmax(dim=1).numpy()
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        returns += rewards * running
        running &= ~(terminated | truncated)
    envs.close()
    return returns
