# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 6 — Policy gradients and REINFORCE
#
# Until now the policy came out of a value function: act greedily (or epsilon-greedily) with
# respect to $Q$. This chapter turns that around. We write the policy itself as a differentiable
# function $\pi_\theta(a \mid s)$ and climb the gradient of the return it earns:
#
# 1. the **objective** $J(\theta)$ and why its gradient can be estimated from samples
#    (the **log-derivative trick**);
# 2. the **policy gradient theorem**, checked to ten digits against finite differences on a gridworld;
# 3. **REINFORCE**, the Monte Carlo estimator of that gradient;
# 4. **baselines**: subtracting $b(s)$ leaves the gradient unchanged on average and cuts its
#    variance. We *measure* both halves of that sentence;
# 5. REINFORCE on CartPole, with and without a learned baseline.
#
# This is the road that leads, three chapters later, to PPO, and later still to the RL
# fine-tuning of a language model, whose "actions" are tokens. Cells that do real work honour
# `COURSE_FAST=1` with smaller budgets; what you run by default is the full setting.

# %%
import time
from dataclasses import dataclass, replace

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.bellman import evaluate_policy, q_from_v
from course_lib.config import FAST
from course_lib.mdp import small_gridworld
from course_lib.pg import (
    categorical_log_prob,
    collect_episodes,
    discounted_visitation,
    exact_policy_gradient,
    make_cartpole,
    mlp,
    reinforce_loss,
    sample_episodes,
    softmax_policy,
    tabular_score_sums,
)
from course_lib.returns import discounted_returns

# The networks here are tiny: one thread is faster than waking a second one for every small op.
torch.set_num_threads(1)
SEED = 0
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The objective
#
# A **parametrised policy** gives a probability to every action in every state. The simplest one
# for a tabular problem keeps a table of preferences $\theta[s, a]$ and turns each row into
# probabilities with a softmax:
#
# $$\pi_\theta(a \mid s) = \frac{e^{\theta[s,a]}}{\sum_b e^{\theta[s,b]}}.$$
#
# For CartPole, later, $\theta$ are the weights of a small network that maps the observation to the
# same kind of preferences ("logits"). Either way the policy is stochastic, and every action keeps
# some probability, which is what lets it explore.
#
# What we want to make large is the expected return from the start, with start states drawn from a
# distribution $\mu$:
#
# $$J(\theta) = \sum_s \mu(s)\, V_{\pi_\theta}(s) = \mathbb{E}_{\tau \sim p_\theta}\Big[\sum_{t \ge 0} \gamma^t R_{t+1}\Big],$$
#
# where $\tau = (S_0, A_0, R_1, S_1, \dots)$ is a whole trajectory and $p_\theta$ its probability
# under the policy. Gradient *ascent* then moves $\theta \leftarrow \theta + \alpha \nabla_\theta J$.
#
# Our test bed is chapter 1's 4x4 grid (Sutton and Barto's Example 4.1: $-1$ a step until a
# corner) with $\gamma = 0.9$, a softmax policy with random preferences, and $\mu$ uniform over the
# fourteen non-terminal cells. Because the grid is small, `evaluate_policy` gives $J$ exactly.

# %%
grid = small_gridworld(gamma=0.9)
S, A = grid.n_states, grid.n_actions
mu = np.where(grid.terminal, 0.0, 1.0)
mu /= mu.sum()
theta = 0.8 * rng.normal(size=(S, A))  # a fixed, deliberately lopsided policy


def J(th):
    """Expected discounted return from mu under the softmax policy with preferences th."""
    return mu @ evaluate_policy(grid, softmax_policy(th))


pi = softmax_policy(theta)
print(f"J(theta) = {J(theta):.4f}   (uniform policy: {J(np.zeros((S, A))):.4f})")

