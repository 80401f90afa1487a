# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 10 — a language model as a policy
#
# Chapter 10 treated a GPT as a policy: the state is the prefix written so far, the action is
# the next token, and $\pi_\theta(a \mid s)$ is the softmax of the model's logits. You will write
# the two functions every RL chapter after this one stands on:
#
# 1. `sequence_logprobs(model, input_ids, attention_mask)`: $\log \pi_\theta(x_t \mid x_{<t})$ for
#    every token of a padded batch, the numbers that PPO's ratio and the KL penalty are made of;
# 2. `sample_next_token(logits, temperature, top_k, generator)`: one step of the policy acting.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Use torch only, no Python loop
# over the batch or the tokens.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn.functional as F

from course_lib.checks.ch10 import check_sample_next_token, check_sequence_logprobs, tiny_policy

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "logprobs_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Per-token log-probabilities (3 points)
#
# `model(input_ids, attention_mask=attention_mask)` returns logits of shape (B, T, V), and
# `logits[:, t]` scores the token that comes **after** position $t$. So token $t$ is scored by
# the logits at $t - 1$:
#
# $$\text{out}[b, t] = \log \operatorname{softmax}(\text{logits}[b, t-1])[x_{b,t}].$$
#
# Return a tensor of shape (B, T) with
#
# * `out[:, 0] = 0`: the first token has nothing before it to predict it;
# * `out[b, t] = 0` where `attention_mask[b, t] == 0` (padding), and where token $t$ is real
#   but the token before it is padding (the first real token of a left-padded prompt).
#
# Pass `attention_mask` to the model: it tells the model which keys to ignore and where each
# row's positions start. Hints: `torch.log_softmax` and `Tensor.gather` pick one entry per
# position; `F.pad(x, (1, 0))` adds a column of zeros on the left. Keep the computation
# differentiable (no `torch.no_grad()` inside): the RL chapters backpropagate through it.

# %% nbgrader={"grade": false, "grade_id": "logprobs", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sequence_logprobs(model, input_ids, attention_mask):
    """log pi(x_t | x_<t) for each token, shape (B, T); 0 where nothing is scored.

    input_ids: (B, T) token ids; attention_mask: (B, T), 1 for real tokens, 0 for padding.
    """
    ### BEGIN SOLUTION
    logits = model(input_ids, attention_mask=attention_mask)  # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T - 1, V): predictions for tokens 1..T-1
    picked = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T - 1)
    scored = attention_mask[:, 1:] * attention_mask[:, :-1]  # token t and the token before it are real
    return F.pad(picked * scored, (1, 0))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "logprobs_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_sequence_logprobs(sequence_logprobs)
### BEGIN HIDDEN TESTS
check_sequence_logprobs(sequence_logprobs, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "sampling_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. One sampling step with temperature and top-k (3 points)
#
# Given the logits of the last position, `logits` of shape (B, V), draw one token per row from
#
# $$\pi_T(a \mid s) \propto \exp(z_a / T) \quad \text{over the } k \text{ largest logits only.}$$
#
# * `temperature == 0` means greedy: return the argmax (no division by zero!);
# * `top_k = k`: set every logit below the $k$-th largest to `-inf` before the softmax, so
#   those tokens get probability exactly 0; `top_k = None` keeps all $V$;
# * draw with `torch.multinomial(probs, 1, generator=generator)`, so a seeded generator gives
#   reproducible samples; return shape (B,).
#
# Hint: `torch.topk(z, k).values[:, -1:]` is the $k$-th largest value of each row, shape (B, 1).

# %% nbgrader={"grade": false, "grade_id": "sampling", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sample_next_token(logits, temperature=1.0, top_k=None, generator=None):
    """One token id per row of logits (B, V), drawn from softmax(logits / temperature) over the top_k logits."""
    ### BEGIN SOLUTION
    if temperature == 0:
        return logits.argmax(dim=-1)
    z = logits / temperature
    if top_k is not None:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]  # (B, 1)
        z = z.masked_fill(z < kth, float("-inf"))
    probs = torch.softmax(z, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sampling_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_sample_next_token(sample_next_token)
### BEGIN HIDDEN TESTS
check_sample_next_token(sample_next_token, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your two functions make a policy act and then score what it did. This cell lets a small
# random GPT write five tokens after each of two prompts with **your** sampler, remembering the
# probability of each token it drew, then asks **your** `sequence_logprobs` for the log-probability
# of the same tokens. By the chain rule,
# $\log \pi(a_0 \dots a_4 \mid s_0) = \sum_t \log \pi(a_t \mid s_t)$, the two must agree.
# (It is not graded.)

# %%
policy = tiny_policy(seed=3)
prompts = torch.tensor([[1, 5, 6, 7], [1, 9, 4, 4]])
sequence, step_logps = prompts, []
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for _ in range(5):
        logits = policy(sequence)[:, -1]  # (B, V): pi(. | s_t)
        action = sample_next_token(logits, temperature=1.0, generator=gen)  # (B,)
        step_logps.append(torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1))
        sequence = torch.cat([sequence, action[:, None]], dim=1)  # s_{t+1} = s_t followed by a_t
    yours = sequence_logprobs(policy, sequence, torch.ones_like(sequence))[:, prompts.shape[1]:].sum(dim=1)
print("sum of the step log-probs :", torch.stack(step_logps, 1).sum(1).numpy().round(4))
print("your sequence_logprobs sum:", yours.numpy().round(4))
print("the chain rule holds:", torch.allclose(yours, torch.stack(step_logps, 1).sum(1), atol=1e-4))
