# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 7 — Actor-critic, the advantage, and GAE
#
# REINFORCE weighs each action by $G_t - b(S_t)$: a whole noisy Monte Carlo return. An
# **actor-critic** method learns a value function, the **critic**, and uses it to judge each action
# sooner and with less noise; the policy is the **actor**. How much to trust the critic is a
# dial, and this chapter is about that dial:
#
# 1. the **advantage** $A(s,a) = Q(s,a) - V(s)$, the quantity a good weight estimates;
# 2. the **TD error**, a one-step estimate of it; **k-step** estimates in between;
# 3. **GAE**, the exponentially weighted mix of all of them, with the worked example of our notes;
# 4. its **bias-variance trade-off**, measured on a small MDP whose advantages we know exactly,
#    with sliders for $\lambda$ and $\gamma$;
# 5. an actor-critic with GAE on CartPole.
#
# Cells that do real work honour `COURSE_FAST=1` with smaller budgets; what you run by default is
# the full setting.

# %%
import time
from dataclasses import dataclass, replace

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display
from tqdm.auto import tqdm

from course_lib.bellman import evaluate_policy, q_from_v
from course_lib.config import FAST
from course_lib.pg import (
    actor_critic_loss,
    bootstrap_truncated,
    categorical_entropy,
    categorical_log_prob,
    chain_mdp,
    collect_rollout,
    gae_bias_variance,
    make_cartpole,
    mlp,
    sample_episodes,
    start_rollouts,
)
from course_lib.plots import gae_tradeoff_figure
from course_lib.returns import gae, td_errors
from course_lib.widgets import gae_tradeoff_sliders, update_gae_tradeoff

# The networks here are tiny: one thread is faster than waking a second one for every small op.
torch.set_num_threads(1)
SEED = 0
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The advantage
#
# Chapter 6 ended with the softmax policy gradient $\partial J / \partial \theta[s,a] = d(s)\, \pi(a|s)\, \big(Q(s,a) - V(s)\big)$.
# The difference
#
# $$A_\pi(s, a) = Q_\pi(s, a) - V_\pi(s)$$
#
# is the **advantage** of $a$ in $s$: how much better taking $a$ (and then following $\pi$) is than
# what $\pi$ does on average. It averages to zero under the policy, $\sum_a \pi(a|s) A(s,a) = 0$,
# so in every state some actions have positive advantage and some negative. The policy gradient
# can be written with it for any policy (it is the theorem with the baseline $V$):
#
# $$\nabla_\theta J = \mathbb{E}\Big[\sum_t \gamma^t A_\pi(S_t, A_t)\, \nabla_\theta \log \pi_\theta(A_t \mid S_t)\Big].$$
#
# Our lab for this chapter is a corridor: six cells and a goal to the right of the last one. The
# agent moves left or right, but the floor is slippery: with probability 0.2 it goes the other way.
# Reaching the goal pays $+1$, every other move $-0.05$, and $\gamma = 0.9$. The policy goes right
# with probability 0.7. Chapter 1's kernels give $V$, $Q$ and so $A$ exactly:

# %%
chain = chain_mdp(6, slip=0.2, gamma=0.9)
n_cells = chain.n_states - 1
pi_chain = np.tile([0.3, 0.7], (chain.n_states, 1))  # (S, A): left 0.3, right 0.7
V_chain = evaluate_policy(chain, pi_chain)
Q_chain = q_from_v(chain, V_chain)
A_chain = Q_chain - V_chain[:, None]
A_chain[chain.terminal] = 0.0

fig = go.Figure()
for a, name in enumerate(("left", "right")):
    fig.add_trace(go.Bar(x=np.arange(n_cells), y=A_chain[:n_cells, a], name=f"A(s, {name})"))
fig.update_layout(title="True advantages in the corridor (goal to the right of cell 5)", xaxis_title="cell s",
                  yaxis_title="A(s, a)", width=700, height=360)
