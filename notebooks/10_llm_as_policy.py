# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 10 — The language model as a policy
#
# Chapters 1-9 trained policies that pick one of a handful of actions: four moves on a grid, two
# pushes of a cart. From here on the policy is a language model. This chapter shows that nothing
# about RL has to change: writing text *is* acting in an MDP, and a GPT *is* a policy
# $\pi_\theta(a \mid s)$. We build the pieces the last four chapters run on:
#
# 1. the MDP of text generation: **prefixes are states, tokens are actions**, and the reward
#    arrives once, at the end of the completion;
# 2. a small **GPT-2** (`course_lib.gpt`), written to be read, and pretrained here in about ten
#    minutes on a CPU into a *base model* that is competent but clearly imperfect;
# 3. the two things RL needs from a policy: **sampling** (batched, with a KV cache, temperature
#    and top-k) and the **log-probability** of what was sampled.
#
# Cells that do real work honour `COURSE_FAST=1` (the tests set it) with smaller budgets; what
# you run by default is the full setting.

# %%
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display

from course_lib.config import FAST
from course_lib.gpt import GPT, entropy_from_logits, generate, reward_at_end, sequence_logprobs
from course_lib.pretrain import CACHE_ENV, base_config, cache_dir, load_or_pretrain, make_tasks, model_config
from course_lib.tokenizer import CharTokenizer
from course_lib.widgets import temperature_slider

SEED = 0
torch.manual_seed(SEED)
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. Writing text is acting in an MDP
#
# A language model writes one **token** at a time. Here a token is a single character; real
# models use sub-words, but nothing below depends on that. Given a prompt $p$, the model writes a
# completion $a_0 a_1 \dots a_{T-1}$:
#
# * the **state** $s_t$ is everything written so far: $s_0 = p$ and $s_{t+1} = s_t\,a_t$, the
#   prefix with the new token appended;
# * the **action** $a_t$ is the next token, one of the $V$ entries of the vocabulary;
# * the **transition** is deterministic: appending $a_t$ to $s_t$ can only give $s_t a_t$;
# * the episode **ends** when the model writes the end-of-sequence token `<eos>` (or hits a
#   length limit);
# * the **reward** comes once, when the episode ends: $r(p, a_{0:T-1})$, from a program that
#   checks the answer or from a model of human preferences. Every earlier step earns 0.
#
# The **policy** is the language model itself: for a state $s_t$ it outputs $V$ logits $z$, and
#
# $$\pi_\theta(a \mid s_t) = \operatorname{softmax}(z)_a = \frac{e^{z_a}}{\sum_{b=1}^V e^{z_b}}.$$
#
# That is exactly the softmax policy of chapter 6, over $V$ actions instead of two. The state
# space is huge (every possible prefix) but we never enumerate it: the network reads the prefix.
#
# Our vocabulary is 50 tokens: three special ones and the characters the tasks need.

# %%
tokenizer = CharTokenizer()
print("V =", tokenizer.vocab_size, "tokens:", " ".join(tokenizer.token_str(i) for i in range(tokenizer.vocab_size)))
prompt = "23+45="
ids = tokenizer.encode(prompt)
print(f"{prompt!r} -> {ids} -> {tokenizer.decode(ids)!r}")
print("states of the episode that answers '68':")
for t, action in enumerate("68"):
    state = prompt + "68"[:t]
    print(f"  s_{t} = <bos>{state:<8} a_{t} = {action!r}")
print(f"  s_2 = <bos>{prompt + '68':<8} a_2 = '<eos>'  (the episode ends: reward 1 if the sum is right)")

