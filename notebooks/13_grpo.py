# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 13 — GRPO: group relative policy optimisation
#
# Chapter 12 ran PPO on a language model. It worked, but it needed a **critic**: a second network
# as large as the policy, trained alongside it, only to supply the baseline $V(s_t)$ that turns
# rewards into advantages. GRPO (Shao et al. 2024, *DeepSeekMath*, section 4) drops the critic and
# gets the baseline from the policy's own samples instead:
#
# 1. for each prompt, sample a **group** of $G$ completions;
# 2. score each with the task's **verifier** (here: is the sum right?);
# 3. standardise the rewards **within the group**, $A_i = (R_i - \operatorname{mean}(R)) / \operatorname{std}(R)$,
#    and give that advantage to every token of completion $i$;
# 4. maximise PPO's clipped objective, averaged over each completion's tokens and then over
#    completions, minus a KL penalty to the reference written with the **k3** estimator.
#
# We train the small GPT-2 of chapter 10 on its sums with GRPO, watch how often a group carries no
# signal at all, and measure GRPO against PPO on the same task: accuracy per wall-clock second and
# memory. Cells that do real work honour `COURSE_FAST=1` with smaller budgets.

# %%
import copy
import dataclasses
import math
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import display
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.config import FAST
from course_lib.gpt import with_value_head
from course_lib.grpo import (
    all_equal_groups,
    frozen_copy,
    group_advantages,
    group_logprobs,
    grpo_config,
    grpo_loss,
    sample_groups,
    train_grpo,
    verifier_reward_fn,
)
from course_lib.losses import kl_k1, kl_k2, kl_k3, masked_mean
from course_lib.pretrain import base_config, greedy_accuracy, load_or_pretrain, make_tasks
from course_lib.tokenizer import CharTokenizer
from course_lib.widgets import group_size_curves, group_size_slider

SEED = 0
torch.manual_seed(SEED)
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. Why drop the critic
#
# Count the networks each method keeps in memory while it trains a policy with $N$ weights:
#
# | | PPO (chapter 12) | GRPO |
# |---|---|---|
# | policy $\pi_\theta$ (trained) | weights, gradients, 2 Adam moments | weights, gradients, 2 Adam moments |
# | reference $\pi_\text{ref}$ (frozen) | weights | weights |
# | reward model (frozen) | weights | weights, or none with a verifier |
# | critic $V_\phi$ (trained) | weights, gradients, 2 Adam moments | — |
#
# PPO keeps **four** models, GRPO **three**, and the one it drops is a *trained* one: four numbers
# per weight. For a 7B-parameter policy the critic alone is 28 billion numbers. Our sums are
# checked by a program, so here GRPO needs no reward model at all. The next cell counts the
# numbers each method keeps for the course's base model.

# %%
base = base_config()
policy, record = load_or_pretrain(base)
arithmetic, _ = make_tasks(base)
tokenizer = CharTokenizer()
N = policy.num_parameters()
trained, frozen = 4 * N, N  # weights + gradients + Adam's m and v; weights only
memory = {"PPO": 2 * trained + frozen, "GRPO": trained + frozen}  # the verifier is a program: no reward model
for name, numbers in memory.items():
    print(f"{name:5s}: {numbers / 1e6:5.2f} M numbers = {numbers * 4 / 2**20:5.1f} MiB in float32")
print(f"GRPO keeps {memory['GRPO'] / memory['PPO']:.0%} of PPO's model memory (policy: {N / 1e6:.2f} M weights)")
assert memory["GRPO"] / memory["PPO"] == 5 / 9  # (4N + N) / (4N + 4N + N)

