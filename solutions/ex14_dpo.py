# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 14 — the DPO loss
#
# Chapter 14 derived Direct Preference Optimization (Rafailov et al. 2023). The optimum of the
# KL-regularised RLHF objective is $\pi^*(y \mid x) \propto \pi_\text{ref}(y \mid x)\, e^{r(x, y)/\beta}$, so
# every policy defines an *implicit reward* $\hat r(x, y) = \beta \log \frac{\pi_\theta(y \mid x)}{\pi_\text{ref}(y \mid x)}$
# (up to a term that depends on the prompt only). Putting it into the Bradley-Terry loss of
# chapter 11 gives a loss on preference pairs $(x, y_w, y_l)$, chosen $y_w$ and rejected $y_l$:
#
# $$\mathcal{L}_\text{DPO} = -\frac{1}{B} \sum_{b=1}^{B} \log \sigma\Big(\beta \big[\big(\log \pi_\theta(y_w \mid x) - \log \pi_\text{ref}(y_w \mid x)\big) - \big(\log \pi_\theta(y_l \mid x) - \log \pi_\text{ref}(y_l \mid x)\big)\big]\Big).$$
#
# You will write the two functions a DPO trainer needs:
#
# 1. `completion_logprobs(token_logps, completion_mask)`: $\log \pi(y \mid x)$ of a whole
#    completion from the per-token log-probs of a padded batch;
# 2. `dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)`.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed and, when it recognises a common mistake, names it. Use torch
# only, no Python loop over the batch.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn.functional as F

from course_lib.checks.ch14 import check_completion_logprobs, check_dpo_loss

torch.manual_seed(0)

# %% [markdown] nbgrader={"grade": false, "grade_id": "completion_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The log-probability of a completion (2 points)
#
# A batch row holds `<bos>`, the prompt, the completion, its `<eos>`, then padding. From chapter
# 10, `sequence_logprobs` gives `token_logps[b, t]` $= \log \pi(x_t \mid x_{<t})$ for every position.
# The completion's probability is the product of its tokens' probabilities (the chain rule), so
#
# $$\log \pi(y \mid x) = \sum_t m_{b,t} \, \log \pi(x_{b,t} \mid x_{b,<t}),$$
#
# where `completion_mask[b, t]` $= m_{b,t}$ is 1 on the completion's tokens (its `<eos>` included)
# and 0 on the prompt and the padding. The prompt is not an action of the policy, and padding is
# not text at all: neither may count. Do not assume the padded positions hold 0 (in the checks
# they do not). Return shape (B,); the mask may be 0/1 integers or booleans.

# %% nbgrader={"grade": false, "grade_id": "completion", "locked": false, "schema_version": 3, "solution": true, "task": false}
def completion_logprobs(token_logps, completion_mask):
    """log pi(y | x) per row: token_logps (B, T) summed where completion_mask (B, T) is 1; shape (B,)."""
    ### BEGIN SOLUTION
    return (token_logps * completion_mask.to(token_logps.dtype)).sum(dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "completion_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_completion_logprobs(completion_logprobs)
### BEGIN HIDDEN TESTS
check_completion_logprobs(completion_logprobs, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "dpo_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The DPO loss (4 points)
#
# The four inputs have shape (B,), one summed log-prob per pair (your function above made
# them); `beta` > 0 is a float. Return a scalar (a 0-d tensor) that can be back-propagated into
# the policy's log-probs. Four things to get right:
#
# * $\beta$ multiplies the **whole** difference of the two log-ratios, not one side of it;
# * the **chosen** completion's log-ratio comes first: the loss must fall when $y_w$ gains
#   probability relative to $y_l$;
# * the **reference** log-probs are subtracted: without them the loss rewards raising $\log \pi(y_w)$
#   whatever the reference thought of it, and nothing ties the policy to $\pi_\text{ref}$;
# * $\log \sigma(h)$ must stay finite for very negative $h$: `torch.log(torch.sigmoid(h))` gives
#   `log(0) = -inf` once $\sigma(h)$ underflows (near $h = -104$ in float32, which a policy that drifted
#   far can reach). `F.logsigmoid` computes it stably.

# %% nbgrader={"grade": false, "grade_id": "dpo", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """-mean log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))]); inputs (B,)."""
    ### BEGIN SOLUTION
    chosen_logratio = policy_chosen_logps - ref_chosen_logps  # (B,): beta times it is y_w's implicit reward
    rejected_logratio = policy_rejected_logps - ref_rejected_logps  # (B,)
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dpo_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_dpo_loss(dpo_loss)
### BEGIN HIDDEN TESTS
check_dpo_loss(dpo_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# Your two functions are a DPO trainer. This cell takes a small random GPT as both the policy
# and the frozen reference, and one preference: after "the soup was", " good." is preferred to
# " bad.". Thirty Adam steps on **your** loss, with log-probs summed by **your**
# `completion_logprobs`, must raise the implicit reward margin
# $\beta\,[\log\frac{\pi(y_w)}{\pi_\text{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_\text{ref}(y_l)}]$ from 0, and take the loss down from
# $\log 2$. (It is not graded.)

# %%
import copy

from course_lib.dpo import pair_batch
from course_lib.gpt import GPT, GPTConfig, sequence_logprobs
from course_lib.tokenizer import CharTokenizer

torch.manual_seed(0)
policy = GPT(GPTConfig(vocab_size=CharTokenizer().vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=32))
reference = copy.deepcopy(policy).eval()
chosen = pair_batch(["the soup was"], [" good."])  # (ids, attention_mask, completion_mask), each (1, T)
rejected = pair_batch(["the soup was"], [" bad."])
with torch.no_grad():
    ref_chosen = completion_logprobs(sequence_logprobs(reference, chosen[0], chosen[1]), chosen[2])
    ref_rejected = completion_logprobs(sequence_logprobs(reference, rejected[0], rejected[1]), rejected[2])
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
beta = 0.5
for step in range(30):
    pi_chosen = completion_logprobs(sequence_logprobs(policy, chosen[0], chosen[1]), chosen[2])
    pi_rejected = completion_logprobs(sequence_logprobs(policy, rejected[0], rejected[1]), rejected[2])
    loss = dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == 29:
        margin = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)).item()
        print(f"step {step:2d}: loss {loss.item():.4f}   implicit reward margin {margin:+.3f}")
print("log 2 =", round(float(torch.log(torch.tensor(2.0))), 4))