# %% [markdown]
# `<bos>` (begin of sequence) starts every text, so even an empty prompt is a state the model can
# act in; `<eos>` is an action like any other, the one that ends the episode; `<pad>` fills the
# gaps when sequences of different lengths share a batch, and is never an action.
#
# ## 2. The policy network: GPT-2
#
# `course_lib.gpt.GPT` is the architecture of GPT-2 (Radford et al., 2019). Reading it top to
# bottom, for a batch of token ids of shape (B, T):
#
# 1. **embeddings**: each token id picks a row of `wte` (V, C), each position a row of `wpe`;
#    their sum is the *residual stream*, shape (B, T, C);
# 2. **blocks**, `n_layer` of them, each adding two things to the stream:
#    `x = x + attn(ln_1(x))`, then `x = x + mlp(ln_2(x))`. The attention lets each position
#    read earlier positions; the MLP transforms each position on its own;
# 3. a final LayerNorm `ln_f` and the output layer `lm_head`, which shares its weights with
#    `wte`, gives logits of shape (B, T, V).
#
# The attention is **causal**: position $t$ may look at positions $\le t$ only. So the logits at
# position $t$ depend on $x_0 \dots x_t$ alone, and are $\pi_\theta(\cdot \mid s)$ for the state
# "prefix up to token $t$". One forward pass over a sequence of length T evaluates the policy in
# all T of its states at once. That is why training a language model is cheap, and why the
# log-probability of a whole completion (section 7) costs one pass.
#
# The module names are those of OpenAI's GPT-2 checkpoints, so `GPT.from_pretrained(folder)`
# loads the real 124M-parameter GPT-2 from a local folder (Hugging Face layout); a test checks it
# reproduces Hugging Face's logits. Our model is far smaller:

# %%
config = base_config()
tasks = make_tasks(config)
arithmetic, reviews = tasks
model_shape = GPT(model_config(config, tokenizer))  # random weights, the shape of the base model
print(f"n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}, block_size={config.block_size}: "
      f"{model_shape.num_parameters():,} weights (GPT-2 small: 124,439,808)")
print([name for name, _ in model_shape.named_parameters()][:8], "...")

# Causality, checked: changing token 5 must leave the logits at positions 0-4 unchanged.
x = torch.tensor([tokenizer.encode("123+456=579")])
x_changed = x.clone()
x_changed[0, 5] = tokenizer.encode("9", bos=False)[0]
with torch.no_grad():
    before, after = model_shape(x), model_shape(x_changed)
assert torch.allclose(before[0, :5], after[0, :5]) and not torch.allclose(before[0, 5:], after[0, 5:])
print("logits before position 5 do not change when token 5 does: the attention is causal")

# %% [markdown]
# ## 3. Two tasks with a reward
#
# RL needs a reward, and the course needs tasks where a small model on a CPU can visibly improve.
# `course_lib.tasks` has two, and each produces a pretraining corpus, prompts and a reward.
#
# **Sums, with a verifier.** Prompts like `47+385=`, with operands of 1 to 3 digits (1 to 2 in fast
# mode, where the model is smaller and trains for seconds). A program
# checks the answer: reward 1 if the completion is exactly the sum, 0 otherwise. A fixed hash of
# the pair $(a, b)$ keeps 10% of all pairs out of the corpus: a **held-out** set, so accuracy on it
# measures skill, not memory.
#
# **Reviews, with a labeler.** Prompts like `the soup was`; completions like ` great and warm.`.
# A labeler function scores a well-formed review by its number of positive adjectives minus its
# number of negative ones, and anything malformed below all of them. Chapter 11 will not let the
# policy see this score: it learns a *reward model* from the labeler's pairwise preferences, the
# way RLHF learns from people.

# %%
print("corpus:", arithmetic.corpus(4, rng) + reviews.corpus(3, rng))
test_prompts = arithmetic.prompts(3, rng, "test")
print("held-out prompts:", test_prompts, "answers:", [arithmetic.answer(p) for p in test_prompts])
print("verifier:", arithmetic.reward(["47+385=", "47+385="], ["432", "431"]))
examples = [" great and warm.", " cold and rude.", " old.", " great and great.", " tasty"]
print("labeler:", {c: reviews.score(c) for c in examples})
print("P(labeler prefers ' great.' to ' cold.') =", reviews.preference_probability([" great."], [" cold."])[0].round(3))

