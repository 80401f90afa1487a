# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 7 — TD errors, GAE and the actor-critic loss
#
# You will write three functions from chapter 7:
#
# 1. `td_errors(rewards, values, gamma, dones=None)`: $\delta_t = r_t + \gamma (1 - \mathrm{done}_t) V(s_{t+1}) - V(s_t)$;
# 2. `gae(rewards, values, gamma, lam, dones=None)`: $\hat A_t = \delta_t + \gamma\lambda(1 - \mathrm{done}_t)\hat A_{t+1}$;
# 3. `actor_critic_loss(logp, values, advantages, returns, mask, value_coef)`, in torch.
#
# Shapes follow the course: time on the **last** axis. `rewards` and `dones` have shape (..., T);
# `values` has shape (..., T + 1), where `values[..., T]` is the critic's value of the state after
# the last step (to bootstrap a rollout that stops mid-episode). `dones[..., t]` is True when the
# episode ended with reward `rewards[..., t]`.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np
import torch

from course_lib.checks.ch07 import check_actor_critic_loss, check_gae, check_td_errors

# %% [markdown] nbgrader={"grade": false, "grade_id": "td_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. TD errors (2 points)
#
# One array expression does it: slice `values` into "now" (`values[..., :-1]`) and "next"
# (`values[..., 1:]`). Where an episode ended, the next value belongs to a new episode (or to a
# terminal state) and must not be added. Treat `dones=None` as "no episode ends".

# %% nbgrader={"grade": false, "grade_id": "td", "locked": false, "schema_version": 3, "solution": true, "task": false}
def td_errors(rewards, values, gamma, dones=None):
    """delta[..., t] = rewards[..., t] + gamma * (1 - dones[..., t]) * values[..., t + 1] - values[..., t].

    rewards, dones: (..., T); values: (..., T + 1). Returns an array of shape (..., T).

    >>> td_errors(np.array([1.0, 1.0]), np.array([0.5, 0.5, 2.0]), gamma=0.5)
    array([0.75, 1.5 ])
    """
    ### BEGIN SOLUTION
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    not_done = 1.0 if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    return rewards + gamma * not_done * values[..., 1:] - values[..., :-1]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "td_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_td_errors(td_errors)
### BEGIN HIDDEN TESTS
check_td_errors(td_errors, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "gae_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Generalised advantage estimation (4 points)
#
# Compute the TD errors with your function, then sweep backwards in time:
#
# $$\hat A_{T-1} = \delta_{T-1}, \qquad \hat A_t = \delta_t + \gamma \lambda\, (1 - \mathrm{done}_t)\, \hat A_{t+1}.$$
#
# Two classic mistakes the check looks for: letting the advantage run on across an episode end,
# and mixing up which discount goes where ($\gamma$ alone inside $\delta_t$, $\gamma\lambda$ in the
# recursion). Loop over time only; every batch row moves at once.
#
# Check on the notes' example: TD errors 1.2, 0.3, 0.8, -0.2 with $\gamma = 1$ give
# $\hat A_0 = 1.2, 1.525, 1.972, 2.1$ for $\lambda = 0, 0.5, 0.9, 1$.

# %% nbgrader={"grade": false, "grade_id": "gae", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gae(rewards, values, gamma, lam, dones=None):
    """Generalised advantage estimates, shape (..., T); see the recursion above.

    >>> float(gae(np.array([1.2, 0.3, 0.8, -0.2]), np.zeros(5), gamma=1.0, lam=0.5)[0])
    1.525
    """
    ### BEGIN SOLUTION
    delta = td_errors(rewards, values, gamma, dones)
    not_done = np.ones_like(delta) if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    advantages = np.zeros_like(delta)
    lastgaelam = np.zeros(delta.shape[:-1])
    for t in reversed(range(delta.shape[-1])):
        lastgaelam = delta[..., t] + gamma * lam * not_done[..., t] * lastgaelam
        advantages[..., t] = lastgaelam
    return advantages
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gae_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_gae(gae)
### BEGIN HIDDEN TESTS
check_gae(gae, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The actor-critic loss (3 points)
#
# Over the steps where `mask` is True (a count of $n$ steps), return the scalar tensor
#
# $$L = -\frac{1}{n}\sum \log \pi(a_t|s_t)\, \hat A_t \; + \; c_v\, \frac{1}{n}\sum \big(V(s_t) - G_t\big)^2 .$$
#
# `logp`, `values`, `advantages`, `returns` and `mask` all have shape (N, T). `advantages` and
# `returns` were computed from the critic's own values, so they are still attached to the critic
# in autograd's graph. They are *targets*: the actor's term must not train the critic, and the
# critic must regress towards a fixed $G_t$. Detach them.

# %% nbgrader={"grade": false, "grade_id": "loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def actor_critic_loss(logp, values, advantages, returns, mask, value_coef):
    """Policy loss plus value_coef times the critic's squared error, averaged over the masked steps."""
    ### BEGIN SOLUTION
    m = mask.to(logp.dtype)
    n = m.sum()
    policy_loss = -(logp * advantages.detach() * m).sum() / n
    value_loss = ((values - returns.detach()) ** 2 * m).sum() / n
    return policy_loss + value_coef * value_loss
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "loss_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_actor_critic_loss(actor_critic_loss)
### BEGIN HIDDEN TESTS
check_actor_critic_loss(actor_critic_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your `gae` against the notes' worked example, and the two identities of chapter 7: $\lambda = 0$
# gives the TD errors; $\lambda = 1$ gives the (bootstrapped) discounted returns minus the values.
# (Not graded.)

# %%
for lam, notes in ((0.0, 1.2), (0.5, 1.525), (0.9, 1.972), (1.0, 2.1)):
    print(f"lambda = {lam}: {gae(np.array([1.2, 0.3, 0.8, -0.2]), np.zeros(5), 1.0, lam)[0]:.4f} (notes: {notes})")

rng = np.random.default_rng(0)
r, v = rng.normal(size=6), rng.normal(size=7)
G = np.zeros(6)
after = v[6]
for t in reversed(range(6)):
    after = r[t] + 0.9 * after
    G[t] = after
print("lambda 0 = TD errors:", np.allclose(gae(r, v, 0.9, 0.0), td_errors(r, v, 0.9)))
print("lambda 1 = returns - values:", np.allclose(gae(r, v, 0.9, 1.0), G - v[:-1]))
