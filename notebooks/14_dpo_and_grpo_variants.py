# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 14 — Beyond PPO: DPO, and GRPO's loss variants
#
# Chapters 11-13 built the RLHF pipeline: a reward model fitted to preference pairs, then PPO
# (with a critic) or GRPO (with groups instead of a critic) maximising that reward while a KL
# penalty keeps the policy near the reference. This chapter looks at two ideas that came after:
#
# 1. **DPO**, Direct Preference Optimization (Rafailov et al. 2023). The KL-regularised objective
#    of chapter 12 has a closed-form optimum. Turned around, it says every policy *defines* a
#    reward, and fitting that implicit reward to the preference pairs with chapter 11's
#    Bradley-Terry loss trains the policy directly: no reward model, no sampling, no RL loop. We
#    derive it, train it on chapter 11's pairs and compare it with RLHF-PPO on the same data.
# 2. **How GRPO averages its loss.** DeepSeekMath's GRPO averages over each completion's tokens,
#    then over completions. DAPO (Yu et al. 2025) and Dr. GRPO (Liu et al. 2025) showed that this
#    choice, and dividing advantages by the group's standard deviation, weights completions by
#    their length and prompts by their difficulty. We compute those weights exactly.
#
# Cells that train honour `COURSE_FAST=1` (the tests set it) with smaller budgets; what you run
# by default is the full setting.

# %%
import copy
import time
from functools import partial

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from course_lib.config import FAST
from course_lib.dpo import dpo_config, heldout_report, kl_optimal_policy, train_dpo
from course_lib.gpt import with_value_head
from course_lib.grpo import dr_grpo_sum, group_advantages, grpo_loss, sequence_mean, token_mean
from course_lib.losses import dpo_loss
from course_lib.pretrain import base_config, load_or_pretrain, make_tasks
from course_lib.widgets import beta_slider_kl_optimum

SEED = 0
torch.manual_seed(SEED)
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. The optimum of the KL-regularised objective
#
# Chapter 12 maximised, for each prompt $x$,
#
# $$J(\pi) = \mathbb{E}_{y \sim \pi(\cdot \mid x)}\big[r(x, y)\big] - \beta\, \mathrm{KL}\big(\pi(\cdot \mid x) \,\|\, \pi_\text{ref}(\cdot \mid x)\big)
#        = \sum_y \pi(y \mid x) \Big[r(x, y) - \beta \log \frac{\pi(y \mid x)}{\pi_\text{ref}(y \mid x)}\Big].$$
#
# PPO climbs $J$ by sampled gradients. But over all distributions $\pi(\cdot \mid x)$, $J$ has an exact
# maximiser. Define
#
# $$\pi^*(y \mid x) = \frac{1}{Z(x)}\, \pi_\text{ref}(y \mid x)\, e^{r(x, y)/\beta}, \qquad Z(x) = \sum_y \pi_\text{ref}(y \mid x)\, e^{r(x, y)/\beta}.$$
#
# Then $r(x, y) = \beta \log \frac{\pi^*(y \mid x)}{\pi_\text{ref}(y \mid x)} + \beta \log Z(x)$. Substitute into $J$:
#
# $$J(\pi) = \sum_y \pi(y \mid x)\Big[\beta \log \frac{\pi^*(y \mid x)}{\pi(y \mid x)} + \beta \log Z(x)\Big]
#        = \beta \log Z(x) - \beta\, \mathrm{KL}\big(\pi \,\|\, \pi^*\big).$$
#
# The first term does not depend on $\pi$, and a KL divergence is $\ge 0$ with equality only when the
# two distributions agree. So $\pi^*$ is the unique maximiser: the best the RLHF objective can do is
# to **reweight the reference by $e^{r/\beta}$**. A small $\beta$ sharpens towards the best completion;
# a large one stays close to $\pi_\text{ref}$.
#
# We check this on a toy prompt with six possible completions: gradient ascent on the logits of
# $\pi$, using $J$ exactly, lands on the formula.

# %%
pi_ref_toy = torch.tensor([0.30, 0.25, 0.20, 0.12, 0.08, 0.05], dtype=torch.float64)
r_toy = torch.tensor([0.0, -1.0, 1.0, 2.0, -0.5, 3.0], dtype=torch.float64)
beta_toy = 1.0


def kl_regularised_objective(logits, r, pi_ref, beta):
    logp = torch.log_softmax(logits, -1)
    return (logp.exp() * (r - beta * (logp - pi_ref.log()))).sum()