# %% [markdown]
# ## 4. Pretraining the base policy
#
# Before any RL, a language model is *pretrained*: trained to predict the next token of a corpus,
# by minimising the cross-entropy
#
# $$\mathcal{L}(\theta) = -\frac{1}{N}\sum_{\text{documents}} \sum_{t \ge 1} \log \pi_\theta(x_t \mid x_{<t}),$$
#
# the average over every real token of every document (padding excluded). That is behaviour
# cloning of the corpus: the model learns to act like the texts it reads. Ours reads sums and
# reviews. It learns the formats fast and the arithmetic slowly.
#
# Trained long enough on correct sums, it would get nearly every sum right and leave RL nothing
# to do. The full setting makes it imperfect the way real pretraining data makes models
# imperfect: the corpus is **careless**. In a share `carry_slip` (60%) of its sums the writer
# forgot every carry, `57+68=15`. The model learns both ways of adding and, on a sum that needs
# a carry, writes the careless answer more often than the right one: it *can* add, it does not
# reliably *choose* to. A verifier's reward is made for exactly this (chapter 13). Sums without
# a carry come out the same either way, so the model gets those right.
#
# The fast setting's model is too small and trained too briefly to learn carries at all. For
# it, every `eval_every` steps we measure the greedy accuracy on a fixed set of validation sums
# and stop at the first check where it reaches `target_accuracy`: the base model is then
# imperfect whatever machine trained it (the step at which accuracy takes off varies with the
# seed and even with the CPU's rounding; the stopping rule does not). The validation sums come
# from the training pairs; the held-out pairs below decide nothing.
#
# `load_or_pretrain(config)` trains the model and caches it on disk, keyed by the config and the
# seed: the next call (and the later chapters) load it in a second. The cache lives in
# `~/.cache/rl-course` unless the environment variable `RL_COURSE_CACHE` names another folder.

# %%
policy, record = load_or_pretrain(config)
source = "loaded from the cache" if record["cached"] else "trained just now"
print(f"base model {source} ({cache_dir()}; set {CACHE_ENV} to move it)")
loss = np.array(record["loss"])
check_steps, check_accuracy = np.array(record["validation"]).T
print(f"pretraining took {record['seconds']:.0f} s ({record['cpu_seconds']:.0f} s of CPU time, {record['torch_threads']} threads): "
      f"{len(loss)} of at most {config.steps} steps of {config.batch_size} documents; "
      f"validation accuracy {check_accuracy[-1]:.0%} at the last check"
      + (f" (target {config.target_accuracy:.0%})" if config.target_accuracy is not None else "")
      + f"; {config.carry_slip:.0%} of the corpus sums forget their carries")

smooth = np.convolve(loss, np.ones(25) / 25, mode="valid")
fig = go.Figure()
fig.add_trace(go.Scatter(y=loss, mode="lines", name="loss per step", line=dict(width=1), opacity=0.4))
fig.add_trace(go.Scatter(x=np.arange(24, len(loss)), y=smooth, mode="lines", name="loss, moving average (25 steps)"))
fig.add_trace(go.Scatter(x=check_steps, y=check_accuracy, mode="lines+markers", name="validation accuracy", yaxis="y2"))
fig.add_hline(y=np.log(tokenizer.vocab_size), line_dash="dash", annotation_text="ln V: uniform guessing")
fig.update_layout(title="Pretraining: next-token cross-entropy, and greedy accuracy on validation sums",
                  xaxis_title="step", yaxis=dict(title="loss (nats per token)", rangemode="tozero"),
                  yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1]), width=800, height=400)
fig.show()
assert smooth[-1] < 0.5 * np.log(tokenizer.vocab_size)  # far below guessing
assert config.target_accuracy is None or check_accuracy[-1] >= config.target_accuracy or len(loss) == config.steps  # the stopping rule

# %% [markdown]
# ## 5. The policy at work
#
# Give the base model a held-out prompt and look at $\pi_\theta(\cdot \mid s_0)$, the distribution
# over its first action. Then let it act greedily (always the most likely token) and print the
# probability of each token it chose.

# %%
def next_token_distribution(model, text):
    """pi(. | s) for the state <bos> text: a (V,) tensor of probabilities."""
    with torch.no_grad():
        return torch.softmax(model(torch.tensor([tokenizer.encode(text)]))[0, -1], dim=-1)


demo_prompt = arithmetic.prompts(1, np.random.default_rng(7), "test")[0]
probs = next_token_distribution(policy, demo_prompt)
top = torch.topk(probs, 5)
print(f"s_0 = {demo_prompt!r}; the answer is {arithmetic.answer(demo_prompt)}")
print("most likely first actions:", {tokenizer.token_str(int(i)): round(float(p), 3) for p, i in zip(top.values, top.indices)})

