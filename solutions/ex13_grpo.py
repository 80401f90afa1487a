# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 13 — GRPO's advantages and its KL term
#
# GRPO drops PPO's critic. For each prompt it samples a group of $G$ completions, scores them,
# and judges each completion against its own group. You will write the three pieces that make
# GRPO differ from the PPO of chapter 12:
#
# 1. `group_advantages(rewards, group_size, eps)`: the reward of each completion standardised
#    within its group;
# 2. `kl_k3(logp, ref_logp)`: the per-token estimate of the KL to the reference that GRPO puts
#    in its loss;
# 3. `sequence_mean(per_token, mask)`: the loss averaged over each completion's tokens, then
#    over completions.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, what it expected, and often a hint about the likely
# mistake. Use torch only, no Python loop over groups, tokens or completions.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_lib.checks.ch13 import check_group_advantages, check_kl_k3, check_sequence_mean

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "advantages_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Group-standardised advantages (3 points)
#
# `rewards` has shape (B,) with $B = n_\text{prompts} \cdot G$, and the $G$ completions of one
# prompt sit next to each other: entries $gG, \dots, gG + G - 1$ form group $g$. Return, for
# every completion $i$ of group $g$,
#
# $$A_i = \frac{R_i - \operatorname{mean}_g(R)}{\operatorname{std}_g(R) + \varepsilon},$$
#
# where the mean and the standard deviation are taken **over the group only**, and the std is
# the population one (divide by $G$: `torch.std(..., correction=0)`). A group whose rewards are
# all equal has std 0; the $\varepsilon$ then keeps its advantages at exactly 0 (no signal)
# instead of $0/0$. Return shape (B,).
#
# Hint: `rewards.reshape(-1, group_size)` puts one group per row.

# %% nbgrader={"grade": false, "grade_id": "advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def group_advantages(rewards, group_size, eps=1e-4):
    """(R - group mean) / (group std + eps) for rewards (B,) with contiguous groups of group_size; shape (B,)."""
    ### BEGIN SOLUTION
    grouped = rewards.reshape(-1, group_size)  # (n_prompts, G)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, correction=0)
    return ((grouped - mean) / (std + eps)).reshape(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "advantages_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_group_advantages(group_advantages)
### BEGIN HIDDEN TESTS
check_group_advantages(group_advantages, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "k3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The k3 estimator of the KL to the reference (2 points)
#
# The tokens $x$ were sampled from the policy $\pi$. For each of them you know $\log \pi(x)$
# (`logp`) and $\log \pi_\text{ref}(x)$ (`ref_logp`). With the ratio
# $r = \pi_\text{ref}(x) / \pi(x)$, the k3 estimator is
#
# $$k_3 = r - \log r - 1.$$
#
# Its mean over $x \sim \pi$ is exactly $\operatorname{KL}(\pi \,\|\, \pi_\text{ref})$ (because
# $\mathbb{E}_\pi[r] = 1$), and it is never negative. Mind which way round the ratio goes.
# Return a tensor of the shape of `logp` (one number per token).

# %% nbgrader={"grade": false, "grade_id": "k3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kl_k3(logp, ref_logp):
    """Per-token k3 = pi_ref/pi - log(pi_ref/pi) - 1 from log-probs of the sampled tokens; shape of logp."""
    ### BEGIN SOLUTION
    log_r = ref_logp - logp  # log(pi_ref / pi)
    return log_r.exp() - log_r - 1.0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "k3_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_kl_k3(kl_k3)
### BEGIN HIDDEN TESTS
check_kl_k3(kl_k3, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "seqmean_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The per-sequence mean of a per-token loss (2 points)
#
# GRPO's loss is a number per completion token, `per_token` of shape (B, T), and completions
# end at different lengths: `mask` (B, T) is 1 on a completion's tokens and 0 on the padding
# after it. **The padding entries may hold anything** (they are not zeros). DeepSeekMath
# averages over each completion's own tokens, then over completions:
#
# $$\mathcal{L} = \frac{1}{B} \sum_{i=1}^{B} \frac{1}{|o_i|} \sum_{t \in o_i} \ell_{i,t},
# \qquad |o_i| = \textstyle\sum_t \text{mask}_{i,t}.$$
#
# Every completion in the checks has at least one token. Return a 0-d tensor that keeps its
# gradient (it is the loss you will call `.backward()` on).

# %% nbgrader={"grade": false, "grade_id": "seqmean", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sequence_mean(per_token, mask):
    """Mean over each row's masked tokens, then over rows: a scalar tensor, differentiable."""
    ### BEGIN SOLUTION
    m = mask.to(per_token.dtype)
    per_sequence = (per_token * m).sum(dim=-1) / m.sum(dim=-1)  # (B,)
    return per_sequence.mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "seqmean_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_sequence_mean(sequence_mean)
### BEGIN HIDDEN TESTS
check_sequence_mean(sequence_mean, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: how often does a group carry no signal?
#
# With a 0/1 verifier and a policy that solves a prompt with probability $p$, a group of $G$
# completions is all right with probability $p^G$ and all wrong with probability $(1-p)^G$. In
# both cases **your** `group_advantages` gives every completion 0, and the prompt teaches
# nothing. This cell simulates 20000 groups for a few $(p, G)$ and compares the share of groups
# whose advantages are all zero with $p^G + (1-p)^G$. (It is not graded.)

# %%
gen = torch.Generator().manual_seed(0)
for p in (0.1, 0.5, 0.9):
    for G in (2, 4, 16):
        rewards = (torch.rand(20000 * G, generator=gen) < p).double()
        silent = (group_advantages(rewards, G).reshape(-1, G).abs() < 1e-9).all(dim=1).double().mean().item()
        print(f"p = {p:.1f}  G = {G:2d}  all-zero groups: simulated {silent:.3f}, p^G + (1-p)^G = {p**G + (1 - p)**G:.3f}")