logits = torch.zeros(6, dtype=torch.float64, requires_grad=True)
optimizer = torch.optim.Adam([logits], lr=0.1)
for _ in range(400):
    optimizer.zero_grad()
    (-kl_regularised_objective(logits, r_toy, pi_ref_toy, beta_toy)).backward()
    optimizer.step()
pi_ascent = torch.softmax(logits.detach(), -1)
pi_star = kl_optimal_policy(pi_ref_toy, r_toy, beta_toy)  # pi_ref * exp(r / beta) / Z
print("pi_ref           :", pi_ref_toy.numpy().round(3))
print("pi* (formula)    :", pi_star.numpy().round(3))
print("pi (gradient)    :", pi_ascent.numpy().round(3))
assert torch.allclose(pi_ascent, pi_star, atol=1e-4), "gradient ascent on J should reach pi_ref * exp(r / beta) / Z"

# %% [markdown]
# Move $\beta$ and watch the optimum slide between the reference (large $\beta$: the KL term dominates)
# and the single best completion (small $\beta$: the reward dominates). The title gives the price of
# each setting: the expected reward gained against the KL spent.

# %%
beta_slider_kl_optimum(pi_ref_toy.numpy(), r_toy.numpy(), [f"y{k}" for k in range(1, 7)], beta=beta_toy)

# %% [markdown]
# ## 2. The policy is a reward model in disguise
#
# Read the optimum backwards: for **any** policy $\pi_\theta$, the reward that would make it optimal is
#
# $$\hat r_\theta(x, y) = \beta \log \frac{\pi_\theta(y \mid x)}{\pi_\text{ref}(y \mid x)} + \beta \log Z(x),$$
#
# its *implicit reward*. $Z(x)$ is a sum over every possible completion, hopeless to compute; but it
# depends on the prompt only. Chapter 11 fitted rewards to pairs $(x, y_w, y_l)$, where the labeler
# preferred $y_w$ ("won") to $y_l$ ("lost"), by the Bradley-Terry model
# $P(y_w \succ y_l) = \sigma\big(r(x, y_w) - r(x, y_l)\big)$, and only the **difference** of two rewards for the
# same prompt enters it. There $\beta \log Z(x)$ cancels:
#
# $$\mathcal{L}_\text{DPO}(\theta) = -\,\mathbb{E}_{(x, y_w, y_l)} \log \sigma\Big(\beta \log \frac{\pi_\theta(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)} - \beta \log \frac{\pi_\theta(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)}\Big).$$
#
# This is chapter 11's reward-model loss with the reward model replaced by $\beta \log(\pi_\theta / \pi_\text{ref})$.
# Minimising it fits the implicit reward to the preferences, and the policy whose implicit reward is
# the fitted reward is, by section 1, the optimum of RLHF's objective for that reward. One loss
# replaces the reward model and the PPO loop. `course_lib.losses.dpo_loss` computes it from four
# sequence log-probs of shape (B,); `course_lib.dpo.completion_logprobs` makes those from per-token
# log-probs and a completion mask (exercise 14 has you write both).
#
# **The gradient** (Rafailov et al., section 4) shows what a step does. With
# $h = \hat r_\theta(x, y_w) - \hat r_\theta(x, y_l)$:
#
# $$\nabla_\theta \mathcal{L}_\text{DPO} = -\beta\, \mathbb{E}\Big[\sigma(-h)\,\big(\nabla_\theta \log \pi_\theta(y_w \mid x) - \nabla_\theta \log \pi_\theta(y_l \mid x)\big)\Big].$$
#
# Raise the chosen completion, lower the rejected one, weighted by $\sigma(-h)$: how wrongly the
# implicit reward currently ranks the pair. Pairs it already gets right by a wide margin stop
# counting. Note what the gradient does **not** say: it moves the *difference*; nothing stops both
# log-probabilities from falling, as long as the rejected one falls faster. We will see that happen.
#
# Two checks of these claims: autograd's gradient equals the formula, and the loss at the start of
# training (policy = reference, so $h = 0$) is $\log 2$.

