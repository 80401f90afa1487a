"""Environments with gymnasium's API (reset -> (obs, info); step -> (obs, reward, terminated, truncated, info))."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .mdp import TabularMDP

__all__ = ["TabularEnv"]


class TabularEnv(gym.Env):
    """Samples the agent-environment loop of a ``TabularMDP``.

    Observations are state indices, actions are action indices. The reward is
    the MDP's expected reward R[s, a] (the course's tabular MDPs have
    deterministic rewards, so nothing is lost). An episode terminates on
    entering a terminal state; wrap with ``gymnasium.wrappers.TimeLimit`` to
    truncate continuing tasks.

    ``reset(options={"state": s})`` starts in state s; otherwise the start
    state is drawn uniformly from the non-terminal states.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP):
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self._starts = np.flatnonzero(~mdp.terminal)
        if len(self._starts) == 0:
            raise ValueError("mdp has no non-terminal state to start from")
        self._cum_P = np.cumsum(mdp.P, axis=2)
        self.state: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "state" in options:
            state = int(options["state"])
            if not 0 <= state < self.mdp.n_states:
                raise ValueError(f"options['state'] must be in [0, {self.mdp.n_states}); got {state}")
        else:
            state = int(self.np_random.choice(self._starts))
        self.state = state
        return state, {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in [0, {self.mdp.n_actions}); got {action!r}")
        s, a = self.state, int(action)
        # Inverse-CDF draw of s' ~ P[s, a, :]; min() guards against round-off at 1.
        s_next = int(min(np.searchsorted(self._cum_P[s, a], self.np_random.random(), side="right"), self.mdp.n_states - 1))
        reward = float(self.mdp.R[s, a])
        self.state = s_next
        return s_next, reward, bool(self.mdp.terminal[s_next]), False, {}
