# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 4 — SARSA vs Q-learning: on-policy and off-policy control
#
# Chapter 3 estimated the value of a *fixed* policy from experience. This chapter lets the
# agent *improve* its policy while it learns, without ever seeing the transition table: that is
# **control**. Two one-line algorithms do it, and they differ in a single symbol:
#
# * **SARSA** bootstraps on $Q(S', A')$, the value of the action it will actually take next;
# * **Q-learning** bootstraps on $\max_{a'} Q(S', a')$, the value of the best action.
#
# On Sutton and Barto's cliff walk (Example 6.6) that one symbol decides whether the agent
# learns to walk along the edge of a cliff or to keep a safe distance, and which of the two
# collects more reward while it is still exploring. We reproduce the book's figure, measure why
# it comes out that way, and end with a slider over the exploration rate $\varepsilon$.
#
# Cells that do real work honour `COURSE_FAST=1` (the tests set it) by using fewer runs and
# episodes; what you run by default is the full setting, the book's 100 runs of 500 episodes.

# %%
from collections import Counter
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from IPython.display import display

from course_lib.config import FAST
from course_lib.mdp import CLIFF_CELLS, CLIFF_GOAL, CLIFF_SHAPE, CLIFF_START, cliff_walking
from course_lib.plots import heatmaps_side_by_side
from course_lib.td import (
    epsilon_greedy,
    epsilon_greedy_probs,
    expected_sarsa,
    expected_sarsa_target,
    greedy_path,
    q_learning,
    q_learning_target,
    sarsa,
    sarsa_target,
    td_update,
)
from course_lib.widgets import cliff_figure, epsilon_slider_cliff, update_cliff_figure

SEED = 0
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. From prediction to control
#
# Control alternates two steps that chapter 2 already did with a model: **evaluate** the current
# policy, then **improve** it by acting greedily on its values. Without a model, two things change.
#
# *Learn $Q$, not $V$.* Improving on $V$ means $\pi(s) = \arg\max_a \big(R[s,a] + \gamma \sum_{s'} P[s,a,s'] V(s')\big)$,
# which needs $P$ and $R$. Improving on $Q$ is just $\pi(s) = \arg\max_a Q(s, a)$: the look-ahead
# is already inside $Q$. So the learners keep a table `Q[s, a]`.
#
# *Keep exploring.* A purely greedy agent never tries the actions its current table undervalues,
# so it can never find out that they are better. The simplest fix is the **$\varepsilon$-greedy**
# policy: with probability $\varepsilon$ take a uniformly random action, otherwise a greedy one,
#
# $$\pi(a \mid s) = \frac{\varepsilon}{|\mathcal A|} + (1 - \varepsilon)\,\mathbb 1\big[a = \arg\max_{a'} Q(s, a')\big].$$
#
# When several actions share the maximum we split the greedy share among them (and pick one at
# random): a table that starts at zero is all ties, and always taking the first action would send
# the agent into the same wall forever.

# %%
q_rows = np.array([[0.0, 2.0, 2.0, -1.0]])
probs = epsilon_greedy_probs(q_rows, 0.1)[0]
draws = epsilon_greedy(np.repeat(q_rows, 100_000, axis=0), 0.1, rng)
print("pi(a|s) for Q(s, .) =", q_rows[0], "->", probs)
print("frequencies over 100,000 draws:", np.bincount(draws, minlength=4) / len(draws))
assert np.allclose(np.bincount(draws, minlength=4) / len(draws), probs, atol=0.005)

# %% [markdown]
# ## 2. The cliff
#
# A 4 x 12 grid. The agent starts in the bottom-left corner **S** and must reach the bottom-right
# corner **G**. Every move costs $-1$. The cells between S and G are a cliff: stepping into one
# costs $-100$ and puts the agent straight back on S (the episode goes on). Walking into the outer
# wall leaves it where it is, for $-1$. No discount: $\gamma = 1$, so the return of an episode is
# minus the number of moves, minus 99 more for every fall.
#
# `cliff_walking()` builds it as a `TabularMDP` with 48 states (state = `row * 12 + col`). We will
# never hand its tables to the learners, only let them sample from it; but with the tables in hand
# we can compute the optimal action values first, by iterating the Bellman optimality equation
# $Q(s,a) \leftarrow R[s,a] + \gamma \sum_{s'} P[s,a,s'] \max_{a'} Q(s',a')$ (chapter 2), and know
# what the learners should find.