state = demo_prompt
for t in range(arithmetic.max_digits + 2):
    probs = next_token_distribution(policy, state)
    action = int(probs.argmax())
    print(f"  s_{t} = {state!r:<14} greedy a_{t} = {tokenizer.token_str(action)!r:<8} pi(a_{t} | s_{t}) = {float(probs[action]):.3f}")
    if action == tokenizer.eos_id:
        break
    state += tokenizer.decode([action])

# %% [markdown]
# ## 6. Answers, right and wrong
#
# `generate(model, prompt_ids, max_new_tokens, temperature, top_k, eos_id)` runs the policy on a
# whole batch of prompts. Prompts of different lengths are **left-padded** so that every prompt
# ends in the last column and the batch can be continued one column at a time; an attention mask
# hides the pads and the positions are counted from each prompt's first real token. Each sequence
# stops at its own `<eos>`: after it, the sequence holds `<pad>` and its **completion mask** is 0.
# With `temperature=0` the policy acts greedily.
#
# Here is the base model on held-out prompts it never saw during pretraining:

# %%
n_eval = 200 if FAST else 500
eval_prompts = arithmetic.prompts(n_eval, np.random.default_rng(1), "test")
completions, completion_mask = generate(policy, [tokenizer.encode(p) for p in eval_prompts], arithmetic.max_digits + 2,
                                        temperature=0.0, eos_id=tokenizer.eos_id)
answers = tokenizer.decode_batch(completions, completion_mask)
rewards = arithmetic.reward(eval_prompts, answers)
print(f"held-out greedy accuracy: {rewards.mean():.1%} of {n_eval} prompts")
for p, a, r in list(zip(eval_prompts, answers, rewards))[:12]:
    print(f"  {p:<10}{a:<6} {'right' if r else 'wrong, the sum is ' + arithmetic.answer(p)}")
assert 0 < rewards.mean() < 0.8  # competent but clearly imperfect: room for RL

digits = np.array([max(len(x) for x in p[:-1].split("+")) for p in eval_prompts])
for d in range(1, arithmetic.max_digits + 1):
    print(f"  longest operand with {d} digit(s): {rewards[digits == d].mean():.0%} right")
careless = [arithmetic.careless_answer(p) for p in eval_prompts]  # what the careless writer would answer
has_carry = np.array([c != arithmetic.answer(p) for c, p in zip(careless, eval_prompts)])
slips = np.array([answer == c for answer, c in zip(answers, careless)]) & has_carry
print(f"  sums without a carry: {rewards[~has_carry].mean():.0%} right; sums with a carry: {rewards[has_carry].mean():.0%} right")
print(f"  wrong answers that are exactly the careless sum: {slips[rewards == 0].mean():.0%}")
assert rewards[~has_carry].mean() > rewards[has_carry].mean()  # carries are where the base model fails

# %% [markdown]
# What decides is the carry. In the full setting nearly every sum without a carry is right and
# most sums with one are wrong, whatever their length, and most wrong answers are *exactly* the
# careless sum: the corpus's habit, not random noise, and a habit the model could drop since it
# knows the other way too. (The fast corpus is clean; the fast model is small and trained briefly,
# so it fails on long sums and carries alike, and its wrong answers are just wrong.) A reward of 1
# for exact answers is all the RL chapters will tell it.
#
# ## 7. The log-probability of a completion
#
# Policy-gradient methods need $\log \pi_\theta(a_{0:T-1} \mid p)$, the log-probability of the
# whole completion. The chain rule of probability splits it into the policy's per-step choices:
#
# $$\pi_\theta(a_0 \dots a_{T-1} \mid p) = \prod_{t=0}^{T-1} \pi_\theta(a_t \mid s_t)
#   \quad\Longrightarrow\quad \log \pi_\theta(a_{0:T-1} \mid p) = \sum_{t=0}^{T-1} \log \pi_\theta(a_t \mid s_t).$$
#
# `sequence_logprobs(model, input_ids, attention_mask)` computes every term of that sum in one
# pass. Concatenate prompt and completion into one sequence $x$; the logits at position $t-1$ score
# token $t$, so entry $t$ of the result is $\log \operatorname{softmax}(z_{t-1})[x_t]$, shape (B, T),
# and 0 where token $t$ is padding or has no real token before it. Two details make it cheap:
#
# * it never builds the (B, T, V) table of log-probabilities: $\log \operatorname{softmax}(z)[x] =
#   z_x - \log\sum_b e^{z_b}$ needs one gathered logit and one `logsumexp` per position (for GPT-2's
#   V = 50257 that table would be the largest tensor in memory);
# * padding of either side is handled by the mask, so a batch of prompts and completions of
#   different lengths is scored in one call.
#
# Check the chain rule: sample completions at temperature 1, record $\pi_\theta(a_t \mid s_t)$ at each
# step while sampling, and compare the sum of their logs with `sequence_logprobs`.

