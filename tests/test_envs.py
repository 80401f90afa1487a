"""TabularEnv follows gymnasium's API and samples the MDP's dynamics."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from course_lib.envs import TabularEnv
from course_lib.mdp import TabularMDP, small_gridworld


def test_passes_gymnasium_env_checker():
    check_env(TabularEnv(small_gridworld()), skip_render_check=True)


def test_transitions_follow_P():
    # A 2-state, 1-action chain that moves with probability 0.3 (an empirical
    # frequency far from 0.3 means the sampler ignores P).
    P = np.array([[[0.7, 0.3]], [[0.3, 0.7]]])
    env = TabularEnv(TabularMDP(P, np.array([[1.0], [2.0]]), gamma=0.9))
    env.reset(seed=0, options={"state": 0})
    moved, n = 0, 20_000
    for _ in range(n):
        env.reset(options={"state": 0})
        s2, r, *_ = env.step(0)
        moved += s2 == 1
        assert r == 1.0
    assert abs(moved / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_terminates_in_a_corner_and_is_seeded():
    def episode(seed):
        env = TabularEnv(small_gridworld())
        s, _ = env.reset(seed=seed)
        path, done = [s], False
        while not done:
            s, r, done, truncated, _ = env.step(int(env.np_random.integers(4)))
            path.append(s)
            assert r == -1.0 and not truncated
        return path

    path = episode(3)
    assert path[-1] in (0, 15)
    assert episode(3) == path


def test_bad_action_and_state_are_refused():
    env = TabularEnv(small_gridworld())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)
    with pytest.raises(ValueError, match="state"):
        env.reset(options={"state": 99})


def test_time_limit_wrapper_truncates():
    env = gym.wrappers.TimeLimit(TabularEnv(small_gridworld()), max_episode_steps=3)
    env.reset(seed=0, options={"state": 6})
    results = [env.step(1) for _ in range(3)]  # 'right' from 6: 7, then the wall
    assert results[-1][3] is True
