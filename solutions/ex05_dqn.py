# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 5 — the pieces of DQN
#
# You will write four functions from chapter 5:
#
# 1. `linear_epsilon(step, start, end, duration)`: the exploration schedule;
# 2. `dqn_targets(rewards, next_q_target, terminated, gamma)`: $y = r + \gamma (1 - d) \max_{a'} Q(s', a'; \theta^-)$;
# 3. `dqn_loss(q_values, actions, targets)`: the semi-gradient TD loss;
# 4. `maybe_sync_target(n_updates, target_net, online_net, every)`: refresh the target network every C updates.
#
# Then a short training run uses all four. Replace each `raise NotImplementedError()` with your code
# and run the check below it; a check says which case failed and, for the classic mistakes, why.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np
import torch

from course_lib.checks.ch05 import check_dqn_loss, check_dqn_targets, check_linear_epsilon, check_maybe_sync_target
from course_lib.config import FAST
from course_lib.dqn import QNetwork, ReplayBuffer, greedy_returns, make_cartpole
from course_lib.td import epsilon_greedy

torch.set_num_threads(1)

# %% [markdown] nbgrader={"grade": false, "grade_id": "eps_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The epsilon schedule (1 point)
#
# $\varepsilon$ falls linearly from `start` at step 0 to `end` at step `duration`, and stays at `end` after that:
#
# $$\varepsilon_t = \text{start} + (\text{end} - \text{start}) \cdot \min(t / \text{duration},\ 1).$$
#
# `step` is a single integer; return a float.

# %% nbgrader={"grade": false, "grade_id": "linear_epsilon", "locked": false, "schema_version": 3, "solution": true, "task": false}
def linear_epsilon(step, start, end, duration):
    """Epsilon at integer `step` of a linear fall from `start` to `end` over `duration` steps, then held."""
    ### BEGIN SOLUTION
    return start + (end - start) * min(step / duration, 1.0)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "linear_epsilon_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_linear_epsilon(linear_epsilon)
### BEGIN HIDDEN TESTS
check_linear_epsilon(linear_epsilon, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "targets_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The DQN target (2 points)
#
# `rewards` (shape `(B,)`), `next_q_target` $= Q(s', \cdot\,; \theta^-)$, the **target** network's values for
# the next observations (shape `(B, A)`), `terminated` (bool, shape `(B,)`):
#
# $$y_i = r_i + \gamma\,(1 - d_i) \max_{a'} Q(s'_i, a'; \theta^-).$$
#
# A terminated transition has no future: without the $(1 - d)$ the network learns that falling over is
# worth as much as the state it fell into, and never learns to avoid it. Use torch operations
# (`next_q_target.max(dim=1).values`, and `terminated.float()` to turn the mask into numbers).

# %% nbgrader={"grade": false, "grade_id": "dqn_targets", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dqn_targets(rewards, next_q_target, terminated, gamma):
    """y = r + gamma * (1 - terminated) * max_a' Q_target(s', a'), a tensor of shape (B,)."""
    ### BEGIN SOLUTION
    return rewards + gamma * (1.0 - terminated.float()) * next_q_target.max(dim=1).values
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dqn_targets_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_dqn_targets(dqn_targets)
### BEGIN HIDDEN TESTS
check_dqn_targets(dqn_targets, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The semi-gradient loss (2 points)
#
# `q_values` $= Q(s, \cdot\,; \theta)$ from the online network (shape `(B, A)`), `actions` the actions taken
# (int, shape `(B,)`), `targets` $y$ (shape `(B,)`):
#
# $$L = \frac{1}{B} \sum_i \tfrac12 \big(Q(s_i, a_i; \theta) - y_i\big)^2.$$
#
# Two details matter. Only the value of the action **taken** enters (`q_values.gather(1, actions[:, None])`
# picks one entry per row). And the target is a fixed number: no gradient may flow into it, even if the
# caller forgot `torch.no_grad()`, so detach it inside the loss.

# %% nbgrader={"grade": false, "grade_id": "dqn_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dqn_loss(q_values, actions, targets):
    """0.5 * mean_i (Q(s_i, a_i) - y_i)^2 with y held fixed; a scalar tensor."""
    ### BEGIN SOLUTION
    taken = q_values.gather(1, actions.long().unsqueeze(1)).squeeze(1)
    return 0.5 * (taken - targets.detach()).pow(2).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dqn_loss_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_dqn_loss(dqn_loss)
### BEGIN HIDDEN TESTS
check_dqn_loss(dqn_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "sync_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Refreshing the target network (2 points)
#
# The training loop calls `maybe_sync_target(n_updates, target_net, online_net, every)` after each gradient
# update, with `n_updates` counting from 1. When `n_updates` is a multiple of `every`, copy the online
# weights into the target network (`target_net.load_state_dict(online_net.state_dict())`) and return `True`;
# otherwise leave it alone and return `False`. A *copy*: after it, training the online network must not
# move the target. (Assigning `target_net = online_net` inside the function changes nothing outside it.)

# %% nbgrader={"grade": false, "grade_id": "maybe_sync_target", "locked": false, "schema_version": 3, "solution": true, "task": false}
def maybe_sync_target(n_updates, target_net, online_net, every):
    """Copy online_net's weights into target_net when n_updates is a multiple of every; return whether it did."""
    ### BEGIN SOLUTION
    if n_updates % every != 0:
        return False
    target_net.load_state_dict(online_net.state_dict())
    return True
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "maybe_sync_target_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_maybe_sync_target(maybe_sync_target)
### BEGIN HIDDEN TESTS
check_maybe_sync_target(maybe_sync_target, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# A short DQN run on CartPole with your four functions and chapter 5's settings (not graded). 2,000 steps
# take a few seconds and should bring the greedy policy well above the random policy's 20 or so; chapter 5
# trains until solved. (Under `COURSE_FAST=1`, as in the tests, it only runs 300 steps.)

# %%
torch.manual_seed(0)
rng = np.random.default_rng(0)
envs, obs = make_cartpole(8, seed=0)
q_net, target_net = QNetwork(4, 2), QNetwork(4, 2)
target_net.load_state_dict(q_net.state_dict())
optimizer = torch.optim.Adam(q_net.parameters(), lr=5e-4)
buffer = ReplayBuffer(50_000, obs_dim=4)
prev_done, running, episode_returns, n_updates = np.zeros(8, dtype=bool), np.zeros(8), [], 0
for step in range(300 if FAST else 2_000):
    with torch.no_grad():
        actions = epsilon_greedy(q_net(torch.as_tensor(obs)).numpy(), linear_epsilon(step, 1.0, 0.05, 1_000), rng)
    next_obs, rewards, terminated, truncated, _ = envs.step(actions)
    buffer.add(obs, actions, rewards, next_obs, terminated, keep=~prev_done)
    running += rewards
    prev_done, obs = terminated | truncated, next_obs
    episode_returns += running[prev_done].tolist()
    running[prev_done] = 0.0
    if step >= 125:
        batch = buffer.sample(128, rng)
        with torch.no_grad():
            y = dqn_targets(batch.rewards, target_net(batch.next_obs), batch.terminated, 0.99)
        loss = dqn_loss(q_net(batch.obs), batch.actions, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n_updates += 1
        maybe_sync_target(n_updates, target_net, q_net, every=250)
print(f"first 20 episodes: {np.mean(episode_returns[:20]):.1f}, last 20: {np.mean(episode_returns[-20:]):.1f}, "
      f"greedy policy over 20 fresh episodes: {greedy_returns(q_net, 20, seed=1).mean():.1f}")
