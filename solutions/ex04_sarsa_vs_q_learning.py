# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 4 — SARSA and Q-learning, many runs at once
#
# You will write the four pieces of tabular TD control from chapter 4:
#
# 1. `epsilon_greedy(q, epsilon, rng)`: the behaviour policy, ties broken at random;
# 2. `sarsa_target(rewards, q_next, next_actions, dones, gamma)`: $R + \gamma (1 - d)\, Q(S', A')$;
# 3. `q_learning_target(rewards, q_next, dones, gamma)`: $R + \gamma (1 - d) \max_{a'} Q(S', a')$;
# 4. `td_update(Q, states, actions, targets, alpha)`: $Q(S, A) \leftarrow Q(S, A) + \alpha\,(y - Q(S, A))$, one step per run.
#
# Every function works on a whole batch: row $n$ belongs to run $n$, and all runs advance in
# one array operation, as in `course_lib.td`. Replace each `raise NotImplementedError()` with
# your code and run the check below it; a check names the case that failed, where, and what
# it expected. numpy only, no loop over runs.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np

from course_lib.checks.ch04 import check_epsilon_greedy, check_q_learning_target, check_sarsa_target, check_td_update
from course_lib.mdp import CLIFF_START, cliff_walking

# %% [markdown] nbgrader={"grade": false, "grade_id": "eps_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Epsilon-greedy actions (2 points)
#
# `q` has shape `(N, A)`: the action values of the state each of N runs is in. For each row,
# with probability `epsilon` return an action drawn uniformly from all `A` actions; otherwise
# return a greedy action, and when several actions share the maximum pick one of them at
# random (a zero-initialised table is all ties, and always taking the first would send every
# run "up" forever). Return an integer array of shape `(N,)`.
#
# Hint: `rng.random(N) < epsilon` says which rows explore. For the random tie-break, give every
# entry a random score, set the scores of non-maximal entries to $-1$, and take the argmax.

# %% nbgrader={"grade": false, "grade_id": "epsilon_greedy", "locked": false, "schema_version": 3, "solution": true, "task": false}
def epsilon_greedy(q, epsilon, rng):
    """Epsilon-greedy actions of shape (N,) for action values q of shape (N, A)."""
    ### BEGIN SOLUTION
    N, A = q.shape
    explore = rng.random(N) < epsilon
    random_action = rng.integers(A, size=N)
    is_max = q == q.max(axis=1, keepdims=True)
    greedy = np.argmax(np.where(is_max, rng.random((N, A)), -1.0), axis=1)
    return np.where(explore, random_action, greedy)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "epsilon_greedy_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_epsilon_greedy(epsilon_greedy)