# %%
pc, pr = torch.tensor([-12.0, -7.5, -20.0], requires_grad=True), torch.tensor([-11.0, -9.0, -14.0], requires_grad=True)
rc, rr = torch.tensor([-12.5, -8.0, -18.0]), torch.tensor([-10.0, -9.5, -15.0])
beta_demo = 0.5
dpo_loss(pc, pr, rc, rr, beta_demo).backward()
h = beta_demo * ((pc - rc) - (pr - rr)).detach()
formula = -beta_demo * torch.sigmoid(-h) / 3  # d loss / d log pi(y_w) for each pair (the mean divides by B = 3)
print("h (implicit reward margin):", h.numpy().round(3))
print("d loss / d log pi(y_w)    :", pc.grad.numpy().round(4), " formula:", formula.numpy().round(4))
print("d loss / d log pi(y_l)    :", pr.grad.numpy().round(4), " formula:", (-formula).numpy().round(4))
assert torch.allclose(pc.grad, formula) and torch.allclose(pr.grad, -formula)
assert abs(float(dpo_loss(rc, rr, rc, rr, beta_demo)) - np.log(2)) < 1e-6

# %% [markdown]
# **DPO's optimum is RLHF's optimum.** Back to the toy prompt. Suppose the labeler compares every
# pair of the six completions and prefers $i$ to $j$ with probability $\sigma(r_i - r_j)$: Bradley-Terry
# with the true rewards. The expected DPO loss over all pairs is
# $-\sum_{i \ne j} \sigma(r_i - r_j) \log \sigma(h_{ij})$ (averaged); minimising it over the policy's logits
# must give back $\pi^* \propto \pi_\text{ref}\, e^{r/\beta}$ without ever seeing $r$.

# %%
i_idx, j_idx = torch.triu_indices(6, 6, offset=1)  # the 15 unordered pairs
p_prefer_i = torch.sigmoid(r_toy[i_idx] - r_toy[j_idx])  # labeler: P(i beats j)
logits = torch.zeros(6, dtype=torch.float64, requires_grad=True)
optimizer = torch.optim.Adam([logits], lr=0.1)
ref_logp_toy = pi_ref_toy.log()
for _ in range(400):
    logratio = torch.log_softmax(logits, -1) - ref_logp_toy  # log pi / pi_ref of each completion
    h = beta_toy * (logratio[i_idx] - logratio[j_idx])  # implicit reward margin of i over j
    # the DPO loss of "i won" and of "j won", weighted by how often the labeler picks each winner
    expected_loss = (p_prefer_i * -F.logsigmoid(h) + (1 - p_prefer_i) * -F.logsigmoid(-h)).mean()
    optimizer.zero_grad()
    expected_loss.backward()
    optimizer.step()
pi_dpo = torch.softmax(logits.detach(), -1)
print("pi* (RLHF optimum):", pi_star.numpy().round(3))
print("pi  (DPO optimum) :", pi_dpo.numpy().round(3))
assert torch.allclose(pi_dpo, pi_star, atol=2e-3), "with every pair labelled, DPO's minimiser is pi_ref * exp(r / beta) / Z"

# %% [markdown]
# The toy hides the catch: here every pair of completions was labelled, infinitely often. Real
# preference data covers a few completions per prompt, sampled once from some earlier policy. DPO
# only ever sees those; PPO samples the *current* policy and asks the reward model about whatever
# it writes. We now measure what that difference costs.
#
# ## 3. DPO on the reviews
#
# The task is chapter 11's: complete "the soup was" with a review; the labeler's score is the
# number of positive adjectives minus the number of negative ones, and $-4$ for a malformed one. The
# pairs are **the same ones chapter 11's reward model learned from** (`preference_pairs` with the
# reward model's config: two completions per prompt, half of the second ones written by the
# labeler, labels drawn from Bradley-Terry with the labeler's noise). So DPO and RLHF-PPO start from
# identical information.

# %%
from course_lib.reward import load_or_train_reward_model, preference_pairs, reward_config, reward_fn

config = base_config()
base, base_record = load_or_pretrain(config)
base.eval()
_, reviews = make_tasks(config)
rm_config = reward_config()
reward_model, rm_record = load_or_train_reward_model(rm_config)
start = time.process_time()
pairs = preference_pairs(base, reviews, rm_config.n_pairs, rm_config.seed, "train", rm_config.beta,
                         rm_config.written_fraction)
pairs_cpu = time.process_time() - start
print(f"{len(pairs.prompts)} pairs ({pairs_cpu:.1f} CPU s to sample); reward model held-out accuracy "
      f"{rm_record['heldout_accuracy']:.2f}")