# %%
cliff = cliff_walking()
UP, RIGHT, DOWN, LEFT = range(4)
print(f"S = {cliff.n_states} states, A = {cliff.n_actions} actions, gamma = {cliff.gamma}")
print(f"from S, 'right' goes to state {cliff.P[CLIFF_START, RIGHT].argmax()} with reward {cliff.R[CLIFF_START, RIGHT]:.0f}")
print(f"from S, 'up'    goes to state {cliff.P[CLIFF_START, UP].argmax()} with reward {cliff.R[CLIFF_START, UP]:.0f}")

Q_star = np.zeros((cliff.n_states, cliff.n_actions))
for _ in range(100):  # more sweeps than the longest optimal route has steps
    Q_star = cliff.R + cliff.gamma * cliff.P @ Q_star.max(axis=1)
    Q_star[cliff.terminal] = 0.0
optimal_path = greedy_path(Q_star, cliff, CLIFF_START)
EDGE_PATH = [CLIFF_START] + [2 * 12 + c for c in range(12)] + [CLIFF_GOAL]
print(f"optimal return from S: {Q_star[CLIFF_START].max():.0f}; optimal path has {len(optimal_path) - 1} moves")
assert Q_star[CLIFF_START].max() == -13
assert optimal_path.tolist() == EDGE_PATH  # up, eleven steps right along the edge, down

# %% [markdown]
# The optimal route hugs the edge: up one cell, eleven steps right, one down, return $-13$. Any
# safer route costs two extra moves per row of distance from the cliff.
#
# ## 3. SARSA: learn the value of the policy you follow
#
# Take the Bellman expectation equation for $Q_\pi$ from chapter 1 and write the expectation over the
# next action as a sample:
#
# $$Q_\pi(s, a) = \mathbb E_\pi\big[R_{t+1} + \gamma\, Q_\pi(S_{t+1}, A_{t+1}) \,\big|\, S_t = s, A_t = a\big].$$
#
# Each step of experience gives one sample of the bracket: the quintuple
# $(S_t, A_t, R_{t+1}, S_{t+1}, A_{t+1})$ that names the algorithm. Move the table a step $\alpha$ towards it:
#
# $$Q(S_t, A_t) \leftarrow Q(S_t, A_t) + \alpha\,\big[\underbrace{R_{t+1} + \gamma\,(1 - d_{t+1})\, Q(S_{t+1}, A_{t+1})}_{y_t,\ \text{the SARSA target}} - Q(S_t, A_t)\big].$$
#
# $d_{t+1} = 1$ when $S_{t+1}$ is terminal: a terminal state is worth 0, whatever the table holds for
# it. $A_{t+1}$ is the action the agent *will actually take*, drawn from its $\varepsilon$-greedy policy
# **before** the update. Because the policy is $\varepsilon$-greedy with respect to the very table being
# learned, evaluation and improvement happen at every step. SARSA is **on-policy**: the policy it
# learns about is the policy that generates its data, exploration included.
#
# In code a target takes the next state's row $Q(S', \cdot)$ for a whole batch of transitions; the update
# moves one entry per row:

# %%
rewards = np.array([-1.0, -1.0, -100.0])
q_next = np.array([[-5.0, -3.0, -9.0, -4.0]] * 3)  # Q(S', .) for three transitions
next_actions = np.array([0, 1, 2])                  # what the policy picked in S'
dones = np.array([False, False, True])
y_sarsa = sarsa_target(rewards, q_next, next_actions, dones, gamma=1.0)
print("SARSA targets:     ", y_sarsa)   # -1 + Q(S', A'), and no bootstrap after the terminal step
assert np.allclose(y_sarsa, [-6.0, -4.0, -100.0])

Q_demo = np.zeros((1, 2, 4))                        # one run, two states
print("after one update:  ", td_update(Q_demo, np.array([0]), np.array([RIGHT]), np.array([-4.0]), alpha=0.5)[0, 0])

# %% [markdown]
# ## 4. Q-learning: learn the value of the greedy policy, whatever you do
#
# Start instead from the Bellman **optimality** equation,
#
# $$Q_*(s, a) = \mathbb E\big[R_{t+1} + \gamma \max_{a'} Q_*(S_{t+1}, a') \,\big|\, S_t = s, A_t = a\big],$$
#
# and the sampled target becomes $y_t = R_{t+1} + \gamma\,(1 - d_{t+1}) \max_{a'} Q(S_{t+1}, a')$
# (Watkins, 1989). The action the agent takes next does not enter it. Q-learning still *behaves*
# $\varepsilon$-greedily, to explore, but what it *learns about* is the greedy policy: it is **off-policy**.
# On the three transitions above:

# %%
y_q = q_learning_target(rewards, q_next, dones, gamma=1.0)
print("Q-learning targets:", y_q)   # -1 + max_a Q(S', a) = -1 - 3, whatever A' was
assert np.allclose(y_q, [-4.0, -4.0, -100.0])

# %% [markdown]
# The first transition shows the difference: the agent is about to explore (action 0, worth $-5$), and
# SARSA's target carries that cost ($-6$) while Q-learning's ignores it ($-4$).
#
# ## 5. A hundred runs at once
#
# One run of a learner is noisy: exploration is random, and a single fall costs 100. Sutton and Barto
# average every learning curve over many independent runs. `sarsa` and `q_learning` take `n_runs` and
# keep one table per run, `Q` of shape (N, S, A); at every step all N runs sample their next state,
# compute their targets and update their own tables in a few array operations, so 100 runs cost
# little more than one (`benchmarks/bench_ch04.py` measures it). They return the return of every
# episode of every run, shape (N, episodes), and the final tables.
#
# The loop inside follows the book's pseudocode exactly; for SARSA, one step is:
#
# ```
# S' ~ P[S, A];  R = R[S, A]             # all N runs at once
# A' = epsilon_greedy(Q[runs, S'])        # chosen before the update: it is in the target
# y  = sarsa_target(R, Q[runs, S'], A', terminated, gamma)
# Q  = td_update(Q, S, A, y, alpha)
# S, A = S', A'                           # or the start state and a fresh action where an episode ended
# ```
#
# and Q-learning swaps the target and chooses $A'$ after the update. (`tests/test_td.py` checks every run
# against a plain loop over runs that draws the same random numbers.)
#
# ## 6. The experiment: Example 6.6
#
# Both learners with $\alpha = 0.5$, $\varepsilon = 0.1$, tables starting at zero, every episode from S.
# The *online* return is the sum of rewards of each episode as it was played, exploration included:
# what the agent actually collects while it learns.

# %%
@dataclass
class CliffRun:
    n_runs: int            # independent runs averaged in every curve (the book: 100)
    n_episodes: int        # episodes per run
    alpha: float = 0.5     # step size of the TD update
    epsilon: float = 0.1   # exploration rate of the behaviour policy
    seed: int = SEED       # seeds the one generator all runs draw from


cfg = CliffRun(n_runs=20, n_episodes=200) if FAST else CliffRun(n_runs=100, n_episodes=500)
settings = dict(n_runs=cfg.n_runs, alpha=cfg.alpha, epsilon=cfg.epsilon, seed=cfg.seed)
returns_sarsa, Q_sarsa = sarsa(cliff, CLIFF_START, cfg.n_episodes, **settings)
returns_q, Q_q = q_learning(cliff, CLIFF_START, cfg.n_episodes, **settings)
print("returns:", returns_sarsa.shape, " tables:", Q_sarsa.shape)


def modal_path(Qs):
    """The greedy path most runs end with, and how many runs end with it."""
    path, count = Counter(tuple(greedy_path(Q, cliff, CLIFF_START).tolist()) for Q in Qs).most_common(1)[0]
    return np.array(path), count