# %% [markdown]
# ## 2. A group of completions is its own baseline
#
# The policy-gradient theorem (chapter 6) lets us subtract any baseline $b(s)$ that does not
# depend on the action. PPO learns $b(s) = V(s)$. GRPO notices that for a prompt $q$ the
# expected reward $\mathbb{E}_{o \sim \pi(\cdot|q)}[R(q, o)]$ *is* the value of the starting
# state, and estimates it by sampling: draw $G$ completions $o_1, \dots, o_G$ of the same prompt,
# score them $R_1, \dots, R_G$, and set
#
# $$A_i = \frac{R_i - \operatorname{mean}(R_1, \dots, R_G)}{\operatorname{std}(R_1, \dots, R_G) + \varepsilon}.$$
#
# Every token of completion $o_i$ gets the same $A_i$ (the reward comes once, at the end, and
# there is no critic to say which token earned it). The division by the std puts every prompt on
# the same scale, whether its rewards are 0/1 or spread over hundreds; the $\varepsilon$ guards a
# group whose rewards are all equal. `course_lib.grpo.group_advantages` computes this with the
# groups contiguous in a batch of $B = n_\text{prompts} \cdot G$ completions.
#
# Here is one group of $G = 8$ sums written by the base model, at temperature 1:

# %%
G_demo = 8
demo_prompts = arithmetic.prompts(3, np.random.default_rng(5), "train")
demo_config = dataclasses.replace(grpo_config(), group_size=G_demo, max_new_tokens=arithmetic.max_digits + 2, beta=0.0)
reward_fn = verifier_reward_fn(arithmetic)
demo = sample_groups(policy, None, reward_fn, demo_prompts, demo_config, tokenizer, torch.Generator().manual_seed(1))
for g, prompt in enumerate(demo_prompts):
    rows = slice(g * G_demo, (g + 1) * G_demo)
    print(f"{prompt:9s} (answer {arithmetic.answer(prompt):>4s}): "
          + "  ".join(f"{c or '∅':>4s}" for c in demo.completions[rows]))
    print(f"{'':9s} rewards    {'':5s}  " + "  ".join(f"{r:4.0f}" for r in demo.rewards[rows].tolist()))
    print(f"{'':9s} advantages {'':5s}  " + "  ".join(f"{a:+4.1f}" for a in demo.advantages[rows].tolist()))
A = demo.advantages.reshape(-1, G_demo)
silent = all_equal_groups(demo.rewards, G_demo)
assert torch.allclose(A.mean(1), torch.zeros(3), atol=1e-5)  # advantages sum to 0 within each group
assert torch.all(A[silent] == 0) and torch.all((A[~silent] ** 2).mean(1) > 0.99)  # silent groups: 0; others: unit scale

# %% [markdown]
# ## 3. When a whole group agrees, the prompt teaches nothing
#
# Look at a group where every completion is wrong (or every one is right): the mean equals every
# reward, all advantages are **zero**, and the prompt contributes no gradient to the clipped term
# at all. (The KL term still pulls towards the reference.) With a 0/1 verifier and a prompt the
# policy solves with probability $p$, a group of $G$ is silent with probability
#
# $$P(\text{all equal}) = p^G + (1 - p)^G.$$
#
# Hard prompts ($p \approx 0$) and mastered ones ($p \approx 1$) are silent most of the time;
# only prompts the policy sometimes solves drive learning. A bigger $G$ makes silence rarer and
# makes the group mean a better estimate of $p$, at the price of $G$ samples per prompt. The
# slider redraws, for each $p$, the chance of silence (left) and the standardised advantage of a
# *correct* completion (right: mean $\pm$ one std over groups, computed exactly by summing over
# how many of the other $G - 1$ completions are right), against the value
# $\sqrt{(1-p)/p}$ it would have if the group knew $p$ exactly. Small groups bias it towards 0
# and spread it widely; the curves close in as $G$ grows.

# %%
slider = group_size_slider(group_size=8)
display(slider)
# The slider's claims, checked: silence falls with G, and a correct answer's advantage nears sqrt((1-p)/p).
small, large = group_size_curves(4, p=[0.2]), group_size_curves(64, p=[0.2])
assert small["all_equal"][0] > 0.4 > 0.01 > large["all_equal"][0]
error = {G: abs(c["mean"][0] - c["population"][0]) + c["std"][0] for G, c in ((4, small), (64, large))}
assert error[64] < 0.5 * error[4]