for k in range(4):
    print(f"  {pairs.prompts[k]!r}: chosen {pairs.chosen[k]!r} (score {reviews.score(pairs.chosen[k]):+.0f}),"
          f" rejected {pairs.rejected[k]!r} (score {reviews.score(pairs.rejected[k]):+.0f})")

# %% [markdown]
# `train_dpo` is short enough to read: compute the reference's log-probs of every chosen and
# rejected completion once (the pairs never change), then for each epoch over shuffled minibatches
# take the policy's log-probs, `dpo_loss`, and an Adam step (one epoch over the full setting's
# pairs, three over fast mode's fewer ones). Its config:

# %%
dpo_cfg = dpo_config()
print(dpo_cfg)
dpo_policy = copy.deepcopy(base)
dpo_history = train_dpo(dpo_policy, base, pairs, dpo_cfg)
print(f"DPO: {len(dpo_history['loss'])} steps, {dpo_history['seconds'][-1]:.1f} s wall, "
      f"{dpo_history['cpu_seconds'][-1]:.1f} CPU s")

# %%
steps = np.arange(1, len(dpo_history["loss"]) + 1)


def smooth(x, k=10):
    x = np.asarray(x, dtype=float)
    k = min(k, len(x))
    return np.convolve(x, np.ones(k) / k, mode="valid")


fig = make_subplots(rows=1, cols=3, subplot_titles=("DPO loss", "implicit reward accuracy",
                                                    "log-prob change vs reference (nats)"))
fig.add_trace(go.Scatter(x=steps, y=dpo_history["loss"], name="loss", line=dict(color="lightgray")), 1, 1)
fig.add_trace(go.Scatter(x=steps[9:], y=smooth(dpo_history["loss"]), name="loss (mean of 10)"), 1, 1)
fig.add_hline(y=np.log(2), line_dash="dot", row=1, col=1, annotation_text="log 2")
fig.add_trace(go.Scatter(x=steps[9:], y=smooth(dpo_history["reward_accuracy"]), name="accuracy (mean of 10)"), 1, 2)
fig.add_trace(go.Scatter(x=steps, y=dpo_history["chosen_logp_change"], name="chosen y_w"), 1, 3)
fig.add_trace(go.Scatter(x=steps, y=dpo_history["rejected_logp_change"], name="rejected y_l"), 1, 3)
fig.update_xaxes(title_text="step")
fig.update_layout(height=350, width=1000, title="DPO on chapter 11's preference pairs")
fig.show()
first, last = np.mean(dpo_history["loss"][:5]), np.mean(dpo_history["loss"][-10:])
print(f"loss {first:.3f} -> {last:.3f}; implicit-reward accuracy over the last 10 steps "
      f"{np.mean(dpo_history['reward_accuracy'][-10:]):.2f}")
print(f"log-prob change of the batch's chosen {dpo_history['chosen_logp_change'][-1]:+.2f}, "
      f"rejected {dpo_history['rejected_logp_change'][-1]:+.2f} nats")
assert abs(dpo_history["loss"][0] - np.log(2)) < 1e-4, "policy = reference at step 0, so the loss is log 2"
assert last < first - 0.02, "DPO should lower its loss on the pairs"
assert np.mean(dpo_history["rejected_logp_change"][-10:]) < np.mean(dpo_history["chosen_logp_change"][-10:])

# %% [markdown]
# The loss falls from $\log 2$ and the implicit reward ranks most training pairs right. The right
# panel shows what the gradient formula warned about: the margin grows mostly by pushing the
# **rejected** completions down, and the chosen ones often drift down too. Probability leaves both;
# it goes to completions that appear in no pair. Whether those are good is something DPO never
# checks.
#
# ## 4. DPO against RLHF-PPO
#
# Now chapter 12's pipeline on the same pairs: the reward model trained on them, and
# `train_rlhf` with its default config (a critic started from the base model, the per-token KL
# penalty with the adaptive coefficient). We judge both policies the way chapter 12 did, on prompts
# with **held-out nouns**, by the **labeler's true score** (not the reward model's), and measure the
# KL to the reference on the same samples:
# $\mathrm{KL}(\pi \,\|\, \pi_\text{ref}) \approx \frac{1}{N}\sum_n \big[\log \pi(y_n \mid x_n) - \log \pi_\text{ref}(y_n \mid x_n)\big]$ with $y_n \sim \pi$.

# %%
from course_lib.rlhf import rlhf_config, train_rlhf

