# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 12 — RLHF with PPO on the small GPT-2
#
# Chapter 9 trained a policy with PPO on CartPole, chapter 10 turned a small GPT-2 into a policy,
# and chapter 11 learned a reward model from a labeler's preferences between reviews. This chapter
# puts the three together: **reinforcement learning from human feedback** (RLHF) as InstructGPT
# did it (Ouyang et al. 2022, after Ziegler et al. 2019 and Stiennon et al. 2020), on our small
# model, on a laptop CPU.
#
# PPO for a language model juggles **four models**:
#
# | model | role | trained? |
# |---|---|---|
# | actor $\pi_\theta$ | the language model being improved, started from the base model | yes |
# | reference $\pi_{\text{ref}}$ | a frozen copy of the base model: the KL penalty keeps the actor near it | no |
# | reward model $R_\phi$ | chapter 11's model: a score for each finished completion | no |
# | critic $V_\psi$ | a GPT with a value head: predicts the final reward from a partial completion | yes |
#
# and every step runs **five stages**: (1) generate completions, (2) score them with the reward
# model, (3) compute per-token rewards and advantages, (4) optimise the policy, (5) update the
# critic. Sections 1-4 derive the pieces, each a kernel in `course_lib.rlhf`; section 5 runs
# the loop with live plots; section 6 reads what came out, with the labeler's true score next to
# the reward model's, to see whether the policy improved or just fooled the reward model.
#
# Cells that train honour `COURSE_FAST=1` (the tests set it) with smaller budgets.

# %%
import copy
import time
from dataclasses import asdict

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.config import FAST
from course_lib.gpt import generate, with_value_head
from course_lib.losses import masked_mean, ppo_clip_loss
from course_lib.plots import training_dashboard, update_training_dashboard
from course_lib.ppo import approx_kl, clip_fraction, minibatch_indices
from course_lib.pretrain import base_config, load_or_pretrain, make_tasks
from course_lib.reward import load_or_train_reward_model, reward_config, reward_fn
from course_lib.rlhf import (AdaptiveKLController, clipped_value_loss, completion_logprobs_and_entropy, completion_values,
                             generate_rollout, kl_penalty_rewards, last_token_mask, masked_whiten, rlhf_config, sequence_kl,
                             token_advantages)
from course_lib.tokenizer import CharTokenizer

SEED = 0
torch.manual_seed(SEED)
rng = np.random.default_rng(SEED)
tokenizer = CharTokenizer()
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The objective, and why the reward becomes per-token
#
# A prompt $x$ (here "the soup was") is the start state; the policy writes a completion
# $y = a_0 a_1 \dots a_{T-1}$ one token at a time, as in chapter 10: the state $s_t$ is the prompt
# and the tokens so far, the action $a_t$ is the next token. RLHF maximises the reward model's
# score while staying close to the reference:
#
# $$J(\theta) = \mathbb{E}_{x,\; y \sim \pi_\theta(\cdot \mid x)}\big[R_\phi(x, y)\big]
#   \;-\; \beta\, \mathbb{E}_x\Big[\mathrm{KL}\big(\pi_\theta(\cdot \mid x)\,\|\,\pi_{\text{ref}}(\cdot \mid x)\big)\Big].$$
#
# Why the penalty? The reward model is a learned approximation of the labeler, accurate on
# the kind of text it was trained on (samples of the base model) and unreliable far from it. An
# actor free to go anywhere finds the texts where the reward model is wrong in its favour, which is
# called *reward hacking* or over-optimisation (Gao et al. 2023). The KL term charges for every nat of
# distance from the reference, and it also keeps the text fluent.
#
# The KL between distributions over whole completions splits over tokens, because
# $\pi(y \mid x) = \prod_t \pi(a_t \mid s_t)$:
#
# $$\mathrm{KL}\big(\pi_\theta \,\|\, \pi_{\text{ref}}\big)
#   = \mathbb{E}_{y \sim \pi_\theta}\Big[\sum_t \log \pi_\theta(a_t \mid s_t) - \log \pi_{\text{ref}}(a_t \mid s_t)\Big].$$
#
# So the objective is an ordinary expected return if every token $t$ earns
#
# $$r_t = -\beta\big(\log \pi_\theta(a_t \mid s_t) - \log \pi_{\text{ref}}(a_t \mid s_t)\big)
#   \;+\; [t = T-1]\; R_\phi(x, y),$$
#
# a KL penalty on every token and the score on the last one (Ziegler et al. 2019, eq. 2). The log-probs
# are those of the policy that sampled the tokens ($\pi_{\text{old}}$, fixed during the update);
# padding after `<eos>` is not a token of the episode and earns nothing. That is
# `kl_penalty_rewards(logp, ref_logp, scores, completion_mask, beta)`:

# %%
logp = torch.tensor([[-0.2, -1.0, -0.1, -0.5], [-2.0, -0.3, 0.0, 0.0]])  # log pi_old of the sampled tokens
ref_logp = torch.tensor([[-0.4, -1.0, -0.6, -0.5], [-1.0, -0.3, 0.0, 0.0]])  # log pi_ref of the same tokens
completion_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # the second completion ended after 2 tokens
scores = torch.tensor([2.0, -1.0])
beta = 0.1
rewards = kl_penalty_rewards(logp, ref_logp, scores, completion_mask, beta)
print("per-token rewards:\n", rewards.numpy().round(3))
print("sum per completion:", rewards.sum(1).numpy().round(3),
      "= score - beta * KL estimate:", (scores - beta * sequence_kl(logp, ref_logp, completion_mask)).numpy().round(3))
assert torch.allclose(rewards.sum(1), scores - beta * sequence_kl(logp, ref_logp, completion_mask))
assert rewards[1, 2:].abs().sum() == 0  # padding: no reward, no penalty
assert rewards[1, 1] == scores[1]  # the score sits on the last real token (equal log-probs there: no penalty)

# %% [markdown]
# A token the actor likes more than the reference ($\log\pi > \log\pi_{\text{ref}}$) costs a
# little; one it likes less earns a little. The penalty is a sampled estimate: it can be negative
# for a completion, but its expectation, the KL, cannot.
#
# ## 2. Advantages over tokens: GAE with a mask
#
# With a reward per token and a critic $V_\psi(s_t)$, the advantages are chapter 7's GAE, run over
# the completion's tokens:
#
# $$\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t), \qquad A_t = \delta_t + \gamma\lambda A_{t+1}.$$
#
# Three details make it right for text:
#
# * **the episode ends at the last real token**: it is marked done, so its $\delta$ is
#   $r_t - V(s_t)$ with nothing bootstrapped, and nothing after it (padding) reaches back;
# * **the prompt is not part of the episode**: advantages exist for completion tokens only. The
#   critic's value of the state before completion token $t$ is read at position $P - 1 + t$ of the
#   sequence (the last prompt token sits at $P - 1$ with left padding);
# * the discount is usually $\gamma = 1$: completions are short and the score at the end should
#   count fully for the first token.
#
# `token_advantages(rewards, values, completion_mask, gamma, lam)` returns the advantages and the
# critic's targets $R_t = A_t + V(s_t)$, both zero on padding. Junk in the padded positions must
# change nothing:

# %%
values = torch.tensor([[0.5, 0.8, 1.0, 1.5], [0.2, -0.5, 0.0, 0.0]])
advantages, returns = token_advantages(rewards, values, completion_mask, gamma=1.0, lam=0.95)
print("advantages:\n", advantages.numpy().round(3))
junk_rewards, junk_values = rewards.clone(), values.clone()
junk_rewards[1, 2:], junk_values[1, 2:] = 7.0, -9.0
advantages_junk, _ = token_advantages(junk_rewards, junk_values, completion_mask, 1.0, 0.95)
assert torch.allclose(advantages, advantages_junk) and advantages[1, 2:].abs().sum() == 0
# lam = 1: A_t is the sum of the rewards still to come minus V(s_t), exactly
a1, _ = token_advantages(rewards, values, completion_mask, 1.0, 1.0)
to_go = rewards.flip(1).cumsum(1).flip(1)
assert torch.allclose(a1, (to_go - values) * completion_mask)