# %% [markdown]
# The formula, checked against simulated groups of 0/1 rewards through `group_advantages`:

# %%
sim_rng = np.random.default_rng(0)
for p in (0.1, 0.5, 0.9):
    for G in (4, 16):
        rewards = (sim_rng.random(20000 * G) < p).astype(float)
        simulated = (group_advantages(rewards, G).reshape(-1, G) == 0).all(1).mean()
        exact = p**G + (1 - p) ** G
        print(f"p = {p:.1f}, G = {G:2d}: silent groups simulated {simulated:.3f}, formula {exact:.3f}")
        assert abs(simulated - exact) < 0.015

# %% [markdown]
# ## 4. The objective: clipped, per token, then per sequence, with a k3 KL
#
# GRPO keeps PPO's clipped surrogate (chapter 9) for each completion token $t$ of completion
# $o_i$, with $r_{i,t} = \pi_\theta(o_{i,t} \mid q, o_{i,<t}) / \pi_{\theta_\text{old}}(o_{i,t} \mid q, o_{i,<t})$,
# and moves the KL to the reference **out of the reward and into the loss** (DeepSeekMath, eq. 3):
#
# $$\mathcal{J}(\theta) = \frac{1}{G} \sum_{i=1}^{G} \frac{1}{|o_i|} \sum_{t=1}^{|o_i|}
#   \Big[ \min\big(r_{i,t} A_i,\ \operatorname{clip}(r_{i,t}, 1-\epsilon, 1+\epsilon) A_i\big)
#   - \beta\, \widehat{\mathrm{KL}}_{i,t} \Big].$$
#
# Two choices hide in that line. The sums average over each completion's own tokens first, then
# over completions (`course_lib.grpo.sequence_mean`): every completion weighs the same however
# long it is. Chapter 14 compares this with averaging over all tokens of the batch and with
# Dr. GRPO's constant normaliser. And the KL is estimated per sampled token with
#
# $$\widehat{\mathrm{KL}}_{i,t} = k_3 = \frac{\pi_\text{ref}}{\pi_\theta} - \log \frac{\pi_\text{ref}}{\pi_\theta} - 1,$$
#
# from Schulman's note *Approximating KL divergence* (2020). Why k3? We only have the
# log-probabilities of the tokens the policy sampled, not whole distributions. With $x \sim \pi$
# and $r = \pi_\text{ref}(x)/\pi(x)$:
#
# * $k_1 = -\log r$ is unbiased, since $\mathbb{E}_\pi[-\log r] = \mathrm{KL}(\pi \,\|\, \pi_\text{ref})$,
#   but noisy, and negative on many samples although a KL never is;
# * $k_2 = \tfrac12 (\log r)^2$ is never negative and has low variance, but is biased;
# * $k_3 = (r - 1) - \log r$ adds to $k_1$ the term $r - 1$, whose mean is $\mathbb{E}_\pi[r] - 1 = 0$:
#   still unbiased, never negative (because $\log r \le r - 1$), and low variance when $\pi$ and
#   $\pi_\text{ref}$ are close.
#
# We check those three claims on two categorical distributions, where the exact KL is a sum.

# %%
kl_rng = np.random.default_rng(3)
V, n_samples = 8, 100_000
rows = []
for spread in (0.1, 0.5, 1.0):  # how far the reference is from the policy
    p_pi = kl_rng.dirichlet(np.ones(V) * 3)
    p_ref = p_pi * np.exp(kl_rng.normal(scale=spread, size=V))
    p_ref /= p_ref.sum()
    exact = float((p_pi * np.log(p_pi / p_ref)).sum())
    x = kl_rng.choice(V, size=n_samples, p=p_pi)  # tokens sampled from the policy
    logp, ref_logp = np.log(p_pi)[x], np.log(p_ref)[x]
    for name, estimator in (("k1", kl_k1), ("k2", kl_k2), ("k3", kl_k3)):
        k = estimator(logp, ref_logp)
        rows.append({"spread": spread, "exact": exact, "name": name, "mean": k.mean(), "std": k.std(),
                     "negative": (k < 0).mean()})
