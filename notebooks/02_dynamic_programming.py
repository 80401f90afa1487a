# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 2 — Dynamic programming: policy iteration, value iteration, $Q^*$
#
# Chapter 1 answered "how good is this policy?". This chapter answers "what is the *best*
# policy?", when we know the model $(P, R, \gamma)$. The answer has three parts:
#
# 1. the **Bellman optimality equations**, which the best values satisfy;
# 2. **policy improvement**: acting greedily with respect to a policy's values never makes it worse;
# 3. two algorithms built from them, **policy iteration** and **value iteration**.
#
# We reproduce the optimal values and the optimal policy of Sutton and Barto's Example 3.5
# (their Figure 3.5), measure how fast value iteration converges for several discounts, and end
# with a slider that shows the optimal policy changing with $\gamma$.
#
# Everything later in the course (Q-learning, DQN, actor-critic, PPO) is an approximation of one
# of these two algorithms for when the model is unknown or the state space too large.

# %%
import numpy as np
import plotly.graph_objects as go
from IPython.display import display

from course_lib.bellman import (
    bellman_optimality_sweeps,
    evaluate_policy,
    greedy_policy,
    optimal_actions,
    policy_improvement,
    policy_iteration,
    q_from_v,
    value_iteration,
)
from course_lib.config import FAST
from course_lib.mdp import ACTIONS, small_gridworld, sutton_barto_gridworld, uniform_policy
from course_lib.plots import add_policy_arrows, convergence_plot, heatmaps_side_by_side, value_heatmap
from course_lib.widgets import gamma_slider_optimal_policy, update_optimal_policy

print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. What "optimal" means
#
# Policies can be compared state by state: $\pi \ge \pi'$ when $V_\pi(s) \ge V_{\pi'}(s)$ in
# *every* state. It is not obvious that a single policy beats all others everywhere at once,
# but in a finite MDP one does (Sutton and Barto, section 3.6). Its values are the **optimal
# values**
#
# $$V^*(s) = \max_\pi V_\pi(s), \qquad Q^*(s, a) = \max_\pi Q_\pi(s, a).$$
#
# $Q^*(s, a)$ is the return of taking $a$ now and behaving optimally afterwards. Chapter 1's
# equation (1) holds for any policy, the optimal one included:
#
# $$Q^*(s, a) = R[s, a] + \gamma \sum_{s'} P[s, a, s']\, V^*(s'). \qquad (1)$$
#
# What changes is equation (2). Instead of *averaging* $Q$ over the policy's actions, an optimal
# agent takes the best one:
#
# $$V^*(s) = \max_a Q^*(s, a). \qquad (2^*)$$
#
# (Averaging with any weights gives at most the maximum, and putting all the weight on the best
# action gives exactly it.) Substituting one into the other gives the **Bellman optimality
# equations**:
#
# $$V^*(s) = \max_a \Big(R[s,a] + \gamma \sum_{s'} P[s,a,s']\, V^*(s')\Big), \qquad
#   Q^*(s,a) = R[s,a] + \gamma \sum_{s'} P[s,a,s'] \max_{a'} Q^*(s', a').$$
#
# Two consequences drive the rest of the chapter:
#
# * The $\max$ makes the equation **non-linear**: no single linear solve as in chapter 1.
# * Once $Q^*$ is known, acting well needs no look-ahead and no model: in each state pick
#   $\arg\max_a Q^*(s, a)$. A policy that is greedy with respect to $Q^*$ is optimal. This is why
#   Q-learning and DQN (chapters 4 and 5) learn $Q^*$.
#
# We store a deterministic policy as an (S, A) table with a single 1 per row, so it plugs into
# `evaluate_policy`. `greedy_policy(Q)` builds it, breaking ties towards the lowest action index:

# %%
Q_example = np.array([[1.0, 3.0, 2.0, 0.0], [5.0, 5.0, 0.0, -1.0]])
print(greedy_policy(Q_example))

