# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 9 — PPO: the clipped objective, the adaptive KL penalty, PPO on CartPole
#
# TRPO (chapter 8) keeps each new policy within a KL budget of the one that collected the data,
# and pays for it with conjugate gradient on Fisher-vector products and a line search.
# Proximal Policy Optimisation (Schulman et al., *Proximal Policy Optimization Algorithms*, 2017)
# keeps the idea and drops the machinery: it changes the **objective** so that plain minibatch
# SGD, run for several epochs over the same batch, has no reason to move the policy far.
#
# This chapter:
#
# 1. builds the **clipped surrogate** and works out what the `min` does for positive and negative
#    advantages, with a slider over the clip range $\epsilon$;
# 2. measures what the clip buys: ten epochs on one batch with and without it;
# 3. runs the **KL-penalty** variant with its adaptive coefficient $\beta$;
# 4. assembles full **PPO on the vectorised CartPole**: GAE, minibatches, epochs, value loss,
#    entropy bonus, advantage normalisation, and the two numbers to watch while it trains,
#    approximate KL and clip fraction.
#
# Cells that do real work honour `COURSE_FAST=1`; the full setting is what you run by default.

# %%
import copy
import inspect
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.config import FAST
from course_lib.losses import adaptive_kl_beta, masked_mean, ppo_clip_loss, ppo_clip_objective, ppo_penalty_loss
from course_lib.ppo import (
    ActorCritic,
    EnvCursor,
    PPOConfig,
    approx_kl,
    categorical_entropy,
    clip_fraction,
    collect_rollout,
    explained_variance,
    make_cartpole,
    minibatch_indices,
    normalize_advantages,
    rollout_gae,
    train_ppo,
    value_loss,
)
from course_lib.trpo import categorical_kl
from course_lib.widgets import epsilon_slider_clip, update_clip_figure

SEED = 0
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
# The networks are tiny: one thread avoids paying for thread hand-offs on every layer.
torch.set_num_threads(1)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The ratio, and what goes wrong without a limit
#
# As in chapter 8, data come from $\pi_{\theta_\text{old}}$ and we score a candidate $\pi_\theta$ by the
# importance-weighted surrogate, with the **probability ratio** of the action actually taken:
#
# $$r_t(\theta) = \frac{\pi_\theta(a_t \mid s_t)}{\pi_{\theta_\text{old}}(a_t \mid s_t)}
#   = \exp\big(\log \pi_\theta(a_t|s_t) - \log \pi_{\theta_\text{old}}(a_t|s_t)\big),
#   \qquad L^{\text{CPI}}(\theta) = \hat{\mathbb{E}}_t\big[r_t(\theta)\, \hat A_t\big].$$
#
# ($\hat{\mathbb{E}}_t$ is the average over the batch; CPI is "conservative policy iteration",
# where this objective first appeared.) At $\theta = \theta_\text{old}$ its gradient is the policy
# gradient. But $L^{\text{CPI}}$ is linear in $r_t$: for a sample with $\hat A_t > 0$ it rewards
# pushing $\pi_\theta(a_t|s_t)$ up without end, long after the estimate that justified the push has
# stopped being trustworthy (chapter 8: the surrogate is accurate only near $\pi_{\theta_\text{old}}$).
# TRPO answered with a hard KL constraint. PPO answers inside the objective.
#
# ## 2. The clipped surrogate
#
# $$L^{\text{CLIP}}(\theta) = \hat{\mathbb{E}}_t\Big[\min\big(r_t(\theta)\, \hat A_t,\;
#   \operatorname{clip}(r_t(\theta), 1-\epsilon, 1+\epsilon)\, \hat A_t\big)\Big].$$
#
# The second term stops caring about $r_t$ once it leaves $[1-\epsilon, 1+\epsilon]$. The `min`
# decides when that matters:
#
# | | $r_t < 1-\epsilon$ | $1-\epsilon \le r_t \le 1+\epsilon$ | $r_t > 1+\epsilon$ |
# |---|---|---|---|
# | $\hat A_t > 0$ (good action) | $r_t \hat A_t$: pulled back up | $r_t \hat A_t$ | $(1+\epsilon)\hat A_t$: **flat**, no more credit |
# | $\hat A_t < 0$ (bad action) | $(1-\epsilon)\hat A_t$: **flat**, no more credit | $r_t \hat A_t$ | $r_t \hat A_t$: pulled back down |
#
# So the clip only ever removes the incentive to move **further in the direction the advantage
# asks for**. A ratio that has moved the wrong way (a good action made *less* likely, a bad one
# *more* likely) is not clipped: the `min` keeps the unclipped term, which is the worse of the two,
# and its gradient pulls the ratio back. In other words $L^{\text{CLIP}}$ is a **pessimistic
# bound**: $L^{\text{CLIP}} \le L^{\text{CPI}}$ everywhere, with equality inside the band.
#
# The notes' concrete example: a token's probability goes from 0.1 to 0.3, so $r = 3$; with
# $\epsilon = 0.2$ the objective is $1.2 \hat A$. That holds for $\hat A > 0$ only. For $\hat A < 0$
# the `min` picks $3 \hat A$, the unclipped and more negative value, because the update made a
# bad token three times as likely and the objective should say so.

