# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 12 — the KL-shaped reward and one PPO update
#
# Chapter 12 ran PPO on a language model with four models: the policy $\pi_\theta$, a frozen
# reference $\pi_{\text{ref}}$, a reward model, and a critic $V$. You will write the three pieces
# where RLHF code most often goes quietly wrong:
#
# 1. `kl_penalty_rewards`: the per-token reward, a KL penalty on every completion token and the
#    reward model's score on the last one;
# 2. `score_rollout`: stage 3 of a PPO step, from a sampled batch to log-probs, rewards,
#    advantages and returns;
# 3. `ppo_losses`: the clipped policy loss and the clipped value loss of one PPO update.
#
# A **rollout** (`course_lib.rlhf.Rollout`) holds a batch of B prompts and completions as token
# ids: `rollout.ids` (B, P + T) is each prompt, **left-padded** to P tokens, followed by its
# completion, **right-padded** to T tokens; `rollout.attention_mask` (B, P + T) is 1 on real
# tokens; `rollout.completion_mask` (B, T) is 1 on the completion's real tokens (its `<eos>`
# included); `rollout.prompt_length` is P; `rollout.scores` (B,) are the reward model's scores.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# Use torch only, with no Python loop over the batch or the tokens.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn.functional as F

from course_lib.checks.ch12 import check_kl_penalty_rewards, check_ppo_losses, check_score_rollout, tiny_models, tiny_rollout
from course_lib.gpt import entropy_from_logits, token_logprobs
from course_lib.losses import masked_mean
from course_lib.returns import gae

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "kl_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The per-token reward (3 points)
#
# Completion token $t$ of row $b$ earns
#
# $$r_{b,t} = -\beta\,\big(\log\pi(a_t \mid s_t) - \log\pi_{\text{ref}}(a_t \mid s_t)\big)\,m_{b,t}
#   \;+\; \text{score}_b \cdot [\,t \text{ is the last real token of row } b\,],$$
#
# with $m$ the completion mask. Padding tokens earn nothing: neither KL nor score. The last real
# token is the `<eos>` of a completion that ended, or column T - 1 of one that hit the length
# limit. Return shape (B, T).
#
# Hint: the last real token of a right-padded row is where `mask[:, t] == 1` and
# `mask[:, t + 1] == 0` (treat the column after the last as 0); `F.pad(x, (0, 1))` appends a
# column of zeros.