# %% [markdown]
# ## 2. The log-derivative trick
#
# $J$ is an expectation over trajectories whose *distribution* depends on $\theta$. We cannot push
# the gradient inside a sample average directly, since a sample does not know how its probability
# would change. The trick is the identity $\nabla p = p \, \nabla \log p$:
#
# $$\nabla_\theta\, \mathbb{E}_{x \sim p_\theta}[f(x)] = \sum_x f(x)\, \nabla_\theta p_\theta(x)
#   = \sum_x p_\theta(x)\, f(x)\, \nabla_\theta \log p_\theta(x) = \mathbb{E}_{x \sim p_\theta}\big[f(x)\, \nabla_\theta \log p_\theta(x)\big].$$
#
# The right-hand side *is* an expectation under $p_\theta$, so we can estimate it by sampling $x$ and
# averaging $f(x)\,\nabla \log p_\theta(x)$. Nothing about $f$ needs to be differentiable: it can
# be a reward from a simulator, or a human's verdict on a piece of text.
#
# For the softmax, $\log \pi(a \mid s) = \theta[s,a] - \log \sum_b e^{\theta[s,b]}$, so its gradient
# (the **score**) is zero outside row $s$ and, in row $s$,
#
# $$\frac{\partial \log \pi(a \mid s)}{\partial \theta[s, b]} = \mathbb{1}[a = b] - \pi(b \mid s).$$
#
# Try it on the smallest problem there is: one state and three actions (a "bandit") with average
# rewards 1, 2 and 3.5 plus unit Gaussian noise. Here
# $J = \sum_a \pi_a r_a$ and $\partial J / \partial \theta_b = \pi_b (r_b - J)$ exactly.
# `tabular_score_sums` adds up $w \cdot \nabla \log \pi(a \mid s)$ over the steps of each episode;
# a bandit episode has one step, and the weight $w$ is the reward.

# %%
arm_means = np.array([1.0, 2.0, 3.5])
theta_bandit = np.array([[0.5, 0.0, -0.5]])  # prefers the worst arm
pi_bandit = softmax_policy(theta_bandit)[0]
exact_bandit = pi_bandit * (arm_means - pi_bandit @ arm_means)

n_pulls = 4000 if FAST else 40000
arms = rng.choice(3, size=n_pulls, p=pi_bandit)
rewards_bandit = arm_means[arms] + rng.normal(size=n_pulls)
per_pull = tabular_score_sums(theta_bandit, np.zeros((n_pulls, 1), dtype=int), arms[:, None],
                              rewards_bandit[:, None], np.ones((n_pulls, 1), dtype=bool))[:, 0, :]  # (n_pulls, 3)
estimate, se_bandit = per_pull.mean(axis=0), per_pull.std(axis=0, ddof=1) / np.sqrt(n_pulls)
for b in range(3):
    print(f"dJ/dtheta_{b}: exact {exact_bandit[b]:+.4f}   estimate {estimate[b]:+.4f} +- {se_bandit[b]:.4f}")
assert np.all(np.abs(estimate - exact_bandit) < 4 * se_bandit)

