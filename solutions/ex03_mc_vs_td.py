# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 3 — TD(0) and n-step returns
#
# You will write the two kernels at the heart of chapter 3:
#
# 1. `td0_update(V, states, rewards, next_states, dones, alpha, gamma)`: one TD(0) step for many
#    independent runs at once;
# 2. `n_step_returns(rewards, values, gamma, n, dones=None)`: the n-step targets
#    $G^{(n)}_t = R_{t+1} + \gamma R_{t+2} + \dots + \gamma^{n-1} R_{t+n} + \gamma^n V(S_{t+n})$ for a whole batch of sequences.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Use numpy: no loop over runs,
# batch elements or time steps is needed (in part 2 a loop over the n offsets of the window is).

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np

from course_lib.checks.ch03 import check_n_step_returns, check_td0_update
from course_lib.prediction import random_walk_values, rms_error, sample_random_walk, td0_prediction

# %% [markdown] nbgrader={"grade": false, "grade_id": "td0_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. A TD(0) step for B runs at once (3 points)
#
# `V` has shape (B, S): row `b` is the value table of run `b`. Run `b` was in state `states[b]`,
# received `rewards[b]` and moved to `next_states[b]`; `dones[b]` says that this reward ended its
# episode. Update each run's entry for the state it was in,
#
# $$V_b(s) \leftarrow V_b(s) + \alpha\big(r + \gamma\,(1 - \text{done})\,V_b(s') - V_b(s)\big),$$
#
# and return the new table, leaving the one passed in unchanged (start from `V = V.copy()`).
#
# Two details matter:
#
# * `V[np.arange(B), states]` picks one entry per row: run `b`'s value of its own state.
# * When `dones[b]` is true there is nothing after this reward to bootstrap from. A batched
#   environment reports the *next episode's first state* in `next_states[b]`, and that state's
#   value has nothing to do with this episode: the factor $(1 - \text{done})$ must remove it.

# %% nbgrader={"grade": false, "grade_id": "td0_update", "locked": false, "schema_version": 3, "solution": true, "task": false}
def td0_update(V, states, rewards, next_states, dones, alpha, gamma):
    """New value tables of shape (B, S) after one TD(0) step of each of the B runs.

    V: (B, S); states, rewards, next_states, dones: (B,); alpha, gamma: floats.

    >>> td0_update(np.array([[0.0, 0.5, 1.0]]), np.array([1]), np.array([0.0]), np.array([2]),
    ...            np.array([False]), alpha=0.5, gamma=1.0)
    array([[0.  , 0.75, 1.  ]])
    """
    ### BEGIN SOLUTION
    V = np.array(V, dtype=np.float64)
    runs = np.arange(V.shape[0])
    not_done = 1.0 - np.asarray(dones, dtype=np.float64)
    target = rewards + gamma * not_done * V[runs, next_states]
    V[runs, states] += alpha * (target - V[runs, states])
    return V
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "td0_update_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_td0_update(td0_update)
### BEGIN HIDDEN TESTS
check_td0_update(td0_update, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "nstep_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. n-step returns (4 points)
#
# `rewards` and `dones` have shape (..., T), time last; `rewards[..., t]` is $R_{t+1}$, the reward
# after the action at step `t`. `values` has shape (..., T + 1): `values[..., t]` is $V(S_t)$, and
# the extra last entry is the value of the state reached after the final step. For every `t`:
#
# * the window holds the rewards of steps $t, t+1, \dots, t+n-1$: **exactly n rewards**, the
#   $k$-th weighted by $\gamma^k$;
# * it bootstraps from the state **after** the window, $\gamma^n V(S_{t+n})$, that is `values[..., t + n]`;
# * near the end of the sequence the window is cut at T: fewer rewards, and the bootstrap is
#   $\gamma^{T-t}$ `values[..., T]`;
# * if a step in the window has `dones` set, the sum stops after that step's reward and nothing
#   is bootstrapped (the next state belongs to another episode).
#
# So $n = 1$ gives the TD target $R_{t+1} + \gamma V(S_{t+1})$, and $n \ge T$ the Monte Carlo return.
#
# Hint: loop over the offset `k = 0 .. n - 1` and handle all batch elements and all `t` at once.
# Keep an array `discount` of shape (..., T), starting at 1: add `discount * reward at t + k`
# where `t + k < T`, then multiply `discount` by `gamma` (and by 0 after a done). After the loop
# `discount` is exactly the weight of the bootstrap value at index `min(t + n, T)`.

# %% nbgrader={"grade": false, "grade_id": "n_step_returns", "locked": false, "schema_version": 3, "solution": true, "task": false}
def n_step_returns(rewards, values, gamma, n, dones=None):
    """n-step targets of shape (..., T) from rewards (..., T), values (..., T + 1) and dones (..., T)."""
    ### BEGIN SOLUTION
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    T = rewards.shape[-1]
    not_done = np.ones_like(rewards) if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    t = np.arange(T)
    G = np.zeros_like(rewards)
    discount = np.ones_like(rewards)
    for k in range(n):
        inside = t + k < T                       # (T,): step t's window still has a reward at t + k
        idx = np.minimum(t + k, T - 1)
        G += np.where(inside, discount * rewards[..., idx], 0.0)
        discount = np.where(inside, discount * gamma * not_done[..., idx], discount)
    end = np.minimum(t + n, T)                   # the state after the window
    return G + discount * values[..., end]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "n_step_returns_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_n_step_returns(n_step_returns)
### BEGIN HIDDEN TESTS
check_n_step_returns(n_step_returns, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# With both functions working, this cell runs TD(0) with your `td0_update` on 100 independent
# runs of the 5-state random walk at once (100 episodes each, $\alpha = 0.1$), checks that it
# matches the course's learner step for step, and prints how far the values are from the truth
# $1/6, \dots, 5/6$. Then it shows your n-step targets for the first episode of run 0: with
# $n = 1$ they are the TD targets, with $n = T$ the final reward, 0 or 1. It is not graded.

# %%
episodes = sample_random_walk(5, (100, 100), seed=0)           # (runs, episodes, T)
v_true = random_walk_values(5)
V = np.tile(np.r_[0.0, np.full(5, 0.5), 0.0], (100, 1))          # (runs, S)
for e in range(100):
    for t in range(int(episodes.lengths[:, e].max())):
        # Steps after an episode's end go from the terminal state to itself with reward 0,
        # which leaves V unchanged: no mask needed.
        V = td0_update(V, episodes.states[:, e, t], episodes.rewards[:, e, t],
                       episodes.states[:, e, t + 1], episodes.dones[:, e, t], 0.1, 1.0)
reference = td0_prediction(episodes, 0.1, np.r_[0.0, np.full(5, 0.5), 0.0])[:, -1]
print("same as course_lib.prediction.td0_prediction:", np.allclose(V, reference))
print(f"RMS error after 100 episodes, averaged over the runs: {rms_error(V, v_true, slice(1, 6)).mean():.3f}")

T0 = int(episodes.lengths[0, 0])
r0, d0 = episodes.rewards[0, 0, :T0], episodes.dones[0, 0, :T0]
values0 = V[0, episodes.states[0, 0, : T0 + 1]]
for n in (1, 2, T0):
    print(f"n = {n:2d}:", n_step_returns(r0, values0, 1.0, n, d0).round(2))