# %% nbgrader={"grade": false, "grade_id": "kl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kl_penalty_rewards(logp, ref_logp, scores, completion_mask, beta):
    """Per-token rewards (B, T): -beta * (logp - ref_logp) on real tokens, plus scores[b] on row b's last real token.

    logp, ref_logp: (B, T) log-probs of the sampled tokens under the policy and the reference;
    scores: (B,); completion_mask: (B, T) of 0/1; beta: float >= 0.
    """
    ### BEGIN SOLUTION
    m = completion_mask.to(logp.dtype)
    last = m * (1.0 - F.pad(m[:, 1:], (0, 1)))  # (B, T): 1 where this token is real and the next one is not
    return -beta * (logp - ref_logp) * m + scores[:, None] * last
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "kl_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_kl_penalty_rewards(kl_penalty_rewards)
### BEGIN HIDDEN TESTS
check_kl_penalty_rewards(kl_penalty_rewards, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "score_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. From a rollout to advantages (4 points)
#
# Everything in this stage is computed **once per rollout, without gradients**, from the models
# as they were when the completions were sampled:
#
# * `old_logp` (B, T): $\log\pi_\theta(a_t \mid s_t)$ of each completion token under `policy`.
#   `policy(ids, attention_mask=...)` returns logits (B, P + T, V), and the logits at position
#   $j$ score the token at $j + 1$: completion token $t$ sits at position $P + t$, so it is scored
#   by the logits at $P - 1 + t$. Slice `[:, P - 1 : -1]` and use `token_logprobs(logits, targets)`;
# * `ref_logp` (B, T): the same under the frozen `reference`, **not** under the policy;
# * `values` (B, T): $V(s_t)$, the critic's value of the state *before* token $t$, again at
#   position $P - 1 + t$: `critic.values(ids, attention_mask=...)` returns (B, P + T);
# * `rewards` (B, T): your `kl_penalty_rewards`, with `rollout.scores` and `beta`;
# * `advantages` (B, T): GAE over the completion tokens only. `gae(rewards, values_next, gamma,
#   lam, dones)` wants values of shape (B, T + 1): append the value 0 of the state after the
#   last column. Mark each row's last real token as done, so nothing after it bootstraps, and
#   set the values at padding to 0;
# * `returns` (B, T) = advantages + values: the critic's targets.
#
# Return `(old_logp, rewards, advantages, returns)`, each 0 on padding (multiply by the mask).

# %% nbgrader={"grade": false, "grade_id": "score", "locked": false, "schema_version": 3, "solution": true, "task": false}
def score_rollout(policy, reference, critic, rollout, beta, gamma, lam):
    """(old_logp, rewards, advantages, returns) of a rollout, each (B, T), 0 on padding, without gradients."""
    ### BEGIN SOLUTION
    P, m = rollout.prompt_length, rollout.completion_mask
    ids, att = rollout.ids, rollout.attention_mask
    m_float = m.float()
    with torch.no_grad():
        targets = ids[:, P:]  # (B, T): the completion tokens
        old_logp = token_logprobs(policy(ids, attention_mask=att)[:, P - 1 : -1], targets) * m_float
        ref_logp = token_logprobs(reference(ids, attention_mask=att)[:, P - 1 : -1], targets) * m_float
        values = critic.values(ids, attention_mask=att)[:, P - 1 : -1] * m_float  # (B, T): V(s_t)
        rewards = kl_penalty_rewards(old_logp, ref_logp, rollout.scores, m, beta)
        last = m.bool() & ~F.pad(m[:, 1:].bool(), (0, 1))  # (B, T): the episode ends here
        advantages = gae(rewards, F.pad(values, (0, 1)), gamma, lam, dones=last) * m_float
    return old_logp, rewards, advantages, (advantages + values) * m_float
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "score_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_score_rollout(score_rollout)
### BEGIN HIDDEN TESTS
check_score_rollout(score_rollout, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "losses_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The losses of one PPO update (4 points)
#
# After `score_rollout`, the rollout also holds `rollout.old_logp`, `rollout.advantages`,
# `rollout.old_values` (the critic's $V$ at sampling time) and `rollout.returns`, all (B, T). Now
# the models have moved a little since the rollout, and you compute, with gradients:
#
# * the new $\log\pi_\theta(a_t \mid s_t)$ and the entropy $H(\pi_\theta(\cdot \mid s_t))$ from
#   the policy's logits at positions $P - 1 + t$ (`entropy_from_logits`);
# * the **policy loss**, with $\rho_t = \exp(\log\pi_\theta - \log\pi_{\text{old}})$:
#   $$L^{\pi} = -\operatorname{mean}_t \min\big(\rho_t A_t,\ \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t\big)
#     - c_H \operatorname{mean}_t H_t;$$
# * the **value loss**, with the critic's new values $V_t$ and
#   $V^{\text{clip}}_t = V^{\text{old}}_t + \operatorname{clip}(V_t - V^{\text{old}}_t, -c_V, c_V)$:
#   $$L^{V} = \tfrac12 \operatorname{mean}_t \max\big((V_t - R_t)^2,\ (V^{\text{clip}}_t - R_t)^2\big).$$
#
# Every mean is over the **real completion tokens** only: `masked_mean(x, completion_mask)`.
# Not over prompt tokens, not over padding (the rollout's padding holds junk on purpose). Return
# `(policy_loss, value_loss)`, two scalars that carry gradients.

# %% nbgrader={"grade": false, "grade_id": "losses", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    """(policy_loss, value_loss) of PPO on the rollout: scalars, averaged over the real completion tokens."""
    ### BEGIN SOLUTION
    P, m = rollout.prompt_length, rollout.completion_mask
    ids, att = rollout.ids, rollout.attention_mask
    logits = policy(ids, attention_mask=att)[:, P - 1 : -1]  # (B, T, V): pi(. | s_t)
    logp = token_logprobs(logits, ids[:, P:])  # (B, T)
    ratio = torch.exp(logp - rollout.old_logp)
    advantages = rollout.advantages
    surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -masked_mean(surrogate, m) - entropy_coef * masked_mean(entropy_from_logits(logits), m)

    values = critic.values(ids, attention_mask=att)[:, P - 1 : -1]  # (B, T): V(s_t)
    clipped = rollout.old_values + torch.clamp(values - rollout.old_values, -value_clip, value_clip)
    per_token = torch.maximum((values - rollout.returns) ** 2, (clipped - rollout.returns) ** 2)
    value_loss = 0.5 * masked_mean(per_token, m)
    return policy_loss, value_loss
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "losses_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_ppo_losses(ppo_losses)
### BEGIN HIDDEN TESTS
check_ppo_losses(ppo_losses, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: one PPO update
#
# Your two functions are stages 3, 4 and 5 of a PPO step. This cell takes a small rollout,
# scores it with **your** `score_rollout`, then runs a few gradient steps of **your**
# `ppo_losses` on it, each model with its own optimiser. On the first step the policy has not
# moved, so every ratio is 1 and nothing is clipped; as the policy moves, the probability of the
# tokens with positive advantage rises and the clipped tokens stop pulling. (Not graded.)

# %%
policy, reference, critic = tiny_models(seed=4)
rollout = tiny_rollout(seed=4)
rollout.old_logp, rollout.rewards, advantages, rollout.returns = score_rollout(policy, reference, critic, rollout,
                                                                               beta=0.1, gamma=1.0, lam=0.95)
m = rollout.completion_mask
rollout.advantages = advantages
rollout.old_values = rollout.returns - advantages  # the critic's values at sampling time (0 on padding)
policy_opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
critic_opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
for step in range(6):
    policy_loss, value_loss = ppo_losses(policy, critic, rollout, clip_eps=0.2, value_clip=0.2, entropy_coef=0.0)
    policy_opt.zero_grad()
    policy_loss.backward()
    policy_opt.step()
    critic_opt.zero_grad()
    value_loss.backward()
    critic_opt.step()
    with torch.no_grad():
        logp = token_logprobs(policy(rollout.ids, attention_mask=rollout.attention_mask)[:, rollout.prompt_length - 1 : -1],
                              rollout.ids[:, rollout.prompt_length:])
        moved = masked_mean((((logp - rollout.old_logp).exp() - 1).abs() > 0.2).float(), m)
    print(f"step {step}: policy loss {policy_loss.item():+.4f}, value loss {value_loss.item():.4f}, "
          f"share of tokens outside the clip range {float(moved):.2f}")
gain = masked_mean((logp - rollout.old_logp) * torch.sign(advantages), m)
print(f"mean of (log pi - log pi_old) * sign(A): {float(gain):+.3f} (> 0: likelier where A > 0, less likely where A < 0)")