# %%
check_prompts = eval_prompts[:6]
prompt_ids, prompt_mask = tokenizer.encode_batch(check_prompts)
sampled, sampled_mask = generate(policy, prompt_ids, arithmetic.max_digits + 2, temperature=1.0, eos_id=tokenizer.eos_id,
                                 attention_mask=prompt_mask, generator=torch.Generator().manual_seed(SEED))
full_ids = torch.cat([prompt_ids, sampled], dim=1)  # [left pads, prompt, completion, right pads]
full_mask = torch.cat([prompt_mask, sampled_mask], dim=1)
with torch.no_grad():
    token_logps = sequence_logprobs(policy, full_ids, full_mask)  # (B, T)
completion_logps = token_logps[:, prompt_ids.shape[1]:]  # the actions' terms only
total = completion_logps.sum(dim=1)

step_by_step = []  # the same numbers, one state at a time and without padding
for b, p in enumerate(check_prompts):
    state, logp = p, 0.0
    for action in sampled[b][sampled_mask[b].bool()].tolist():
        logp += float(torch.log(next_token_distribution(policy, state)[action]))
        state += tokenizer.decode([action])  # s_{t+1} = s_t a_t (<eos> ends it: nothing to append)
    step_by_step.append(logp)
    print(f"{p:<10} sampled {tokenizer.decode(sampled[b]):<6} log pi = {total[b]:8.4f}  (step by step {logp:8.4f}, "
          f"probability {np.exp(logp):.3f})")
assert np.allclose(total.numpy(), step_by_step, atol=1e-4)
assert torch.all(token_logps[~full_mask.bool()] == 0)

# %% [markdown]
# ## 8. The reward arrives at the end
#
# The verifier scores a completion only once it is finished. As a per-step reward that is a row of
# zeros with the score on the completion's last real token (its `<eos>`); `reward_at_end` builds
# that (B, T) tensor from the completion mask. With $\gamma = 1$, the return from every step
# $G_t = \sum_{k \ge t} r_k$ is the final score: each token of a right answer shares the credit, and
# each token of a wrong one shares the blame. How to tell the good tokens of a wrong answer from
# the bad ones is the job of the critic and of GAE (chapters 7 and 12), or of comparing several
# answers to the same prompt (GRPO, chapter 13).

# %%
right, wrong = np.flatnonzero(rewards == 1)[:2], np.flatnonzero(rewards == 0)[:2]
show = np.concatenate([right, wrong])  # two right and two wrong greedy answers from section 6
per_token = reward_at_end(torch.tensor(rewards, dtype=torch.float32), completion_mask)  # (B, T)
for b in show:
    tokens = [tokenizer.token_str(i) for i in completions[b][completion_mask[b].bool()].tolist()]
    print(f"{eval_prompts[b]:<10} actions {str(tokens):<24} rewards {per_token[b][completion_mask[b].bool()].tolist()}")
returns = per_token.flip(1).cumsum(1).flip(1)  # G_t = r_t + G_{t+1} with gamma = 1, swept backwards
assert torch.allclose(returns[:, 0], torch.tensor(rewards, dtype=torch.float32))  # G_0 is the final score
assert torch.equal((per_token != 0).sum(1), torch.tensor(rewards != 0).long())  # one rewarded step per right answer