fig.show()
print("V =", V_chain[:n_cells].round(3))
assert np.allclose((pi_chain * A_chain).sum(axis=1), 0.0)  # sum_a pi(a|s) A(s, a) = 0 in every state

# %% [markdown]
# ## 2. The critic and the TD error
#
# We do not know $Q$ or $V$ in a real problem. An actor-critic learns $\hat V \approx V_\pi$ and
# forms, after every step, the **TD error**
#
# $$\delta_t = R_{t+1} + \gamma \hat V(S_{t+1}) - \hat V(S_t),$$
#
# with $\hat V(S_{t+1}) = 0$ when the episode ended at step $t$. Given $S_t = s$ and $A_t = a$, its
# average is $R[s,a] + \gamma \sum_{s'} P[s,a,s'] \hat V(s') - \hat V(s)$. With the true $V$ that
# is $Q(s,a) - V(s)$: **the TD error of an exact critic is an unbiased estimate of the advantage**,
# from a single step. With an imperfect critic $\hat V = V + \epsilon$ its average is off by
# $\gamma \sum_{s'} P[s,a,s'] \epsilon(s') - \epsilon(s)$.
#
# (Our notes write the TD error as $\hat V(s_{t+1}) - \hat V(s_t)$, without the reward and the
# discount. That is the special case of a language model scored only at the end with
# $\gamma = 1$: every intermediate reward is 0. In general the reward term is essential.)

# %%
critic_exact = V_chain
one_step_mean = chain.R + chain.gamma * chain.P @ critic_exact - critic_exact[:, None]   # E[delta | s, a]
assert np.allclose(one_step_mean[~chain.terminal], A_chain[~chain.terminal])

critic_half = 0.5 * V_chain          # an imperfect critic: it has learned half of every value
bias_one_step = (chain.R + chain.gamma * chain.P @ critic_half - critic_half[:, None]) - A_chain
print("bias of the TD error with the half-learned critic, per (cell, action):")
print(bias_one_step[:n_cells].round(3).T)

# %% [markdown]
# ## 3. Looking further: k-step advantages
#
# Trust the critic less by letting real rewards run for $k$ steps before bootstrapping:
#
# $$\hat A^{(k)}_t = R_{t+1} + \gamma R_{t+2} + \dots + \gamma^{k-1} R_{t+k} + \gamma^k \hat V(S_{t+k}) - \hat V(S_t).$$
#
# Adding and subtracting $\gamma^i \hat V(S_{t+i})$ for $i = 1, \dots, k-1$ shows that it is a sum of TD errors,
# because every intermediate value cancels (a telescoping sum):
#
# $$\hat A^{(k)}_t = \sum_{i=0}^{k-1} \gamma^i \delta_{t+i}.$$
#
# $k = 1$ is the TD error; $k = \infty$ (or "to the end of the episode") is the Monte Carlo return
# minus $\hat V(S_t)$. The critic's error enters $\hat A^{(k)}$ only through
# $\gamma^k \hat V(S_{t+k}) - \hat V(S_t)$; the randomness of $k$ rewards and transitions enters in full.
# Larger $k$: less bias from the critic, more variance. Check the telescoping on a sampled
# episode:

# %%
ep = sample_episodes(chain, pi_chain, np.array([0]), 40, rng)
values = np.append(critic_half[ep.states[0]], critic_half[ep.last_states[0]])   # (T + 1,)
deltas = td_errors(ep.rewards[0], values, chain.gamma, ep.dones[0])
for k in (1, 2, 5):
    direct = sum(chain.gamma**i * ep.rewards[0, i] for i in range(k)) + chain.gamma**k * values[k] - values[0]
    via_deltas = sum(chain.gamma**i * deltas[i] for i in range(k))
    print(f"k = {k}: {direct:+.6f} directly, {via_deltas:+.6f} as a sum of TD errors")
    assert np.isclose(direct, via_deltas)