# %% [markdown]
# Before the update, the advantages of the whole rollout are **whitened**: shifted and scaled to
# mean 0 and variance 1 over the real tokens, so that the step size does not depend on the
# reward model's scale (`masked_whiten`; padding comes back as 0):

# %%
white = masked_whiten(advantages, completion_mask)
real = white[completion_mask.bool()]
print("whitened:", white.numpy().round(2), f" mean {float(real.mean()):+.1e}, std {float(real.std(unbiased=False)):.3f}")
assert abs(float(real.mean())) < 1e-6 and abs(float(real.std(unbiased=False)) - 1) < 1e-3 and white[1, 2:].abs().sum() == 0

# %% [markdown]
# ## 3. The losses: clipped policy, clipped value, entropy
#
# Stage 4 is chapter 9's PPO-clip on tokens. With the ratio
# $\rho_t = \pi_\theta(a_t \mid s_t) / \pi_{\text{old}}(a_t \mid s_t)$, where $\log\pi_{\text{old}}$ comes
# from the rollout and is **detached** (a constant of the update):
#
# $$L^{\pi} = -\operatorname{mean}_t \min\big(\rho_t A_t,\ \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)A_t\big)
#   \;-\; c_H \operatorname{mean}_t H\big(\pi_\theta(\cdot \mid s_t)\big),$$
#
# every mean over the real completion tokens (`ppo_clip_loss` with the completion mask;
# `entropy_from_logits` for $H$). The entropy bonus rewards keeping some randomness.
#
# Stage 5 trains the critic towards the targets $R_t$. Its loss is clipped like the policy's
# ratio: the new value may not move more than $c_V$ from the rollout's $V_{\text{old}}$ and gain
# from it,
#
# $$L^V = \tfrac12 \operatorname{mean}_t \max\big((V_t - R_t)^2,\ (V_{\text{old},t} + \operatorname{clip}(V_t - V_{\text{old},t}, -c_V, c_V) - R_t)^2\big).$$
#
# The targets are constants: the critic learns to predict the reward, it does not move the
# reward (a stop-gradient). The critic is a separate network here, as in InstructGPT, so its loss
# never changes the actor. Where the value has run past the clip in the direction of the target,
# the clipped branch is the larger one and the gradient is zero:

# %%
v = torch.tensor([[2.0, 0.1]], requires_grad=True)
v_old, target = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 1.0]])
loss = clipped_value_loss(v, v_old, target, torch.ones(1, 2), clip=0.5)
loss.backward()
print(f"value loss {loss.item():.4f}; gradient {v.grad.numpy().round(3)} (first entry clipped: no pull)")
assert v.grad[0, 0] == 0 and v.grad[0, 1] < 0

# %% [markdown]
# ## 4. An adaptive KL coefficient
#
# Which $\beta$? Too small and the actor drifts into reward hacking; too large and it cannot
# move. Ziegler et al. (2019) steer $\beta$ towards a **target KL** per completion with a
# proportional controller:
#
# $$e = \operatorname{clip}\Big(\frac{\mathrm{KL}}{\mathrm{KL}_{\text{target}}} - 1,\ -0.2,\ 0.2\Big), \qquad
#   \beta \leftarrow \beta\,\Big(1 + e\,\frac{n}{H}\Big),$$
#
# with $n$ the completions in the batch and $H$ a horizon in completions. Unlike chapter 9's
# halving and doubling, $\beta$ drifts smoothly. Fed a KL that first overshoots the target and then
# undershoots it, $\beta$ first rises and then falls:

# %%
controller = AdaptiveKLController(0.1, target=2.0, horizon=500)
kl_stream = np.r_[np.full(40, 4.0), np.full(40, 0.5)]
betas = [controller.update(kl, n_steps=32) for kl in kl_stream]
fig = make_subplots(specs=[[{"secondary_y": True}]])
fig.add_trace(go.Scatter(y=kl_stream, name="measured KL per completion", mode="lines"))
fig.add_trace(go.Scatter(y=betas, name="beta", mode="lines"), secondary_y=True)
fig.add_hline(y=2.0, line_dash="dot", annotation_text="target")
fig.update_layout(title="The adaptive KL controller: beta follows the KL error", xaxis_title="step", width=750, height=350)
fig.show()
assert betas[39] > 0.1 and betas[-1] < betas[39]

# %% [markdown]
# ## 5. The four models, and the loop
#
# * the **actor** and the **reference** both start as the base model of chapter 10 (two copies; the
#   reference never trains);
# * the **reward model** is chapter 11's, trained from the labeler's preferences between pairs of
#   reviews (loaded from the cache, or trained now);
# * the **critic** starts as a copy of the reward model, as in InstructGPT: the reward model
#   already reads a review and outputs its expected score at the last token, and the value of a
#   partial review is the expected score to come, so it starts close instead of at zero. (Starting
#   from the base model with a fresh value head, `with_value_head(base)`, also works: the critic
#   then starts from V = 0 everywhere and first has to learn the scale of the scores.)
#
# The task is chapter 10's reviews: prompts "the soup was", completions such as
# " great and warm.". We show the **labeler's true score** next to the reward model's: the
# policy only ever sees the reward model.

# %%
base, base_record = load_or_pretrain(base_config(), progress=not FAST)
reward_model, reward_record = load_or_train_reward_model(reward_config(), progress=not FAST)
_, reviews = make_tasks(base_config())
score_with_reward_model = reward_fn(reward_model, tokenizer)

policy = copy.deepcopy(base)
reference = copy.deepcopy(base).requires_grad_(False)
critic = copy.deepcopy(reward_model)
print(f"base model: {base.num_parameters():,} weights; reward model held-out accuracy {reward_record['heldout_accuracy']:.0%} "
      f"on the labels, {reward_record['heldout_true_accuracy']:.0%} on the labeler's true preference")


def sample_reviews(model, n, seed):
    """n completions (temperature 1) for held-out prompts, with the reward model's and the labeler's scores."""
    prompts = reviews.prompts(n, np.random.default_rng(seed), "test")
    ids, mask = tokenizer.encode_batch(prompts)
    out, out_mask = generate(model, ids, 30, temperature=1.0, eos_id=tokenizer.eos_id, attention_mask=mask,
                             generator=torch.Generator().manual_seed(seed))
    completions = tokenizer.decode_batch(out, out_mask)
    return prompts, completions, score_with_reward_model(prompts, completions).numpy(), reviews.reward(prompts, completions)


n_eval = 128 if FAST else 256
before = sample_reviews(policy, n_eval, seed=123)
for p, c, r, s in list(zip(*before))[:6]:
    print(f"{p + c!r:48} reward model {r:+.2f}   labeler {s:+.0f}")
print(f"before RLHF: mean reward-model score {before[2].mean():+.2f}, mean labeler score {before[3].mean():+.2f}, "
      f"well-formed {np.mean(before[3] > reviews.malformed_score):.0%}")

# %% [markdown]
# The run's settings live in one dataclass (`RLHFConfig`, every field commented in
# `course_lib/rlhf.py`); `rlhf_config()` gives the full setting, a smaller one in fast mode.

# %%
config = rlhf_config(seed=SEED)
print(asdict(config))

# %% [markdown]
# The loop below is flat on purpose: each block is one of the five stages. The figure redraws
# after every step (in JupyterLab: reward, the labeler's true score, the KL to the reference, the
# entropy, the clip fraction and the value loss), and a progress bar shows the time left.
# `course_lib.rlhf.train_rlhf` runs the same loop as a function (chapter 13 calls it).
# About a third of each batch is padding (short prompts, completions that stopped early), so
# `completion_logprobs_and_entropy` and `completion_values` pass `skip_padding=True`: the
# per-token layers run on the real tokens only, and for the attention each row's real tokens are
# packed side by side, where plain causal attention is exact. They also pass `keep_last`: the
# policy and the critic are read from the last prompt token on, so the last block computes only
# there (the prompt's earlier tokens still give their keys and values). A pad never reaches a
# real token and nothing reads the prompt's outputs, so the numbers are the same; only the work
# shrinks.