ppo_cfg = rlhf_config()
print(ppo_cfg)
ppo_policy = copy.deepcopy(base)
critic = with_value_head(base)
ppo_history = train_rlhf(ppo_policy, base, critic, reward_fn(reward_model),
                         lambda step, rng: reviews.prompts(ppo_cfg.batch_size, rng), ppo_cfg)
ppo_seconds, ppo_cpu = float(np.sum(ppo_history["seconds"])), float(np.sum(ppo_history["cpu_seconds"]))
print(f"RLHF-PPO: {ppo_cfg.steps} steps, {ppo_seconds:.1f} s wall, {ppo_cpu:.1f} CPU s")

# %%
N_EVAL = 200 if FAST else 400
reports = {name: heldout_report(model, base, reviews, n=N_EVAL, seed=1234)
           for name, model in [("base", base), ("DPO", dpo_policy), ("RLHF-PPO", ppo_policy)]}
costs = {"base": (0.0, 0.0), "DPO": (dpo_history["seconds"][-1], dpo_history["cpu_seconds"][-1]),
         "RLHF-PPO": (ppo_seconds, ppo_cpu)}
print(f"{'':10s} {'true score':>10s} {'well-formed':>12s} {'KL to ref':>10s} {'length':>7s} {'train s':>8s} {'CPU s':>7s}")
for name, rep in reports.items():
    print(f"{name:10s} {rep['score']:+10.2f} {rep['well_formed']:12.2f} {rep['kl']:10.2f} {rep['length']:7.1f} "
          f"{costs[name][0]:8.1f} {costs[name][1]:7.1f}")
for name in ("DPO", "RLHF-PPO"):
    print(f"\n{name} samples:", *reports[name]["samples"][:4], sep="\n  ")

fig = make_subplots(rows=1, cols=3, subplot_titles=("labeler's true score (held-out prompts)", "KL to the reference (nats)",
                                                    "training CPU seconds"))
names = list(reports)
colors = ["gray", "#1f77b4", "#d62728"]
fig.add_trace(go.Bar(x=names, y=[reports[n]["score"] for n in names], marker_color=colors), 1, 1)
fig.add_trace(go.Bar(x=names, y=[reports[n]["kl"] for n in names], marker_color=colors), 1, 2)
fig.add_trace(go.Bar(x=names, y=[costs[n][1] for n in names], marker_color=colors), 1, 3)
fig.update_layout(height=330, width=1000, showlegend=False, title="DPO and RLHF-PPO from the same preference pairs")
fig.show()

# %% [markdown]
# What to read in the table (the asserts below check the first point, with a margin above the
# evaluation's noise: with 200-400 prompts the standard error of a mean score is about 0.1-0.15):
#
# * **DPO beats the base model** on the labeler's true score, without a reward model and without
#   sampling a single completion during training. Per example it learns from it costs a fraction
#   of PPO: a pair is two forward and backward passes, while a PPO completion is sampled, scored
#   by the reward model, passed through the reference and the critic, and trained on for several
#   epochs by two networks. The whole runs are much closer (DPO took 60% to 90% of PPO's CPU time
#   in our runs), because DPO takes many more examples (every pair, in fast mode three times over)
#   than PPO samples completions.
# * **DPO's gain is limited, and comes with drift.** Its pairs were sampled from the base model
#   before training: it cannot *explore*, and it learns nothing about the completions its own updates
#   make more likely. The falling log-probabilities of section 3 say where probability went: to
#   text no pair covers, which is why its share of well-formed reviews can end up *below* the base
#   model's even as its mean score rises. More epochs over the same pairs drive the implicit-reward
#   margins and the KL up without adding information.
# * **PPO learns from its own samples**, so every new kind of mistake it starts making is scored and
#   corrected at once; with its KL in check it can go well beyond DPO (in one FAST development run: a
#   true score of +0.8 against DPO's -0.5, with 96% of reviews well-formed). But it optimises the reward
#   *model*, and where that model is wrong PPO finds out too. A PPO policy whose KL runs far past its
#   target while its true score falls is exploiting the reward model (chapter 12's reward hacking):
#   before the reward model was shown near-miss pairs and PPO's KL coefficient was raised (chapter
#   12), a full-setting run ended writing "the bed was gream." for every prompt, at a KL of 15 nats
#   and a true score of -4. DPO cannot hack a reward model it does not
#   have; its failure is the opposite one, moving too little and in directions nobody labelled.
#   The next cell prints which of the two regimes this run's PPO is in.
#
# The seed lecture's comparison table calls DPO a way to "bypass" reward modelling that "avoids some
# issues of reward misspecification". That is loose: DPO fits a reward model too, the implicit one,
# under the very same Bradley-Terry assumption, and it inherits every flaw of the preference data. What
# it drops is the explicit model and the RL loop, and with them on-policy data. In a table:
#
# | | RLHF-PPO (ch. 12) | GRPO (ch. 13) | DPO (this chapter) |
# |---|---|---|---|
# | learns from | its own samples, scored by a reward model | its own samples, groups of $G$ per prompt, scored by a reward function | a fixed set of preference pairs |
# | models in memory | policy, reference, reward model, critic | policy, reference, reward function | policy, reference (its log-probs can be precomputed) |
# | explores | yes | yes | no (offline) |
# | tie to the reference | KL penalty in the reward, adaptive $\beta$ | k3 KL in the loss | $\beta$ inside the loss: the implicit reward's scale |
# | cost per update | generate, 4 forward passes, PPO epochs | generate $G$ per prompt, 2-3 forward passes | 2 forward passes of the policy |
#
# Later work closes part of the gap by making DPO *online*: sample fresh pairs from the current
# policy, label them, repeat ("iterative" or "online" DPO), which brings back exactly the
# exploration this comparison found missing.