# %% [markdown]
# ## 4. Generalised advantage estimation
#
# Instead of choosing one $k$, average all of them with weights that decay geometrically,
# $(1-\lambda), (1-\lambda)\lambda, (1-\lambda)\lambda^2, \dots$ (they sum to 1). Collecting the TD
# errors: $\delta_t$ appears in every $\hat A^{(k)}$, $\delta_{t+1}$ in all but the first, and so
# on, which gives (Schulman et al., 2016)
#
# $$\hat A^{\mathrm{GAE}(\gamma, \lambda)}_t = (1-\lambda) \sum_{k \ge 1} \lambda^{k-1} \hat A^{(k)}_t = \sum_{l \ge 0} (\gamma\lambda)^l\, \delta_{t+l}.$$
#
# $\lambda = 0$ is the TD error, $\lambda = 1$ is the Monte Carlo return minus $\hat V(S_t)$. The sum
# obeys a backward recursion, which is how `course_lib.returns.gae` computes it for a whole batch at
# once, and which stops at an episode end (no bootstrapping across it):
#
# $$\hat A_t = \delta_t + \gamma \lambda\, (1 - \mathrm{done}_t)\, \hat A_{t+1}.$$
#
# **The worked example from our notes.** TD errors $1.2, 0.3, 0.8, -0.2$ over $K = 4$ steps, no
# discount ($\gamma = 1$). With only $K$ steps, $\hat A_0 = \sum_{l < K} \lambda^l \delta_l$ and the
# notes find 1.2 at $\lambda = 0$, 1.525 at 0.5, 1.972 at 0.9 and 2.1 at 1. The kernel must agree;
# we feed it rewards and values whose TD errors are exactly those four numbers (here a critic
# whose values are all zero, so each reward *is* the TD error):

# %%
worked_deltas = np.array([1.2, 0.3, 0.8, -0.2])
expected = {0.0: 1.2, 0.5: 1.525, 0.9: 1.972, 1.0: 2.1}
for lam, notes_value in expected.items():
    A0 = gae(worked_deltas, np.zeros(5), gamma=1.0, lam=lam)[0]
    print(f"lambda = {lam:3.1f}: A_0 = {A0:.4f}   (notes: {notes_value})")
    assert abs(A0 - notes_value) < 5e-4

# %% [markdown]
# And the same numbers from a critic that is not zero: any values $\hat V$ with rewards
# $r_t = \delta_t - \gamma \hat V(s_{t+1}) + \hat V(s_t)$ produce the same TD errors, so the same advantages.

# %%
values_ex = np.array([6.0, 7.2, 5.0, 4.5, 2.0])
rewards_ex = worked_deltas - values_ex[1:] + values_ex[:-1]
assert np.allclose(td_errors(rewards_ex, values_ex, 1.0), worked_deltas)
assert np.allclose([gae(rewards_ex, values_ex, 1.0, lam)[0] for lam in expected], list(expected.values()), atol=5e-4)

lags = np.arange(30)
fig = go.Figure()
for lam in (0.0, 0.5, 0.9, 0.95, 1.0):
    fig.add_trace(go.Scatter(x=lags, y=(0.99 * lam) ** lags, mode="lines+markers", name=f"lambda = {lam}"))
fig.update_layout(title="Weight (gamma lambda)^l of the TD error l steps ahead, gamma = 0.99",
                  xaxis_title="l", yaxis_title="weight", width=700, height=360)
fig.show()

