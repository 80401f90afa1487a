# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 9 — PPO's loss
#
# You will write three functions from chapter 9:
#
# 1. `action_log_probs(logits, actions)`: $\log \pi(a_t \mid s_t)$ of the actions actually taken;
# 2. `ppo_clip_loss(logp, old_logp, advantages, eps, mask=None)`: the loss PPO minimises;
# 3. `adaptive_kl_beta(beta, kl, target)`: the penalty variant's update of $\beta$.
#
# Then one cell runs a few PPO epochs on a CartPole batch with your functions.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Work in torch: the checks
# differentiate through your code.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

# The networks in this exercise are tiny: one thread avoids paying for thread hand-offs.
torch.set_num_threads(1)

from course_lib.checks.ch09 import check_action_log_probs, check_adaptive_kl_beta, check_ppo_clip_loss

# %% [markdown] nbgrader={"grade": false, "grade_id": "logp_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Log-probabilities of the taken actions (2 points)
#
# The policy network returns `logits` of shape `(..., A)`, one row per state. The ratio in PPO
# compares the probability of **the action that was taken** in each state, `actions` of shape
# `(...)`. Return $\log \pi(a_t \mid s_t)$, shape `(...)`.
#
# Normalise with `torch.log_softmax` (not `torch.log(torch.softmax(...))`, which returns `-inf`
# once a probability underflows), then pick one entry per row with `torch.gather` along the
# last axis (`actions.unsqueeze(-1)` gives the index the right shape; `squeeze(-1)` removes it again).

# %% nbgrader={"grade": false, "grade_id": "logp", "locked": false, "schema_version": 3, "solution": true, "task": false}
def action_log_probs(logits, actions):
    """log pi(a_t|s_t) of shape (...) from logits (..., A) and integer actions (...)."""
    ### BEGIN SOLUTION
    return torch.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "logp_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_action_log_probs(action_log_probs)
### BEGIN HIDDEN TESTS
check_action_log_probs(action_log_probs, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "clip_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The clipped loss (4 points)
#
# $$r_t = \exp(\texttt{logp}_t - \texttt{old\_logp}_t), \qquad
#   \text{loss} = -\frac{1}{|\{t : \text{mask}_t\}|} \sum_{t:\ \text{mask}_t} \min\big(r_t A_t,\; \operatorname{clip}(r_t, 1-\epsilon, 1+\epsilon)\, A_t\big)$$
#
# All inputs have the same shape `(...)`; `mask` is a boolean tensor or `None` (every entry
# counts). Return a torch scalar.
#
# * It is `min` of the two terms, then the minus sign: the loss is the **negated** objective.
#   (`torch.minimum` is elementwise; `torch.clamp` clips.)
# * `old_logp` belongs to the policy that collected the data, a constant of the update. In a
#   training loop it is easy to hand it over still attached to the graph; detach it here, so that
#   only `logp` carries the gradient. Treat `advantages` the same way.

# %% nbgrader={"grade": false, "grade_id": "clip", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ppo_clip_loss(logp, old_logp, advantages, eps, mask=None):
    """-mean over unmasked t of min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t), r_t = exp(logp_t - old_logp_t)."""
    ### BEGIN SOLUTION
    ratio = (logp - old_logp.detach()).exp()
    advantages = advantages.detach()
    objective = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - eps, 1 + eps) * advantages)
    if mask is None:
        return -objective.mean()
    mask = mask.to(objective.dtype)
    return -(objective * mask).sum() / mask.sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "clip_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_ppo_clip_loss(ppo_clip_loss)
### BEGIN HIDDEN TESTS
check_ppo_clip_loss(ppo_clip_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "beta_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The adaptive KL coefficient (1 point)
#
# After each update of PPO-penalty, compare the measured KL with the target $\delta$:
# halve $\beta$ if $\mathrm{KL} < \delta / 1.5$, double it if $\mathrm{KL} > 1.5\,\delta$, keep it otherwise.
# Return the new $\beta$ (a float).

# %% nbgrader={"grade": false, "grade_id": "beta", "locked": false, "schema_version": 3, "solution": true, "task": false}
def adaptive_kl_beta(beta, kl, target):
    """The next beta: beta / 2 if kl < target / 1.5, beta * 2 if kl > 1.5 * target, else beta."""
    ### BEGIN SOLUTION
    if kl < target / 1.5:
        return beta / 2
    if kl > target * 1.5:
        return beta * 2
    return beta
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "beta_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_adaptive_kl_beta(adaptive_kl_beta)
### BEGIN HIDDEN TESTS
check_adaptive_kl_beta(adaptive_kl_beta, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: four epochs of PPO on one batch
#
# With your functions, this cell collects a CartPole batch, runs four epochs of minibatch Adam steps
# on your clipped loss, and reports how far the policy moved (approximate KL and clip fraction, from
# `course_lib.ppo`) and how much the clipped objective improved. (It is not graded.)

# %%
from course_lib.ppo import (
    ActorCritic,
    EnvCursor,
    approx_kl,
    clip_fraction,
    collect_rollout,
    make_cartpole,
    minibatch_indices,
    normalize_advantages,
    rollout_gae,
)

torch.manual_seed(0)
generator = torch.Generator().manual_seed(0)
env = make_cartpole(4)
agent = ActorCritic()
rollout = collect_rollout(env, agent, EnvCursor.start(env, seed=0), num_steps=128, generator=generator)
with torch.no_grad():
    values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1))
    advantages, _ = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, gamma=0.99, lam=0.95)
B = rollout.actions.numel()
obs, actions, old_logp = rollout.obs.reshape(B, -1), rollout.actions.reshape(B), rollout.logp.reshape(B)
adv, mask = normalize_advantages(advantages.reshape(B), rollout.mask.reshape(B)), rollout.mask.reshape(B)

optimizer = torch.optim.Adam(agent.actor.parameters(), lr=2e-3)
with torch.no_grad():
    loss_before = float(ppo_clip_loss(action_log_probs(agent.logits(obs), actions), old_logp, adv, 0.2, mask))
for epoch in range(4):
    for idx in minibatch_indices(B, 4, generator):
        loss = ppo_clip_loss(action_log_probs(agent.logits(obs[idx]), actions[idx]), old_logp[idx], adv[idx], 0.2, mask[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
with torch.no_grad():
    logp = action_log_probs(agent.logits(obs), actions)
    print(f"clipped objective {-loss_before:.4f} -> {-float(ppo_clip_loss(logp, old_logp, adv, 0.2, mask)):.4f}; "
          f"approx KL {float(approx_kl(logp, old_logp, mask)):.4f}, clip fraction {float(clip_fraction(logp, old_logp, 0.2, mask)):.2f}")