# %% [markdown]
# ## 2. Policy improvement
#
# Take any policy $\pi$ and compute its action values $Q_\pi$. Now build the greedy policy
# $\pi'(s) = \arg\max_a Q_\pi(s, a)$. The **policy improvement theorem** (Sutton and Barto,
# section 4.2) says $\pi'$ is at least as good as $\pi$ in every state. The one-line reason: in
# each state, $\pi'$ gets $\max_a Q_\pi(s, a) \ge \sum_a \pi(a|s) Q_\pi(s, a) = V_\pi(s)$ for its
# first step, and unrolling the same inequality step after step gives $V_{\pi'} \ge V_\pi$.
#
# Chapter 1's Example 4.1 shows how strong a single step can be. The random policy's values
# (left) are minus the expected number of steps to a corner; acting greedily on them (the arrows)
# gives a policy whose values (right) are minus the *shortest* distance to a corner, which is
# optimal.

# %%
grid41 = small_gridworld()
V_random = evaluate_policy(grid41, uniform_policy(grid41))
pi_greedy = greedy_policy(q_from_v(grid41, V_random))
V_greedy = evaluate_policy(grid41, pi_greedy)

fig = heatmaps_side_by_side(
    {"V of the random policy, with greedy arrows": V_random, "V of the greedy policy": V_greedy},
    shape=(4, 4), title="Example 4.1: one step of policy improvement", fmt=".0f",
)
best41 = optimal_actions(grid41, V_random)  # all actions that tie for the best Q_random
add_policy_arrows(fig, best41.astype(float), (4, 4), skip=grid41.terminal, row=1, col=1)
fig.show()

V41_star, _ = policy_iteration(grid41)
rows, cols = np.divmod(np.arange(16), 4)
distance = np.minimum(rows + cols, (3 - rows) + (3 - cols))  # steps to the nearer corner
assert np.all(V_greedy >= V_random - 1e-9), "policy improvement made a state worse"
np.testing.assert_allclose(V_greedy, -distance)
np.testing.assert_allclose(V41_star, V_greedy)
print("the greedy policy is at least as good everywhere, and here already optimal (V = -distance)")

# %% [markdown]
# ## 3. Policy iteration
#
# Alternate the two steps until nothing changes:
#
# ```
# pi <- any policy (we take the uniform random one: with gamma = 1 a deterministic
#        start may walk in circles forever and have no value)
# repeat:
#     V  <- evaluate(pi)                      exact, chapter 1's linear solve
#     pi' <- greedy(q_from_v(V)), keeping pi's action where it is already among the best
#     if pi' == pi: stop                      pi is optimal
#     pi <- pi'
# ```
#
# Each improvement either strictly raises the value of some state or leaves the policy
# unchanged, and a finite MDP has finitely many deterministic policies, so the loop ends. When
# it does, $\pi$ is greedy with respect to its own values: $V_\pi(s) = \max_a Q_\pi(s, a)$, which
# is the Bellman optimality equation, so $V_\pi = V^*$.
#
# The "keeping" rule matters when actions tie: without it the greedy step may flip between two
# equally good actions forever, because round-off decides which one looks larger
# (Sutton and Barto's exercise 4.4). `policy_improvement(mdp, V, pi)` implements it.
#
# On Example 3.5 the loop settles after two improvements; every evaluation is at least as good as
# the last in every state (asserted).

# %%
grid35 = sutton_barto_gridworld()
pi = uniform_policy(grid35)
V = evaluate_policy(grid35, pi)
history = [V]
new_pi = policy_improvement(grid35, V)
while True:
    V_new = evaluate_policy(grid35, new_pi)
    assert np.all(V_new >= V - 1e-9), "the policy improvement theorem failed"
    if len(history) == 1:
        print(f"improvement 1: from the random policy to a greedy one; V(0, 4) = {V_new[4]:.2f}")
    else:
        changed = int(np.sum(np.argmax(new_pi, axis=1) != np.argmax(pi, axis=1)))
        print(f"improvement {len(history)}: {changed} states changed action; V(0, 4) = {V_new[4]:.2f}")
    if np.array_equal(new_pi, pi):
        break
    pi, V = new_pi, V_new
    history.append(V)
    new_pi = policy_improvement(grid35, V, pi)