# %%
base_score, dpo_score, ppo_score = (reports[n]["score"] for n in ("base", "DPO", "RLHF-PPO"))
if ppo_score > dpo_score:
    print(f"This run: RLHF-PPO went further than DPO ({ppo_score:+.2f} vs {dpo_score:+.2f}) at KL {reports['RLHF-PPO']['kl']:.1f}.")
else:
    print(f"This run: RLHF-PPO ended below DPO ({ppo_score:+.2f} vs {dpo_score:+.2f}) at KL {reports['RLHF-PPO']['kl']:.1f}: "
          "look at its samples above for reward hacking.")
assert dpo_score > base_score + 0.2, f"DPO should beat the base model on the held-out true score ({dpo_score:+.2f} vs {base_score:+.2f})"
# CPU seconds per example learned from: a preference pair for DPO, a sampled completion for PPO.
dpo_examples, ppo_examples = dpo_cfg.epochs * len(pairs.prompts), ppo_cfg.steps * ppo_cfg.batch_size
per_pair, per_completion = costs["DPO"][1] / dpo_examples, costs["RLHF-PPO"][1] / ppo_examples
print(f"CPU per example: DPO {per_pair * 1e3:.1f} ms per pair, RLHF-PPO {per_completion * 1e3:.1f} ms per completion")
assert per_pair < 0.5 * per_completion, "a DPO pair should cost well under half of a PPO completion"

# %% [markdown]
# ## 5. GRPO's loss, averaged three ways
#
# Back to GRPO (chapter 13). For a prompt it samples $G$ completions $o_1 \dots o_G$ with rewards
# $R_i$, gives every token of $o_i$ the advantage $\hat A_i = (R_i - \text{mean}(R)) / \text{std}(R)$, and minimises a
# per-token loss $\ell_{i,t}$ (PPO's clipped surrogate, plus the KL term). What remains is to turn the
# (G, T) table of $\ell_{i,t}$ into one number. Three published choices, one function each in
# `course_lib.grpo`:
#
# * **sequence mean** (GRPO as in DeepSeekMath, Shao et al. 2024):
#   $\;\mathcal{L} = \frac{1}{G}\sum_i \frac{1}{|o_i|}\sum_t \ell_{i,t}$ (`sequence_mean`);
# * **token mean** (DAPO, Yu et al. 2025): $\;\mathcal{L} = \frac{1}{\sum_i |o_i|}\sum_i \sum_t \ell_{i,t}$ (`token_mean`);
# * **constant normaliser** (Dr. GRPO, Liu et al. 2025): $\;\mathcal{L} = \frac{1}{G \cdot L_\text{max}}\sum_i \sum_t \ell_{i,t}$,
#   $L_\text{max}$ the generation budget (`dr_grpo_sum`); Dr. GRPO also drops the division by $\text{std}(R)$.
#
# At the start of an update (ratio 1) the gradient of $\ell_{i,t}$ with respect to the token's
# log-probability is $-\hat A_i$, so the aggregation decides the **weight** each token's
# log-probability gets: $\hat A_i / |o_i|$ over $G$, $\hat A_i$ over the batch's token count, or $\hat A_i$ over a
# constant. We measure those weights with autograd through `grpo_loss` on a toy group of four
# completions: right and short, right and long, wrong and short, wrong and long.