# %%
r = np.array([3.0])
print("A = +1:", ppo_clip_objective(r, np.array([1.0]), 0.2)[0], "   A = -1:", ppo_clip_objective(r, np.array([-1.0]), 0.2)[0])
assert ppo_clip_objective(r, np.array([1.0]), 0.2)[0] == 1.2 and ppo_clip_objective(r, np.array([-1.0]), 0.2)[0] == -3.0

# The pessimistic bound, on random ratios and advantages:
ratios, advs = np.exp(rng.normal(scale=0.6, size=10_000)), rng.normal(size=10_000)
clipped = ppo_clip_objective(ratios, advs, 0.2)
inside = np.abs(ratios - 1) <= 0.2
assert np.all(clipped <= ratios * advs + 1e-12) and np.allclose(clipped[inside], (ratios * advs)[inside])
print(f"L_CLIP <= r A on all {len(ratios)} samples; equal on the {inside.sum()} inside the band")

# %% [markdown]
# Move the slider: the shaded band is $[1-\epsilon, 1+\epsilon]$, the blue line the clipped
# objective, the dashed line the unclipped $r \hat A$, and the red segments are where the objective is
# flat in $r$. A sample whose ratio sits on a red segment contributes **no gradient** at all.

# %%
clip_box = epsilon_slider_clip(eps=0.2)
display(clip_box)

# %% [markdown]
# The slider calls `update_clip_figure(figure, eps)`, a plain function (that is how the tests drive
# it). And the "no gradient" claim, checked with autograd on `ppo_clip_loss`, the loss we minimise
# (the negated objective, averaged over unmasked samples):

# %%
curves = update_clip_figure(go.Figure(clip_box.figure), 0.2)
for ratio, adv, should_be_flat in [(1.5, 1.0, True), (0.5, 1.0, False), (0.5, -1.0, True), (1.5, -1.0, False), (1.1, 1.0, False)]:
    logp = torch.tensor([np.log(ratio)], requires_grad=True)  # old_logp = 0, so r = exp(logp)
    ppo_clip_loss(logp, torch.zeros(1), torch.tensor([adv]), eps=0.2).backward()
    print(f"r = {ratio}, A = {adv:+.0f}: d loss / d log pi = {logp.grad.item():+.3f}")
    assert (logp.grad.item() == 0.0) == should_be_flat

# %% [markdown]
# ## 3. What the clip buys, measured
#
# PPO's point is to run **several epochs** of minibatch SGD on each batch: data are expensive, and
# gradient steps are cheap. Here is one batch of CartPole data and ten epochs (five in fast mode) of Adam on it, once with
# the clipped loss ($\epsilon = 0.2$) and once with the plain surrogate $-L^{\text{CPI}}$ (clip range so
# wide it never binds). After each epoch we measure the exact mean KL between the old and the new
# policy on the batch, and the **clip fraction**, the share of samples whose ratio has left the band.

