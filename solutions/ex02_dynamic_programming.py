# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 2 — dynamic programming
#
# You will write the three functions of chapter 2 that turn a model of the world into an
# optimal policy:
#
# 1. `greedy_policy(Q)`: the one-hot policy that picks $\arg\max_a Q(s, a)$ in every state;
# 2. `value_iteration(mdp, tol)`: sweep $V_{k+1}(s) = \max_a \big(R[s,a] + \gamma \sum_{s'} P[s,a,s'] V_k(s')\big)$ to convergence;
# 3. `policy_iteration(mdp)`: evaluate, improve greedily, repeat until the policy stops changing.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Work on whole arrays: no loop
# over states or actions is needed (a loop over sweeps or iterations is fine).
#
# Reminders from chapter 1: `mdp.P` has shape (S, A, S), `mdp.R` shape (S, A), `mdp.gamma` is the
# discount, `mdp.terminal` a boolean (S,) mask of states worth 0, and `mdp.P @ V` has shape (S, A).

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np

from course_lib.bellman import evaluate_policy, q_from_v
from course_lib.checks.ch02 import check_greedy_policy, check_policy_iteration, check_value_iteration
from course_lib.mdp import ACTION_ARROWS, sutton_barto_gridworld

# %% [markdown] nbgrader={"grade": false, "grade_id": "greedy_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The greedy policy (2 points)
#
# Given action values `Q` of shape (S, A), return `pi` of shape (S, A) with `pi[s, a] = 1` for the
# best action of state `s` and 0 elsewhere: a deterministic policy written as a table of
# probabilities, so that it plugs into `evaluate_policy`. When several actions tie for the best,
# pick the one with the lowest index (`np.argmax` already does this).

# %% nbgrader={"grade": false, "grade_id": "greedy", "locked": false, "schema_version": 3, "solution": true, "task": false}
def greedy_policy(Q):
    """One-hot greedy policy of shape (S, A) from action values Q of shape (S, A).

    >>> greedy_policy(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]]))
    array([[0., 1., 0.],
           [1., 0., 0.]])
    """
    ### BEGIN SOLUTION
    Q = np.asarray(Q, dtype=np.float64)
    pi = np.zeros_like(Q)
    pi[np.arange(Q.shape[0]), np.argmax(Q, axis=1)] = 1.0
    return pi
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "greedy_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_greedy_policy(greedy_policy)
### BEGIN HIDDEN TESTS
check_greedy_policy(greedy_policy, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "vi_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Value iteration (3 points)
#
# Start from $V_0 = 0$. Each sweep computes the action values of the current estimate,
# $Q_k = R + \gamma\, P V_k$ (that is `q_from_v(mdp, V)`, which also sets terminal rows to 0), and
# takes the best one, $V_{k+1}(s) = \max_a Q_k(s, a)$, for all states at once. Stop when no state
# changes by more than `tol` in a sweep, and return `(V, greedy_policy(Q))` with `Q` the action
# values of your final `V`.
#
# Two things to get right: the *max* over actions (an average would evaluate the random policy
# instead), and sweeping until the change is below `tol` rather than a fixed number of times
# (with $\gamma = 0.9$ it takes a couple of hundred sweeps to reach $10^{-10}$).

# %% nbgrader={"grade": false, "grade_id": "value_iteration", "locked": false, "schema_version": 3, "solution": true, "task": false}
def value_iteration(mdp, tol=1e-10):
    """(V*, pi*) for a TabularMDP: V* of shape (S,), pi* a one-hot greedy policy of shape (S, A)."""
    ### BEGIN SOLUTION
    V = np.zeros(mdp.n_states)
    while True:
        Q = q_from_v(mdp, V)
        V_new = Q.max(axis=1)
        change = np.max(np.abs(V_new - V))
        V = V_new
        if change < tol:
            return V, greedy_policy(q_from_v(mdp, V))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "value_iteration_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_value_iteration(value_iteration)
### BEGIN HIDDEN TESTS
check_value_iteration(value_iteration, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "pi_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Policy iteration (3 points)
#
# Start from the uniform random policy, `np.full((S, A), 1 / A)` (with $\gamma = 1$ a deterministic
# starting policy may walk in circles forever and have no value), and evaluate it:
# `V = evaluate_policy(mdp, pi)` (chapter 1's exact solve). Then repeat:
#
# 1. **improve**: `new_pi = greedy_policy(q_from_v(mdp, V))`;
# 2. **evaluate**: `new_V = evaluate_policy(mdp, new_pi)`;
# 3. **stop** when the policy did not change, and return `(new_V, new_pi)`; otherwise carry on
#    from `new_pi` and `new_V`.
#
# Sutton and Barto's exercise 4.4 points at a trap in step 3: when two actions are equally good,
# round-off in `V` can make the greedy choice flip between them from one iteration to the next,
# and "the policy did not change" never comes. Stop also when the value did not change
# (`np.allclose(new_V, V, rtol=0, atol=1e-10)`): then the greedy step found nothing better, which
# is exactly the Bellman optimality equation.

# %% nbgrader={"grade": false, "grade_id": "policy_iteration", "locked": false, "schema_version": 3, "solution": true, "task": false}
def policy_iteration(mdp):
    """(V*, pi*) for a TabularMDP by policy iteration; pi* one-hot of shape (S, A)."""
    ### BEGIN SOLUTION
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    V = evaluate_policy(mdp, pi)
    while True:
        new_pi = greedy_policy(q_from_v(mdp, V))
        new_V = evaluate_policy(mdp, new_pi)
        if np.array_equal(new_pi, pi) or np.allclose(new_V, V, rtol=0.0, atol=1e-10):
            return new_V, new_pi
        pi, V = new_pi, new_V
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "policy_iteration_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_policy_iteration(policy_iteration)
### BEGIN HIDDEN TESTS
check_policy_iteration(policy_iteration, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# With your functions working, this cell solves Sutton and Barto's Example 3.5 both ways and
# prints $V^*$ with the optimal action in each cell: compare with the book's Figure 3.5
# (top row 22.0 24.4 22.0 19.4 17.5). It is not graded.

# %%
grid = sutton_barto_gridworld()
V_vi, pi_vi = value_iteration(grid)
V_pi, pi_pi = policy_iteration(grid)
print("max |V_vi - V_pi| =", np.max(np.abs(V_vi - V_pi)))
for row in range(5):
    cells = range(row * 5, row * 5 + 5)
    print("  ".join(f"{V_vi[s]:5.1f} {ACTION_ARROWS[int(np.argmax(pi_vi[s]))]}" for s in cells))