print(f"{'spread':>6s} {'exact KL':>9s} {'':3s} {'mean':>8s} {'std':>8s} {'share < 0':>9s}")
for r in rows:
    print(f"{r['spread']:6.1f} {r['exact']:9.4f} {r['name']:>3s} {r['mean']:8.4f} {r['std']:8.4f} {r['negative']:9.2f}")

fig = go.Figure()
for name, color in (("k1", "gray"), ("k2", "orange"), ("k3", "royalblue")):
    sel = [r for r in rows if r["name"] == name]
    fig.add_trace(go.Bar(name=name, x=[f"spread {r['spread']}" for r in sel], y=[r["mean"] / r["exact"] for r in sel],
                         error_y=dict(array=[r["std"] / r["exact"] / 10 for r in sel]), marker_color=color))
fig.add_hline(y=1.0, line_dash="dash", annotation_text="exact KL")
fig.update_layout(title="estimated KL / exact KL (error bars: per-token std / exact / 10)", barmode="group",
                  width=760, height=380, yaxis_title="ratio to the exact KL")
fig.show()
by = {(r["spread"], r["name"]): r for r in rows}
for spread in (0.1, 0.5, 1.0):
    for name in ("k1", "k3"):  # unbiased: within 5 standard errors of the exact KL
        r = by[(spread, name)]
        assert abs(r["mean"] - r["exact"]) < 5 * r["std"] / math.sqrt(n_samples)
    assert by[(spread, "k3")]["negative"] == 0 and by[(spread, "k1")]["negative"] > 0.1
assert by[(0.1, "k3")]["std"] < 0.2 * by[(0.1, "k1")]["std"]  # close distributions: far less noise
assert abs(by[(1.0, "k2")]["mean"] - by[(1.0, "k2")]["exact"]) > 20 * by[(1.0, "k2")]["std"] / math.sqrt(n_samples)  # k2: biased

# %% [markdown]
# `course_lib.grpo.grpo_loss` puts the pieces together; a one-token example shows the clip and
# the KL at work. With $A = 2$, a ratio already at 1.5 is clipped at $1 + \epsilon = 1.2$ (no
# gradient pushes it further), and the token's log-probability sits $\log 2$ above the
# reference's, so $k_3 = 1/2 + \log 2 - 1 \approx 0.193$:

# %%
logp = torch.log(torch.tensor([[0.6]])).requires_grad_()
old_logp, ref_logp = torch.log(torch.tensor([[0.4]])), torch.log(torch.tensor([[0.3]]))
loss, stats = grpo_loss(logp, old_logp, ref_logp, torch.tensor([2.0]), torch.ones(1, 1), eps=0.2, beta=0.1)
loss.backward()
print(f"loss {loss.item():.4f} = -(1.2 * 2) + 0.1 * {stats['kl']:.4f};  clipped: {stats['clip_fraction']:.0%};"
      f"  d loss / d logp = {logp.grad.item():.4f} (only the KL term's 0.1 * (1 - pi_ref/pi))")
assert abs(loss.item() - (-2.4 + 0.1 * (0.5 + math.log(2) - 1))) < 1e-5
assert abs(logp.grad.item() - 0.1 * (1 - 0.5)) < 1e-5

# %% [markdown]
# ## 5. GRPO on the sums
#
# The verifiable task is chapter 10's addition: the reward is 1 when the completion is exactly
# the sum, else 0. No partial credit: the verifier is the reward. One run's settings live in a
# `GRPOConfig` (each field is commented in `course_lib/grpo.py`):

# %%
config = grpo_config()
EVAL_EVERY = 25  # steps between held-out evaluations
N_EVAL = 300 if FAST else 500  # held-out prompts per evaluation (greedy decoding)
print(config)