### BEGIN HIDDEN TESTS
check_epsilon_greedy(epsilon_greedy, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "sarsa_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The SARSA target (2 points)
#
# For a batch of transitions $(S, A, R, S', A')$ you get `rewards` (shape `(B,)`), `q_next`
# $= Q(S', \cdot)$ (shape `(B, A)`), the action `next_actions` $= A'$ that the behaviour policy
# actually picked in $S'$ (shape `(B,)`), and `dones` (shape `(B,)`, true when $S'$ is terminal).
#
# $$y = R + \gamma\,(1 - d)\, Q(S', A').$$
#
# Two classic mistakes: bootstrapping on $\max_a Q(S', a)$ (that is Q-learning, not SARSA), and
# forgetting the $(1 - d)$: a terminal state is worth 0, whatever the table says about it.
# `np.take_along_axis` or `q_next[np.arange(B), next_actions]` picks one entry per row.

# %% nbgrader={"grade": false, "grade_id": "sarsa_target", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sarsa_target(rewards, q_next, next_actions, dones, gamma):
    """y = R + gamma * (1 - done) * Q(S', A'), shape (B,)."""
    ### BEGIN SOLUTION
    B = len(rewards)
    taken = q_next[np.arange(B), next_actions]
    return rewards + gamma * (1.0 - dones) * taken
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sarsa_target_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_sarsa_target(sarsa_target)
### BEGIN HIDDEN TESTS
check_sarsa_target(sarsa_target, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The Q-learning target (2 points)
#
# $$y = R + \gamma\,(1 - d) \max_{a'} Q(S', a').$$
#
# Same arguments as above, without `next_actions`: Q-learning does not care which action the
# behaviour policy takes next. That is what makes it *off-policy*.

# %% nbgrader={"grade": false, "grade_id": "q_learning_target", "locked": false, "schema_version": 3, "solution": true, "task": false}
def q_learning_target(rewards, q_next, dones, gamma):
    """y = R + gamma * (1 - done) * max_a' Q(S', a'), shape (B,)."""
    ### BEGIN SOLUTION
    return rewards + gamma * (1.0 - dones) * q_next.max(axis=1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_learning_target_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_q_learning_target(q_learning_target)
### BEGIN HIDDEN TESTS
check_q_learning_target(q_learning_target, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "update_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. The TD update, one step per run (2 points)
#
# `Q` has shape `(N, S, A)`: one table per run. Run $n$ is in state `states[n]`, took
# `actions[n]`, and its target is `targets[n]`. Move each run's entry towards its own target,
#
# $$Q[n, s_n, a_n] \leftarrow Q[n, s_n, a_n] + \alpha\,\big(y_n - Q[n, s_n, a_n]\big),$$
#
# and return a **new** table (leave the input as it was). Careful with the indexing: `Q[:, s, a]`
# picks an (N, N) block, every run at every run's state; you want one entry per run,
# `Q[np.arange(N), states, actions]`.

# %% nbgrader={"grade": false, "grade_id": "td_update", "locked": false, "schema_version": 3, "solution": true, "task": false}
def td_update(Q, states, actions, targets, alpha):
    """A new (N, S, A) table with Q[n, s_n, a_n] moved a step alpha towards targets[n]."""
    ### BEGIN SOLUTION
    runs = np.arange(Q.shape[0])
    out = Q.copy()
    out[runs, states, actions] += alpha * (targets - Q[runs, states, actions])
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "td_update_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_td_update(td_update)
### BEGIN HIDDEN TESTS
check_td_update(td_update, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your four functions are all a learner needs. This cell runs SARSA and Q-learning side by
# side on the cliff, 20 runs each, stepping the runs together (it is not graded). With
# $\varepsilon = 0.1$ SARSA should collect the higher online return: it has learned that its own
# random steps make the cliff edge dangerous, while Q-learning walks the edge and sometimes
# falls.

# %%
def run_cliff(method, n_runs=20, n_episodes=200, alpha=0.5, epsilon=0.1, seed=0):
    mdp = cliff_walking()
    next_state = mdp.P.argmax(axis=2)  # the cliff is deterministic
    rng = np.random.default_rng(seed)
    runs = np.arange(n_runs)
    Q = np.zeros((n_runs, mdp.n_states, mdp.n_actions))
    S = np.full(n_runs, CLIFF_START)
    A = epsilon_greedy(Q[runs, S], epsilon, rng)
    G, episode = np.zeros(n_runs), np.zeros(n_runs, dtype=int)
    returns = np.zeros((n_runs, n_episodes))
    while episode.min() < n_episodes:
        S2, R = next_state[S, A], mdp.R[S, A]
        done = mdp.terminal[S2]
        if method == "sarsa":  # SARSA needs A' before the update: it is part of the target
            A2 = epsilon_greedy(Q[runs, S2], epsilon, rng)
            y = sarsa_target(R, Q[runs, S2], A2, done, mdp.gamma)
        else:
            y = q_learning_target(R, Q[runs, S2], done, mdp.gamma)
        Q = td_update(Q, S, A, y, alpha)  # runs that are done with their episodes just keep going
        if method != "sarsa":
            A2 = epsilon_greedy(Q[runs, S2], epsilon, rng)
        G += R
        record = done & (episode < n_episodes)
        returns[runs[record], episode[record]] = G[record]
        episode += record
        G[done] = 0.0
        S = np.where(done, CLIFF_START, S2)
        A = np.where(done, epsilon_greedy(Q[runs, S], epsilon, rng), A2)
    return returns


sarsa_returns = run_cliff("sarsa")
q_returns = run_cliff("q_learning")
print(f"mean online return over episodes 100-200: SARSA {sarsa_returns[:, 100:].mean():.1f}, "
      f"Q-learning {q_returns[:, 100:].mean():.1f}")