# %% [markdown]
# ## 9. Sampling fast: the KV cache
#
# Generating T tokens naively re-runs the whole sequence for every new token: the prompt and
# everything written so far are encoded again at each step, so the work grows like $T^2$. But
# with causal attention the keys and values of earlier positions never change once computed.
# The **KV cache** stores them: after one pass over the prompt (the *prefill*), each step feeds
# only the newest token, which attends to the cached keys and values. Both give the same tokens;
# the cache just skips recomputation. (`benchmarks/bench_ch10_sampling.py` compares it with
# Hugging Face's `generate` too.)

# %%
speed_prompts = [tokenizer.encode(p) for p in reviews.prompts(32 if FAST else 64, rng)]
n_new = 30
columns_fed = []  # how many positions each forward pass runs, counted at the token embedding
hook = policy.transformer.wte.register_forward_hook(lambda module, args, output: columns_fed.append(args[0].shape[1]))
timings, work = {}, {}
for use_cache in (True, False):
    columns_fed.clear()
    start = time.perf_counter()
    out, out_mask = generate(policy, speed_prompts, n_new, temperature=0.0, use_cache=use_cache)
    timings[use_cache], work[use_cache] = time.perf_counter() - start, sum(columns_fed)
    if use_cache:
        with_cache = out
hook.remove()
P = max(map(len, speed_prompts))
print(f"positions run per sequence: {work[True]} with the cache (the prompt's {P}, then one per new token), "
      f"{work[False]} without (the whole prefix at every step)")
print(f"{out.numel()} tokens: with the cache {out.numel() / timings[True]:,.0f} tokens/s, "
      f"without {out.numel() / timings[False]:,.0f} tokens/s")
assert torch.equal(with_cache, out)  # greedy with and without the cache: the same tokens
assert work[True] == P + n_new - 1 and work[False] == sum(P + t for t in range(n_new))

# %% [markdown]
# ## 10. Temperature: how much the policy explores
#
# Sampling from $\pi_\theta$ is how a language-model policy explores. **Temperature** $T$ rescales
# the logits before the softmax, $\pi_T(a \mid s) \propto e^{z_a / T}$:
#
# * $T \to 0$ puts all the mass on the largest logit: greedy, no exploration, entropy 0;
# * $T = 1$ is the model's own distribution;
# * $T \to \infty$ flattens towards uniform, entropy $\ln V$.
#
# The entropy $H(\pi_T) = -\sum_a \pi_T(a)\log \pi_T(a)$ grows with $T$. **Top-k** sampling keeps
# only the k largest logits, which cuts off the long tail of unlikely tokens. Move the slider to
# see $\pi_T(\cdot \mid s)$ for the first answer token of a sum, and how confident the model is.

# %%
with torch.no_grad():
    demo_logits = policy(torch.tensor([tokenizer.encode(demo_prompt)]))[0, -1].numpy()
labels = [tokenizer.token_str(i) for i in range(tokenizer.vocab_size)]
display(temperature_slider(demo_logits, labels, temperature=1.0))

# %% [markdown]
# What does temperature do to the *reward*? Sample every held-out prompt at a range of
# temperatures and measure the accuracy and the average per-token entropy of the policy.

# %%
temperatures = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
n_temp = 200 if FAST else 500
temp_prompts = eval_prompts[:n_temp]
prompt_ids, prompt_mask = tokenizer.encode_batch(temp_prompts)
accuracy, entropy = [], []
for T in temperatures:
    comp, comp_mask = generate(policy, prompt_ids, arithmetic.max_digits + 2, temperature=T, eos_id=tokenizer.eos_id,
                               attention_mask=prompt_mask, generator=torch.Generator().manual_seed(SEED))
    accuracy.append(arithmetic.reward(temp_prompts, tokenizer.decode_batch(comp, comp_mask)).mean())
    with torch.no_grad():  # the logits in each state the policy visited: positions P-1 .. P+T-2
        logits = policy(torch.cat([prompt_ids, comp], 1), torch.cat([prompt_mask, comp_mask], 1))[:, prompt_ids.shape[1] - 1 : -1]
    H = entropy_from_logits(logits / T) if T > 0 else torch.zeros(comp_mask.shape)  # entropy of pi_T, (B, T)
    entropy.append(float((H * comp_mask).sum() / comp_mask.sum()))