policy, _ = load_or_pretrain(base)  # a fresh copy of the base model
reference = frozen_copy(policy)  # pi_ref: the base model, frozen
optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, fused=True)  # fused: one kernel for all weights
generator = torch.Generator().manual_seed(config.seed)
train_rng = np.random.default_rng(config.seed)
before_prompts = arithmetic.prompts(6, np.random.default_rng(7), "test")
start_accuracy = greedy_accuracy(policy, arithmetic, n=N_EVAL)
print(f"held-out greedy accuracy of the base model: {start_accuracy:.1%}")

# %% [markdown]
# ### What is there to find?
#
# GRPO can only reinforce answers the policy already samples. So before training, ask how often
# the base model writes the right sum at temperature 1 (**pass@1**), and how often *at least one*
# of $k$ samples is right (**pass@k**). From $n$ samples per prompt of which $c$ are right,
# $1 - \binom{n-c}{k} / \binom{n}{k}$ estimates pass@k without bias (Chen et al. 2021, the Codex
# paper). The full base model read a careless corpus (chapter 10): it knows how to carry, but on
# most sums with a carry it writes the careless answer. Where pass@k lies far above pass@1, the
# right answer is there to be found, and a group of $G$ samples finds it for most prompts: GRPO's
# job is to make the policy *choose* it (Yue et al. 2025 make the same observation for large
# reasoning models: RL with a verifier mostly raises pass@1 towards the base model's pass@k).

# %%
n_probe = 200 if FAST else 500
probe_prompts = arithmetic.prompts(n_probe, np.random.default_rng(11), "test")
probe_config = dataclasses.replace(config, group_size=16, beta=0.0)
probe = sample_groups(policy, None, reward_fn, probe_prompts, probe_config, tokenizer, torch.Generator().manual_seed(2))
G = probe_config.group_size  # n = 16 samples per prompt
right_per_prompt = probe.rewards.reshape(n_probe, G).sum(1).long().tolist()
ks = [1, 2, 4, 8, 16]
pass_at = [np.mean([1 - math.comb(G - c, k) / math.comb(G, k) for c in right_per_prompt]) for k in ks]
wrong = probe.rewards.numpy() == 0
slips = np.array([c == arithmetic.careless_answer(q) for c, q in zip(probe.completions, probe.prompts)]) & wrong
print("pass@k of the base model on held-out sums:", "  ".join(f"k={k}: {v:.0%}" for k, v in zip(ks, pass_at)))
print(f"wrong samples that are exactly the careless sum: {slips.sum() / max(wrong.sum(), 1):.0%}")
fig = go.Figure(go.Scatter(x=ks, y=pass_at, mode="lines+markers", name="pass@k (samples at T = 1)"))
fig.add_hline(y=start_accuracy, line_dash="dash", annotation_text="greedy accuracy")
fig.update_layout(title="The base model: one sample against the best of k", xaxis=dict(title="k", type="log", tickvals=ks),
                  yaxis=dict(title="held-out accuracy", range=[0, 1]), width=640, height=360)
fig.show()
assert pass_at[-1] > pass_at[0] + 0.2  # many sums the policy gets wrong once, it gets right within 16 tries

# %% [markdown]
# The loop reads like the algorithm. With one gradient step per batch (`epochs = 1`), the policy
# that sampled the batch *is* the policy being updated, so the old log-probabilities are the
# current ones, detached: $r = 1$ at the update and the clip never binds. (With `epochs > 1` or
# several minibatches, `course_lib.grpo.grpo_update` keeps the sampling policy's log-probs and
# the clip starts to matter.)
#
# One saving is pure engineering. The G completions of a prompt share it, so the prompt's hidden
# states are the same in all G rows. `group_logprobs` runs each prompt once and lets its G
# completions attend to those keys and values (`GPT.shared_prompt_states`); gradients from all G
# flow back into the one prompt pass. On these sums (8 prompt tokens, 5 completion tokens,
# G = 16) that is about a third of the tokens of the written-out batch, for the same numbers up to
# rounding. `generate(..., num_samples=G)` does the same for sampling.