# %% [markdown]
# The estimate lands on the exact gradient within a few standard errors. Look at what each sample
# does, though: every reward here is positive, so *every* pulled arm gets its preference pushed up.
# The gradient only comes out right on average, because good arms are pushed up harder than bad
# ones. Each single sample points in a rather arbitrary direction: that is the variance we will
# fight in section 5.
#
# ## 3. From one action to whole trajectories
#
# For a trajectory, $p_\theta(\tau) = \mu(S_0) \prod_t \pi_\theta(A_t \mid S_t)\, P(S_{t+1} \mid S_t, A_t)$.
# Take the log and the product becomes a sum; the start distribution and the dynamics do not depend
# on $\theta$, so they vanish from the gradient:
#
# $$\nabla_\theta \log p_\theta(\tau) = \sum_t \nabla_\theta \log \pi_\theta(A_t \mid S_t).$$
#
# This is why policy gradients need no model of the environment. With $f(\tau) = \sum_k \gamma^k R_{k+1}$:
#
# $$\nabla_\theta J = \mathbb{E}\Big[\Big(\sum_k \gamma^k R_{k+1}\Big) \sum_t \nabla_\theta \log \pi_\theta(A_t \mid S_t)\Big].$$
#
# One more simplification: a reward that came *before* step $t$ cannot depend on $A_t$, and its
# products with the score of $A_t$ average to zero (the same argument as for the baseline below).
# Dropping them leaves only the rewards from $t$ on, which is $\gamma^t G_t$ with the return
# $G_t = \sum_{k \ge t} \gamma^{k-t} R_{k+1}$:
#
# $$\nabla_\theta J = \mathbb{E}\Big[\sum_t \gamma^t\, G_t\, \nabla_\theta \log \pi_\theta(A_t \mid S_t)\Big]. \qquad (1)$$
#
# ## 4. The policy gradient theorem
#
# Group the terms of (1) by the state they are in. How often, discounted, the policy visits
# $s$ is the **discounted visitation** $d(s) = \sum_t \gamma^t \Pr(S_t = s)$, and given $S_t = s$ and
# $A_t = a$ the return averages to $Q(s, a)$. So
#
# $$\nabla_\theta J = \sum_s d(s) \sum_a \pi_\theta(a \mid s)\, \nabla_\theta \log \pi_\theta(a \mid s)\, Q_\pi(s, a)
#                   = \sum_s d(s) \sum_a \nabla_\theta \pi_\theta(a \mid s)\, Q_\pi(s, a). \qquad (2)$$
#
# This is the **policy gradient theorem** (Sutton et al., 2000). It is exact. A common way of
# deriving it starts from $\nabla V(s) = \nabla \sum_a \pi(a|s) Q(s,a)$ and then "ignores" the term
# $\sum_a \pi \nabla Q$ as if it were an approximation; one of our source slides does this. That term
# is not small: unrolled, it is the same expression at the next states, and summing all of those
# is exactly what produces $d(s)$.
#
# For the softmax, plug in the score: $\partial J / \partial \theta[s,a] = d(s)\,\pi(a \mid s)\,\big(Q(s,a) - V(s)\big)$.
# The difference $Q - V$ is the **advantage**, the star of chapter 7. `exact_policy_gradient`
# computes this from chapter 1's `evaluate_policy` and `q_from_v`, and `discounted_visitation` solves
# $d^\top (I - \gamma P_\pi) = \mu^\top$. The theorem must agree with plain finite differences of $J$:

# %%
grad_exact = exact_policy_gradient(grid, theta, mu)  # (S, A)

eps = 1e-6
grad_fd = np.zeros((S, A))
for s in range(S):
    for a in range(A):
        step = np.zeros((S, A))
        step[s, a] = eps
        grad_fd[s, a] = (J(theta + step) - J(theta - step)) / (2 * eps)

print(f"max |theorem - finite differences| = {np.max(np.abs(grad_exact - grad_fd)):.2e}"
      f"   (largest component {np.max(np.abs(grad_exact)):.3f})")
assert np.max(np.abs(grad_exact - grad_fd)) < 1e-7

d = discounted_visitation(grid, pi, mu)
V = evaluate_policy(grid, pi)
Q = q_from_v(grid, V)
# the softmax form, spelled out: d(s) pi(a|s) (Q(s, a) - V(s))
assert np.allclose(grad_exact, d[:, None] * pi * (Q - V[:, None]))