fig = go.Figure()
fig.add_trace(go.Scatter(x=temperatures, y=accuracy, mode="lines+markers", name="accuracy (reward)"))
fig.add_trace(go.Scatter(x=temperatures, y=entropy, mode="lines+markers", name="entropy per token (nats)", yaxis="y2"))
fig.update_layout(title="Temperature trades reward for exploration", xaxis_title="temperature",
                  yaxis=dict(title="held-out accuracy", rangemode="tozero"),
                  yaxis2=dict(title="entropy (nats)", overlaying="y", side="right", rangemode="tozero"), width=760, height=380)
fig.show()
for T, a, h in zip(temperatures, accuracy, entropy):
    print(f"T = {T:4.2f}: accuracy {a:6.1%}, entropy {h:.3f} nats per token")
assert entropy[0] == 0.0 and all(a < b for a, b in zip(entropy, entropy[1:]))  # hotter, more random
assert max(accuracy[:3]) > accuracy[-1]  # and at T = 2 the policy loses reward

# %% [markdown]
# Cold sampling exploits what the model knows; hot sampling explores, and pays for it in reward.
# With the full base model a little heat even *raises* the accuracy: where the careless digit is
# the most likely token, greedy decoding writes it every time, while sampling sometimes writes the
# right one. RL needs exploration for the same reason: the policy must sometimes try answers it
# considers unlikely, or it never finds out that they are right. The RL chapters sample at $T = 1$
# and let the update decide.
#
# ## 11. The other task: how positive are the reviews?
#
# The same policy writes reviews. Sample one per held-out prompt (nouns the labeler never saw in
# RL prompts) and score them. The base model copies its corpus, where adjectives are drawn
# without regard to sentiment, so its reviews are on average neither positive nor negative.

# %%
review_prompts = reviews.prompts(200 if FAST else 500, np.random.default_rng(2), "test")
review_ids = [tokenizer.encode(p) for p in review_prompts]
comp, comp_mask = generate(policy, review_ids, config.block_size - max(map(len, review_ids)),
                           temperature=1.0, eos_id=tokenizer.eos_id, generator=torch.Generator().manual_seed(SEED))
review_texts = tokenizer.decode_batch(comp, comp_mask)
scores = reviews.reward(review_prompts, review_texts)
well_formed = scores > reviews.malformed_score
for p, c, s in list(zip(review_prompts, review_texts, scores))[:6]:
    print(f"  {p + c:<48} labeler score {s:+.0f}")
print(f"well-formed: {well_formed.mean():.0%}; mean score of those {scores[well_formed].mean():+.2f} (best possible +{reviews.max_adjectives})")
values, counts = np.unique(scores, return_counts=True)
fig = go.Figure(go.Bar(x=[str(int(v)) if v > reviews.malformed_score else "malformed" for v in values], y=counts))
fig.update_layout(title="Labeler scores of the base model's reviews", xaxis_title="score", yaxis_title="reviews",
                  width=600, height=340)
fig.show()
assert well_formed.mean() > 0.5 and abs(scores[well_formed].mean()) < 1.0  # fluent, and room to become positive

# %% [markdown]
# ## What to take away
#
# * Text generation is an MDP: the state is the prefix, the action the next token, the
#   transition appends it, and the reward comes once, at `<eos>`.
# * A GPT is a softmax policy over the vocabulary. Causal attention evaluates it in every
#   state of a sequence in one pass.
# * $\log \pi_\theta(\text{completion} \mid \text{prompt}) = \sum_t \log \pi_\theta(a_t \mid s_t)$:
#   gather one logit per position, subtract the `logsumexp`, mask padding.
# * A KV cache makes sampling cost one token per step instead of the whole prefix.
# * Temperature sets the policy's entropy: exploration against reward.
# * Our base model gets roughly a fifth to a third of the held-out sums right, and writes
#   reviews that are as negative as positive: room for RL to improve both.
#
# Next: **exercise 10** (`exercises/ex10_llm_as_policy.ipynb`) has you write `sequence_logprobs`
# and one sampling step. Chapter 11 learns a reward model from the labeler's preferences.