# %%
history = {k: [] for k in ("reward", "kl", "all_wrong", "all_right", "completion_length", "entropy", "seconds")}
evaluations = [(0, 0.0, start_accuracy)]  # (step, seconds of training so far, held-out accuracy)
T = config.max_new_tokens
for step in tqdm(range(config.steps), desc="GRPO"):
    tic = time.perf_counter()
    # 1-2. sample G completions for each prompt, score them, group-standardise the rewards
    prompts = arithmetic.prompts(config.prompts_per_step, train_rng, "train")
    batch = sample_groups(policy, reference, reward_fn, prompts, config, tokenizer, generator)
    # 3. the GRPO loss on the batch: clipped surrogate - beta * k3, per token then per sequence
    policy.train()
    logp, entropy = group_logprobs(policy, batch, config.temperature, return_entropy=True)  # each prompt once per group
    loss, stats = grpo_loss(logp, logp.detach(), batch.ref_logp, batch.advantages, batch.completion_mask,
                            eps=config.eps, beta=config.beta)
    # 4. one gradient step
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
    optimizer.step()
    policy.eval()

    history["reward"].append(batch.rewards.mean().item())
    history["kl"].append(stats["kl"])
    grouped = batch.rewards.reshape(-1, config.group_size)  # (prompts, G): silent groups are all wrong or all right
    history["all_wrong"].append((grouped == 0).all(1).float().mean().item())
    history["all_right"].append((grouped == 1).all(1).float().mean().item())
    history["completion_length"].append(batch.completion_mask.sum(1).float().mean().item())
    history["entropy"].append(masked_mean(entropy, batch.completion_mask.bool()).item())
    history["seconds"].append(time.perf_counter() - tic)
    if (step + 1) % EVAL_EVERY == 0 or step + 1 == config.steps:
        evaluations.append((step + 1, sum(history["seconds"]), greedy_accuracy(policy, arithmetic, n=N_EVAL)))

final_accuracy = evaluations[-1][2]
print(f"held-out greedy accuracy: {start_accuracy:.1%} -> {final_accuracy:.1%} in {config.steps} steps, "
      f"{sum(history['seconds']):.0f} s of training")

# %%
def smooth(x, k=10):
    x = np.asarray(x, dtype=float)
    return np.convolve(x, np.ones(k) / k, mode="valid") if len(x) >= k else x


fig = make_subplots(rows=2, cols=3, subplot_titles=("held-out greedy accuracy", "mean reward of the samples (T = 1)",
                                                    "KL to the reference (k3, per token)", "silent groups: all wrong (blue), all right (green)",
                                                    "completion length (tokens, EOS included)", "entropy per token (nats)"))
steps_eval = [e[0] for e in evaluations]
panels = [(1, 1, steps_eval, [e[2] for e in evaluations]), (1, 2, None, history["reward"]), (1, 3, None, history["kl"]),
          (2, 1, None, history["all_wrong"]), (2, 2, None, history["completion_length"]), (2, 3, None, history["entropy"])]
for r, c, x, y in panels:
    if x is None:
        fig.add_trace(go.Scatter(y=y, mode="lines", line=dict(color="lightgray"), showlegend=False), row=r, col=c)
        y_s = smooth(y)
        fig.add_trace(go.Scatter(x=np.arange(len(y_s)) + (len(y) - len(y_s)), y=y_s, mode="lines", showlegend=False,
                                 line=dict(color="royalblue")), row=r, col=c)
    else:
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", showlegend=False, line=dict(color="firebrick")), row=r, col=c)
silent_right = smooth(history["all_right"])
fig.add_trace(go.Scatter(x=np.arange(len(silent_right)) + (config.steps - len(silent_right)), y=silent_right, mode="lines",
                         name="all right", line=dict(color="seagreen")), row=2, col=1)