# %% [markdown]
# ## 5. REINFORCE, and what a baseline does to it
#
# Equation (1) is an expectation over trajectories, so averaging its inside over sampled episodes
# gives an unbiased estimate of the gradient. That estimator is **REINFORCE** (Williams, 1992):
#
# $$\hat g = \frac{1}{N} \sum_{n=1}^N \sum_t \gamma^t\, G^{(n)}_t\, \nabla_\theta \log \pi_\theta(A^{(n)}_t \mid S^{(n)}_t).$$
#
# **Baselines.** Replace $G_t$ by $G_t - b(S_t)$ for any function $b$ of the state alone. The
# extra term averages to zero, because the probabilities of the actions sum to one whatever
# $\theta$ is:
#
# $$\mathbb{E}_{a \sim \pi}\big[b(s)\, \nabla_\theta \log \pi_\theta(a \mid s)\big]
#   = b(s) \sum_a \nabla_\theta \pi_\theta(a \mid s) = b(s)\, \nabla_\theta \sum_a \pi_\theta(a \mid s) = b(s)\, \nabla_\theta 1 = 0.$$
#
# So the estimate stays unbiased. Its *variance* changes, and a good $b(s)$ shrinks it: with
# $b(s) \approx V(s)$ the weight $G_t - V(S_t)$ says whether this episode went better or worse than
# usual from $S_t$, instead of "how much reward there was", which in our grid is always negative
# (so without a baseline every action taken is pushed *down*, and only the amounts differ).
# The argument needs $b$ not to depend on the action: if it does, the bias comes back.
#
# Let us measure it. Fix the policy above, sample episodes from $\mu$, and compute one gradient
# estimate *per episode* with four weights:
#
# | weight | baseline |
# |:--|:--|
# | $\gamma^t G_t$ | none |
# | $\gamma^t (G_t - \bar V)$ | a constant: the average of $V_\pi$ over the states |
# | $\gamma^t (G_t - V_\pi(S_t))$ | the state value |
# | $\gamma^t (G_t - Q_\pi(S_t, A_t))$ | depends on the action: **not** a valid baseline |
#
# Each estimate is an (S, A) array. For each estimator we look at its mean over episodes (with
# standard errors) against the exact gradient, and at its **total variance**, the sum over the 64
# components of the per-episode variance: the variance of a batch average is this divided by the
# batch size.

# %%
n_episodes = 2000 if FAST else 20000
horizon = 150  # 0.9^150 < 1e-6: later rewards cannot change the gradient visibly
starts = rng.choice(np.flatnonzero(~grid.terminal), size=n_episodes)
episodes = sample_episodes(grid, pi, starts, horizon, rng)
G = discounted_returns(episodes.rewards, grid.gamma, episodes.dones)  # (N, T)
discount = grid.gamma ** np.arange(horizon)                          # gamma^t, (T,)
print(f"{n_episodes} episodes, mean length {episodes.mask.sum(axis=1).mean():.1f} steps, "
      f"{episodes.mask[:, -1].sum()} still running at the horizon")

baselines = {
    "no baseline": 0.0,
    "constant b = mean V": V[~grid.terminal].mean(),
    "b(s) = V(s)": V[episodes.states],
    "b = Q(s, a) (biased!)": Q[episodes.states, episodes.actions],
}
estimates = {
    name: tabular_score_sums(theta, episodes.states, episodes.actions, discount * (G - b), episodes.mask)
    for name, b in baselines.items()
}  # each (N, S, A)

results = {}
for name, g in estimates.items():
    mean = g.mean(axis=0)
    se = g.std(axis=0, ddof=1) / np.sqrt(n_episodes)
    # components the policy can never move (terminal rows) have zero variance; skip them in z
    live = se > 0
    z = np.abs(mean - grad_exact)[live] / se[live]
    results[name] = dict(mean=mean, se=se, total_var=g.var(axis=0, ddof=1).sum(), max_z=z.max())
    print(f"{name:<24} total variance {results[name]['total_var']:9.3f}   max |mean - exact| / se = {z.max():5.1f}")

# %%
names = list(results)
fig = make_subplots(rows=1, cols=2, column_widths=[0.38, 0.62], horizontal_spacing=0.12,
                    subplot_titles=("total variance of one episode's estimate",
                                    "mean estimate vs exact gradient (error bars: 2 standard errors)"))
fig.add_trace(go.Bar(x=names, y=[results[n]["total_var"] for n in names],
                     marker_color=["#636efa", "#00cc96", "#ef553b", "#ab63fa"], showlegend=False), row=1, col=1)
lim = 1.15 * np.max(np.abs(grad_exact))
fig.add_trace(go.Scatter(x=[-lim, lim], y=[-lim, lim], mode="lines", line=dict(color="gray", dash="dot"),
                         name="estimate = exact"), row=1, col=2)
for name, color in (("no baseline", "#636efa"), ("b(s) = V(s)", "#ef553b"), ("b = Q(s, a) (biased!)", "#ab63fa")):
    r = results[name]
    fig.add_trace(go.Scatter(x=grad_exact.ravel(), y=r["mean"].ravel(), mode="markers", name=name,
                             marker=dict(color=color, size=6),
                             error_y=dict(type="data", array=2 * r["se"].ravel(), thickness=1)), row=1, col=2)