# %%
torch.manual_seed(config.seed)
generator = torch.Generator().manual_seed(config.seed)
prompt_rng = np.random.default_rng(config.seed)
# fused=True: one kernel updates all the weights (the same Adam, less overhead per step)
policy_optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5, fused=True)
critic_optimizer = torch.optim.Adam(critic.parameters(), lr=config.critic_lr, eps=1e-5, fused=True)
kl_controller = AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
dashboard = training_dashboard([("reward-model score", ["reward"]), ("labeler's true score", ["true score"]),
                                ("KL(pi || pi_ref) per completion", ["kl"]), ("entropy per token", ["entropy"]),
                                ("clip fraction", ["clip_fraction"]), ("value loss", ["value_loss"])],
                               title="RLHF-PPO on the reviews", live=True)
display(dashboard)
history = {}
threads = torch.get_num_threads()
wall0, cpu0 = time.perf_counter(), time.process_time()
for step in tqdm(range(config.steps), desc="RLHF-PPO"):
    # 1. generate: one completion per prompt from the current policy (pi_old from here on); the
    #    sampler records log pi_old of each token it draws, and the entropy of pi_old there
    rollout = generate_rollout(policy, reviews.prompts(config.batch_size, prompt_rng), config, generator, tokenizer)
    m, P = rollout.completion_mask, rollout.prompt_length
    # 2. score: the frozen reward model rates each finished completion
    rollout.scores = score_with_reward_model(rollout.prompts, rollout.completions)
    # 3. per-token rewards and advantages, from the models as they were when sampling
    with torch.no_grad():
        rollout.ref_logp, _ = completion_logprobs_and_entropy(reference, rollout.ids, rollout.attention_mask, P)
        rollout.old_values = completion_values(critic, rollout.ids, rollout.attention_mask, P) * m
        rollout.rewards = kl_penalty_rewards(rollout.old_logp, rollout.ref_logp, rollout.scores, m, kl_controller.value)
        advantages, rollout.returns = token_advantages(rollout.rewards, rollout.old_values, m, config.gamma, config.lam)
        rollout.advantages = masked_whiten(advantages, m)
    # 4 and 5. several epochs over minibatches: optimise the policy, then update the critic
    log = {"clip_fraction": [], "value_loss": []}
    for epoch in range(config.epochs):
        for idx in minibatch_indices(config.batch_size, config.minibatches, generator):
            ids, att, mb_mask = rollout.ids[idx], rollout.attention_mask[idx], m[idx]
            logp, entropy = completion_logprobs_and_entropy(policy, ids, att, P)
            policy_loss = (ppo_clip_loss(logp, rollout.old_logp[idx], rollout.advantages[idx], config.clip_eps, mb_mask)
                           - config.entropy_coef * masked_mean(entropy, mb_mask))
            policy_optimizer.zero_grad()
            policy_loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            policy_optimizer.step()

            values = completion_values(critic, ids, att, P)
            value_loss = clipped_value_loss(values, rollout.old_values[idx], rollout.returns[idx], mb_mask, config.value_clip)
            critic_optimizer.zero_grad()
            value_loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), config.max_grad_norm)
            critic_optimizer.step()
            log["clip_fraction"].append(float(clip_fraction(logp.detach(), rollout.old_logp[idx], config.clip_eps, mb_mask)))
            log["value_loss"].append(value_loss.item())
    # the controller sees the KL of this rollout
    kl = float(sequence_kl(rollout.old_logp, rollout.ref_logp, m).mean())
    kl_controller.update(kl, n_steps=config.batch_size)

    for key, value in {"reward": float(rollout.scores.mean()), "true score": reviews.reward(rollout.prompts, rollout.completions).mean(),
                       "kl": kl, "entropy": float(masked_mean(rollout.entropy, m)), "beta": kl_controller.value,
                       "clip_fraction": np.mean(log["clip_fraction"]), "value_loss": np.mean(log["value_loss"])}.items():
        history.setdefault(key, []).append(float(value))
    update_training_dashboard(dashboard, history)
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
print(f"{config.steps} steps of {config.batch_size} completions: {wall:.0f} s wall, {cpu:.0f} s CPU, {threads} torch threads")