fig.update_xaxes(title_text="step")
fig.update_layout(width=1000, height=560, title="GRPO on the sums")
fig.show()

# %% [markdown]
# What the panels show. The held-out accuracy (greedy decoding on sums never seen in training)
# and the reward of the sampled completions rise together. In the full setting the rise is fast:
# the base model already wrote the right sum in some of every group (pass@16 above), so nearly
# every group carries signal, and GRPO only has to make the right way of adding the habit. The
# KL to the reference grows as the policy leaves the base model; the small $\beta$ lets it, which
# is what a verifier with no loophole allows. The silent groups measure the "no signal" problem
# directly: all-wrong groups are prompts the policy cannot solve yet, and their share falls as it
# improves; all-right groups are prompts it has mastered, and their share rises until most
# prompts teach nothing. (DAPO, Yu et al. 2025, drops such groups and samples more prompts to
# keep every batch informative.) Completion lengths stay near the length of a sum, as they should
# with a verifier that only accepts the exact digits.

# %%
gain = final_accuracy - start_accuracy
late = np.mean(history["reward"][-max(5, config.steps // 10):])
early = np.mean(history["reward"][: max(5, config.steps // 10)])
print(f"accuracy {start_accuracy:.1%} -> {final_accuracy:.1%} (+{gain:.1%}); sample reward {early:.2f} -> {late:.2f}")
window = max(5, config.steps // 10)
wrong_early, wrong_late = np.mean(history["all_wrong"][:window]), np.mean(history["all_wrong"][-window:])
print(f"share of all-wrong groups {wrong_early:.2f} -> {wrong_late:.2f}")
assert wrong_late <= wrong_early  # no more prompts leave the policy without any right answer
# Seeds 0, 1, 2 of the FAST run: sample reward +0.06, +0.05, +0.05; held-out accuracy +12, +6, +2 points.
# The sample reward (512 completions a step) is the steadier measure; greedy accuracy on a few
# hundred sums moves by a couple of points from noise alone.
assert late > early + 0.03 and gain > 0, "GRPO should raise the reward and the held-out accuracy"
if not FAST:  # the full setting's claim: at least 80% on held-out sums, at least 30 points above the base model
    assert final_accuracy >= 0.8 and gain >= 0.3, f"GRPO reached {final_accuracy:.1%} ({gain:+.1%})"

# %% [markdown]
# Samples before and after, greedy, on held-out sums:

# %%
def greedy_answers(model, prompts):
    from course_lib.gpt import generate

    completions, mask = generate(model, [tokenizer.encode(p) for p in prompts], arithmetic.max_digits + 2,
                                 temperature=0.0, eos_id=tokenizer.eos_id)
    return tokenizer.decode_batch(completions, mask)


for prompt, old, new in zip(before_prompts, greedy_answers(reference, before_prompts), greedy_answers(policy, before_prompts)):
    print(f"{prompt:10s} answer {arithmetic.answer(prompt):>5s} | base {old:>5s} {'ok' if old == arithmetic.answer(prompt) else '--'}"
          f" | GRPO {new:>5s} {'ok' if new == arithmetic.answer(prompt) else '--'}")

# %% [markdown]
# ## 6. PPO against GRPO on the same task and budget
#
# Chapter 12's `train_rlhf` runs PPO with a critic (a value head on a copy of the base model),
# the KL to the reference folded into the per-token reward, and GAE. We give it the same verifier
# and the same number of sampled completions as a short GRPO run, and measure accuracy per
# wall-clock second and the model memory each method keeps. (The full-size comparison, with
# peak resident memory measured in a separate process per method, is
# `python benchmarks/bench_ch13_ppo_vs_grpo.py`.)

# %%
from course_lib.rlhf import RLHFConfig, train_rlhf  # noqa: E402

budget_steps = 10 if FAST else 40  # steps of each method, with the same completions per step
small_grpo = dataclasses.replace(config, steps=budget_steps)
ppo_batch = small_grpo.prompts_per_step * small_grpo.group_size  # PPO: one completion for each of 512 prompts
n_completions = budget_steps * ppo_batch
# PPO's usual two passes over two minibatches, the same learning rate and KL coefficient,
# a critic that learns faster than the policy, and no adaptive KL.
ppo_config = RLHFConfig(steps=budget_steps, batch_size=ppo_batch, max_new_tokens=T, epochs=2, minibatches=2,
                        lr=config.lr, critic_lr=3 * config.lr, kl_coef=config.beta, kl_target=None, seed=SEED)
results = {}
for name in ("GRPO", "PPO"):
    model, _ = load_or_pretrain(base)
    ref = frozen_copy(model)
    prompts_fn = lambda step, r, n=(small_grpo.prompts_per_step if name == "GRPO" else ppo_batch): arithmetic.prompts(n, r, "train")  # noqa: E731
    tic = time.perf_counter()
    if name == "GRPO":
        train_grpo(model, ref, reward_fn, prompts_fn, small_grpo, progress=False)
        kept = [model, ref]
        trained_models = [model]
    else:
        critic = with_value_head(copy.deepcopy(model))
        train_rlhf(model, ref, critic, reward_fn, prompts_fn, ppo_config, progress=False)
        kept = [model, ref, critic]
        trained_models = [model, critic]
    seconds = time.perf_counter() - tic
    accuracy = greedy_accuracy(model, arithmetic, n=N_EVAL)
    numbers = sum(m.num_parameters() for m in kept) + 3 * sum(m.num_parameters() for m in trained_models)
    results[name] = {"seconds": seconds, "accuracy": accuracy, "numbers": numbers}
    print(f"{name:4s}: {n_completions} completions in {seconds:5.1f} s, held-out accuracy {start_accuracy:.1%} -> {accuracy:.1%} "
          f"({(accuracy - start_accuracy) / seconds * 100:+.2f} points per second); model memory {numbers * 4 / 2**20:.1f} MiB")
print(f"GRPO / PPO: time {results['GRPO']['seconds'] / results['PPO']['seconds']:.2f}x, "
      f"memory {results['GRPO']['numbers'] / results['PPO']['numbers']:.2f}x")
assert results["GRPO"]["numbers"] < 0.6 * results["PPO"]["numbers"]  # no critic: 5N instead of 9N numbers

# %% [markdown]
# Read the two lines together. Per completion sampled, PPO can learn more: it takes four gradient
# steps on each batch (two epochs of two minibatches) where GRPO takes one, and its critic gives
# every token its own advantage. Per second and per byte GRPO is cheaper: no critic to run forward
# and backward, no GAE, and 5/9 of the model memory. Which learns more *per second* depends on the
# task and the budget, so the benchmark gives each method the same wall-clock budget in a process
# of its own and reports the seconds each needed to first reach 80% and 90% held-out accuracy,
# with peak memory measured rather than counted.

# %% [markdown]
# ## Summary
#
# * GRPO replaces the critic by a Monte Carlo baseline: $G$ samples of the same prompt, their
#   rewards standardised within the group. No value network, so about 5/9 of PPO's model memory
#   here, and no critic to train or to go wrong.
# * GRPO reinforces what the policy already samples. The full base model could add (pass@16 near
#   100%) but usually wrote the careless sum; GRPO raised its greedy accuracy towards that pass@k in
#   a few hundred steps. A model that never samples the right answer gives GRPO nothing to reinforce.
# * A group whose rewards all agree carries no signal: probability $p^G + (1-p)^G$ for a 0/1
#   verifier. Bigger groups help at the price of more samples per prompt.
# * The loss is PPO's clipped surrogate averaged per token and then per completion, minus
#   $\beta \cdot k_3$, an unbiased, non-negative, low-variance estimate of the KL to the reference
#   from the sampled tokens alone.
# * Exercise 13 has you write the group advantage, k3 and the per-sequence mean. Chapter 14
#   varies how the per-token loss is averaged, and replaces RL on samples by DPO on preferences.