fig.update_yaxes(type="log", row=1, col=1)
fig.update_xaxes(title="exact dJ/dtheta[s, a]", row=1, col=2)
fig.update_yaxes(title="average of the per-episode estimates", row=1, col=2)
fig.update_layout(width=1000, height=450, title=f"REINFORCE on the 4x4 grid, fixed policy, {n_episodes} episodes")
fig.show()

# %% [markdown]
# What the numbers say:
#
# * **no bias from a state baseline**: without a baseline, with a constant and with $V(s)$, the
#   average lands on the exact gradient in every one of the 64 components, within a few standard
#   errors. The two unbiased estimators we care most about also agree *with each other* within
#   their standard errors;
# * **less variance**: the constant baseline already removes most of the common offset of the
#   (always negative) returns; $V(s)$ removes more;
# * **an action-dependent "baseline" is wrong**: with $b = Q(S_t, A_t)$ the weight is
#   $G_t - Q(S_t, A_t)$, whose average given the state and action is zero, so the estimate
#   averages to zero, not to the gradient. Its variance is small, and useless.
#
# The cell below turns those sentences into checks.

# %%
no_b, with_v = results["no baseline"], results["b(s) = V(s)"]
live = no_b["se"] > 0
assert no_b["max_z"] < 4.5 and results["constant b = mean V"]["max_z"] < 4.5 and with_v["max_z"] < 4.5
# the two means agree within their combined standard errors (independent of the exact gradient)
diff_z = np.abs(no_b["mean"] - with_v["mean"])[live] / np.hypot(no_b["se"], with_v["se"])[live]
assert diff_z.max() < 4.5, diff_z.max()
assert with_v["total_var"] < results["constant b = mean V"]["total_var"] < no_b["total_var"]
assert results["b = Q(s, a) (biased!)"]["max_z"] > 10  # clearly biased
ratio = no_b["total_var"] / with_v["total_var"]
print(f"b(s) = V(s) divides the variance by {ratio:.1f}: the same accuracy with {ratio:.1f}x fewer episodes")

# %% [markdown]
# ## 6. REINFORCE on CartPole
#
# Now a problem where nothing is exact. CartPole: push a cart left or right to keep a pole upright;
# $+1$ per step, at most 500 steps. The policy is a small network from the 4 numbers of the
# observation to 2 logits; the baseline, when we use one, is a second network $v_\psi(s)$ fitted to
# the returns by least squares (the best baseline in the mean-squared sense is close to $V$).
#
# Two practical departures from equation (1), both standard:
#
# * the factor $\gamma^t$ is dropped. With it, late steps of a long episode would barely count,
#   which slows learning; without it we follow a slightly different direction, which is not
#   exactly the gradient of any objective (Nota and Thomas, 2020, "Is the Policy Gradient a
#   Gradient?") but works well in practice, as almost every implementation does;
# * instead of writing the gradient, we write a **surrogate loss** whose gradient it is, and let
#   autograd do the rest:
#   $L(\theta) = -\frac{1}{N} \sum_{n,t} \log \pi_\theta(A_t \mid S_t)\, \big(G_t - b(S_t)\big)$, with
#   $G_t - b(S_t)$ held constant. That is `reinforce_loss(logp, returns, baseline, mask)`, where
#   `mask` leaves out the padding after each episode's end. It detaches the baseline, so the policy
#   loss never trains the critic.
#
# `collect_episodes(env, policy)` runs gymnasium's batched CartPole until each of its N copies has
# finished one episode, and returns those N episodes padded to the longest. (A copy that finishes
# early keeps stepping, because the batch moves together, but what it does afterwards is not
# recorded.)

# %%
@dataclass
class ReinforceConfig:
    n_episodes: int = 16                    # episodes per policy update (one per CartPole copy)
    iterations: int = 60                    # policy updates
    gamma: float = 0.99                     # discount of the returns G_t
    lr: float = 3e-3                        # Adam step size for the policy
    use_baseline: bool = True               # subtract a learned v(s) from G_t
    value_lr: float = 1e-2                  # Adam step size for the baseline network
    value_steps: int = 5                    # gradient steps on the baseline per batch
    hidden: tuple[int, ...] = (64, 64)      # hidden layers of both networks
    seed: int = 0                           # seeds the networks, the sampling and the environments