V_pi_iter = V
print(f"stable after {len(history) - 1} improvements ({len(history)} evaluations)")

# %% [markdown]
# ## 4. Value iteration
#
# Policy iteration runs a full evaluation between improvements. **Value iteration** skips it and
# uses the optimality equation itself as an update, sweeping over all states at once:
#
# $$V_{k+1}(s) = \max_a \Big(R[s, a] + \gamma \sum_{s'} P[s, a, s']\, V_k(s')\Big).$$
#
# It is chapter 1's iterative evaluation with the average over actions replaced by a max. In
# code, one sweep is `q_from_v(mdp, V).max(axis=1)`: no loop over states or actions.
#
# **Why it converges.** Write the sweep as an operator, $V_{k+1} = T V_k$. For any two value
# tables $U$ and $W$, and any state,
#
# $$|(TU)(s) - (TW)(s)| \le \max_a \Big|\gamma \sum_{s'} P[s,a,s'] \big(U(s') - W(s')\big)\Big| \le \gamma\, \|U - W\|_\infty,$$
#
# using $|\max_a x_a - \max_a y_a| \le \max_a |x_a - y_a|$ and that a row of $P$ averages. So $T$
# is a **$\gamma$-contraction** in the max norm: it has exactly one fixed point, $V^*$, and every
# sweep shrinks the error by at least a factor $\gamma$,
#
# $$\|V_k - V^*\|_\infty \le \gamma^k\, \|V_0 - V^*\|_\infty.$$
#
# Reaching an error $\varepsilon$ takes about $\log \varepsilon / \log \gamma$ sweeps: ten times
# more at $\gamma = 0.99$ than at $\gamma = 0.9$. The plot measures the error per sweep on
# Example 3.5 (solid) against the bound (dashed); the assert checks the bound in every sweep.

# %%
gammas = (0.5, 0.9, 0.97) if FAST else (0.5, 0.9, 0.97, 0.99)
curves, bounds, sweeps_needed = {}, {}, {}
for gamma in gammas:
    mdp = grid35.with_gamma(gamma)
    V_star, _ = value_iteration(mdp, tol=1e-13)
    errors = []
    for V_k in bellman_optimality_sweeps(mdp):
        errors.append(np.max(np.abs(V_k - V_star)))
        if errors[-1] < 1e-10:
            break
    errors = np.array(errors)
    bound = np.max(np.abs(V_star)) * gamma ** np.arange(1, len(errors) + 1)
    assert np.all(errors <= bound * (1 + 1e-9) + 1e-12), f"gamma = {gamma}: an error exceeds gamma^k ||V*||"
    curves[f"gamma = {gamma}"], bounds[gamma], sweeps_needed[gamma] = errors, bound, len(errors)

fig = convergence_plot(curves, title="Value iteration on Example 3.5: error per sweep", yaxis="max |V_k - V*|")
for gamma, bound in bounds.items():
    fig.add_trace(go.Scatter(x=np.arange(1, len(bound) + 1), y=bound, mode="lines",
                             line=dict(dash="dash", width=1), name=f"bound, gamma = {gamma}"))
fig.show()
for gamma, k in sweeps_needed.items():
    predicted = np.log(1e-10 / bounds[gamma][0] * gamma) / np.log(gamma)   # gamma^k ||V*|| = 1e-10
    print(f"gamma = {gamma}: {k:4d} sweeps to an error below 1e-10 (the bound promises at most {predicted:.0f})")
    assert k <= np.ceil(predicted)
assert sweeps_needed[0.97] > 2 * sweeps_needed[0.9] > 4 * sweeps_needed[0.5]

