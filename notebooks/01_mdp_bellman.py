# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 1 — MDPs, returns and the Bellman equations
#
# Everything in this course, from Q-learning to GRPO on a language model, rests on
# three ideas that this chapter builds from scratch:
#
# 1. the **agent-environment loop**, formalised as a Markov decision process (MDP);
# 2. the **return**, the discounted sum of the rewards to come;
# 3. the **Bellman equations**, which say that a value is "reward now plus discounted value next".
#
# We write each one as a small function in `course_lib`, check it against a plain loop,
# reproduce two figures from Sutton and Barto's *Reinforcement Learning: An Introduction*
# (2nd ed., 2018), and finish with a slider that lets you feel what the discount does.
#
# Run the cells in order. Cells that do real work honour `COURSE_FAST=1` (the tests set it)
# by using smaller budgets; what you run by default is the full setting.

# %%
import numpy as np
import plotly.graph_objects as go
from IPython.display import display

from course_lib.bellman import (
    evaluate_policy,
    iterative_policy_evaluation,
    policy_dynamics,
    policy_evaluation_sweeps,
    q_from_v,
    v_from_q,
)
from course_lib.config import FAST
from course_lib.envs import TabularEnv
from course_lib.mdp import ACTIONS, TabularMDP, small_gridworld, sutton_barto_gridworld, uniform_policy
from course_lib.plots import convergence_plot, heatmaps_side_by_side, value_heatmap
from course_lib.returns import discounted_returns
from course_lib.widgets import gamma_slider_heatmap, update_value_heatmap

SEED = 0
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The agent-environment loop
#
# At each step $t$ the agent sees a state $S_t$, picks an action $A_t$, and the environment
# answers with a reward $R_{t+1}$ and a next state $S_{t+1}$:
#
# $$S_0, A_0, R_1, S_1, A_1, R_2, S_2, \dots$$
#
# Our first environment is Sutton and Barto's **Example 4.1**: a 4x4 grid whose top-left and
# bottom-right corners are terminal. Every move costs $-1$; walking into the edge leaves
# you where you are (and still costs $-1$). States are numbered `row * 4 + col`, and
# actions are 0 = up, 1 = right, 2 = down, 3 = left.
#
# `TabularEnv` follows gymnasium's API: `reset()` returns `(state, info)` and `step(action)`
# returns `(next_state, reward, terminated, truncated, info)`. Here is one episode of an
# agent that picks actions uniformly at random.

# %%
grid = small_gridworld()
env = TabularEnv(grid)
state, _ = env.reset(seed=SEED, options={"state": 6})
trajectory = []
terminated = False
while not terminated:
    action = int(rng.integers(grid.n_actions))
    next_state, reward, terminated, truncated, _ = env.step(action)
    trajectory.append((state, ACTIONS[action], reward, next_state))
    state = next_state

for t, (s, a, r, s2) in enumerate(trajectory[:8]):
    print(f"t={t}: S={s:2d} (row {s // 4}, col {s % 4})  A={a:<5}  R={r:+.0f}  S'={s2}")
print(f"... the episode ended after {len(trajectory)} steps in state {trajectory[-1][3]}")

# %% [markdown]
# ## 2. An MDP is three arrays
#
# A finite MDP is the tuple $(P, R, \gamma)$:
#
# * $P[s, a, s'] = \Pr(S_{t+1} = s' \mid S_t = s, A_t = a)$, an array of shape (S, A, S);
# * $R[s, a] = \mathbb{E}[R_{t+1} \mid S_t = s, A_t = a]$, the expected reward, shape (S, A);
# * $\gamma \in [0, 1]$, the discount.
#
# The **Markov property** is what makes three arrays enough: the next state and reward
# depend on the past only through $(S_t, A_t)$. Terminal states are absorbing and worth 0.
#
# `TabularMDP` checks its input, because a transition table that does not sum to one gives
# silent nonsense later. Look at what it says about a broken one:

# %%
print("P:", grid.P.shape, " R:", grid.R.shape, " gamma:", grid.gamma, " terminal states:", np.flatnonzero(grid.terminal))
print("From state 5, action 'right' leads to", np.flatnonzero(grid.P[5, 1]), "with reward", grid.R[5, 1])

broken_P = grid.P.copy()
broken_P[5, 1, 6] = 0.9  # a row that sums to 0.9
try:
    TabularMDP(broken_P, grid.R, gamma=1.0, terminal=grid.terminal)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 3. The return