def train_reinforce(cfg: ReinforceConfig):
    torch.manual_seed(cfg.seed)
    policy = mlp(4, 2, cfg.hidden, out_gain=0.01)   # logits; small gain: nearly uniform at start
    critic = mlp(4, 1, cfg.hidden, out_gain=1.0)    # the baseline v(s)
    policy_opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.value_lr)
    env = make_cartpole(cfg.n_episodes)
    gen = torch.Generator().manual_seed(cfg.seed)
    mean_returns = []
    label = "with baseline" if cfg.use_baseline else "no baseline"
    for it in tqdm(range(cfg.iterations), desc=f"REINFORCE, {label}"):
        # 1. sample N episodes with the current policy
        ep = collect_episodes(env, policy, seed=cfg.seed * 10_000 + it, generator=gen)
        mean_returns.append(float(ep.rewards.sum(dim=1).mean()))
        # 2. returns-to-go G_t (rewards are 0 in the padding, so nothing leaks in)
        G = discounted_returns(ep.rewards, cfg.gamma)                       # (N, T)
        # 3. policy step on the surrogate loss
        logp = categorical_log_prob(policy(ep.obs), ep.actions)              # (N, T), with grad
        b = critic(ep.obs).squeeze(-1) if cfg.use_baseline else 0.0          # (N, T) or 0
        loss = reinforce_loss(logp, G, b, ep.mask)
        policy_opt.zero_grad()
        loss.backward()
        policy_opt.step()
        # 4. fit the baseline to the returns (least squares over the real steps)
        for _ in range(cfg.value_steps if cfg.use_baseline else 0):
            v = critic(ep.obs).squeeze(-1)
            value_loss = ((v - G) ** 2 * ep.mask).sum() / ep.mask.sum()
            critic_opt.zero_grad()
            value_loss.backward()
            critic_opt.step()
    return np.array(mean_returns), policy, critic


base_cfg = ReinforceConfig(iterations=20 if FAST else 60)
curves = {}
for use_baseline in (False, True):
    start = time.perf_counter()
    curves[use_baseline], policy, critic = train_reinforce(replace(base_cfg, use_baseline=use_baseline))
    print(f"use_baseline={use_baseline}: {time.perf_counter() - start:.1f} s, "
          f"first 5 iterations {curves[use_baseline][:5].mean():.0f}, last 5 {curves[use_baseline][-5:].mean():.0f}")

# %%
fig = go.Figure()
for use_baseline, name in ((False, "no baseline"), (True, "learned baseline v(s)")):
    fig.add_trace(go.Scatter(y=curves[use_baseline], mode="lines+markers", name=name))
fig.update_layout(title=f"REINFORCE on CartPole-v1, {base_cfg.n_episodes} episodes per update",
                  xaxis_title="policy update", yaxis_title="mean episode return (max 500)", width=750, height=420)
fig.show()
for use_baseline in (False, True):  # both learn: the last updates beat the first ones by a wide margin
    assert curves[use_baseline][-5:].mean() > 2 * curves[use_baseline][:5].mean()

# %% [markdown]
# Both runs learn; from the random start (about 20 steps) the return climbs by an order of
# magnitude. Single runs of policy-gradient methods are noisy, and one seed is no proof that one
# variant learns faster. The variance measurement is the solid part, so let us repeat it here, on
# CartPole's network, where the gradient has thousands of components and no exact value.
#
# ## 7. The same measurement on CartPole
#
# Take a fixed policy network (the one the baselined run ended with), fit a baseline network to
# the returns of one batch of episodes, then sample a *fresh* batch and compute each episode's
# gradient $\sum_t \nabla_\theta \log \pi(A_t \mid S_t)\,(G_t - b(S_t))$, once with $b = 0$ and once
# with the fitted $b$. (The baseline must not be fitted to the very episodes it is used on, or
# it would depend on their actions.) Comparing the two, component by component:
#
# * their difference is $\sum_t b(S_t) \nabla \log \pi(A_t \mid S_t)$, which averages to zero; divided
#   by its standard error, each component should look like a standard normal, so the average
#   squared z-score should be near 1;
# * the total variance should drop.