def smooth(curve, window=10):
    """Trailing mean over `window` episodes (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(curve)])
    i = np.arange(1, len(curve) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


comparison = {"epsilon": cfg.epsilon, "n_runs": cfg.n_runs}
for name, returns, Qs in (("sarsa", returns_sarsa, Q_sarsa), ("q_learning", returns_q, Q_q)):
    comparison[name + "_curve"] = smooth(returns.mean(axis=0))
    comparison[name + "_path"], comparison[name + "_path_runs"] = modal_path(Qs)
fig = cliff_figure(comparison)
fig.update_yaxes(range=[-100, 0], row=1, col=1)
fig.show()

# %% [markdown]
# This is the book's Figure 6.4. After the first few dozen episodes:
#
# * **SARSA** (blue) collects about $-25$ per episode, **Q-learning** (red) about $-50$: the on-policy
#   learner does better *online*;
# * yet Q-learning's greedy path (right, red) is the optimal one along the edge, while SARSA's (blue)
#   climbs away from the cliff and takes a longer, safer route.
#
# The check below makes both claims precise for the runs above.

# %%
late = slice(cfg.n_episodes // 2, None)
online_sarsa, online_q = returns_sarsa[:, late].mean(), returns_q[:, late].mean()
paths_q = [greedy_path(Q, cliff, CLIFF_START).tolist() for Q in Q_q]
far_from_edge = np.mean([(greedy_path(Q, cliff, CLIFF_START) // 12).min() <= 1 for Q in Q_sarsa])  # rows visited
print(f"online return, second half of training: SARSA {online_sarsa:.1f}, Q-learning {online_q:.1f}")
print(f"Q-learning runs whose greedy path is the edge path: {sum(p == EDGE_PATH for p in paths_q)} of {cfg.n_runs}")
print(f"SARSA runs whose greedy path climbs to row 0 or 1: {far_from_edge:.0%}")
assert online_sarsa > online_q + 10
assert sum(p == EDGE_PATH for p in paths_q) >= 0.9 * cfg.n_runs
assert far_from_edge >= 0.75

# %% [markdown]
# ## 7. Why the worse path earns more
#
# Q-learning's targets use the max, so its table converges towards $Q_*$, and $Q_*$ says the edge is the
# best place to walk. But the agent does not walk greedily: with $\varepsilon = 0.1$ it takes a random
# action one step in ten, and on the eleven edge cells one random action in four is "down", into the
# cliff. Roughly $11 \times 0.1 \times 0.25 \approx 0.3$ falls per crossing, each worth $-100$: that is the
# gap between the two curves. Q-learning never learns to fear this, because its target assumes that from
# the next step on it will act greedily.
#
# SARSA's targets use the action the $\varepsilon$-greedy policy actually takes, falls included, so its table
# estimates the value of *exploring* near the edge, and the edge looks bad. Its greedy policy walks away
# from the cliff. Look at the learned state values $\max_a Q(s, a)$, averaged over runs: along the row
# above the cliff SARSA's values are much lower than Q-learning's.

# %%
heatmaps_side_by_side(
    {"SARSA: max_a Q(s, a)": Q_sarsa.mean(axis=0).max(axis=1), "Q-learning: max_a Q(s, a)": Q_q.mean(axis=0).max(axis=1)},
    shape=CLIFF_SHAPE, title="Learned state values (mean over runs); the cliff cells hold 0", fmt=".0f",
).show()
edge_row = [2 * 12 + c for c in range(1, 11)]
print(f"mean value on the row above the cliff: SARSA {Q_sarsa.mean(axis=0)[edge_row].max(axis=1).mean():.1f}, "
      f"Q-learning {Q_q.mean(axis=0)[edge_row].max(axis=1).mean():.1f} (Q*: {Q_star[edge_row].max(axis=1).mean():.1f})")
assert Q_sarsa.mean(axis=0)[edge_row].max(axis=1).mean() < Q_q.mean(axis=0)[edge_row].max(axis=1).mean() - 2

# %% [markdown]
# Now stop exploring and let each learned policy walk greedily. The roles swap: Q-learning's policy
# is optimal ($-13$), SARSA's pays for its detour. Which learner is "better" depends on whether the agent
# will keep exploring when it is deployed. Both reach the optimal policy if $\varepsilon$ is decayed to 0
# slowly enough (Sutton and Barto, section 6.5); with a fixed $\varepsilon$ SARSA finds the best
# *$\varepsilon$-greedy* policy and Q-learning the best *greedy* one.

# %%
def greedy_returns(Qs):
    """Return of the greedy policy of each table whose greedy path reaches G (one that loops never ends)."""
    out = []
    for Q in Qs:
        path = greedy_path(Q, cliff, CLIFF_START)
        if path[-1] == CLIFF_GOAL:
            out.append(sum(cliff.R[s, np.argmax(Q[s])] for s in path[:-1]))
    return np.array(out)


greedy_sarsa, greedy_q = greedy_returns(Q_sarsa), greedy_returns(Q_q)
print(f"greedy return, mean over the {len(greedy_sarsa)} SARSA runs whose greedy path reaches G: {greedy_sarsa.mean():.1f}")
print(f"greedy return, mean over the {len(greedy_q)} Q-learning runs whose greedy path reaches G: {greedy_q.mean():.1f}")
assert len(greedy_q) == cfg.n_runs and np.all(greedy_q == -13)
assert greedy_sarsa.mean() < -14

# %% [markdown]
# ## 8. Expected SARSA
#
# SARSA's target depends on one random draw, $A_{t+1}$. Average it out instead, over the policy's own
# probabilities (section 6.6 of the book):
#
# $$y_t = R_{t+1} + \gamma\,(1 - d_{t+1}) \sum_{a'} \pi(a' \mid S_{t+1})\, Q(S_{t+1}, a').$$
#
# Same expected update as SARSA, less variance, so it tolerates a larger step size. With $\varepsilon = 0$
# the sum is the max and it *is* Q-learning. On the cliff with $\alpha = 0.5$ it does better than SARSA
# online (the book's Figure 6.3).

# %%
print("Expected SARSA targets:", expected_sarsa_target(rewards, q_next, dones, gamma=1.0, epsilon=0.1))
returns_exp, Q_exp = expected_sarsa(cliff, CLIFF_START, cfg.n_episodes, **settings)
online_exp = returns_exp[:, late].mean()
fig = go.Figure()
for name, returns in (("SARSA", returns_sarsa), ("Q-learning", returns_q), ("Expected SARSA", returns_exp)):
    fig.add_trace(go.Scatter(y=smooth(returns.mean(axis=0)), x=np.arange(1, cfg.n_episodes + 1), mode="lines", name=name))
fig.update_layout(title=f"Online return, mean of {cfg.n_runs} runs (alpha = 0.5, epsilon = 0.1)",
                  xaxis_title="episode", yaxis_title="sum of rewards during episode", width=750, height=380)
fig.update_yaxes(range=[-100, 0])
fig.show()
print(f"online return, second half: Expected SARSA {online_exp:.1f}, SARSA {online_sarsa:.1f}, Q-learning {online_q:.1f}")
assert online_exp > online_sarsa > online_q

# %% [markdown]
# ## 9. Move epsilon
#
# The slider re-runs both learners at the exploration rate you pick (20 runs of 300 episodes; it takes a
# second or two) and redraws both learning curves and both greedy paths. Things to try: at
# $\varepsilon = 0$ the curves meet and both paths run along the edge; as $\varepsilon$ grows the gap widens and
# SARSA's path moves further up, while Q-learning's greedy path does not move at all.

# %%
slider_runs, slider_episodes = (10, 150) if FAST else (20, 300)
slider_box = epsilon_slider_cliff(epsilon=0.1, n_runs=slider_runs, n_episodes=slider_episodes, seed=SEED)
display(slider_box)

# %% [markdown]
# The slider's callback is the plain function `update_cliff_figure(figure, epsilon, ...)`, and a sweep
# over $\varepsilon$ with it measures what the slider shows: the online gap grows with $\varepsilon$, and at
# $\varepsilon = 0$ it is gone (with a zero-initialised table and rewards of $-1$, untried actions look
# better than tried ones, which is enough exploration on this small grid).

# %%
sweep_fig = cliff_figure(comparison)
gaps = {}
for eps in (0.0, 0.05, 0.1, 0.2):
    result = update_cliff_figure(sweep_fig, eps, n_runs=slider_runs, n_episodes=slider_episodes, seed=SEED)
    tail = slice(slider_episodes // 2, None)
    gaps[eps] = result["sarsa_curve"][tail].mean() - result["q_learning_curve"][tail].mean()
    print(f"epsilon = {eps:.2f}: SARSA - Q-learning online return = {gaps[eps]:+6.1f};  "
          f"Q-learning's path is the edge: {result['q_learning_path'].tolist() == EDGE_PATH}")
assert abs(gaps[0.0]) < 2
assert gaps[0.05] < gaps[0.1] < gaps[0.2]

# %% [markdown]
# ## What to take away
#
# * Control without a model learns $Q$ and acts $\varepsilon$-greedily on it.
# * SARSA's target $R + \gamma Q(S', A')$ uses the action actually taken next: **on-policy**, it learns the
#   value of the exploring policy and learns to keep away from danger that exploration creates.
# * Q-learning's target $R + \gamma \max_{a'} Q(S', a')$ ignores the behaviour: **off-policy**, it learns
#   $Q_*$ and the optimal greedy policy, and pays for exploring next to the cliff.
# * Expected SARSA averages over the policy instead of sampling $A'$; with $\varepsilon = 0$ it is Q-learning.
# * Terminal states are worth 0: every target multiplies the bootstrap by $(1 - d)$.
#
# Next: **exercise 4** (`exercises/ex04_sarsa_vs_q_learning.ipynb`) has you write $\varepsilon$-greedy, both
# targets and the batched TD update. Chapter 5 replaces the table by a neural network: the same
# Q-learning target, on a problem with infinitely many states.