# %% [markdown]
# A practical stopping rule cannot use $V^*$. `value_iteration(mdp, tol)` stops when a sweep
# changes no state by more than `tol`; the same contraction argument then bounds the remaining
# error by $\text{tol} \cdot \gamma / (1 - \gamma)$.
#
# The policy usually settles long before the values do. Here is the first sweep after which
# the greedy policy is optimal for good (every action it picks is among the optimal ones), next
# to the sweeps the values need:

# %%
for gamma in gammas:
    mdp = grid35.with_gamma(gamma)
    V_star, _ = value_iteration(mdp, tol=1e-13)
    best = optimal_actions(mdp, V_star)
    settled = None
    for k, V_k in zip(range(1, sweeps_needed[gamma] + 1), bellman_optimality_sweeps(mdp)):
        ok = best[np.arange(mdp.n_states), np.argmax(greedy_policy(q_from_v(mdp, V_k)), axis=1)].all()
        settled = (settled or k) if ok else None
    print(f"gamma = {gamma}: the greedy policy is optimal from sweep {settled:4d}; the values need {sweeps_needed[gamma]:4d}")
    assert settled is not None and settled < sweeps_needed[gamma] / 2

# %% [markdown]
# ## 5. Example 3.5 solved
#
# Both algorithms land on the same $V^*$ (and, with ties broken the same way, the same policy).
# The book prints $V^*$ rounded to one decimal in its Figure 3.5; we put ours next to it.

# %%
BOOK_FIG_3_5 = np.array([
    [22.0, 24.4, 22.0, 19.4, 17.5],
    [19.8, 22.0, 19.8, 17.8, 16.0],
    [17.8, 19.8, 17.8, 16.0, 14.4],
    [16.0, 17.8, 16.0, 14.4, 13.0],
    [14.4, 16.0, 14.4, 13.0, 11.7],
])
V_vi, pi_vi = value_iteration(grid35)
V_pi, pi_pi = policy_iteration(grid35)
print(f"max |V_value_iteration - V_policy_iteration| = {np.max(np.abs(V_vi - V_pi)):.1e}")
print(f"max |ours - book| = {np.max(np.abs(V_vi.reshape(5, 5) - BOOK_FIG_3_5)):.3f} (the book rounds to 0.1)")
np.testing.assert_allclose(V_vi, V_pi, atol=1e-8)
np.testing.assert_allclose(V_pi_iter, V_pi, atol=1e-8)
np.testing.assert_array_equal(pi_vi, pi_pi)
assert np.max(np.abs(V_vi.reshape(5, 5) - BOOK_FIG_3_5)) <= 0.05 + 1e-9

heatmaps_side_by_side({"ours: value_iteration": V_vi, "the book (Figure 3.5)": BOOK_FIG_3_5},
                      shape=(5, 5), title="Example 3.5: optimal values, gamma = 0.9").show()

# %% [markdown]
# The book's right panel draws *every* optimal action in each cell. `optimal_actions(mdp, V*)`
# marks the actions whose $Q^*$ is within a hair of the best, and `add_policy_arrows` draws them.
# In A and B every action is optimal (each one teleports). Every other cell heads for A, often
# with two equally short routes (up, and left or right), except (0, 4), which steps left into B:
# from there B's +5 and the jump to B' beat the long walk to A.

# %%
best35 = optimal_actions(grid35, V_vi)
fig = value_heatmap(V_vi, (5, 5), title="Example 3.5: V* and every optimal action (the book's Figure 3.5)")
add_policy_arrows(fig, best35.astype(float), (5, 5))
fig.show()