# %%
def per_episode_gradients(policy, ep, weights):
    """One flattened gradient of sum_t weights_t log pi(a_t|s_t) per episode: (N, n_params)."""
    rows = []
    for n in range(ep.obs.shape[0]):
        policy.zero_grad()
        logp = categorical_log_prob(policy(ep.obs[n]), ep.actions[n])           # (T,)
        (logp * weights[n] * ep.mask[n]).sum().backward()
        rows.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
    return torch.stack(rows)


n_fit, n_measure = (64, 200) if FAST else (256, 1000)
torch.manual_seed(SEED)
gen = torch.Generator().manual_seed(SEED)
fit_batch = collect_episodes(make_cartpole(n_fit), policy, seed=1, generator=gen)
G_fit = discounted_returns(fit_batch.rewards, base_cfg.gamma)
baseline_net = mlp(4, 1, (64, 64))
opt = torch.optim.Adam(baseline_net.parameters(), lr=1e-2)
for _ in range(300):
    v = baseline_net(fit_batch.obs).squeeze(-1)
    loss = ((v - G_fit) ** 2 * fit_batch.mask).sum() / fit_batch.mask.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()

measure = collect_episodes(make_cartpole(n_measure), policy, seed=2, generator=gen)
G_m = discounted_returns(measure.rewards, base_cfg.gamma)
with torch.no_grad():
    b_m = baseline_net(measure.obs).squeeze(-1)
g_plain = per_episode_gradients(policy, measure, G_m)          # (N, n_params)
g_base = per_episode_gradients(policy, measure, G_m - b_m)

diff = g_plain - g_base
z = diff.mean(0) / (diff.std(0) / np.sqrt(n_measure) + 1e-12)
var_plain, var_base = g_plain.var(0).sum().item(), g_base.var(0).sum().item()
print(f"{n_measure} episodes of mean length {measure.lengths.float().mean():.0f}, {g_plain.shape[1]} parameters")
print(f"mean squared z-score of the difference of the two means: {float((z**2).mean()):.2f} (unbiased: about 1)")
print(f"total variance: no baseline {var_plain:.4g}, with baseline {var_base:.4g} ({var_plain / var_base:.1f}x less)")

fig = go.Figure()
fig.add_trace(go.Histogram(x=z.numpy(), nbinsx=60, histnorm="probability density", name="z-scores"))
zs = np.linspace(-4, 4, 200)
fig.add_trace(go.Scatter(x=zs, y=np.exp(-zs**2 / 2) / np.sqrt(2 * np.pi), name="standard normal"))
fig.update_layout(title="CartPole: (mean without baseline - mean with baseline) / standard error, per parameter",
                  xaxis_title="z", width=750, height=380)
fig.show()
assert 0.5 < float((z**2).mean()) < 2.0
assert var_base < var_plain / 2

# %% [markdown]
# ## What to take away
#
# * $\nabla_\theta \mathbb{E}_{p_\theta}[f] = \mathbb{E}_{p_\theta}[f\, \nabla_\theta \log p_\theta]$: gradients of
#   expectations from samples, with no model of the environment and no derivative of the reward.
# * Policy gradient theorem: $\nabla J = \sum_s d(s) \sum_a \pi(a|s)\, \nabla \log \pi(a|s)\, Q(s,a)$, exact.
# * REINFORCE averages $\sum_t \gamma^t G_t \nabla \log \pi(A_t|S_t)$ over episodes; in code it is the
#   gradient of the surrogate $-\sum \log \pi \cdot (G - b)$ with the weights held constant.
# * A baseline $b(s)$ leaves the mean unchanged and, close to $V(s)$, removes most of the variance;
#   a "baseline" that depends on the action is not one.
#
# **Exercise 6** (`exercises/ex06_policy_gradient.ipynb`) has you write the softmax score, the
# per-episode REINFORCE estimates with a baseline, and the surrogate loss. Chapter 7 replaces
# $G_t - b(S_t)$ by an estimate of the advantage $Q - V$ from a learned critic.