# %%
torch.manual_seed(SEED)
generator = torch.Generator().manual_seed(SEED)
env = make_cartpole(8)
cursor = EnvCursor.start(env, seed=SEED)
agent = ActorCritic()
rollout = collect_rollout(env, agent, cursor, num_steps=256, generator=generator)
with torch.no_grad():
    values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1))  # (N, T + 1)
    advantages, _ = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, gamma=0.99, lam=0.95)
B = rollout.actions.numel()
obs, actions, old_logp = rollout.obs.reshape(B, -1), rollout.actions.reshape(B), rollout.logp.reshape(B)
adv, mask = advantages.reshape(B), rollout.mask.reshape(B)
with torch.no_grad():
    old_logits = agent.logits(obs)

n_epochs = 5 if FAST else 10
epoch_curves = {}
for name, eps in (("clipped, eps = 0.2", 0.2), ("no clip", 1e9)):
    student = copy.deepcopy(agent)
    optimizer = torch.optim.Adam(student.actor.parameters(), lr=2e-3, eps=1e-5)
    g = torch.Generator().manual_seed(1)  # the same minibatches for both
    kls, fractions = [], []
    for epoch in range(n_epochs):
        for idx in minibatch_indices(B, 8, g):
            logp = torch.log_softmax(student.logits(obs[idx]), -1).gather(-1, actions[idx, None]).squeeze(-1)
            loss = ppo_clip_loss(logp, old_logp[idx], normalize_advantages(adv[idx], mask[idx]), eps, mask[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            logits = student.logits(obs)
            logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
            kls.append(float(masked_mean(categorical_kl(old_logits, logits), mask)))
            fractions.append(float(clip_fraction(logp, old_logp, 0.2, mask)))
    epoch_curves[name] = (kls, fractions)
    print(f"{name:>18}: KL after epochs 1, {n_epochs // 2}, {n_epochs} = {kls[0]:.4f}, {kls[n_epochs // 2 - 1]:.4f}, {kls[-1]:.4f}; "
          f"clip fraction after {n_epochs} = {fractions[-1]:.2f}")

kl_clip, kl_free = epoch_curves["clipped, eps = 0.2"][0], epoch_curves["no clip"][0]
assert kl_clip[-1] < 0.05 and kl_free[-1] > 10 * kl_clip[-1], "without the clip, ten epochs drag the policy far away"

fig = make_subplots(rows=1, cols=2, subplot_titles=("mean KL(pi_old || pi) on the batch", "clip fraction (|r - 1| > 0.2)"))
for name, (kls, fractions) in epoch_curves.items():
    fig.add_trace(go.Scatter(x=np.arange(1, n_epochs + 1), y=kls, mode="lines+markers", name=name), row=1, col=1)
    fig.add_trace(go.Scatter(x=np.arange(1, n_epochs + 1), y=fractions, mode="lines+markers", name=name, showlegend=False), row=1, col=2)
fig.update_yaxes(type="log", row=1, col=1)
fig.update_xaxes(title="epochs over the same batch")
fig.update_layout(width=950, height=400, title=f"{n_epochs} epochs on one batch: the clip keeps the policy near the data")
fig.show()

# %% [markdown]
# Without the clip the KL keeps climbing, epoch after epoch, towards a policy the batch knows
# nothing about. With it the KL stays around $10^{-2}$, TRPO's usual budget, with no constraint in
# sight. Note what the clip does *not* do: it does not hard-limit the ratios. Some samples end up
# outside the band anyway, because the parameters are shared and other samples' gradients move them
# too (the clip fraction is not 0). That is why PPO implementations log the clip fraction and an
# approximate KL: they are the check that the soft trust region is holding.
#
# ## 4. The KL-penalty variant and the adaptive $\beta$
#
# The same paper also tries a penalty instead of the clip:
#
# $$L^{\text{KLPEN}}(\theta) = \hat{\mathbb{E}}_t\Big[r_t(\theta)\, \hat A_t - \beta\, \mathrm{KL}\big(\pi_{\theta_\text{old}}(\cdot|s_t) \,\|\, \pi_\theta(\cdot|s_t)\big)\Big].$$
#
# A fixed $\beta$ is hard to choose: the right value changes as training goes. So $\beta$ adapts after
# each update, towards a target KL $\delta$ (the notes' rule, from the paper's section 4):
#
# $$\beta \leftarrow \begin{cases} \beta / 2 & \text{if } \mathrm{KL} < \delta / 1.5 \quad \text{(the policy barely moved: penalise less)} \\
#   2 \beta & \text{if } \mathrm{KL} > 1.5\, \delta \quad \text{(it moved too far: penalise more)} \\
#   \beta & \text{otherwise.} \end{cases}$$
#
# `adaptive_kl_beta(beta, kl, target)` is that rule; `ppo_penalty_loss` is the loss. The paper found
# the clipped version better on its benchmarks, and it is the one everyone uses, but the adaptive
# KL coefficient lives on: RLHF (chapter 12) steers the KL to a reference model with a similar controller.
# Let us train CartPole with the penalty and watch $\beta$ chase the target.

# %%
print([adaptive_kl_beta(1.0, kl, target=0.01) for kl in (0.001, 0.0067, 0.01, 0.015, 0.05)])

n_updates = 6 if FAST else 30
kl_target = 0.01
torch.manual_seed(SEED)
generator = torch.Generator().manual_seed(SEED)
env = make_cartpole(8)
cursor = EnvCursor.start(env, seed=SEED)
agent = ActorCritic()
optimizer = torch.optim.Adam(agent.parameters(), lr=1e-3, eps=1e-5)
beta, penalty_log, episode_returns = 1.0, [], []
for update in tqdm(range(n_updates), desc="PPO-penalty"):
    rollout = collect_rollout(env, agent, cursor, num_steps=256, generator=generator)
    episode_returns.extend(rollout.episode_returns.tolist())
    with torch.no_grad():
        values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1))
        advantages, returns = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, 0.99, 0.95)
    obs, actions, old_logp = rollout.obs.reshape(B, -1), rollout.actions.reshape(B), rollout.logp.reshape(B)
    adv, returns, mask = advantages.reshape(B), returns.reshape(B), rollout.mask.reshape(B)
    with torch.no_grad():
        old_logits = agent.logits(obs)
    for epoch in range(10):
        for idx in minibatch_indices(B, 8, generator):
            logits = agent.logits(obs[idx])
            logp = torch.log_softmax(logits, -1).gather(-1, actions[idx, None]).squeeze(-1)
            kl = categorical_kl(old_logits[idx], logits)  # per state, exact for a categorical policy
            loss = (ppo_penalty_loss(logp, old_logp[idx], normalize_advantages(adv[idx], mask[idx]), kl, beta, mask[idx])
                    + 0.5 * value_loss(agent.value(obs[idx]), returns[idx], mask[idx]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
            optimizer.step()
    with torch.no_grad():
        measured_kl = float(masked_mean(categorical_kl(old_logits, agent.logits(obs)), mask))
    penalty_log.append(dict(beta=beta, kl=measured_kl, mean_return=float(np.mean(episode_returns[-20:]))))
    beta = adaptive_kl_beta(beta, measured_kl, kl_target)

pen_kl = np.array([row["kl"] for row in penalty_log])
pen_beta = np.array([row["beta"] for row in penalty_log])
pen_return = np.array([row["mean_return"] for row in penalty_log])
fig = make_subplots(rows=1, cols=2, subplot_titles=("KL after each update, and beta", "mean return of the last 20 episodes"))
fig.add_trace(go.Scatter(y=pen_kl, mode="lines+markers", name="measured KL"), row=1, col=1)
fig.add_trace(go.Scatter(y=pen_beta / 100, mode="lines+markers", name="beta / 100", line=dict(dash="dot")), row=1, col=1)
fig.add_hrect(y0=kl_target / 1.5, y1=kl_target * 1.5, fillcolor="green", opacity=0.15, line_width=0, row=1, col=1)
fig.add_trace(go.Scatter(y=pen_return, mode="lines+markers", name="PPO-penalty"), row=1, col=2)
fig.update_yaxes(type="log", row=1, col=1)
fig.update_xaxes(title="update")
fig.update_layout(width=950, height=400, title="PPO with the adaptive KL penalty (band: target / 1.5 to 1.5 target)")
fig.show()

geo_mean_kl = float(np.exp(np.mean(np.log(pen_kl))))
print(f"geometric mean KL {geo_mean_kl:.4f} (target {kl_target}); beta went through {sorted(set(pen_beta.round(4).tolist()))}; "
      f"mean return {pen_return[0]:.0f} -> {pen_return[-1]:.0f}")
# The rule moves beta the right way after every update, the KL hovers around the target, the policy learns.
assert all((b2 < b1) == (k < kl_target / 1.5) and (b2 > b1) == (k > 1.5 * kl_target)
           for b1, b2, k in zip(pen_beta[:-1], pen_beta[1:], pen_kl[:-1]))
assert kl_target / 4 < geo_mean_kl < 4 * kl_target
assert pen_return[-1] > 3 * pen_return[0]

# %% [markdown]
# $\beta$ doubles after every overshoot and halves after every undershoot, so the KL zig-zags around
# the target rather than sitting on it: the rule only corrects $\beta$ after an update has missed,
# one update late by design. The clip has no such lag: its limit is fixed and applies to every
# sample of every minibatch.
#
# ## 5. PPO on CartPole, in full
#
# The algorithm (Schulman et al. 2017, Algorithm 1), with the details that make it work in
# practice (Engstrom et al. 2020 and Huang et al. 2022 catalogue them):
#
# ```
# for update = 1, 2, ...:
#     run pi_old in N environments for T steps              # a batch of N*T transitions
#     compute advantages with GAE, value targets R = A + V   # chapter 7
#     for epoch = 1..K:
#         for each minibatch:
#             loss = -L_CLIP + c_v * value loss - c_e * entropy
#             one Adam step on loss (gradient norm clipped)
#     log approx-KL and clip fraction
# ```
#
# The pieces, each a small function in `course_lib.ppo` (and `course_lib.losses`):
#
# * **Environment.** gymnasium's numpy-batched CartPole. Its next-step autoreset means the step after
#   an episode ends is a reset step, not a transition: the rollout's `mask` is False there and every
#   loss averages over masked entries only. An episode *truncated* at 500 steps did not fail, so GAE
#   bootstraps from the value of its last observation (`rollout_gae`); one that *terminated* gets 0.
# * **Advantages.** GAE with $\gamma = 0.99$, $\lambda = 0.95$, standardised per minibatch
#   (`normalize_advantages`), so that the step size does not depend on the reward scale.
# * **Value loss.** $\tfrac12(V_\phi(s_t) - R_t)^2$ against the GAE targets (`value_loss`), weighted by $c_v = 0.5$.
#   The critic is a separate network, so $c_v$ matters only through the gradient-norm clip, which
#   measures actor and critic together (Adam itself hardly cares how a loss is scaled).
# * **Entropy bonus.** $-c_e\, H(\pi(\cdot|s_t))$ (`categorical_entropy`) rewards keeping options open.
# * **Diagnostics.** `approx_kl` estimates $\mathrm{KL}(\pi_\text{old} \| \pi_\theta)$ from the sampled
#   actions alone, as the mean of $(r - 1) - \log r$ (an unbiased estimator that is never negative;
#   J. Schulman, *Approximating KL divergence*, 2020). `clip_fraction` is the share of clipped samples.
#   Healthy runs keep the first around $10^{-2}$ and the second around 0.1.
#
# One typed config holds the run; here are its fields and comments:

# %%
print(inspect.getsource(PPOConfig).split('    def __post_init__')[0])
cfg = PPOConfig(seed=SEED, total_steps=20_480 if FAST else 102_400)
print(cfg)

# %% [markdown]
# And the loop. It reads like the pseudocode above; everything it calls is a kernel you can open.

# %%
def ppo(cfg: PPOConfig, progress: bool = True) -> list[dict]:
    """Train PPO-clip on CartPole-v1; return one log row per update."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    env = make_cartpole(cfg.num_envs)
    cursor = EnvCursor.start(env, seed=cfg.seed)
    agent = ActorCritic(hidden=cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    B = cfg.num_envs * cfg.num_steps
    n_updates = max(1, cfg.total_steps // B)
    episode_returns, log = [], []

    for update in tqdm(range(n_updates), desc="PPO", disable=not progress):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.lr * (1.0 - update / n_updates)

        # Run pi_old: N * T transitions.
        rollout = collect_rollout(env, agent, cursor, cfg.num_steps, generator)
        episode_returns.extend(rollout.episode_returns.tolist())

        # GAE advantages and value targets, with the critic before the update.
        with torch.no_grad():
            values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1))  # (N, T + 1)
            advantages, returns = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, cfg.gamma, cfg.lam)
        obs, actions, old_logp = rollout.obs.reshape(B, -1), rollout.actions.reshape(B), rollout.logp.reshape(B)
        adv, ret, mask = advantages.reshape(B), returns.reshape(B), rollout.mask.reshape(B)

        # K epochs of minibatch steps on the clipped loss.
        for epoch in range(cfg.epochs):
            for idx in minibatch_indices(B, cfg.minibatches, generator):
                logits = agent.logits(obs[idx])  # (b, A)
                logp = torch.log_softmax(logits, -1).gather(-1, actions[idx, None]).squeeze(-1)  # (b,)
                mb_adv = normalize_advantages(adv[idx], mask[idx]) if cfg.norm_adv else adv[idx]
                policy_loss = ppo_clip_loss(logp, old_logp[idx], mb_adv, cfg.clip_eps, mask[idx])
                v_loss = value_loss(agent.value(obs[idx]), ret[idx], mask[idx])
                entropy = masked_mean(categorical_entropy(logits), mask[idx])
                loss = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()

        # How far did the policy move? (measured on the whole batch, after the update)
        with torch.no_grad():
            logits = agent.logits(obs)
            logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
        recent = episode_returns[-cfg.return_window:]
        log.append(dict(
            steps=(update + 1) * B, mean_return=float(np.mean(recent)) if recent else float("nan"),
            approx_kl=float(approx_kl(logp, old_logp, mask)), clip_fraction=float(clip_fraction(logp, old_logp, cfg.clip_eps, mask)),
            entropy=float(masked_mean(categorical_entropy(logits), mask)),
            explained_variance=explained_variance(values[:, :-1].reshape(B), ret, mask),
            wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0,
        ))
    env.close()
    return log


ppo_log = ppo(cfg)

# %%
steps = np.array([row["steps"] for row in ppo_log])
mean_return = np.array([row["mean_return"] for row in ppo_log])
fig = make_subplots(rows=2, cols=2, subplot_titles=(
    "mean return (last 20 episodes)", "approx KL(pi_old || pi) per update",
    "clip fraction per update", "entropy (nats) and explained variance"))
fig.add_trace(go.Scatter(x=steps, y=mean_return, mode="lines+markers", name="mean return"), row=1, col=1)
fig.add_hline(y=cfg.target_return, line_dash="dash", annotation_text="475", row=1, col=1)
fig.add_trace(go.Scatter(x=steps, y=[row["approx_kl"] for row in ppo_log], mode="lines+markers", name="approx KL"), row=1, col=2)
fig.add_trace(go.Scatter(x=steps, y=[row["clip_fraction"] for row in ppo_log], mode="lines+markers", name="clip fraction"), row=2, col=1)
fig.add_trace(go.Scatter(x=steps, y=[row["entropy"] for row in ppo_log], mode="lines+markers", name="entropy"), row=2, col=2)
fig.add_trace(go.Scatter(x=steps, y=[row["explained_variance"] for row in ppo_log], mode="lines+markers", name="explained variance"), row=2, col=2)
fig.update_xaxes(title="environment steps", row=2)
fig.update_layout(width=950, height=650, title=f"PPO on CartPole-v1, seed {cfg.seed}")
fig.show()

solved = np.flatnonzero(mean_return >= cfg.target_return)
print(f"mean return {mean_return[0]:.0f} after the first update -> {mean_return[-1]:.0f} after {steps[-1]} steps "
      f"({ppo_log[-1]['wall_s']:.1f} s wall, {ppo_log[-1]['cpu_s']:.1f} s CPU)")
if len(solved):
    first = ppo_log[solved[0]]
    print(f"reached {cfg.target_return:.0f} after {first['steps']} steps: {first['wall_s']:.1f} s wall, {first['cpu_s']:.1f} s CPU")
print(f"median approx KL {np.median([row['approx_kl'] for row in ppo_log]):.4f}, "
      f"median clip fraction {np.median([row['clip_fraction'] for row in ppo_log]):.3f}")
assert mean_return[-1] > 5 * mean_return[0] and mean_return[-1] > 150, "PPO should learn to balance the pole"
assert np.median([row["approx_kl"] for row in ppo_log]) < 0.05, "the clip should keep each update small"
if not FAST:
    assert len(solved) and mean_return[-1] >= cfg.target_return, "in the full setting PPO solves CartPole and stays solved"

# %% [markdown]
# In the full setting the return climbs to the 500-step cap and stays there, while the approximate
# KL per update stays of order $10^{-2}$ or below and the clip fraction of order 0.1 or below (the
# medians are printed above): TRPO's trust region without TRPO's machinery. The entropy falls as the
# policy grows confident, and the critic's explained variance climbs as it learns.
#
# The same loop lives in the library as `course_lib.ppo.train_ppo` (the benchmark runs it); the
# next cell checks that the two are the same algorithm, update for update, on a short run.

# %%
short = PPOConfig(seed=3, num_steps=64, total_steps=2 * 8 * 64)
ours = ppo(short, progress=False)
library = train_ppo(short, progress=False).log
for a, b in zip(ours, library):
    assert a["steps"] == b["steps"] and np.isclose(a["mean_return"], b["mean_return"], equal_nan=True)
    np.testing.assert_allclose([a["approx_kl"], a["explained_variance"]], [b["approx_kl"], b["explained_variance"]], rtol=1e-5)
print("the notebook's loop and course_lib.ppo.train_ppo agree")

# %% [markdown]
# **How fast?** `python benchmarks/bench_ch09_ppo.py` times five seeds of the full config from the
# start of training until the mean return reaches 475, and reports the median in wall-clock and CPU
# seconds. The fast path is the numpy-batched environment (no Python loop over environments), one
# forward pass of the actor per step, the critic's values for the whole batch in one pass, and
# single-threaded torch for networks this small.
#
# ## What to take away
#
# * PPO maximises $\hat{\mathbb{E}}[\min(r \hat A, \operatorname{clip}(r, 1 \pm \epsilon) \hat A)]$: a pessimistic
#   bound on the surrogate that removes the incentive to move a ratio beyond $1 \pm \epsilon$ in the
#   direction its advantage asks for, and nothing else.
# * That is what makes several epochs of SGD per batch safe; without the clip, the same epochs drag
#   the policy far away (a KL above 1 within five epochs, above).
# * The penalty variant adds $-\beta\,\mathrm{KL}$ and doubles or halves $\beta$ to track a target KL.
# * Watch approx-KL and the clip fraction while training: they tell you whether the soft trust
#   region holds.
#
# In chapter 12 the same `ppo_clip_loss` trains a language model: actions become tokens, states
# become prefixes, and the mask marks the tokens of the response. First, **exercise 9** has you write
# the log-probabilities of the taken actions, the clipped loss and the adaptive $\beta$ yourself.