#
# The agent wants the rewards to come to be large. Their discounted sum is the **return**
#
# $$G_t = R_{t+1} + \gamma R_{t+2} + \gamma^2 R_{t+3} + \dots = \sum_{k=0}^{\infty} \gamma^k R_{t+k+1}.$$
#
# Pull the first term out and what is left is $\gamma$ times the same sum one step later:
#
# $$G_t = R_{t+1} + \gamma \left(R_{t+2} + \gamma R_{t+3} + \dots\right) = R_{t+1} + \gamma G_{t+1}.$$
#
# This recursion is the seed of everything that follows. It also gives the cheap way to
# compute all the returns of an episode: sweep backwards from the end, where the return is
# just the last reward.
#
# *A note on indices.* Some texts write $G_t = R_t + \gamma R_{t+1} + \dots$, numbering the
# reward by the step that earned it. It is the same quantity; in code we store
# `rewards[t]` $= R_{t+1}$, the reward that follows the action at step $t$, with time on the
# **last** axis. `dones[t]` marks that the episode ended with that reward, so the backward
# sweep restarts there.
#
# $\gamma$ sets how far the agent looks ahead: the weight $\gamma^k$ of a reward $k$ steps away
# falls to $1/e$ after about $1/(1-\gamma)$ steps, the *effective horizon*.

# %%
k = np.arange(60)
fig = go.Figure()
for gamma in (0.5, 0.9, 0.97, 1.0):
    fig.add_trace(go.Scatter(x=k, y=gamma**k, mode="lines", name=f"gamma = {gamma}"))
fig.update_layout(title="Weight gamma^k of a reward k steps ahead", xaxis_title="k", yaxis_title="gamma^k", width=700, height=380)
fig.show()

# %% [markdown]
# `discounted_returns(rewards, gamma, dones)` runs the backward sweep over the time axis,
# all batch rows at once. Check it on the episode above and against a plain loop on a batch
# with episode ends in the middle:

# %%
episode_rewards = np.array([r for _, _, r, _ in trajectory])
G = discounted_returns(episode_rewards, gamma=1.0)
print(f"G_0 = {G[0]:.0f}: with gamma = 1 and -1 per step, minus the number of steps ({len(trajectory)})")

batch_rewards = rng.normal(size=(4, 12))
batch_dones = rng.random((4, 12)) < 0.2


def returns_loop(rewards, gamma, dones):
    out = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        g = 0.0
        for t in reversed(range(rewards.shape[1])):
            g = rewards[b, t] + gamma * g * (1 - dones[b, t])
            out[b, t] = g
    return out


assert G[0] == -len(trajectory)
np.testing.assert_allclose(discounted_returns(batch_rewards, 0.9, batch_dones), returns_loop(batch_rewards, 0.9, batch_dones))
print("discounted_returns agrees with the loop")

# %% [markdown]
# ## 4. Values and the Bellman expectation equations
#
# A policy $\pi(a \mid s)$ is a table of shape (S, A) whose rows sum to 1. Its **state value**
# and **action value** are expected returns:
#
# $$V_\pi(s) = \mathbb{E}_\pi[G_t \mid S_t = s], \qquad Q_\pi(s, a) = \mathbb{E}_\pi[G_t \mid S_t = s, A_t = a].$$
#
# Take the expectation of $G_t = R_{t+1} + \gamma G_{t+1}$. Given $S_t = s$ and $A_t = a$, the
# first term averages to $R[s, a]$; the second is, by the Markov property, the value of wherever
# we land:
#
# $$Q_\pi(s, a) = R[s, a] + \gamma \sum_{s'} P[s, a, s']\, V_\pi(s'). \qquad (1)$$
#
# And $V_\pi(s)$ averages $Q_\pi(s, \cdot)$ over the action the policy picks:
#
# $$V_\pi(s) = \sum_a \pi(a \mid s)\, Q_\pi(s, a). \qquad (2)$$
#
# Substituting (1) into (2) gives the **Bellman expectation equation** for $V_\pi$, and (2)
# into (1) the one for $Q_\pi$:
#
# $$V_\pi(s) = \sum_a \pi(a \mid s) \Big(R[s,a] + \gamma \sum_{s'} P[s,a,s'] V_\pi(s')\Big), \qquad
#   Q_\pi(s,a) = R[s,a] + \gamma \sum_{s'} P[s,a,s'] \sum_{a'} \pi(a' \mid s') Q_\pi(s',a').$$
#
# Equations (1) and (2) are the library's `q_from_v(mdp, V)` and `v_from_q(pi, Q)`.

# %% [markdown]
# ## 5. Exact policy evaluation: a linear system
#
# Average the one-step quantities over the policy's action,
# $r_\pi[s] = \sum_a \pi(a|s) R[s,a]$ and $P_\pi[s,s'] = \sum_a \pi(a|s) P[s,a,s']$, and the
# Bellman equation for all states at once is a matrix equation:
#
# $$V_\pi = r_\pi + \gamma P_\pi V_\pi \quad\Longleftrightarrow\quad (I - \gamma P_\pi)\, V_\pi = r_\pi.$$
#
# For $\gamma < 1$ the matrix $I - \gamma P_\pi$ is always invertible: $P_\pi$ is stochastic, so its
# eigenvalues have modulus at most 1 and those of $\gamma P_\pi$ at most $\gamma$. For $\gamma = 1$
# we drop the terminal states (their value is 0) and the system is solvable exactly when every
# state reaches a terminal state with probability 1. `evaluate_policy` solves it, and refuses,
# with a reason, when the values do not exist:

# %%
pi_random = uniform_policy(grid)
V_grid = evaluate_policy(grid, pi_random)
print(V_grid.reshape(4, 4).round(1))

Q_grid = q_from_v(grid, V_grid)
np.testing.assert_allclose(v_from_q(pi_random, Q_grid), V_grid, atol=1e-10)
print("V = sum_a pi(a|s) Q(s, a) holds in every state")

always_up = np.zeros((16, 4))
always_up[:, 0] = 1.0
try:
    evaluate_policy(grid, always_up)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 6. Iterative policy evaluation
#
# Solving a linear system costs $O(S^3)$. The alternative is to use the Bellman equation as an
# update and sweep until nothing changes:
#
# $$V_{k+1} = r_\pi + \gamma P_\pi V_k.$$
#
# The error shrinks by at least a factor $\gamma$ per sweep, because
# $\|V_{k+1} - V_\pi\|_\infty = \gamma \|P_\pi (V_k - V_\pi)\|_\infty \le \gamma \|V_k - V_\pi\|_\infty$
# (a row of $P_\pi$ averages, and an average is never further than the largest deviation).
# So about $\log(\varepsilon) / \log(\gamma)$ sweeps reach a tolerance $\varepsilon$: ten times
# more when $\gamma$ goes from 0.9 to 0.99. The plot measures it on Example 3.5's grid; the
# dashed lines are the bound $\gamma^k \|V_0 - V_\pi\|_\infty$.

# %%
grid35 = sutton_barto_gridworld()
pi35 = uniform_policy(grid35)
curves, bounds = {}, {}
n_sweeps = 150 if FAST else 600
for gamma in (0.5, 0.9, 0.97, 0.99):
    mdp = grid35.with_gamma(gamma)
    V_exact = evaluate_policy(mdp, pi35)
    errors = []
    for k, V_k in enumerate(policy_evaluation_sweeps(mdp, pi35), start=1):
        errors.append(np.max(np.abs(V_k - V_exact)))
        if k == n_sweeps or errors[-1] < 1e-13:
            break
    curves[f"gamma = {gamma}"] = errors
    # Starting from V_0 = 0, the initial error is max |V_pi|.
    bounds[f"gamma = {gamma}"] = np.max(np.abs(V_exact)) * gamma ** np.arange(1, len(errors) + 1)
    # The contraction bound is a theorem; the measured error must respect it.
    assert np.all(np.array(errors) <= bounds[f"gamma = {gamma}"] * (1 + 1e-9) + 1e-12)

convergence_plot(curves, title="Iterative policy evaluation on Example 3.5: error per sweep", bounds=bounds).show()

# %% [markdown]
# Both methods agree, and the iterative one stops when a sweep changes no state by more
# than `tol`:

# %%
V_iter = iterative_policy_evaluation(grid35, pi35, tol=1e-12)
V_solve = evaluate_policy(grid35, pi35)
print(f"max |iterative - exact| = {np.max(np.abs(V_iter - V_solve)):.2e}")
assert np.allclose(V_iter, V_solve, atol=1e-9)

# %% [markdown]
# ## 7. Two figures from the book
#
# **Example 3.5** is a 5x5 grid with two special cells. Every action in cell A (row 0, col 1)
# pays +10 and teleports the agent to A' (row 4, col 1); every action in B (row 0, col 3) pays +5
# and teleports it to B' (row 2, col 3). Bumping into the edge pays $-1$, every other move 0.
# The policy is uniformly random and $\gamma = 0.9$. The book prints the state values rounded to
# one decimal (its Figure 3.2); we put ours next to them.

# %%
BOOK_FIG_3_2 = np.array([
    [3.3, 8.8, 4.4, 5.3, 1.5],
    [1.5, 3.0, 2.3, 1.9, 0.5],
    [0.1, 0.7, 0.7, 0.4, -0.4],
    [-1.0, -0.4, -0.4, -0.6, -1.2],
    [-1.9, -1.3, -1.2, -1.4, -2.0],
])
V35 = evaluate_policy(grid35, pi35)
heatmaps_side_by_side(
    {"ours: evaluate_policy": V35, "the book (Figure 3.2)": BOOK_FIG_3_2},
    shape=(5, 5), title="Example 3.5: random policy, gamma = 0.9",
).show()
print(f"largest difference from the book: {np.max(np.abs(V35.reshape(5, 5) - BOOK_FIG_3_2)):.3f} (the book rounds to 0.1)")
assert np.max(np.abs(V35.reshape(5, 5) - BOOK_FIG_3_2)) <= 0.05 + 1e-9