# %% [markdown]
# ## 5. The bias-variance trade-off, measured
#
# In the corridor we know the true $A(s,a)$, so we can measure how good GAE's estimate is. For
# every (cell, action) pair we start many episodes with that state and first action, follow the
# policy, and compute $\hat A_0$ with the half-learned critic $\hat V = V/2$ for $\lambda$ from 0 to
# 1. `gae_bias_variance` returns, averaged over the pairs:
#
# * the **variance** of one estimate around its mean (sampled);
# * the **bias**, the mean minus the truth. Its mean is computed exactly (`expected_gae_at_start`
#   sums $(\gamma\lambda)^l\, \mathbb{E}[\delta_l]$ with the state distribution at each step), and the
#   sampled means must agree with it.
#
# One subtlety about bias. At $\lambda = 1$ the estimate is $G_t - \hat V(S_t)$: on average
# $Q(s,a) - \hat V(s)$, off by the critic's error in $s$. But that error is the same for every
# action in $s$. In the policy gradient it acts as a baseline (chapter 6) and cancels on average.
# The part of the bias that does reach the gradient is what differs between actions: in each
# state we subtract the policy-weighted average of the bias over actions, and report the squared
# remainder as **bias²**.
#
# Finally, the gradient is an average over a batch, which divides the variance by the batch size
# but leaves the bias. We plot the variance of a mean of 20 estimates and the mean squared error
# $\mathrm{bias}^2 + \mathrm{variance}/20$.

# %%
lams = np.round(np.linspace(0.0, 1.0, 21), 10)
n_per_pair = 200 if FAST else 2000
start = time.perf_counter()
tradeoff = gae_bias_variance(chain, pi_chain, critic_half, lams, n_per_pair=n_per_pair, horizon=80, seed=SEED)
print(f"{n_per_pair} episodes for each of {2 * n_cells} (cell, action) pairs, {len(lams)} lambdas: "
      f"{time.perf_counter() - start:.1f} s")

# sampled means against the exact expectation, for every pair and every lambda
live = tradeoff["se"] > 0
z = np.abs(tradeoff["mean_sampled"] - tradeoff["mean_exact"])[live] / tradeoff["se"][live]
print(f"sampled mean vs exact expectation: max |z| = {z.max():.2f} over {z.size} (pair, lambda) cells")
assert z.max() < 5.0  # 252 correlated cells, skewed samples: a generous but still sharp bound

n_average = 20
bias2, variance = tradeoff["bias2"], tradeoff["variance"]
mse = bias2 + variance / n_average
gae_tradeoff_figure(lams, bias2, variance, n_average, gamma=chain.gamma, lam=0.9).show()
best = lams[np.argmin(mse)]
print(f"bias^2: {bias2[0]:.2e} at lambda 0 -> {bias2[-1]:.1e} at lambda 1; variance of one estimate: "
      f"{variance[0]:.2e} -> {variance[-1]:.2e}; the MSE of a mean of {n_average} is smallest at lambda = {best:.2f}")

# %% [markdown]
# The picture every GAE paper draws, now measured:
#
# * **bias falls** as $\lambda$ grows: the estimate leans less on the critic, and at $\lambda = 1$
#   the critic's error is left only in the baseline-like part, which does not bias the gradient;
# * **variance rises**: more future rewards and transitions, each random, enter the sum, with
#   weights $(\gamma\lambda)^l$ that decay more slowly;
# * with a batch to average over, the best **mean squared error is in between**. How far in
#   between depends on how wrong the critic is, on $\gamma$, and on the batch size. Practical
#   values such as $\lambda = 0.95$ sit toward the low-bias end, because a policy gradient
#   averages over thousands of steps.
#
# Those claims, as checks:

# %%
assert np.all(np.diff(bias2) <= 1e-12)            # bias^2 never grows with lambda
assert bias2[-1] < 1e-3 * bias2[0]                  # and is gone at lambda = 1 (up to the 80-step horizon)
assert variance[-1] > 5 * variance[0]               # the variance grows several-fold
assert 0.0 < best < 1.0                             # the MSE of a batch mean is smallest in between

# %% [markdown]
# Move the sliders. $\lambda$ moves the markers along the curves; $\gamma$ re-solves $V_\pi$ for the
# new discount (the critic stays "half of $V$"), samples again, and redraws. Larger $\gamma$ means
# longer effective horizons: the variance at $\lambda = 1$ grows, and so does the bias the critic
# can cause. (The sliders recompute only when you let go.)

# %%
box = gae_tradeoff_sliders(chain, pi_chain, gamma=0.9, lam=0.9, critic_scale=0.5, n_average=n_average,
                           n_per_pair=100 if FAST else 300)
