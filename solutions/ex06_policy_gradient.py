# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 6 — the policy gradient, by hand
#
# You will write three functions from chapter 6:
#
# 1. `softmax_score(theta, s, a)`: $\nabla_\theta \log \pi_\theta(a \mid s)$ for the tabular softmax policy;
# 2. `reinforce_estimates(...)`: one REINFORCE estimate of $\nabla J$ per episode, with a baseline;
# 3. `reinforce_loss(logp, returns, baseline, mask)`: the surrogate loss whose gradient is REINFORCE's, in torch.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np
import torch

from course_lib.bellman import evaluate_policy
from course_lib.checks.ch06 import check_reinforce_estimates, check_reinforce_loss, check_softmax_score
from course_lib.mdp import small_gridworld
from course_lib.pg import exact_policy_gradient, sample_episodes, softmax_policy
from course_lib.returns import discounted_returns

# %% [markdown] nbgrader={"grade": false, "grade_id": "score_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The softmax score (2 points)
#
# The policy is $\pi_\theta(a \mid s) = e^{\theta[s,a]} / \sum_b e^{\theta[s,b]}$ with a table `theta` of
# shape (S, A). Return the array of shape (S, A) holding
# $\partial \log \pi_\theta(a \mid s) / \partial \theta[i, b]$ for every entry $(i, b)$.
#
# Hint: $\log \pi(a|s) = \theta[s,a] - \log \sum_b e^{\theta[s,b]}$. Only row $s$ of `theta` appears in it.
# `softmax_policy(theta)` (imported above) gives the whole table $\pi$, computed stably.

# %% nbgrader={"grade": false, "grade_id": "score", "locked": false, "schema_version": 3, "solution": true, "task": false}
def softmax_score(theta, s, a):
    """grad_theta log pi(a|s) for the tabular softmax policy; shape (S, A), zero outside row s.

    theta: (S, A) preferences; s: a state index; a: an action index.

    >>> softmax_score(np.zeros((2, 2)), 1, 0)
    array([[ 0. ,  0. ],
           [ 0.5, -0.5]])
    """
    ### BEGIN SOLUTION
    score = np.zeros(np.shape(theta))
    score[s] = -softmax_policy(theta)[s]
    score[s, a] += 1.0
    return score
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "score_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_softmax_score(softmax_score)
### BEGIN HIDDEN TESTS
check_softmax_score(softmax_score, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "estimates_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. REINFORCE estimates with a baseline (3 points)
#
# A batch of E episodes is given as arrays of shape (E, T): `states`, `actions`, `rewards`
# (`rewards[e, t]` follows the action at step t) and a boolean `mask` that is True on the steps
# the episode actually had (episodes end at different times; the padding after the end holds
# zeros). `baseline` is an array of shape (S,): $b(s)$. Return, for each episode, the estimate
#
# $$\hat g_e = \sum_{t:\ \text{mask}} \gamma^t \big(G_t - b(S_t)\big)\, \nabla_\theta \log \pi_\theta(A_t \mid S_t),$$
#
# an array of shape (E, S, A), where $G_t = \sum_{k \ge t} \gamma^{k-t} R_{k+1}$ is the return from
# step t to the end of the episode.
#
# You may use `discounted_returns(rewards, gamma)` from exercise 1 (imported above) and your
# `softmax_score`; loops over episodes and steps are fine here.

# %% nbgrader={"grade": false, "grade_id": "estimates", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reinforce_estimates(theta, states, actions, rewards, mask, gamma, baseline):
    """Per-episode REINFORCE estimates of grad J, shape (E, S, A).

    theta: (S, A); states, actions: int (E, T); rewards: (E, T); mask: bool (E, T);
    gamma: float in [0, 1]; baseline: (S,) values b(s).
    """
    ### BEGIN SOLUTION
    E, T = states.shape
    G = discounted_returns(np.where(mask, rewards, 0.0), gamma)      # (E, T)
    weights = gamma ** np.arange(T) * (G - baseline[states])          # (E, T)
    out = np.zeros((E,) + np.shape(theta))
    for e in range(E):
        for t in range(T):
            if mask[e, t]:
                out[e] += weights[e, t] * softmax_score(theta, states[e, t], actions[e, t])
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "estimates_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_reinforce_estimates(reinforce_estimates)
### BEGIN HIDDEN TESTS
check_reinforce_estimates(reinforce_estimates, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The REINFORCE loss in torch (3 points)
#
# With a neural policy we do not write the gradient; we write a loss whose gradient is minus the
# REINFORCE estimate, averaged over the N episodes, and let autograd differentiate it:
#
# $$L = -\frac{1}{N} \sum_{n, t:\ \text{mask}} \log \pi_\theta(A_t \mid S_t)\, \big(G_t - b(S_t)\big).$$
#
# `logp`, `returns`, `mask` have shape (N, T); `baseline` has shape (N, T) too (a critic's output
# on each step). The weights $G_t - b(S_t)$ must act as constants: no gradient may flow from this
# loss into the baseline (look up `Tensor.detach`). Return a scalar tensor.

# %% nbgrader={"grade": false, "grade_id": "loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reinforce_loss(logp, returns, baseline, mask):
    """-(1/N) sum over the masked steps of logp * (returns - baseline); a scalar tensor."""
    ### BEGIN SOLUTION
    weights = (returns - baseline).detach()
    return -(logp * weights * mask).sum() / logp.shape[0]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "loss_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_reinforce_loss(reinforce_loss)
### BEGIN HIDDEN TESTS
check_reinforce_loss(reinforce_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your estimator on chapter 6's grid: the average over episodes, with and without the baseline
# $b(s) = V(s)$, against the exact gradient from the policy gradient theorem. Both averages should
# sit within a few standard errors of it; the baseline should shrink those errors. (Not graded.)

# %%
grid = small_gridworld(gamma=0.9)
rng = np.random.default_rng(0)
theta = 0.8 * rng.normal(size=(16, 4))
mu = np.where(grid.terminal, 0.0, 1.0) / (~grid.terminal).sum()
episodes = sample_episodes(grid, softmax_policy(theta), rng.choice(np.flatnonzero(~grid.terminal), size=300), 100, rng)
exact = exact_policy_gradient(grid, theta, mu)
V = evaluate_policy(grid, softmax_policy(theta))
for name, b in (("no baseline", np.zeros(16)), ("b(s) = V(s)", V)):
    g = reinforce_estimates(theta, episodes.states, episodes.actions, episodes.rewards, episodes.mask, 0.9, b)
    se = g.std(axis=0) / np.sqrt(len(g)) + 1e-12
    print(f"{name:<12}: max |mean - exact| / se = {np.max(np.abs(g.mean(axis=0) - exact) / se):.1f}, "
          f"mean standard error {se.mean():.4f}")
