# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 1 — returns and policy evaluation
#
# You will write three functions from chapter 1:
#
# 1. `discounted_returns(rewards, gamma, dones=None)`: $G_t = R_{t+1} + \gamma G_{t+1}$, with episode ends;
# 2. `evaluate_policy(mdp, pi)`: solve $(I - \gamma P_\pi) V = r_\pi$ exactly;
# 3. `q_from_v(mdp, V)`: $Q(s,a) = R[s,a] + \gamma \sum_{s'} P[s,a,s'] V(s')$.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Use numpy only: no loops over
# states or actions are needed (a loop over time is fine for the returns).

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np

from course_lib.checks.ch01 import check_discounted_returns, check_evaluate_policy, check_q_from_v
from course_lib.mdp import TabularMDP, small_gridworld, sutton_barto_gridworld, uniform_policy

# %% [markdown] nbgrader={"grade": false, "grade_id": "returns_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Discounted returns (2 points)
#
# `rewards` has shape `(..., T)`: time on the last axis, any number of leading batch axes.
# `dones[..., t]` is true when the episode ended with reward `rewards[..., t]`: the return at
# step `t` must then not include anything after it. The last step has nothing after it either.
#
# Hint: sweep `t` from `T - 1` down to `0`, updating every batch element at once.

# %% nbgrader={"grade": false, "grade_id": "returns", "locked": false, "schema_version": 3, "solution": true, "task": false}
def discounted_returns(rewards, gamma, dones=None):
    """G[..., t] = rewards[..., t] + gamma * (1 - dones[..., t]) * G[..., t + 1].

    rewards: array (..., T); gamma: float in [0, 1]; dones: bool array (..., T) or None.
    Returns an array of the same shape as rewards.

    >>> discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5)
    array([1.75, 1.5 , 1.  ])
    """
    ### BEGIN SOLUTION
    rewards = np.asarray(rewards, dtype=np.float64)
    not_done = np.ones_like(rewards) if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    G = np.zeros_like(rewards)
    g = np.zeros(rewards.shape[:-1])
    for t in reversed(range(rewards.shape[-1])):
        g = rewards[..., t] + gamma * not_done[..., t] * g
        G[..., t] = g
    return G
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "returns_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_discounted_returns(discounted_returns)
### BEGIN HIDDEN TESTS
check_discounted_returns(discounted_returns, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluate_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Exact policy evaluation (3 points)
#
# Build $r_\pi[s] = \sum_a \pi(a|s) R[s,a]$ and $P_\pi[s,s'] = \sum_a \pi(a|s) P[s,a,s']$ (try
# `np.einsum`), then solve $(I - \gamma P_\pi) V = r_\pi$ with `np.linalg.solve`.
#
# Terminal states (`mdp.terminal`, a boolean array of shape (S,)) are worth 0. With $\gamma = 1$
# the full system is singular, so solve it over the non-terminal states only: keep the rows and
# columns of $I - \gamma P_\pi$ that belong to live states, and leave $V = 0$ on the terminal ones.

# %% nbgrader={"grade": false, "grade_id": "evaluate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def evaluate_policy(mdp, pi):
    """Exact V_pi of shape (S,) for a TabularMDP `mdp` and a policy `pi` of shape (S, A)."""
    ### BEGIN SOLUTION
    r_pi = np.einsum("sa,sa->s", pi, mdp.R)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    live = ~mdp.terminal
    V = np.zeros(mdp.n_states)
    A = np.eye(live.sum()) - mdp.gamma * P_pi[np.ix_(live, live)]
    V[live] = np.linalg.solve(A, r_pi[live])
    return V
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "evaluate_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_evaluate_policy(evaluate_policy)
### BEGIN HIDDEN TESTS
check_evaluate_policy(evaluate_policy, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Action values from state values (2 points)
#
# $Q(s, a) = R[s, a] + \gamma \sum_{s'} P[s, a, s'] V(s')$, shape (S, A). On a terminal state
# nothing more happens, so its action values are 0. (`mdp.P @ V` contracts the last axis.)

# %% nbgrader={"grade": false, "grade_id": "q_from_v", "locked": false, "schema_version": 3, "solution": true, "task": false}
def q_from_v(mdp, V):
    """Q of shape (S, A) from state values V of shape (S,)."""
    ### BEGIN SOLUTION
    Q = mdp.R + mdp.gamma * (mdp.P @ V)
    Q[mdp.terminal] = 0.0
    return Q
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_from_v_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_q_from_v(q_from_v)
### BEGIN HIDDEN TESTS
check_q_from_v(q_from_v, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# With all three working, this cell reproduces the book's Example 4.1 values and checks the
# relation $V(s) = \sum_a \pi(a|s) Q(s,a)$ between your two value functions. (It is not graded.)

# %%
grid = small_gridworld()
pi = uniform_policy(grid)
V = evaluate_policy(grid, pi)
print(V.reshape(4, 4).round(1))
print("V = sum_a pi Q:", np.allclose((pi * q_from_v(grid, V)).sum(axis=1), V))