display(box)

# %% [markdown]
# The sliders call `update_gae_tradeoff(figure, mdp, pi, gamma, lam, ...)`, a plain function, so
# code can do what the sliders do:

# %%
fig_code = gae_tradeoff_figure(lams, bias2, variance, n_average, gamma=0.9, lam=0.9)
low = update_gae_tradeoff(fig_code, chain, pi_chain, gamma=0.95, lam=0.0, n_average=n_average, n_per_pair=100)
high = update_gae_tradeoff(fig_code, chain, pi_chain, gamma=0.95, lam=1.0, n_average=n_average, n_per_pair=100)
print(f"gamma 0.95: (bias^2, variance of the mean, MSE) at lambda 0 = {np.round(low['at_lam'], 5)}, "
      f"at lambda 1 = {np.round(high['at_lam'], 5)}")
assert low["at_lam"][0] > high["at_lam"][0] and low["at_lam"][1] < high["at_lam"][1]
# against gamma = 0.9 above: more bias at lambda = 0, more variance at lambda = 1
assert low["at_lam"][0] > bias2[0] and high["at_lam"][1] > variance[-1] / n_average

# %% [markdown]
# ## 6. An actor-critic on CartPole
#
# Put the pieces together. Each iteration:
#
# 1. run the policy for $T$ steps in each of $N$ copies of CartPole (`collect_rollout`);
# 2. evaluate the critic on all $T + 1$ observations of each copy, $\hat V$ of shape (N, T + 1);
# 3. compute $\hat A$ with `gae` and the critic's targets $\hat A + \hat V(S_t)$ (a $\lambda$-return);
# 4. take one gradient step on `actor_critic_loss`:
#    $-\overline{\log \pi(A_t|S_t)\, \hat A_t} + c_v\, \overline{(\hat V(S_t) - \text{target}_t)^2} - c_H\, \overline{H[\pi(\cdot|S_t)]}$,
#    where $\hat A$ and the targets are held constant and the entropy bonus $H$ keeps the policy
#    from becoming deterministic too early.
#
# Two details of a batched environment need care, and `course_lib.pg` handles them:
#
# * **Autoreset.** Gymnasium's vector CartPole resets a finished copy on the *next* `step` call; that
#   call ignores the action and is not a transition. `collect_rollout` marks it `valid = False`,
#   and every average in the loss skips it.
# * **Time limits.** An episode cut at 500 steps did not end: the pole was still up. So we do not
#   treat it like a fall; `bootstrap_truncated` adds $\gamma \hat V$ of the last observation to the
#   last reward, and `gae` then treats both kinds of ending (`dones = terminated | truncated`)
#   alike.
#
# We train the same agent with $\lambda = 0$ (pure TD errors, a critic trusted completely while it
# still knows nothing) and $\lambda = 0.95$.

# %%
@dataclass
class ActorCriticConfig:
    n_envs: int = 8                         # CartPole copies stepped together (N)
    n_steps: int = 32                       # steps per copy between updates (T)
    updates: int = 500                      # gradient steps
    gamma: float = 0.99                     # discount
    lam: float = 0.95                       # GAE lambda
    lr: float = 1e-3                        # Adam step size for actor and critic together
    value_coef: float = 0.5                 # weight c_v of the critic's squared error
    entropy_coef: float = 0.01              # weight c_H of the entropy bonus
    max_grad_norm: float = 0.5              # clip the gradient norm (keeps rare huge steps out)
    hidden: tuple[int, ...] = (64, 64)      # hidden layers of both networks
    seed: int = 0                           # seeds the networks, the sampling and the environments