ARROWS = dict(zip(ACTIONS, "↑→↓←"))
BOOK_POLICY = [
    ["right", "up right down left", "left", "up right down left", "left"],
    ["up right", "up", "up left", "left", "left"],
    ["up right", "up", "up left", "up left", "up left"],
    ["up right", "up", "up left", "up left", "up left"],
    ["up right", "up", "up left", "up left", "up left"],
]
for s in range(25):
    expected = set(BOOK_POLICY[s // 5][s % 5].split())
    got = {ACTIONS[a] for a in np.flatnonzero(best35[s])}
    assert got == expected, f"cell {divmod(s, 5)}: optimal actions {got}, the book draws {expected}"
print("every cell's set of optimal actions matches the book's arrows")

# %% [markdown]
# ## 6. $Q^*$: acting without a model
#
# $Q^*$ packs the one-step look-ahead into a table. In cell (2, 2), for example:

# %%
Q_star = q_from_v(grid35, V_vi)
s = 2 * 5 + 2
for a, name in enumerate(ACTIONS):
    print(f"Q*((2, 2), {name:>5}) = {Q_star[s, a]:6.2f}" + ("   <- optimal" if best35[s, a] else ""))
np.testing.assert_allclose(Q_star.max(axis=1), V_vi)               # V*(s) = max_a Q*(s, a)
np.testing.assert_allclose((pi_vi * Q_star).sum(axis=1), V_vi)      # the greedy policy attains it

# %% [markdown]
# Up and left tie at $0.9 \times 19.8 = 17.8$: both lead to a cell worth 19.8. Right and down
# lead to cells worth 16.0 and cost nothing more, so they are worth $0.9 \times 16.0 = 14.4$.
# Given $Q^*$, the optimal action is a lookup: `Q_star[s].argmax()`. Given only $V^*$, choosing
# needs $P$ and $R$ to look one step ahead. Methods that learn from experience without a model
# therefore learn $Q$ rather than $V$.
#
# ## 7. The discount changes the optimal policy
#
# $\gamma$ is part of the problem, not a tuning knob of the solver: different discounts define
# different optimal policies. Move the slider. At $\gamma = 0$ only the immediate reward counts:
# A and B are worth 10 and 5, and anything that avoids the wall is optimal elsewhere. Below about
# $\gamma = 0.85$ the cells below B climb to B: circling B, B', up, up pays +5 every three steps.
# Above it they make the longer trip to A, whose circuit pays +10 every five steps: twice the
# reward for a longer wait, which only a far-sighted agent accepts. The slider calls
# `update_optimal_policy(figure, mdp, gamma)`, which runs value iteration and redraws the arrows.

# %%
display(gamma_slider_optimal_policy(grid35, gamma=0.9))

# %% [markdown]
# The same callback, called from code, measures the claim: below B, cell (1, 3) goes up to B at
# $\gamma = 0.7$ and left towards A at $\gamma = 0.9$.

# %%
probe = go.Figure(value_heatmap(np.zeros(25), (5, 5)))
add_policy_arrows(probe, np.ones((25, 4)), (5, 5))
below_B = 1 * 5 + 3
choice = {}
for gamma in (0.7, 0.9):
    _, best = update_optimal_policy(probe, grid35, gamma)
    choice[gamma] = {ACTIONS[a] for a in np.flatnonzero(best[below_B])}
    print(f"gamma = {gamma}: optimal actions in (1, 3): {sorted(choice[gamma])}")
assert choice[0.7] == {"up"} and choice[0.9] == {"left"}

# %% [markdown]
# ## What to take away
#
# * $V^*(s) = \max_a Q^*(s, a)$ and $Q^*(s, a) = R[s, a] + \gamma \sum_{s'} P[s, a, s'] V^*(s')$;
#   greedy with respect to $Q^*$ is optimal.
# * Policy improvement: greedy with respect to $Q_\pi$ is never worse than $\pi$. Policy iteration
#   alternates exact evaluation and improvement and stops in a few iterations.
# * Value iteration sweeps $V \leftarrow \max_a (R + \gamma P V)$; it contracts by $\gamma$ per sweep,
#   so small discounts converge fast and $\gamma \to 1$ slowly. The policy settles well before the values.
#
# Next: **exercise 2** (`exercises/ex02_dynamic_programming.ipynb`) has you write the greedy
# policy, value iteration and policy iteration. Chapter 3 drops the model: it estimates values
# from sampled experience.