# %%
lengths = [4, 16, 4, 16]
rewards_toy = torch.tensor([1.0, 1.0, 0.0, 0.0])
labels_toy = ["right, 4 tokens", "right, 16 tokens", "wrong, 4 tokens", "wrong, 16 tokens"]
G_toy, T_toy = 4, 16
mask_toy = torch.zeros(G_toy, T_toy)
for i, n in enumerate(lengths):
    mask_toy[i, :n] = 1
L_MAX = 16

aggregations = {
    "sequence mean (GRPO)": (sequence_mean, True),
    "token mean (DAPO)": (token_mean, True),
    "constant, no std (Dr. GRPO)": (partial(dr_grpo_sum, max_len=L_MAX), False),
}


def token_weights(aggregate, scale):
    """-d loss / d log pi(token): the weight of each token's log-prob in the update, (G, T)."""
    logp = torch.full((G_toy, T_toy), -1.0, requires_grad=True)
    advantages = group_advantages(rewards_toy, G_toy, scale=scale)
    loss, _ = grpo_loss(logp, logp.detach(), None, advantages, mask_toy, beta=0.0, aggregate=aggregate)
    loss.backward()
    return -logp.grad


weights = {name: token_weights(agg, scale) for name, (agg, scale) in aggregations.items()}
per_token = {name: w[:, 0].numpy() for name, w in weights.items()}  # every token of a completion has the same weight
per_sequence = {name: (w * mask_toy).sum(1).numpy() for name, w in weights.items()}
print(f"{'':30s}" + "".join(f"{s:>18s}" for s in labels_toy))
for name in aggregations:
    print(f"{name:30s}" + "".join(f"{v:18.4f}" for v in per_token[name]) + "   per token")
    print(f"{'':30s}" + "".join(f"{v:18.4f}" for v in per_sequence[name]) + "   whole completion")

fig = make_subplots(rows=1, cols=2, subplot_titles=("weight of each token's log-prob", "weight of the whole completion (sum over its tokens)"))
for k, name in enumerate(aggregations):
    color = ["#1f77b4", "#ff7f0e", "#2ca02c"][k]
    fig.add_trace(go.Bar(x=labels_toy, y=per_token[name], name=name, marker_color=color), 1, 1)
    fig.add_trace(go.Bar(x=labels_toy, y=per_sequence[name], name=name, marker_color=color, showlegend=False), 1, 2)
fig.update_layout(barmode="group", height=380, width=1000, title="Who gets pushed how hard: one group, three aggregations")
fig.show()

# %% [markdown]
# Read the left panel per row of the group:
#
# * **Sequence mean** divides each completion by its own length. A wrong 16-token answer has each
#   token pushed down only a quarter as hard as a wrong 4-token answer: a wrong answer is penalised
#   *less per token the longer it is*. A right short answer is pushed up four times harder per token
#   than a right long one. Both push in the same direction on length: short when right, long when
#   wrong. Liu et al. trace the long, rambling wrong answers of R1-Zero-style training to exactly this.
# * **Token mean** and **Dr. GRPO's constant** give every token of the group the same weight per unit of
#   advantage, whatever the length of the completion it sits in. A long completion now counts in
#   proportion to its length (right panel), as the policy gradient $\sum_t \nabla \log \pi(a_t \mid s_t) \hat A$
#   of chapter 6 says it should. They differ in the normaliser: DAPO's changes with the batch's total
#   length, Dr. GRPO's is fixed, so a batch of long completions does not dilute each token's step.
#
# The asserts check these ratios exactly.

# %%
sm, tm, dr = (per_token[name] for name in aggregations)
assert np.isclose(sm[2] / sm[3], 4.0) and np.isclose(sm[0] / sm[1], 4.0), "sequence mean: weight per token ~ 1 / length"
assert np.allclose(np.abs(tm), np.abs(tm[0])) and np.allclose(np.abs(dr), np.abs(dr[0])), "token-level: equal weight"
assert np.allclose(per_sequence["sequence mean (GRPO)"][[0, 1]], per_sequence["sequence mean (GRPO)"][0]), \
    "sequence mean: every right completion gets the same total push, whatever its length"