def train_actor_critic(cfg: ActorCriticConfig):
    torch.manual_seed(cfg.seed)
    actor = mlp(4, 2, cfg.hidden, out_gain=0.01)
    critic = mlp(4, 1, cfg.hidden, out_gain=1.0)
    params = list(actor.parameters()) + list(critic.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    env = make_cartpole(cfg.n_envs)
    state = start_rollouts(env, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps, recent = [], []
    for _ in tqdm(range(cfg.updates), desc=f"actor-critic, lambda = {cfg.lam}"):
        # 1. T steps in each of the N copies
        batch = collect_rollout(env, actor, state, cfg.n_steps, gen)
        # 2. the critic on all T + 1 observations
        values = critic(batch.obs).squeeze(-1)                                         # (N, T + 1)
        v = values.detach()
        # 3. advantages and targets (time-limit truncations bootstrap, falls do not)
        rewards = bootstrap_truncated(batch.rewards, v[:, 1:], batch.truncated, cfg.gamma)
        advantages = gae(rewards, v, cfg.gamma, cfg.lam, batch.dones)                  # (N, T)
        targets = advantages + v[:, :-1]
        # 4. one gradient step on the actor-critic loss, over the real transitions only
        logits = actor(batch.obs[:, :-1])                                              # (N, T, 2)
        loss = actor_critic_loss(categorical_log_prob(logits, batch.actions), values[:, :-1], advantages, targets,
                                 batch.valid, cfg.value_coef, categorical_entropy(logits), cfg.entropy_coef)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        steps.append(state.env_steps)
        recent.append(np.mean(state.finished_returns[-20:]) if state.finished_returns else np.nan)
    return np.array(steps), np.array(recent)


ac_cfg = ActorCriticConfig(updates=150 if FAST else 500)
runs = {}
for lam in (0.0, 0.95):
    start = time.perf_counter()
    runs[lam] = train_actor_critic(replace(ac_cfg, lam=lam))
    print(f"lambda = {lam}: {time.perf_counter() - start:.1f} s, mean return of the last 20 episodes {runs[lam][1][-1]:.0f}")

# %%
fig = go.Figure()
for lam, (steps, recent) in runs.items():
    fig.add_trace(go.Scatter(x=steps, y=recent, mode="lines", name=f"lambda = {lam}"))
fig.update_layout(title="Actor-critic with GAE on CartPole-v1", xaxis_title="environment steps",
                  yaxis_title="mean return of the last 20 episodes", width=750, height=420)
fig.show()
first = {lam: recent[np.isfinite(recent)][0] for lam, (_, recent) in runs.items()}
assert runs[0.95][1][-1] > 3 * first[0.95]          # lambda = 0.95 learns
assert runs[0.95][1][-1] > runs[0.0][1][-1]         # and ends ahead of lambda = 0 in this run

# %% [markdown]
# With $\lambda = 0$ every advantage is one TD error from a critic that starts out knowing
# nothing about CartPole, and the actor follows that critic's early, biased judgements; with
# $\lambda = 0.95$ the real rewards of the next few dozen steps carry most of the weight from the
# start. (One seed is an illustration, not a benchmark: actor-critic runs on CartPole are noisy,
# and the return of a single run can drop and recover.)
#
# ## What to take away
#
# * The advantage $A = Q - V$ is what the policy gradient wants; the TD error
#   $\delta_t = r_t + \gamma \hat V(s_{t+1}) - \hat V(s_t)$ estimates it from one step, exactly on
#   average when the critic is exact.
# * k-step advantages are discounted sums of TD errors; GAE averages them:
#   $\hat A_t = \sum_l (\gamma\lambda)^l \delta_{t+l}$, computed backwards with
#   $\hat A_t = \delta_t + \gamma\lambda(1 - \mathrm{done}_t)\hat A_{t+1}$, never across an episode end.
# * $\lambda$ trades the critic's bias against the variance of real returns; the best value depends on
#   the critic and on how much data each gradient averages over.
# * In a batched environment: skip autoreset steps, and bootstrap time-limit truncations.
#
# **Exercise 7** (`exercises/ex07_actor_critic_gae.ipynb`) has you write `td_errors`, `gae` and the
# actor-critic loss. Chapter 8 asks how far one batch of advantages can move the policy before
# they stop being valid: TRPO.