# %% [markdown]
# Notice that A is worth 8.8, *less* than its immediate reward of 10: from A' at the bottom
# edge the random walk often bumps into the wall. B is worth 5.3, *more* than its 5, because B'
# lies in the middle of the grid, away from the edges.
#
# **Example 4.1** is our 4x4 grid with $\gamma = 1$. Its values are minus the expected number of
# steps a random walker needs to reach a corner (the book's Figure 4.1, bottom-left panel).

# %%
BOOK_FIG_4_1 = np.array([
    [0.0, -14.0, -20.0, -22.0],
    [-14.0, -18.0, -20.0, -20.0],
    [-20.0, -20.0, -18.0, -14.0],
    [-22.0, -20.0, -14.0, 0.0],
])
heatmaps_side_by_side(
    {"ours: evaluate_policy": V_grid, "the book (Figure 4.1)": BOOK_FIG_4_1},
    shape=(4, 4), title="Example 4.1: random policy, gamma = 1", fmt=".0f",
).show()
assert np.max(np.abs(V_grid.reshape(4, 4) - BOOK_FIG_4_1)) <= 0.5

# %% [markdown]
# ## 8. A value is an average of sampled returns
#
# $V_\pi(s)$ was *defined* as an expected return. So if we let the random agent walk from A
# many times and average the discounted returns, we should land near 8.8, within a few
# standard errors. (A continuing task never ends; we cut each walk after $H$ steps, which
# drops at most $0.9^H \cdot 10 / (1 - 0.9)$ of return: about $10^{-4}$ for $H = 130$.)

# %%
n_walks = 400 if FAST else 4000
horizon = 130
start = 0 * 5 + 1  # cell A
cum_P = np.cumsum(grid35.P, axis=2)
states = np.full(n_walks, start)
rewards = np.zeros((n_walks, horizon))
for t in range(horizon):  # all walks advance together
    actions = rng.integers(4, size=n_walks)
    rewards[:, t] = grid35.R[states, actions]
    u = rng.random(n_walks)[:, None]
    states = np.minimum((u > cum_P[states, actions]).sum(axis=1), grid35.n_states - 1)
G0 = discounted_returns(rewards, gamma=0.9)[:, 0]
se = G0.std(ddof=1) / np.sqrt(n_walks)
print(f"Monte Carlo estimate of V(A): {G0.mean():.2f} +- {se:.2f} (standard error) over {n_walks} walks; exact: {V35[start]:.2f}")
assert abs(G0.mean() - V35[start]) < 4 * se + 1e-3

# %% [markdown]
# ## 9. Feel the discount
#
# Move the slider. Each position re-solves $(I - \gamma P_\pi) V = r_\pi$ for Example 3.5 and
# redraws the heatmap. At $\gamma = 0$ the value of a state is just its expected next reward:
# $+10$ in A, $+5$ in B, negative along the edges. As $\gamma$ grows, A's jackpot spreads to its
# neighbours and the penalties of the edges reach further into the grid.

# %%
slider_box = gamma_slider_heatmap(grid35, pi35, gamma=0.9)
display(slider_box)

# %% [markdown]
# The slider calls `update_value_heatmap(figure, mdp, pi, gamma)`, a plain function. Calling it
# from code does what moving the slider does, which is also how the tests check it:

# %%
V_zero = update_value_heatmap(go.Figure(value_heatmap(V35, (5, 5))), grid35, pi35, gamma=0.0)
np.testing.assert_allclose(V_zero, grid35.R.mean(axis=1))
print("at gamma = 0, V(s) is the mean immediate reward:", V_zero.reshape(5, 5)[0])

# %% [markdown]
# ## What to take away
#
# * An MDP is $(P, R, \gamma)$; a policy is a row-stochastic table $\pi$.
# * The return satisfies $G_t = R_{t+1} + \gamma G_{t+1}$; computing it is one backward sweep.
# * $Q_\pi(s,a) = R[s,a] + \gamma \sum_{s'} P[s,a,s'] V_\pi(s')$ and $V_\pi(s) = \sum_a \pi(a|s) Q_\pi(s,a)$.
# * Exact evaluation solves $(I - \gamma P_\pi) V = r_\pi$; iterative evaluation converges at rate $\gamma$.
#
# Next: **exercise 1** (`exercises/ex01_mdp_bellman.ipynb`) has you write the return, exact
# evaluation and $Q$ from $V$ yourself. Chapter 2 then turns evaluation into *improvement*.