# %% [markdown]
# ## 6. What changed
#
# First the numbers: the mean reward-model score of the first and the last steps, with the
# standard error of each mean (the step-to-step noise), the labeler's true score, and the KL.

# %%
k = max(3, config.steps // 6)
reward_curve, true_curve, kl_curve = (np.array(history[key]) for key in ("reward", "true score", "kl"))


def mean_and_error(x):
    return x.mean(), x.std(ddof=1) / np.sqrt(len(x))


(r0, e0), (r1, e1) = mean_and_error(reward_curve[:k]), mean_and_error(reward_curve[-k:])
(t0, _), (t1, _) = mean_and_error(true_curve[:k]), mean_and_error(true_curve[-k:])
print(f"reward-model score: first {k} steps {r0:+.2f} ± {e0:.2f}, last {k} steps {r1:+.2f} ± {e1:.2f}")
print(f"labeler's true score: {t0:+.2f} -> {t1:+.2f}")
print(f"KL to the reference per completion: first {k} steps {kl_curve[:k].mean():.2f}, last {k} {kl_curve[-k:].mean():.2f}, "
      f"largest {kl_curve.max():.2f} nats; beta {config.kl_coef} -> {history['beta'][-1]:.3f}")
# The reward rises by more than three standard errors of the two means combined...
assert r1 - r0 > 3 * np.hypot(e0, e1), (r0, e0, r1, e1)
# ...and the KL stays bounded: tens of nats per completion at most, not a runaway.
assert kl_curve[-k:].mean() < 8 * config.kl_target
if t1 - t0 > 0.5 * (r1 - r0):
    print("the labeler's score rose with the reward model's: the policy learned what the labeler wants")
elif t1 - t0 > 0:
    print(f"the reward model's score rose by {r1 - r0:+.2f}, the labeler's by {t1 - t0:+.2f}: the policy learned part of "
          "what the labeler wants, and part of its gain sits in the reward model's errors")
else:
    print(f"the reward model's score rose by {r1 - r0:+.2f} while the labeler's moved by {t1 - t0:+.2f}: "
          "the policy is exploiting the reward model's errors (reward hacking)")
# The labeler's score, which the policy never sees, rises too, by an amount that varies from run
# to run (fast mode, seeds 0-2: by 1.4 to 1.9; full setting, seeds 0-2: by 1.2 to 1.3, while the
# reward model's score rose by 3.2 to 3.6).
assert t1 - t0 > 0.3, (t0, t1)

# %% [markdown]
# Now the same held-out prompts and the same random seed as before training:

# %%
after = sample_reviews(policy, n_eval, seed=123)
for (p, c0, r0_, s0), (_, c1, r1_, s1) in list(zip(zip(*before), zip(*after)))[:8]:
    print(f"{p:15} before {c0!r:30} ({s0:+.0f})   after {c1!r:30} ({s1:+.0f})")
table = go.Figure(go.Table(
    header=dict(values=["", "reward-model score", "labeler's true score", "well-formed"]),
    cells=dict(values=[["before", "after"], [f"{before[2].mean():+.2f}", f"{after[2].mean():+.2f}"],
                       [f"{before[3].mean():+.2f}", f"{after[3].mean():+.2f}"],
                       [f"{np.mean(before[3] > reviews.malformed_score):.0%}", f"{np.mean(after[3] > reviews.malformed_score):.0%}"]])))
table.update_layout(title=f"{n_eval} held-out prompts (nouns never seen in training), temperature 1", width=650, height=250)
table.show()
held_rm, held_true = after[2].mean() - before[2].mean(), after[3].mean() - before[3].mean()
if held_true > 0.3:
    print(f"on nouns it never trained on, the labeler's score rose too ({held_true:+.2f}; reward model {held_rm:+.2f})")
else:
    print(f"on nouns it never trained on, the labeler's score moved by only {held_true:+.2f} (reward model {held_rm:+.2f}): "
          "the gain did not carry over; look for collapsed or misspelt reviews in the samples above")

# %% [markdown]
# Read the curves and the table together:
#
# * the **reward-model score** rises: PPO does what it is asked;
# * the **table** is the harder test: nouns the policy never saw in training. Whether the gain carries
#   over there differs from run to run, and even with the number of CPU threads that trained the base
#   model (floating-point sums in a different order give a different base model). In one fast-mode
#   run the labeler's score on these prompts went from -1.20 to +0.14; in another the policy collapsed
#   to variants of " great." and misspelt half of them (" grreat."), so the held-out score fell a
#   little. A policy that writes one review for every prompt is a warning sign even when the curves
#   look good;
# * the **labeler's true score** is the one the policy never sees. Here it rises with the reward
#   model's, by about a third as much in the full setting: the policy learned much of what
#   the labeler wanted, more positive adjectives and fewer malformed reviews. It did not have to.
#   Where the two curves part (the reward model's score keeps rising while the labeler's stalls
#   or falls, and the samples show broken words the labeler rejects), the policy has found the
#   reward model's blind spots: **reward hacking**, in miniature. An earlier version of this course had exactly that: its reward model had learned
#   from pairs of the base model's samples and written reviews only, and had never seen a review
#   that is *almost* right. PPO found such texts within a few dozen steps: "tasty." (no leading
#   space), " great lovely fresh." (no " and "), " fun.an.". In the full setting the reward-model
#   score rose from 1.7 to 3.9 while the labeler's fell from $-0.4$ to $-3.5$, nearly every
#   completion malformed, at a KL of 10 to 16 nats. Two changes closed those holes: chapter 11's
#   **near-miss pairs** (each written review against a copy with one such mistake) and a larger
#   starting KL coefficient (0.2 instead of 0.05, below). Neither makes the reward model right
#   everywhere: a longer run, a larger learning rate or a weaker KL finds the next hole (look for
#   misspelt words among the samples above). Real pipelines keep collecting pairs from the current
#   policy, as InstructGPT did. Gao et al. (2023) measure how the true reward first rises and then
#   falls as the KL grows;
# * the **KL** grows from 0: the price, in nats per completion, of the change. While it is above
#   the target the controller raises $\beta$, but with a horizon of 1000 completions it reacts over
#   tens of steps, so the starting `kl_coef` matters: with 0.05 the policy had drifted 10 to 40 nats
#   within the first steps of some runs, into texts only the reward model liked; 0.2 holds it near
#   the target from the start;
# * the **entropy** says how sure the policy is of its next token; once the policy settles on
#   what pays it falls, and the reviews become less varied. An entropy bonus (`entropy_coef`)
#   slows this;
# * the **clip fraction** says how often a token's ratio left $[1-\epsilon, 1+\epsilon]$ during
#   the epochs: a few percent to a few tens of percent is PPO working as designed;
# * the **value loss** falls as the critic learns to predict the score from a partial review.
#
# ## 7. Summary
#
# RLHF with PPO is chapter 9's algorithm on chapter 10's token-level MDP, with two additions:
# the reward is shaped per token by a KL penalty to a frozen reference, and the critic is a
# language model too. The whole step reads as five stages, and every equation in it is a small
# kernel in `course_lib.rlhf` with its own test: `kl_penalty_rewards`, `token_advantages`
# (GAE with the completion mask), `masked_whiten`, `clipped_value_loss`, `AdaptiveKLController`,
# and from earlier chapters `ppo_clip_loss`, `masked_mean` and `entropy_from_logits`.
#
# The cost is in the models: four of them, two trained. Chapter 13 drops the critic (GRPO) and
# compares. In the exercise you write the KL-shaped reward and one PPO update yourself.