assert np.isclose(per_sequence["token mean (DAPO)"][3] / per_sequence["token mean (DAPO)"][2], 4.0)

# %% [markdown]
# **The standard deviation weights prompts by difficulty.** Dividing by $\text{std}(R)$ gives every
# group's advantages unit spread, however much its completions actually differed. Take 0/1 rewards
# and a group of $G = 8$ with $k$ right answers, so success rate $q = k/G$ and $\text{std}(R) = \sqrt{q(1-q)}$.
# The size of the group's push on the policy is the root mean square of its advantages:
#
# * scaled (GRPO, DAPO): $\sqrt{\tfrac{1}{G}\sum_i \hat A_i^2} = 1$ for **every** group with mixed rewards. A prompt
#   solved 1 time in 8 (whose single right answer gets $\hat A = 2.6$) or 7 times in 8 (whose single wrong
#   answer gets $-2.6$) moves the policy as much as a prompt solved 4 times in 8;
# * centred only (Dr. GRPO): the root mean square is $\text{std}(R) = \sqrt{q(1-q)}$, largest for the prompts
#   the policy gets right half the time, smallest for the nearly solved and the nearly hopeless.
#
# Relative to centring, scaling multiplies a prompt's weight by $1/\text{std}(R)$: Liu et al. call it a
# *question-level difficulty bias* towards the too-easy and the too-hard prompts.

# %%
G8 = 8
ks = np.arange(1, G8)
rms_scaled, rms_centred, rare_scaled = [], [], []
for k in ks:
    r = torch.tensor([1.0] * k + [0.0] * (G8 - k))
    a_scaled, a_centred = group_advantages(r, G8, scale=True), group_advantages(r, G8, scale=False)
    rms_scaled.append(float(a_scaled.pow(2).mean().sqrt()))
    rms_centred.append(float(a_centred.pow(2).mean().sqrt()))
    rare_scaled.append(float(a_scaled.abs().max()))
fig = go.Figure()
fig.add_trace(go.Scatter(x=ks, y=rms_scaled, mode="lines+markers", name="(R - mean) / std  (GRPO, DAPO)"))
fig.add_trace(go.Scatter(x=ks, y=rms_centred, mode="lines+markers", name="R - mean  (Dr. GRPO)"))
fig.update_layout(height=350, width=720, xaxis_title=f"right answers in the group of G = {G8}",
                  yaxis_title="RMS advantage of the group", title="How hard each prompt pushes, by how often it is solved")
fig.show()
print("RMS advantage, scaled  :", np.round(rms_scaled, 3))
print("RMS advantage, centred :", np.round(rms_centred, 3))
print("largest |A| when scaled:", np.round(rare_scaled, 3))
q = ks / G8
assert np.allclose(rms_scaled, 1.0, atol=1e-3), "scaled: every mixed group pushes equally hard"
assert np.allclose(rms_centred, np.sqrt(q * (1 - q)), atol=1e-6), "centred: the push is the group's std"
assert rare_scaled[0] > 2.5 and np.isclose(rare_scaled[0], rare_scaled[-1], atol=1e-6)

# %% [markdown]
# ## Summary
#
# * The KL-regularised RLHF objective is maximised by $\pi^* \propto \pi_\text{ref}\, e^{r/\beta}$. Read backwards, any
#   policy has an implicit reward $\beta \log(\pi / \pi_\text{ref})$ (plus a prompt-only term), and fitting it to
#   preference pairs with the Bradley-Terry loss is **DPO**: one supervised loss instead of a reward
#   model and an RL loop. With every pair labelled its optimum is RLHF's optimum.
# * On our reviews, trained on the very pairs the reward model learned from, DPO improved the base
#   model's true score at a fraction of PPO's cost per example. It is offline: it never sees its own samples, and
#   its updates lower the probability of the rejected (and often the chosen) completions, moving mass
#   to text no label covers. PPO explores, and goes further when its KL is kept in check; it can also
#   exploit the reward model, a failure DPO cannot have.
# * GRPO's per-sequence average weighs each token by $1/|o_i|$: long wrong answers are penalised less
#   per token, short right ones rewarded more. DAPO's token mean and Dr. GRPO's constant normaliser
#   give every token the same weight; Dr. GRPO also drops the std, which otherwise upweights prompts
#   that are nearly always right or nearly always wrong.
#
# Exercise 14 has you write `completion_logprobs` and `dpo_loss` and checks them against the usual
# mistakes.
